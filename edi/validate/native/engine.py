"""Native evaluation of a compiled rule set over the lxml tree: no Saxon, same findings.

Per pattern (one XSLT mode), the skeleton visits every element and attribute once, in document
order, and fires on each node the first rule (highest priority) whose context matches it. The
engine gets the same node→rule assignment from each element's path (the candidate rules of a
path, in priority order, worked out once per process; their predicates then asked of the
element), `*` contexts by name suffix, and the rare contexts that are no plain path by
selecting them from the document; then it runs each fired rule's generated function
(`codegen`) with the node as context item, in document order.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from edi.validate.native.codegen import GENERATOR, Generator, Unsupported, _uses_position, decode
from edi.validate.native.codegen import namespace as codegen_namespace
from edi.validate.native.compiler import Check, RuleSet, cache_dir
from edi.validate.native.runtime import Doc
from edi.validate.native.xpath import _CASTS, Compiler, Untranslatable, XPathError, string_value


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


def _reference(c: Compiler, branch: str) -> Any:
    """One `|` branch of a context as one libxml2 test on a candidate (`self::b[q][parent::a[p]]`,
    XPath 1.0 forgiving what 2.0 refuses, as contexts were always matched): what decides when
    a generated predicate raises (Saxon recovers from errors in patterns). None when the branch
    has no predicate or is no plain path (another axis, a position, `*` last)."""
    body = branch[2:] if branch.startswith("//") else branch.lstrip("/")
    try:
        steps = _pattern_steps(c, c.parse(body, ()))
    except Exception:  # noqa: BLE001 - not a plain path
        return None
    if not steps or steps[-1][0] == "*" or not any(preds for _, _, preds in steps):
        return None
    text = ""
    for i, (_, name, preds) in enumerate(steps):
        axis = "self" if i == len(steps) - 1 else "parent"
        text = f"{axis}::{name}" + "".join(f"[{p}]" for p in preds) + (f"[{text}]" if text else "")
    return c.boolean_xpath(text)


@dataclass
class _Branch:
    """One `|` branch of a rule's context: element names from the last step up, each step's
    predicates (generated functions), whether it is anchored at the root; or, when it is not a
    plain path, `select` (the nodes it matches, selected from the document)."""

    steps: tuple = ()  # (Clark name or None for `*`, predicate functions), first step first
    absolute: bool = False
    reference: Any = None  # the branch as libxml2 checks it: asked when a predicate raises
    select: Any = None
    suffix: str = ""  # `*` whose first predicate is `ends-with(name(), suffix)`: names ending so
    up: tuple = ()  # the steps from the last one up
    root: str | None = None  # an absolute branch's first name (None: `/*`)
    guarded: bool = False  # some step has predicates
    guards: tuple = ()  # (steps up from the last one, predicates) of the steps that have some


@dataclass
class _Rule:
    branches: list[_Branch]
    function: Any  # generated: (context element, Doc) -> indexes of the checks that fire
    checks: list[Check]  # every check of the rule (the function answers with their indexes)
    evaluated: list[int]  # the checks it evaluates (an unflagged report is never a finding)
    variables: list[tuple[str, str]]
    values: Any = None  # closures of the variables, for the messages (built on first hit)
    texts: dict = field(default_factory=dict)  # id(check) -> its message, parts compiled (on first hit)


class Engine:
    """One compiled rule set turned into generated Python (`codegen`); `run()` per document.

    The generated form (source, constants, how contexts are matched) is plain JSON kept next to
    the compiled rules (`compiler.cache_dir()`), under the stylesheet's SHA-256 and a digest of
    the generator's own code: a worker that finds it compiles the source and never parses an
    XPath expression (nor imports `elementpath`) unless a document needs one of the few
    closures or a message computed from the document. The cache folder is trusted like the
    code itself (its source is executed): it must be writable by the platform's user only."""

    def __init__(self, ruleset: RuleSet, cache: Path | None = None):
        self.ruleset = ruleset
        self._compiler: Compiler | None = None
        self._loose: Compiler | None = None
        self._retries: dict[tuple[int, int, int], Any] = {}
        spec = _read_spec(ruleset, cache)
        if spec is None:
            spec = generate(ruleset)
            _write_spec(ruleset, spec, cache)
        self.source = spec["source"]
        scope = {**codegen_namespace(), **{k: self._decode(v) for k, v in spec["consts"].items()}}
        exec(compile(self.source, f"<native {ruleset.name}>", "exec"), scope)  # noqa: S102 - generated here
        self.patterns: list[list[_Rule]] = []
        for pattern, rules in zip(ruleset.patterns, spec["patterns"]):
            built = []
            for rule, r in zip(pattern.rules, rules):
                branches = [self._branch(b, scope) for b in r["branches"]]
                built.append(_Rule(branches, scope[r["function"]], rule.checks, r["evaluated"], rule.variables))
            self.patterns.append(built)
        self._plans = [_Plan(built) for built in self.patterns]
        self._known: dict[str, dict[tuple, tuple]] = {}  # root name -> element path -> (pattern, branches)

    def compiler(self, loose: bool = False) -> Compiler:
        """The `xpath` compiler (strict, or `loose` as contexts were matched before), built on
        first need: messages computed from the document, closures, predicate errors."""
        if loose:
            if self._loose is None:
                self._loose = Compiler(self.ruleset.namespaces, self.ruleset.codelists)
            return self._loose
        if self._compiler is None:
            self._compiler = Compiler(self.ruleset.namespaces, self.ruleset.codelists, strict=True)
        return self._compiler

    def _retry(self, p: int, r: int, i: int, node: Any, doc: Doc) -> list[int]:
        """Check `i` of rule `r` of pattern `p` again, with errors masked where the other side
        of an `and`/`or` decides (generated on first need: it parses, as documents that raise
        are rare)."""
        fn = self._retries.get((p, r, i))
        if fn is None:
            gen = Generator(self.ruleset, masking=True, first=1_000_000 * (1 + len(self._retries)))
            source = gen.rule_function("retry", self.ruleset.patterns[p].rules[r], [i])
            scope = {**codegen_namespace(), **{k: self._decode(v) for k, v in gen.consts.items()}}
            exec(compile("\n\n".join([*gen.functions, source]), "<native retry>", "exec"), scope)  # noqa: S102
            fn = self._retries[(p, r, i)] = scope["retry"]
        return fn(node, doc)

    def _decode(self, value: Any) -> Any:
        if isinstance(value, dict) and "x" in value:
            return _Lazy(self, lambda c: c.build(c.parse(value["x"], tuple(value["v"])), {}))
        if isinstance(value, dict) and "c" in value:
            return _CASTS[value["c"]]
        return decode(value)

    def _branch(self, b: dict, scope: dict) -> _Branch:
        if b["select"] is not None:
            return _Branch(select=_Lazy(self, lambda c: c.compile(b["select"], {}), loose=True))
        steps = tuple((tag, tuple(scope[f] for f in fns)) for tag, fns in b["steps"])
        reference = None
        if b["guarded"]:
            reference = _Lazy(self, lambda c: _reference(c, b["text"]) or (lambda el: False), loose=True)
        up = steps[::-1]
        return _Branch(steps, b["absolute"], reference, suffix=b["suffix"], up=up,
                       root=steps[0][0] if b["absolute"] else None, guarded=b["guarded"],
                       guards=tuple((i, preds) for i, (_, preds) in enumerate(up) if preds))

    def run(self, element: etree._Element, seen: dict[str, list[int]] | None = None) -> list[Hit]:
        """Every check that fires on the document of `element`, in SVRL order. `seen`, when
        given, counts per rule id [fired, passed] (the harness's exercised-rules list)."""
        doc = Doc(element.getroottree().getroot())
        doc.retry = self._retry  # a bound method: no cycle through the document (freed at once)
        hits: list[Hit] = []
        idx = doc.idx
        rt = doc.root.tag
        matched: list[dict[Any, int]] = [{} for _ in self.patterns]  # per pattern: element -> rule
        known = self._known.get(rt)
        if known is None or len(known) > 100_000:  # bounded, whatever the documents
            known = self._known[rt] = {}
        for el, p in zip(doc.all, doc.path_list):  # each element takes, per pattern, the first rule it fits
            candidates = known.get(p)
            if candidates is None:
                candidates = known[p] = tuple((i, c) for i, plan in enumerate(self._plans)
                                              if (c := plan.candidates(rt, p)))
            for i, branches in candidates:
                for rank, branch in branches:
                    if not branch.guarded or _guards(el, branch, doc):
                        matched[i][el] = rank
                        break
        for rules, plan, fired in zip(self.patterns, self._plans, matched):
            in_order = len(fired)  # filled in document order so far
            for rank, branch in plan.others:  # `*` steps and contexts selected from the document
                if branch.select is not None:
                    for node in branch.select(doc.root, doc.vs({})):
                        if fired.get(node, rank + 1) > rank:
                            fired[node] = rank
                    continue
                suffix = branch.suffix
                if len(branch.up) == 1 and not branch.absolute:  # `*[p]`: the predicates alone
                    for tag in idx:
                        if tag.endswith(suffix):
                            for el in idx[tag]:
                                if fired.get(el, rank + 1) > rank and _guards(el, branch, doc):
                                    fired[el] = rank
                    continue
                for tag in idx:
                    if tag.endswith(suffix):
                        for el in idx[tag]:
                            if fired.get(el, rank + 1) > rank and _matches(el, branch, doc):
                                fired[el] = rank
            if not fired:
                continue
            for node in (fired if len(fired) == in_order else sorted(fired, key=doc.pos.__getitem__)):
                rule = rules[fired[node]]
                out = rule.function(node, doc)
                if seen is not None:
                    for i in rule.evaluated:
                        seen.setdefault(rule.checks[i].id, [0, 0])[0 if i in out else 1] += 1
                for i in out:
                    c = rule.checks[i]
                    hits.append(Hit(c.id, c.flag, c.kind, full_path(node), self._message(rule, c, node, doc)))
        return hits

    def _message(self, rule: _Rule, check: Check, node: Any, doc: Doc) -> str:
        if all(kind == "t" for kind, _ in check.text):
            return " ".join("".join(part for _, part in check.text).split())
        c = self.compiler()
        names = tuple(n for n, _ in rule.variables)
        if rule.values is None:
            rule.values = [(name, c.compile(select, {}, names[:i])) for i, (name, select) in enumerate(rule.variables)]
        values = doc.vs({})
        for name, fn in rule.values:
            values[name] = fn(node, values)
        text = rule.texts.get(id(check))
        if text is None:  # compiled once per check, not at every invoice that fires it
            text = rule.texts[id(check)] = [(k, c.compile(v, {}, names) if k == "x" else v) for k, v in check.text]
        return _message(text, node, values)


