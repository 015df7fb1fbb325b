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

from collections import Counter
from dataclasses import dataclass
from typing import Any

from lxml import etree

from edi.validate.native.compiler import Check, RuleSet
from edi.validate.native.xpath import MEMO, Compiler, Untranslatable, XPathError, ebv, string_value


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


def _pattern_steps(c: Compiler, t: Any) -> list[tuple[str, str, list[str]]] | None:
    """Child steps of a pattern branch: (Clark name, prefixed name, translated predicates)."""
    if t.symbol == "/" and len(t) == 2:
        left, right = _pattern_steps(c, t[0]), _pattern_steps(c, t[1])
        return None if left is None or right is None else left + right
    preds: list[str] = []
    while t.symbol == "[" and len(t) == 2:
        pred = c.translate_token(t[1])
        if pred is None or t[1].symbol in ("(integer)", "(decimal)"):
            return None
        preds.insert(0, pred)
        t = t[0]
    if t.symbol == "*" and len(t) == 0:
        return [("*", "*", preds)]
    steps = c.child_steps(t)
    if steps is None or len(steps) != 1 or steps[0].startswith("@"):
        return None
    return [(steps[0], t.source if t.symbol != "(name)" else t.value, preds)]


def _plain_matches(c: Compiler, context: str) -> list[tuple[tuple[str, ...], bool, Any]] | None:
    """A match pattern made of child steps, as (element names, absolute, check) per branch:
    names matched in Python against each element's path, then — only when some step has
    predicates — `check`, one libxml2 call on the candidate (`self::b[q][parent::a[p]]`).
    None when some branch has more (another axis, a positional predicate)."""
    out = []
    for branch in _branches(context):
        absolute = branch.startswith("/") and not branch.startswith("//")
        body = branch[2:] if branch.startswith("//") else branch.lstrip("/")
        try:
            steps = _pattern_steps(c, c.parse(body, ()))
        except Exception:  # noqa: BLE001 - not a plain path: matched by libxml2 instead
            return None
        if not steps or steps[-1][0] == "*":
            return None
        check = None
        if any(preds for _, _, preds in steps):
            text = ""
            for i, (_, name, preds) in enumerate(steps):
                axis = "self" if i == len(steps) - 1 else "parent"
                text = f"{axis}::{name}" + "".join(f"[{p}]" for p in preds) + (f"[{text}]" if text else "")
            check = c.boolean_xpath(text)
        out.append((tuple(name for name, _, _ in steps), absolute, check))
    return out


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
    batch: Any = None  # one libxml2 call answering every translated test of the rule
    batched: tuple[int, ...] = ()  # indexes in `checks` of those tests
    present: tuple = ()  # (index, wanted, descendant, alternative paths): path-existence tests
    quiet: str = ""  # the batch's answer when none of its checks fires ('1' per assert, '0' per report)
    others: tuple[int, ...] = ()  # indexes of the checks not in the batch


