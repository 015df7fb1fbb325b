"""Native EN 16931 rule engine: the official compiled schematron read back into rules
(`compiler`), its XPath 2.0 turned into libxml2 XPath and Python (`xpath`), run over the lxml
tree (`engine`), checked against Saxon continuously (`differential`)."""

from __future__ import annotations

import threading

from edi.validate.native.engine import Engine, NotNative

_lock = threading.Lock()
_engines: dict[str, Engine] = {}


def engine_for(ruleset: str) -> Engine:
    """This process's engine for a rule set (compiled from the cache, built once)."""
    engine = _engines.get(ruleset)
    if engine is None:
        from edi.validate.native.compiler import load
        from edi.validate.schematron import xslt_path

        with _lock:
            engine = _engines.get(ruleset)
            if engine is None:
                engine = Engine(load(xslt_path(ruleset), ruleset))
                _engines[ruleset] = engine
    return engine


__all__ = ["Engine", "NotNative", "engine_for"]
