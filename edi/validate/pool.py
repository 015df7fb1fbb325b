"""Document checks of each invoice (XSD, then EN 16931 schematron), in this process or on a pool.

The expensive per-invoice work — the schematron XSLT on Saxon, about 1–4 ms an invoice — is
spread over worker processes (`[validation] processes`, default the number of cores). Each
worker is started with `spawn` (never a fork of a process that may already hold a Saxon
isolate), compiles its XSD and XSLT once, and then checks invoice after invoice.

Starting a worker costs about half a second (interpreter, imports, XSD, XSLT compilation), as
much as a few hundred invoices. So the first invoice of a flow is checked in this process (a
one-invoice flow never starts a worker); the workers are then started, once per process, and
each compiles the rules of that syntax only (`_warm`); invoices go on being checked here until
every worker is ready, then go to the workers in chunks. A pool that is already warm (`edi
serve`, second flow on) takes a flow from its second invoice.

Results come back in the order of the flow, whatever the pool size, so reports are
deterministic. At most a bounded window of invoices is in flight, so memory does not grow with
the flow. CPP invoices (no schematron: XSD + extraction cost ~0.1 ms, less than sending them
to another process) never use the pool at all.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date

from lxml import etree

from edi.interfaces import SYNTAXES
from edi.invoice import InvoiceData, extract
from edi.validate import rules as rules_mod
from edi.validate import schematron, xsd
from edi.finding import Finding

Checked = tuple[InvoiceData, list[Finding]]

CHUNK = 16  # invoices per task sent to a worker
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


@dataclass(frozen=True)
class Settings:
    schematron: bool = True
    french: bool = False  # BR-FR (reform Flux 2) rules on top of EN 16931
    overrides: tuple[tuple[str, str], ...] = ()  # [rules.severity], hashable (executor key)
    engine: str = "native"  # [validation] engine: "native" (edi.validate.native) or "saxon"


# Platform rules that need nothing but the invoice: they run where the document checks run (on
# the pool, for UBL/CII), so the parent process keeps only the duplicate rules and routing.
STATELESS_RULES = tuple(code for code in rules_mod.RULES if code not in rules_mod.DUPLICATE_CODES)


def rule_versions(syntax: str, settings: Settings) -> list[str]:
    """What ran, for the report: schema and rule-set versions."""
    out = [f"XSD {syntax}"]
    if settings.schematron and syntax in ("UBL", "CII"):
        out += [f"{s.ruleset} {s.version}" for s in schematron.for_syntax(syntax, settings.french, settings.engine)]
    return out


def document_findings(element: etree._Element, raw: bytes, data: InvoiceData, settings: Settings) -> list[Finding]:
    """XSD, then — only for a schema-valid UBL/CII invoice — the schematron rule sets."""
    findings = xsd.validate(element, invoice_number=data.number)
    if findings or not settings.schematron or data.syntax not in ("UBL", "CII"):
        return findings
    for rules in schematron.for_syntax(data.syntax, settings.french, settings.engine):
        findings.extend(rules.check(raw, data.number, element))
    return findings


def check_raw(raw: bytes, settings: Settings, today: date, element: etree._Element | None = None) -> Checked:
    """Everything about one invoice that needs only the invoice: extraction, XSD, schematron,
    and the stateless platform rules (skipped when the XSD failed: its data cannot be trusted)."""
    if element is None:
        element = etree.fromstring(raw, _PARSER)
    data = extract(element)
    document = document_findings(element, raw, data, settings)
    platform = [] if any(f.code == "XSD" for f in document) else rules_mod.check(
        data, rules_mod.RuleContext(today=today, severity_overrides=dict(settings.overrides)), codes=STATELESS_RULES)
    return data, document + platform


def _check_chunk(chunk: list[bytes], settings: Settings, today: date) -> list[Checked]:
    return [check_raw(raw, settings, today) for raw in chunk]


def _warm(syntax: str, settings: Settings) -> int:
    """In a worker: compile what checking `syntax` needs, before the first chunk arrives (the
    credit-note schema, rarer, is left to its first use)."""
    xsd.schema_for(SYNTAXES[syntax].xsd_kind)
    if settings.schematron and syntax in ("UBL", "CII"):
        for rules in schematron.for_syntax(syntax, settings.french, settings.engine):
            rules.compile()
    return os.getpid()


_main_lock = threading.Lock()


@contextlib.contextmanager
def _main_hidden():
    """While workers are spawned: hide this process's `__main__` from multiprocessing.

    A spawned child first runs the parent's main module again ("safe importing of main"); for
    `edi` that is the whole CLI (typer, SQLModel, paramiko, watchdog: ~0.5 s, ~1 s when the
    cores are busy), before every worker start. Workers need none of it: their tasks and
    arguments live in importable modules. Without `__spec__` and `__file__` on `__main__`,
    multiprocessing does not ask the child to import it.
    """
    main = sys.modules.get("__main__")
    with _main_lock:
        saved = {k: main.__dict__.pop(k) for k in ("__spec__", "__file__") if main and k in main.__dict__}
        if main is not None and "__spec__" in saved:
            main.__spec__ = None
        try:
            yield
        finally:
            if main is not None:
                main.__dict__.update(saved)


class Pool:
    """A lazily started process pool, reused for every flow of this process."""

    def __init__(self, processes: int):
        self.processes = max(1, processes or os.cpu_count() or 1)
        self._executors: dict[Settings, ProcessPoolExecutor] = {}
        self._warming: dict[tuple[Settings, str], list[Future]] = {}

    def _executor(self, settings: Settings) -> ProcessPoolExecutor:
        if settings not in self._executors:
            self._executors[settings] = ProcessPoolExecutor(
                max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"),
            )
        return self._executors[settings]

    def start(self, settings: Settings, syntax: str) -> list[Future]:
        """Start the workers (once) and have them compile `syntax`'s rules; one future per worker
        start, done when it is ready (its result is the worker's pid)."""
        key = (settings, syntax)
        if key not in self._warming:
            executor = self._executor(settings)
            with _main_hidden():  # the executor spawns a worker at each of these submits
                self._warming[key] = [executor.submit(_warm, syntax, settings) for _ in range(self.processes)]
        return self._warming[key]

    def check(self, pieces: Iterable[tuple[bytes, etree._Element | None]], settings: Settings,
              today: date) -> Iterator[Checked]:
        """Check each document (bytes, and its parsed element when the caller has it); yield
        results in input order. Only the bytes travel to the workers."""
        iterator = iter(pieces)
        warming: list[Future] | None = None
        syntax = ""
        for raw, element in iterator:
            if syntax and self.processes > 1:  # a second invoice: the workers are worth starting
                warming = warming or self.start(settings, syntax)
                if all(f.done() for f in warming):
                    break  # every worker is ready: this invoice and the rest go to them
            data, findings = check_raw(raw, settings, today, element)
            syntax = data.syntax
            yield data, findings
        else:
            return
        executor = self._executor(settings)
        window: deque = deque()
        chunk: list[bytes] = [raw]
        for raw, _element in iterator:
            chunk.append(raw)
            if len(chunk) == CHUNK:
                window.append(executor.submit(_check_chunk, chunk, settings, today))
                chunk = []
                if len(window) >= self.processes * 3:
                    yield from window.popleft().result()
        if chunk:
            window.append(executor.submit(_check_chunk, chunk, settings, today))
        while window:
            yield from window.popleft().result()

    def close(self) -> None:
        for executor in self._executors.values():
            executor.shutdown(wait=True, cancel_futures=True)
        self._executors.clear()
        self._warming.clear()


_pools: dict[int, Pool] = {}


def shared(processes: int) -> Pool:
    """The pool of this process for that size (created on first use, closed at exit)."""
    key = max(1, processes or os.cpu_count() or 1)
    if key not in _pools:
        _pools[key] = Pool(key)
    return _pools[key]


@atexit.register
def close_all() -> None:
    """Close every pool of this process (at exit; a multiprocessing child must call it itself:
    it leaves without running atexit, and would wait forever for the pool's processes)."""
    for pool in _pools.values():
        pool.close()
    _pools.clear()