def _match_steps(t: Any) -> list[tuple[Any, list]] | None:
    """A match pattern branch as its child steps (name test, predicates), or None when it has
    more than child steps with boolean predicates (another axis, an attribute, a position)."""
    if t.symbol == "/" and len(t) == 2:
        left, right = _match_steps(t[0]), _match_steps(t[1])
        return None if left is None or right is None else left + right
    preds = []
    while t.symbol == "[" and len(t) == 2:
        if t[1].symbol in ("(integer)", "(decimal)") or _uses_position(t[1]):
            return None
        preds.insert(0, t[1])
        t = t[0]
    named = (t.symbol == ":" and len(t) == 2 and t[1].symbol == "(name)") or t.symbol == "(name)"
    if not named and not (t.symbol == "*" and len(t) == 0):
        return None
    return [(t, preds)]


def generate(ruleset: RuleSet) -> dict:
    """The generated form of a rule set (see `Engine`), or NotNative with the reason."""
    gen = Generator(ruleset)
    source: list[str] = []
    patterns = []
    try:
        for p, pattern in enumerate(ruleset.patterns):
            rules = []
            for r, rule in enumerate(pattern.rules):
                wanted = [i for i, c in enumerate(rule.checks) if c.kind == "assert" or c.flag]
                name = f"r{p}_{r}"
                source.append(gen.rule_function(name, rule, wanted, (p, r)))
                branches = [_branch_spec(gen, branch, f"m{p}_{r}_{b}", source)
                            for b, branch in enumerate(_branches(rule.context))]
                rules.append({"function": name, "evaluated": wanted, "branches": branches})
            patterns.append(rules)
    except (Unsupported, Untranslatable, XPathError) as exc:
        raise NotNative(str(exc)) from exc
    except Exception as exc:  # elementpath parse errors: a construct it does not know
        raise NotNative(f"{type(exc).__name__}: {exc}") from exc
    return {"source": "\n\n\n".join(gen.functions + source) + "\n", "consts": gen.consts,
            "patterns": patterns}