class Engine:
    """One compiled rule set, every expression built once; `run()` per document."""

    def __init__(self, ruleset: RuleSet, strict: bool = False):
        self.ruleset = ruleset
        self.strict = strict
        self._strict: Engine | None = None  # built the first time a document needs it
        c = Compiler(ruleset.namespaces, ruleset.codelists, strict)
        # contexts: a dynamic error in a match pattern is a non-match for XSLT (Saxon recovers)
        pc = c if not strict else Compiler(ruleset.namespaces, ruleset.codelists)
        self.patterns: list[list[_Rule]] = []
        # last element name -> (pattern, rule, steps, absolute) of the contexts matched in Python
        self._index: dict[str, list[tuple[int, int, tuple[str, ...], bool, Any]]] = {}
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
                    batched: list[int] = []
                    present: list[tuple] = []
                    tests: list[str] = []
                    for check in rule.checks:
                        if check.kind == "report" and not check.flag:
                            continue  # an unflagged report is never a finding (schematron.SVRL_HITS)
                        text = [(k, c.compile(v, subst, names) if k == "x" else v) for k, v in check.text]
                        translated = None if len(variables) > len(subst) else c.translate(check.test, subst, names)
                        found = None if translated is None else c.presence(check.test, subst, names)
                        if found is not None:
                            present.append((len(checks), *found))
                            checks.append(_Check(check, None, text))
                        elif translated is not None:
                            batched.append(len(checks))
                            tests.append(translated)
                            checks.append(_Check(check, None, text))
                        else:
                            checks.append(_Check(check, c.compile(check.test, subst, names), text))
                    matches = _plain_matches(pc, rule.context)
                    if matches is not None:
                        for steps, absolute, check in matches:
                            self._index.setdefault(steps[-1], []).append(
                                (len(self.patterns), len(rules), steps, absolute, check))
                    select = None if matches is not None else pc.compile(select_expression(rule.context), {})
                    quiet = "".join("1" if checks[i].check.kind == "assert" else "0" for i in batched)
                    others = tuple(i for i in range(len(checks)) if i not in set(batched))
                    rules.append(_Rule(select, variables, checks, c.batch(tests) if tests else None,
                                       tuple(batched), tuple(present), quiet, others))
                self.patterns.append(rules)
        except (Untranslatable, XPathError) as exc:
            raise NotNative(str(exc)) from exc
        except Exception as exc:  # elementpath parse errors: a construct it does not know
            raise NotNative(f"{type(exc).__name__}: {exc}") from exc
        self.translated, self.closures = c.translated, c.closures
        guards = c.guards
        clark = lambda names: frozenset(_clark(n, ruleset.namespaces) for n in names)  # noqa: E731
        self._single = clark(guards.single) if guards else frozenset()
        self._anywhere: dict[str, list[tuple[str, ...]]] = {}  # last name -> paths, Clark names
        for names in guards.anywhere if guards else ():
            steps = tuple(_clark(n, ruleset.namespaces) for n in names)
            self._anywhere.setdefault(steps[-1], []).append(steps)
        self._boolean = clark(guards.boolean) if guards else frozenset()

    def _needs_strict(self, root: etree._Element) -> bool:
        """Whether a translated expression could meet, in this document, what XPath 1.0
        forgives and XPath 2.0 refuses (see `xpath.Guards`): a repeated element on a path given
        to a one-item function, or a bad boolean compared with true()/false()."""
        single, anywhere, boolean = self._single, self._anywhere, self._boolean
        met: set[tuple[str, ...]] = set()
        for el in root.iter():
            tag = el.tag
            if tag in single:
                for _ in el.itersiblings(tag):
                    return True
            for steps in anywhere.get(tag, ()):
                if _ends_with(el, steps):
                    if steps in met:
                        return True
                    met.add(steps)
            if tag in boolean and "".join(el.itertext()).strip(" \t\r\n") not in ("true", "false", "1", "0"):
                return True
        return False

    def run(self, element: etree._Element, seen: dict[str, list[int]] | None = None) -> list[Hit]:
        """Every check that fires on the document of `element`, in SVRL order. `seen`, when
        given, counts per rule id [fired, passed] (the harness's exercised-rules list)."""
        root = element.getroottree().getroot()
        if not self.strict and self._needs_strict(root):
            if self._strict is None:
                self._strict = Engine(self.ruleset, strict=True)
            return self._strict.run(element, seen)
        order: dict[Any, int] = {}
        paths: dict[Any, tuple[str, ...]] = {}
        for i, el in enumerate(root.iter()):
            if isinstance(el.tag, str):
                order[el] = i
                parent = el.getparent()
                paths[el] = (paths[parent] if parent is not None else ()) + (el.tag,)
        present = set(paths.values())
        shared = {p for p, n in Counter(paths.values()).items() if n > 1}  # paths of several elements
        present.update(p + ("@" + a,) for el, p in paths.items() for a in el.attrib)
        by_last: dict[str, list[tuple[str, ...]]] = {}
        for p in present:
            by_last.setdefault(p[-1], []).append(p)
        hits: list[Hit] = []
        memo: dict = {}
        index = self._index
        matched: list[dict[Any, int]] = [{} for _ in self.patterns]  # per pattern: node -> rule rank
        for el, path in paths.items():
            for pattern, rank, steps, absolute, check in index.get(el.tag, ()):
                if _path_matches(path, steps, absolute) and (check is None or check(el)):
                    seen_rank = matched[pattern].get(el)
                    if seen_rank is None or rank < seen_rank:
                        matched[pattern][el] = rank
        for p, rules in enumerate(self.patterns):
            fired = matched[p]
            for rank, rule in enumerate(rules):
                if rule.select is not None:
                    for node in rule.select(root, {MEMO: memo}):
                        if fired.get(node, rank + 1) > rank:
                            fired[node] = rank
            for node in sorted(fired, key=order.__getitem__):
                rule = rules[fired[node]]
                values: dict[str, Any] = {MEMO: memo}
                for name, fn in rule.variables:
                    values[name] = fn(node, values)
                flags = rule.batch(node) if rule.batch is not None else ""
                if flags == rule.quiet and seen is None:
                    answers: dict[int, str] = {}  # nothing batched fires: look at the others only
                    todo = rule.others
                else:
                    answers = dict(zip(rule.batched, flags))
                    todo = range(len(rule.checks))
                if rule.present:
                    here = paths[node]
                    several = here in shared  # the set says "some element there has it": walk this one
                    for i, wanted, descendant, alternatives in rule.present:
                        found = False
                        for a in alternatives:  # plain loops: most tests have one or two
                            if descendant:
                                found = any(p[-len(a):] == a for p in by_last.get(a[-1], ()))
                            elif several:
                                found = _has_path(node, a)
                            else:
                                found = here + a in present
                            if found:
                                break
                        answers[i] = "1" if found == wanted else "0"
                for i in todo:
                    c = rule.checks[i]
                    result = answers[i] == "1" if c.test is None else ebv(c.test(node, values))
                    fires = result == (c.check.kind == "report")
                    if seen is not None:
                        seen.setdefault(c.check.id, [0, 0])[0 if fires else 1] += 1
                    if fires:
                        hits.append(Hit(c.check.id, c.check.flag, c.check.kind, full_path(node),
                                        _message(c.text, node, values)))
        return hits


