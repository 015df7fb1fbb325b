"""Native evaluation of a compiled rule set over the lxml tree: no Saxon, same findings.

Per pattern (one XSLT mode), the skeleton visits every element and attribute once, in document
order, and fires on each node the first rule (highest priority) whose context matches it. The
engine gets the same node→rule assignment by selecting each rule's context over the whole
document (`//context`, or the absolute path as written), highest priority first, a node being
kept by the first rule that selects it; then it runs each fired rule's checks with the node as
context item, in document order. Expressions run as built by `xpath.Compiler` (libxml2 XPath 1.0
where the meaning is the same, Python closures with XPath 2.0 semantics elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lxml import etree

from edi.validate.native.compiler import Check, RuleSet
from edi.validate.native.xpath import Compiler, Untranslatable, XPathError, ebv, string_value


@dataclass(frozen=True)
class Hit:
    """One fired check: what the SVRL would carry."""

    id: str
    flag: str
    kind: str
    location: str
    text: str


class NotNative(Exception):
    """The rule set has an expression the native engine cannot evaluate (the reason says which)."""


def full_path(elem: etree._Element) -> str:
    """The skeleton's `schematron-select-full-path` location of an element."""
    steps: list[str] = []
    while elem is not None:
        tag = elem.tag
        n = 1
        for sib in elem.itersiblings(tag, preceding=True):
            n += 1
        qn = etree.QName(tag)
        if qn.namespace:
            steps.append(f"*:{qn.localname}[namespace-uri()='{qn.namespace}'][{n}]")
        else:
            steps.append(f"{qn.localname}[{n}]")
        elem = elem.getparent()
    return "/" + "/".join(reversed(steps))


def _branches(context: str) -> list[str]:
    """Top-level `|` branches of a match pattern (outside predicates, parentheses, strings)."""
    out, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(context):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "|" and depth == 0:
            out.append(context[start:i].strip())
            start = i + 1
    out.append(context[start:].strip())
    return out


def select_expression(context: str) -> str:
    """The expression that selects, from the document, every node a match pattern matches."""
    return " | ".join(b if b.startswith("/") else "//" + b for b in _branches(context))


@dataclass
class _Check:
    check: Check
    test: Any
    text: list[tuple[str, Any]]


@dataclass
class _Rule:
    select: Any
    variables: list[tuple[str, Any]]
    checks: list[_Check]


class Engine:
    """One compiled rule set, every expression built once; `run()` per document."""

    def __init__(self, ruleset: RuleSet):
        self.ruleset = ruleset
        c = Compiler(ruleset.namespaces, ruleset.codelists)
        self.patterns: list[list[_Rule]] = []
        try:
            for pattern in ruleset.patterns:
                rules = []
                for rule in pattern.rules:
                    subst: dict[str, str] = {}
                    variables: list[tuple[str, Any]] = []
                    for name, select in rule.variables:
                        if select in (".",) or select.startswith("@") and select[1:].replace(":", "").isalnum():
                            subst[name] = select  # the same node: stands in textually (see xpath)
                        variables.append((name, c.compile(select, {}, tuple(n for n, _ in variables))))
                    names = tuple(n for n, _ in variables)
                    checks = []
                    for check in rule.checks:
                        if check.kind == "report" and not check.flag:
                            continue  # an unflagged report is never a finding (schematron.SVRL_HITS)
                        text = [(k, c.compile(v, subst, names) if k == "x" else v) for k, v in check.text]
                        checks.append(_Check(check, c.compile(check.test, subst, names), text))
                    rules.append(_Rule(c.compile(select_expression(rule.context), {}), variables, checks))
                self.patterns.append(rules)
        except (Untranslatable, XPathError) as exc:
            raise NotNative(str(exc)) from exc
        except Exception as exc:  # elementpath parse errors: a construct it does not know
            raise NotNative(f"{type(exc).__name__}: {exc}") from exc
        self.translated, self.closures = c.translated, c.closures

    def run(self, element: etree._Element, seen: dict[str, list[int]] | None = None) -> list[Hit]:
        """Every check that fires on the document of `element`, in SVRL order. `seen`, when
        given, counts per rule id [fired, passed] (the harness's exercised-rules list)."""
        root = element.getroottree().getroot()
        order = {el: i for i, el in enumerate(root.iter())}
        hits: list[Hit] = []
        for rules in self.patterns:
            fired: dict[Any, _Rule] = {}
            for rule in rules:
                for node in rule.select(root, {}):
                    if node not in fired:
                        fired[node] = rule
            for node in sorted(fired, key=order.__getitem__):
                rule = fired[node]
                values: dict[str, Any] = {}
                for name, fn in rule.variables:
                    values[name] = fn(node, values)
                for c in rule.checks:
                    result = ebv(c.test(node, values))
                    fires = result == (c.check.kind == "report")
                    if seen is not None:
                        seen.setdefault(c.check.id, [0, 0])[0 if fires else 1] += 1
                    if fires:
                        hits.append(Hit(c.check.id, c.check.flag, c.check.kind, full_path(node),
                                        _message(c.text, node, values)))
        return hits


def _message(text: list, node: Any, values: dict) -> str:
    out = []
    for kind, part in text:
        if kind == "t":
            out.append(part)
        else:
            items = part(node, values)
            out.append(" ".join(string_value(i) for i in items))
    return " ".join("".join(out).split())