def _branch_spec(gen: Generator, branch: str, name: str, source: list[str]) -> dict:
    """A context branch as names and predicate functions (their source appended), or as an
    expression selecting its nodes from the document."""
    absolute = branch.startswith("/") and not branch.startswith("//")
    body = branch[2:] if branch.startswith("//") else branch.lstrip("/")
    steps = _match_steps(gen.fallback.parse(body, ()))
    spec = {"text": branch, "steps": [], "absolute": absolute, "suffix": "", "guarded": False, "select": None}
    if steps is None:
        gen.loose.compile(branch if branch.startswith("/") else "//" + branch, {})  # refused now, not later
        return {**spec, "select": branch if branch.startswith("/") else "//" + branch}
    for i, (test, preds) in enumerate(steps):
        fns = []
        for j, pred in enumerate(preds):
            fns.append(f"{name}_{i}_{j}")
            source.append(gen.predicate_function(fns[-1], pred))
        spec["steps"].append([gen.clark(test), fns])
        spec["guarded"] = spec["guarded"] or bool(preds)
    if spec["guarded"]:
        _reference(gen.loose, branch)  # the check for predicate errors: built now to refuse early
    if spec["steps"][-1][0] is None and steps[-1][1]:  # `*[ends-with(name(), 'Amount') ...]`
        spec["suffix"] = _name_suffix(steps[-1][1][0])
    return spec