def _ends_with(el: etree._Element, steps: tuple[str, ...]) -> bool:
    """Whether the names of `el` and its ancestors end with `steps` (a `//` path's matches)."""
    for step in reversed(steps):
        if el is None or el.tag != step:
            return False
        el = el.getparent()
    return True


def _clark(name: str, namespaces: dict[str, str]) -> str:
    prefix, _, local = name.rpartition(":")
    return f"{{{namespaces[prefix]}}}{local}" if prefix and prefix in namespaces else local


def _path_matches(path: tuple[str, ...], steps: tuple[str, ...], absolute: bool) -> bool:
    """Whether an element's path (names from the root) matches a pattern's child steps ("*"
    matches any name): the whole path when the pattern is absolute, its end otherwise."""
    if absolute and len(path) != len(steps) or len(path) < len(steps):
        return False
    tail = path[-len(steps):]
    if "*" not in steps:
        return tail == steps
    return all(s == "*" or s == p for s, p in zip(steps, tail))


def _has_path(node: etree._Element, steps: tuple[str, ...]) -> bool:
    """Whether `node` has the child path `steps` (an attribute as the last step)."""
    level = [node]
    for step in steps:
        if step.startswith("@"):
            return any(step[1:] in el.attrib for el in level)
        level = [child for el in level for child in el.iterchildren(step)]
        if not level:
            return False
    return True


def _message(text: list, node: Any, values: dict) -> str:
    out = []
    for kind, part in text:
        if kind == "t":
            out.append(part)
        else:
            items = part(node, values)
            out.append(" ".join(string_value(i) for i in items))
    return " ".join("".join(out).split())