class _Lazy:
    """An `xpath` closure built on its first call (parsing needs `elementpath`)."""

    __slots__ = ("engine", "build", "loose", "fn")

    def __init__(self, engine: Engine, build: Any, loose: bool = False):
        self.engine, self.build, self.loose, self.fn = engine, build, loose, None

    def __call__(self, *args: Any) -> Any:
        if self.fn is None:
            self.fn = self.build(self.engine.compiler(self.loose))
        return self.fn(*args)


def _spec_path(ruleset: RuleSet, cache: Path | None) -> Path:
    return (cache or cache_dir()) / f"{ruleset.sha256}.gen-{GENERATOR}.json"


def _read_spec(ruleset: RuleSet, cache: Path | None) -> dict | None:
    path = _spec_path(ruleset, cache)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent or damaged: generated again


def _write_spec(ruleset: RuleSet, spec: dict, cache: Path | None) -> None:
    path = _spec_path(ruleset, cache)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(spec), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache: generated again next time


class _Plan:
    """A pattern's contexts arranged for matching: branches keyed by their names (absolute ones
    by the path below the root, the others by their own names, which end an element's path),
    each list in rank order; `*` steps and selected contexts apart."""

    def __init__(self, rules: list[_Rule]):
        self.absolute: dict[tuple, list] = {}
        self.relative: dict[tuple, list] = {}
        lengths: dict[str, set[int]] = {}
        self.others: list = []
        for rank, rule in enumerate(rules):
            for branch in rule.branches:
                tags = tuple(tag for tag, _ in branch.steps)
                if branch.select is not None or None in tags[1 if branch.absolute else 0:]:
                    self.others.append((rank, branch))
                elif branch.absolute:
                    self.absolute.setdefault(tags[1:], []).append((rank, branch))
                else:
                    self.relative.setdefault(tags, []).append((rank, branch))
                    lengths.setdefault(tags[-1], set()).add(len(tags))
        self.lengths = {tag: tuple(sorted(ks)) for tag, ks in lengths.items()}

    def candidates(self, root: str, path: tuple) -> tuple:
        """The branches an element at `path` (below a root named `root`) fits by its names, in
        rank order; their predicates are left to `_matches`."""
        found = [(rank, b) for rank, b in self.absolute.get(path, ()) if b.root is None or b.root == root]
        full = (root, *path)
        for k in self.lengths.get(full[-1], ()):
            if k <= len(full):
                found += self.relative.get(full[-k:], ())
        found.sort(key=lambda rb: rb[0])
        return tuple(found)


def _name_suffix(pred: Any) -> str:
    """'Amount' for `ends-with(name(), 'Amount')`, alone or first of an `and` (else '')."""
    while pred.symbol == "and" or pred.symbol == "(" and len(pred) == 1:
        pred = pred[0]
    if pred.symbol == "ends-with" and len(pred) == 2 and pred[1].symbol == "(string)":
        name = pred[0]
        value = pred[1].value
        if name.symbol in ("name", "local-name") and len(name) == 0 and value and not set(value) & set(":}{"):
            return value
    return ""


def _guards(el: etree._Element, branch: _Branch, doc: Doc) -> bool:
    """The predicates of a branch whose names `el` and its ancestors are known to fit (found by
    its path): each step's predicates on the ancestor at that step."""
    try:
        for up, preds in branch.guards:
            node = el
            for _ in range(up):
                node = node.getparent()
            for pred in preds:
                if not pred(node, doc):
                    return False
    except XPathError:
        return bool(branch.reference is not None and branch.reference(el))
    return True


def _matches(el: etree._Element, branch: _Branch, doc: Doc) -> bool:
    """Whether `el` matches a branch with `*` steps: names up the ancestors, then `_guards`."""
    cur = el
    for tag, _ in branch.up:
        if cur is None or (tag is not None and cur.tag != tag):
            return False
        cur = cur.getparent()
    if branch.absolute and cur is not None:
        return False
    return not branch.guarded or _guards(el, branch, doc)


def _message(text: list, node: Any, values: dict) -> str:
    out = []
    for kind, part in text:
        if kind == "t":
            out.append(part)
        else:
            items = part(node, values)
            out.append(" ".join(string_value(i) for i in items))
    return " ".join("".join(out).split())
