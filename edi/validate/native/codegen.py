"""The rules of a compiled schematron turned into Python source, one function per rule.

Each XPath 2.0 expression (parsed by `elementpath`) is generated as a Python expression whose
kind is known at generation time, so values travel unwrapped and the usual cases cost a few
bytecodes: an element (`E`), a list of elements in document order (`N`), a list of attribute
values (`A`), a string (`S`), a boolean (`B`), one atomic value or None for the empty sequence
(`V`), or a general sequence (`Q`, a list as `xpath` builds them). Child steps iterate lxml's
children by name, `//name` reads the document's index of elements by name (`runtime.Doc`),
tests that only ask whether a plain path exists are set lookups, and casts, decimal arithmetic
and comparisons call `runtime`. A subexpression the generator has no form for becomes a call
of the strict `xpath` closure for it (same XPath 2.0 semantics, slower), so every rule runs.

A rule's function takes the context element and the `Doc`, and returns the indexes of its
checks that fire (an assert whose test is false, a report whose test is true).
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from edi.validate.native import runtime
from edi.validate.native.compiler import Rule, RuleSet
from edi.validate.native.xpath import _CASTS, EDI_NS, Compiler, _dedupe, cast_one

E, N, A, S, B, V, Q = "E", "N", "A", "S", "B", "V", "Q"
_PYOP = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_MIRROR = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_STEP_SYMBOLS = {"(name)", ":", "*", "@", "..", "[", "/", "//", "child", "self", "ancestor", "preceding"}


_NAME = re.compile(r"[cxqv]\d+")  # Python names the generator gives values
_TOKEN = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\b[a-z]\w*\b")  # literals kept whole
_PROLOGUE = "    _k = X.kids\n    _m = X.memo\n"  # every generated function: the document's caches
_ELEMENT_NAME = re.compile(r"[cx]\d+")  # names that always hold one element
_NUMERIC = re.compile(r"(ar|sm|rnd|ab|len|dn|da|dv|_decimal)\(|\d")  # V codes that are numbers or None


class Unsupported(Exception):
    """No generated form for this subexpression: it runs as an `xpath` closure."""


class Env:
    __slots__ = ("ctx", "vars")

    def __init__(self, ctx: str, variables: dict[str, tuple[str, str]]):
        self.ctx = ctx  # Python name of the context element
        self.vars = variables  # XPath variable -> (Python code, kind)

    def at(self, ctx: str) -> Env:
        return Env(ctx, self.vars)

    def bind(self, name: str, value: tuple[str, str]) -> Env:
        return Env(self.ctx, {**self.vars, name: value})


def _variables(t: Any) -> set[str]:
    out = {t[0].value} if t.symbol == "$" else set()
    for child in t:
        out |= _variables(child)
    return out


class Generator:
    """Python source for one rule set; `consts` are the objects the source refers to by name."""

    def __init__(self, ruleset: RuleSet, masking: bool = False, first: int = 0):
        self.ruleset = ruleset
        self.masking = masking  # `and`/`or` that let one side decide when the other raises
        self.first = first  # number of the first kept value (the retries' keys apart from the rules')
        self.fallback = Compiler(ruleset.namespaces, ruleset.codelists, strict=True)
        self.loose = Compiler(ruleset.namespaces, ruleset.codelists)  # contexts' references
        self.namespaces = {**ruleset.namespaces, "edi": EDI_NS}
        self.lists = {k: frozenset(v) for k, v in ruleset.codelists.items()}
        self.consts: dict[str, Any] = {}
        self._const_names: dict[Any, str] = {}
        self._n = 0
        self.hoisted: dict[tuple[bool, str], str] = {}  # body -> name of its memoised function
        self.functions: list[str] = []  # their source
        self.string_lists: set[str] = set()  # codes of lists of strings (`a/normalize-space(b)`)
        self.value_lists: set[str] = set()  # codes of lists of atomic values (`a/xs:decimal(b)`)
        self.keyed: dict[str, tuple[str, str, bool]] = {}  # `key == 'lit'` tests: key, literal, key is a list
        self.ints: set[str] = set()  # codes of xs:integer values
        self.hashable: set[str] = set()  # quantifier variables holding one element or atomic value

    # --- helpers ------------------------------------------------------------------------------

    def fresh(self, prefix: str = "x") -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def const(self, value: Any, key: Any = None, raw: bool = False) -> str:
        """The name of a constant of the generated code; `consts` keeps it JSON-encoded
        (`encode`; `raw`: already in the form `Engine` decodes: a closure or a cast)."""
        key = key if key is not None else (type(value).__name__, value)
        name = self._const_names.get(key)
        if name is None:
            name = self._const_names[key] = f"K{len(self.consts)}"
            self.consts[name] = value if raw else encode(value)
        return name

    def clark(self, t: Any) -> str | None:
        """Clark name of a name test, None for `*`."""
        if t.symbol == ":" and len(t) == 2 and t[1].symbol == "(name)":
            ns = self.namespaces.get(t[0].value)
            if ns is None:
                raise Unsupported(f"prefix {t[0].value}")
            return f"{{{ns}}}{t[1].value}"
        if t.symbol == "(name)":
            return t.value
        if t.symbol == "*" and len(t) == 0:
            return None
        raise Unsupported(f"name test {t.symbol}")

    def q(self, code: str, kind: str, atomizing: bool = True) -> str:
        """The value as a sequence (`xpath`'s list form)."""
        if kind in (N, Q):
            return code
        if kind in (E, S, B):
            return f"[{code}]"
        if kind == V:
            return f"opt({code})"
        if atomizing:  # A: attribute values only stand for nodes where they are atomised
            return f"ua({code})"
        raise Unsupported("attribute values where nodes are needed")

    def ebv(self, t: Any, env: Env) -> str:
        code, kind = self.ex(t, env)
        return self.ebv_of(code, kind)

    @staticmethod
    def ebv_of(code: str, kind: str) -> str:
        if kind in (N, A):
            return f"(not not {code})"
        if kind == E:
            return "True"
        if kind == B:
            return code
        if kind == S:
            return f"({code} != '')"
        if kind == V:
            return f"ebv1({code})"
        return f"eb({code})"

    @staticmethod
    def exists_of(code: str, kind: str) -> str:
        if kind in (N, A, Q):
            return f"(not not {code})"
        if kind == V:
            return f"({code} is not None)"
        return "True"

    def string(self, t: Any, env: Env, fname: str) -> str:
        """One string from an argument (the empty sequence is '', several items an error)."""
        code, kind = self.ex(t, env)
        if kind == E:
            return f"sv({code})"
        if kind == N:
            return f"s1({code}, {fname!r})"
        if kind == A:
            return f"a1({code}, {fname!r})"
        if kind == S:
            return code
        if kind == V:
            return f"v2s({code})"
        if kind == Q:
            return f"q1({code}, {fname!r})"
        raise Unsupported(f"{fname}() of a boolean")

    def integer(self, code: str) -> tuple[str, str]:
        """A value known to be an xs:integer (never empty): counts, lengths, integer literals."""
        self.ints.add(code)
        return code, V

    def number(self, t: Any, env: Env) -> str:
        """An arithmetic operand: None for the empty sequence, untyped values as xs:double."""
        code, kind = self.ex(t, env)
        if kind == V and (code in self.ints or _NUMERIC.match(code)):
            return code
        return {E: f"nn([{code}])", N: f"nn({code})", A: f"na({code})", V: f"nv({code})",
                Q: f"num({code})", S: f"num([{code}])", B: f"num([{code}])"}[kind]

    # --- expressions ----------------------------------------------------------------------------

    def ex(self, t: Any, env: Env) -> tuple[str, str]:
        try:
            code, kind = self._ex(t, env)
        except Unsupported:
            code, kind = self.closure(t, env)
        hoisted = self.hoist(code)
        for known in (self.string_lists, self.value_lists, self.ints):
            if code in known:
                known.add(hoisted)
        return hoisted, kind

    def hoist(self, code: str, force: bool = False) -> str:
        """A costly subexpression (a loop, a closure) that depends on the document alone, or on
        one or two elements or values, becomes a function whose value is kept for the document:
        the rules ask the same questions again and again (every VAT category rule selects the
        same tax categories and their schemes), and identical code shares one function."""
        if not force and " for " not in code and "X.vs(" not in code and "grp(" not in code:
            return code
        free = sorted(_free(code))
        if len(free) > 2 or any(not _ELEMENT_NAME.fullmatch(v) and v not in self.hashable for v in free):
            return code
        params = [f"p{i}" for i in range(len(free))]
        body = _canonical(code, dict(zip(free, params)))
        key = (len(free), body)
        name = self.hoisted.get(key)
        k = name[1:] if name else str(self.first + len(self.hoisted))
        if name is None:
            name = self.hoisted[key] = f"h{k}"
            slot = f"({', '.join([k, *params])})" if params else k
            self.functions.append(f"def {name}({', '.join(['X', *params])}):\n{_PROLOGUE}"
                                  f"    v = _m[{slot}] = {body}\n    return v")
        if not free:
            return f"(_m[{k}] if {k} in _m else {name}(X))"
        slot = f"({', '.join([k, *free])})"
        return f"(_m[{slot}] if {slot} in _m else {name}({', '.join(['X', *free])}))"

    def closure(self, t: Any, env: Env) -> tuple[str, str]:
        args = []
        for name in sorted(_variables(t)):
            if name not in env.vars:
                raise Unsupported(f"variable ${name}")
            args.append(f"{name!r}: {self.q(*env.vars[name], atomizing=False)}")
        self.fallback.build(t, {})  # refused now (NotNative) rather than at the first document
        spec = {"x": t.source, "v": sorted(env.vars)}
        name = self.const(spec, key=("closure", t.source, tuple(spec["v"])), raw=True)
        return f"{name}({env.ctx}, X.vs({{{', '.join(args)}}}))", Q

    def _ex(self, t: Any, env: Env) -> tuple[str, str]:
        s, n = t.symbol, len(t)
        if s == "(" and n == 1:
            return self.ex(t[0], env)
        if s == "(string)":
            return repr(t.value), S
        if s == "(integer)":
            return self.integer(repr(int(t.value)))
        if s == "(decimal)":
            return self.const(Decimal(str(t.value))), V
        if s in ("true", "false") and n == 0:
            return ("True" if s == "true" else "False"), B
        if s == "$":
            found = env.vars.get(t[0].value)
            if found is None:
                raise Unsupported(f"variable ${t[0].value}")
            return found
        if s == "." and n == 0:
            return env.ctx, E
        if s == ":" and n == 2 and t[0].value == "xs" and t[1].symbol != "(name)":
            return self.cast(t[1], env)
        if s == ":" and n == 2 and t[0].value in ("fn", "edi") and t[1].symbol != "(name)":
            return self._ex(t[1], env)
        if s in ("+", "-", "*", "div", "mod") and n == 2:
            a, b = self.number(t[0], env), self.number(t[1], env)
            if s in ("+", "-", "*") and a in self.ints and b in self.ints:
                return self.integer(f"({a} {s} {b})")
            return f"ar({s!r}, {a}, {b})", V
        if s in _STEP_SYMBOLS:
            return self.path(t, env)
        if s in ("and", "or"):
            a, b = self.ebv(t[0], env), self.ebv(t[1], env)
            if self.masking:  # an error on one side does not count when the other side decides
                return f"{'mand' if s == 'and' else 'mor'}(lambda: {a}, lambda: {b})", B
            return f"({a} {s} {b})", B
        if s == "not" and n == 1:
            return f"(not {self.ebv(t[0], env)})", B
        if s == "boolean" and n == 1:
            return self.ebv(t[0], env), B
        if s in ("exists", "empty") and n == 1:
            found = self.exists_of(*self.ex(t[0], env))
            return (found if s == "exists" else f"(not {found})"), B
        if s in _PYOP and n == 2:
            return self.compare(t, env), B
        if s == "-" and n == 1:
            return f"ar('-', 0, {self.number(t[0], env)})", V
        if s == "count" and n == 1:
            code, kind = self.ex(t[0], env)
            if kind in (N, A, Q):
                return self.integer(f"len({code})")
            return (f"cnt1({code})" if kind == V else "1"), V
        if s == "sum" and n == 1:
            code, kind = self.ex(t[0], env)
            return (f"sm({code})" if code in self.value_lists else f"sm(atomize({self.q(code, kind)}))"), V
        if s in ("round", "abs") and n == 1:
            return f"{'rnd' if s == 'round' else 'ab'}({self.number(t[0], env)})", V
        if s in ("eq", "ne", "lt", "le", "gt", "ge") and n == 2:
            return f"vc({s!r}, {self.q(*self.ex(t[0], env))}, {self.q(*self.ex(t[1], env))})", V
        if s == "," and n == 2:
            a, b = self.ex(t[0], env), self.ex(t[1], env)
            return f"[*{self.q(*a, atomizing=False)}, *{self.q(*b, atomizing=False)}]", Q
        if s in ("normalize-space", "upper-case", "lower-case", "string", "string-length") and n <= 1:
            x = self.string(t[0], env, s) if n else f"sv({env.ctx})"
            if s == "string-length":
                return self.integer(f"len({x})")
            return {"normalize-space": (f"ns({x})", S), "upper-case": (f"{x}.upper()", S),
                    "lower-case": (f"{x}.lower()", S), "string": (x, S)}[s]
        if s in ("contains", "starts-with", "ends-with", "substring-after", "substring-before") and n == 2:
            a, b = self.string(t[0], env, s), self.string(t[1], env, s)
            if s == "contains":
                return f"({b} in {a})", B
            if s == "starts-with":
                return f"{a}.startswith({b})", B
            if s == "ends-with":
                return f"{a}.endswith({b})", B
            return f"{'after' if s == 'substring-after' else 'before'}({a}, {b})", S
        if s in ("name", "local-name") and n <= 1:
            code, kind = self.ex(t[0], env) if n else (env.ctx, E)
            if kind == N:
                return f"{'nm' if s == 'name' else 'ln'}1({code})", S
            if kind != E:
                raise Unsupported(f"{s}() of other than elements")
            return f"{'nm' if s == 'name' else 'ln'}({code})", S
        if s == "substring" and n in (2, 3) and all(c.symbol == "(integer)" for c in list(t)[1:]):
            text = self.string(t[0], env, s)
            start = int(t[1].value)
            end = f"{max(start + int(t[2].value), 1) - 1}" if n == 3 else ""
            return f"{text}[{max(start, 1) - 1}:{end}]", S
        if s == "cast" and n == 2:
            target = str(t[1].value).removeprefix("xs:")
            fn = _CASTS.get(target)
            if fn is None or target == "string":
                raise Unsupported(f"cast as {t[1].value}")
            optional = t.source.rstrip().endswith("?")
            cast = self.const({"c": target}, key=("cast", target), raw=True)
            return f"cast({cast}, {self.q(*self.ex(t[0], env))}, {optional})", V
        if s == "concat":
            return "(" + " + ".join(self.string(c, env, s) for c in t) + ")", S
        if s == "codelist" and n == 2 and t[0].symbol == "(string)":
            allowed = self.const(self.lists[t[0].value], key=("list", t[0].value))
            code, kind = self.ex(t[1], env)
            if kind in (S, V, E, B):
                code = f"[{code}]" if kind != V else f"opt({code})"
            elif kind == A:
                return f"any(v in {allowed} for v in {code})", B
            return f"cl({allowed}, {code})", B
        if s in ("every", "some"):
            return self.quantified(t, env)
        if s in ("|", "union") and n == 2:
            (a, ka), (b, kb) = self.ex(t[0], env), self.ex(t[1], env)
            if ka not in (N, E) or kb not in (N, E):
                raise Unsupported("union of other than elements")
            return f"un({self.q(a, ka)}, {self.q(b, kb)}, X)", N
        raise Unsupported(f"{s}/{n}")

    def cast(self, t: Any, env: Env) -> tuple[str, str]:
        """xs:decimal(...), xs:date(...): one value or None."""
        if len(t) != 1:
            raise Unsupported("constructor arity")
        if t.symbol == "decimal":
            code, kind = self.ex(t[0], env)
            return {E: f"_decimal(sv({code}))", N: f"dn({code})", A: f"da({code})", V: f"dv({code})",
                    S: f"_decimal({code})", Q: f"cast(to_decimal, {code})", B: f"cast(to_decimal, [{code}])"}[kind], V
        fn = _CASTS.get(t.symbol)
        if fn is None or t.symbol in ("string", "boolean"):
            raise Unsupported(f"xs:{t.symbol}")
        name = self.const({"c": t.symbol}, key=("cast", t.symbol), raw=True)
        return f"cast({name}, {self.q(*self.ex(t[0], env))})", V

    def compare(self, t: Any, env: Env) -> str:
        op = t.symbol
        (a, ka), (b, kb) = self.ex(t[0], env), self.ex(t[1], env)
        if ka == S and kb != S:  # the literal on the right
            (a, ka), (b, kb), op = (b, kb), (a, ka), _MIRROR[op]
        if kb == S and ka in (N, A, E, S):
            pyop = _PYOP[op]
            if ka == S:
                if op == "=" and "kids(" in a:  # a key asked of the same element for many values
                    a = self.hoist(a, force=True)
                out = f"({a} {pyop} {b})"
                if op == "=":
                    self.keyed[out] = (a, b, False)
                return out
            if ka == E:
                return f"(sv({a}) {pyop} {b})"
            x = self.fresh()
            item = f"sv({x})" if ka == N else x
            return f"any({item} {pyop} {b} for {x} in {a})"
        if kb == S and ka == Q and a in self.string_lists:
            x = self.fresh()
            if op == "=":
                self.keyed[f"({b} in {a})"] = (a, b, True)
            return f"({b} in {a})" if op == "=" else f"any({x} {_PYOP[op]} {b} for {x} in {a})"
        if kb in (V, Q) and ka == Q and a in self.value_lists and (kb == V or b in self.value_lists):
            if kb == Q:
                return f"qq({op!r}, {a}, {b})"
            out = f"qv({op!r}, {a}, {b})"
            if op == "=":
                self.keyed[out] = (a, b, None)  # grouped by value when `b` is a decimal (`grpv`)
            return out
        if ka in (V, Q) and kb == Q and b in self.value_lists and (ka == V or a in self.value_lists):
            return f"qv({_MIRROR[op]!r}, {b}, {a})" if ka == V else f"qq({op!r}, {a}, {b})"
        if ka == B and kb == N:
            (a, ka), (b, kb), op = (b, kb), (a, ka), _MIRROR[op]
        if ka == N and kb == B:
            return f"nb({op!r}, {a}, {b})"
        if ka in (N, A, E) and kb in (N, A, E):  # untyped against untyped: compared as strings
            strings = {N: "svs({})", A: "{}", E: "(sv({}),)"}
            return f"uu({op!r}, {strings[ka].format(a)}, {strings[kb].format(b)})"
        if ka == V and kb == N:
            (a, ka), (b, kb), op = (b, kb), (a, ka), _MIRROR[op]
        if ka == N and kb == V:
            return f"nq({op!r}, {a}, {b})"
        if a in self.ints and b in self.ints:  # integers (counts, lengths): Python compares them alike
            return f"({a} {_PYOP[op]} {b})"
        if ka in (V, S) and kb in (V, S):
            return f"cv({op!r}, {a}, {b})"
        return f"gc({op!r}, {self.q(a, ka)}, {self.q(b, kb)})"

    def quantified(self, t: Any, env: Env) -> tuple[str, str]:
        children = list(t)
        loops = []
        inner = env
        for i in range(0, len(children) - 1, 2):
            name = children[i][0].value
            code, kind = self.ex(children[i + 1], inner)
            x = self.fresh("q")
            if kind == N:
                loops.append(f"for {x} in {code}")
                inner = inner.bind(name, (x, E))
                self.hashable.add(x)
            elif kind in (E, S, B):
                loops.append(f"for {x} in [{code}]")
                inner = inner.bind(name, (x, kind))
            elif kind == V:
                loops.append(f"for {x} in opt({code})")
                inner = inner.bind(name, (x, V))
                self.hashable.add(x)
            elif kind == Q:
                loops.append(f"for {x} in {code}")
                inner = inner.bind(name, (f"[{x}]", Q))
            else:
                raise Unsupported("quantifier over attributes")
        cond = self.ebv(children[-1], inner)
        return f"{'all' if t.symbol == 'every' else 'any'}({cond} {' '.join(loops)})", B

    # --- paths ------------------------------------------------------------------------------------

    def path(self, t: Any, env: Env) -> tuple[str, str]:
        s, n = t.symbol, len(t)
        if s in ("/", "//") and n == 0:
            raise Unsupported("the document node")
        if s in ("/", "//") and n == 1:
            return self.from_document(t[0], env, s == "//")
        if s in ("/", "//") and n == 2:
            left, kind = self.ex(t[0], env)
            return self.step_from(left, kind, t[1], env, s == "//")
        return self.step(env.ctx, t, env)

    def from_document(self, t: Any, env: Env, descendant: bool) -> tuple[str, str]:
        base, preds = _predicates(t)
        alternatives = _alternatives(base)
        if len(alternatives) > 1 and descendant and not any(_positional(p) for p in preds):
            lists = [self.from_document(a, env, True)[0] for a in alternatives]
            code = lists[0]
            for other in lists[1:]:
                code = f"un({code}, {other}, X)"
            return self.filter(code, preds, env), N
        if base.symbol in ("/", "//"):  # `/a/b` parses as /(a) then /b: not at this level
            raise Unsupported("absolute path shape")
        if base.symbol == "@" and descendant and not preds and self.clark(base[0]) is not None:
            return f"atall(X, {self.clark(base[0])!r})", A
        if base.symbol == "@" or (descendant and any(_positional(p) for p in preds)):
            raise Unsupported("absolute attribute or positional step")
        tag = self.clark(base)
        if descendant:
            code = "X.all" if tag is None else f"X.idx.get({tag!r}, NIL)"
        else:
            code = "[X.root]" if tag is None else f"([X.root] if X.root.tag == {tag!r} else [])"
        return self.filter(code, preds, env), N

    def step(self, ctx: str, t: Any, env: Env) -> tuple[str, str]:
        """One step from one element `ctx`."""
        s, n = t.symbol, len(t)
        if s == "[" and n == 2:
            base, preds = _predicates(t)
            code, kind = self.step(ctx, base, env)
            if kind == E:
                code, kind = f"[{code}]", N
            if kind != N:
                raise Unsupported("predicate on other than elements")
            return self.filter(code, preds, env), N
        if s == "." and n == 0:
            return ctx, E
        if s == ".." and n == 0:
            return f"par(X, {ctx})", N
        if s == "@" and n == 1:
            name = self.clark(t[0])
            if name is None:
                raise Unsupported("@*")
            return f"at({ctx}, {name!r})", A
        if s == ":" and n == 2 and t[0].value in ("xs", "fn") and t[1].symbol not in ("(name)", "*"):
            return self._ex(t, env.at(ctx))  # xs:decimal(...) as a step
        if s in ("(name)", ":") or (s == "*" and n == 0):
            tag = self.clark(t)
            if tag is None:
                return f"list({ctx}.iterchildren(ELEMENT))", N
            return f"(_k.get({ctx}) or kids(X, {ctx})).get({tag!r}, NIL)", N
        if s == "child" and n == 1:
            return self.step(ctx, t[0], env)
        if s == "self" and n == 1:
            tag = self.clark(t[0])
            return (f"[{ctx}]" if tag is None else f"([{ctx}] if {ctx}.tag == {tag!r} else [])"), N
        if s == "ancestor" and n == 1:
            tag = self.clark(t[0])
            return f"anc({ctx}, {'ELEMENT' if tag is None else repr(tag)})", N
        if s == "preceding" and n == 1 and self.clark(t[0]) is not None:
            return f"prec(X, {ctx}, {self.clark(t[0])!r})", N
        if s in ("/", "//"):
            return self.path(t, env.at(ctx))
        if s in _STEP_SYMBOLS:
            raise Unsupported(f"step {s}/{n}")
        return self._ex(t, env.at(ctx))

    def filter(self, code: str, preds: list, env: Env) -> str:
        for p in preds:
            if p.symbol == "(integer)":
                k = int(p.value)
                code = f"{code}[{k - 1}:{k}]" if k >= 1 else "[]"
                continue
            if _positional(p):
                raise Unsupported("positional predicate")
            x = self.fresh()
            pred, kind = self.ex(p, env.at(x))
            test = {V: f"pv({pred})", Q: f"pq({pred})"}.get(kind) or self.ebv_of(pred, kind)
            code = self.grouped(code, x, test) or f"[{x} for {x} in {code} if {test}]"
        return code

    def grouped(self, base: str, x: str, test: str) -> str | None:
        """`[x for x in base if key(x) == 'AE']` over a list kept for the document, as a lookup
        in that list grouped by key once: the rules ask the same list for each VAT category."""
        if test not in self.keyed or not base.startswith(("(_m[", "X.idx.get(", "grp(")):
            return None
        key, literal, several = self.keyed[test]
        free = _free(key)
        if free != {x} or x in _free(literal):
            return None
        body = _canonical(key, {x: "c"})
        name = self.hoisted.get((None, body))
        if name is None:
            name = self.hoisted[(None, body)] = f"g{self.first + len(self.hoisted)}"
            self.functions.append(f"def {name}(X, c):\n{_PROLOGUE}    return {body}")
        if several is None:  # `literal` is a value computed here: grouped when it is a decimal
            return f"grpv(X, {base}, {name}, {literal})"
        return f"grp(X, {base}, {name}, {several}).get({literal}, NIL)"

    def step_from(self, left: str, kind: str, right: Any, env: Env, descendant: bool) -> tuple[str, str]:
        """`left/right` (or `left//right`) for a left side already generated (E codes are
        names, so they may be repeated)."""
        if kind not in (E, N):
            raise Unsupported("path step from other than elements")
        if descendant:
            base, preds = _predicates(right)
            if base.symbol not in ("(name)", ":", "*") or any(_positional(p) for p in preds):
                raise Unsupported("// before other than a name step")
            tag = self.clark(base)
            which = "ELEMENT" if tag is None else repr(tag)
            if kind == E:
                out = f"list({left}.iterdescendants({which}))"
            else:
                x = self.fresh()
                out = f"srt([y for {x} in {left} for y in {x}.iterdescendants({which})], X)"
            return self.filter(out, preds, env), N
        if kind == E:
            return self.step(left, right, env)
        base, preds = _predicates(right)
        if preds and base.symbol in ("(name)", ":", "*") and not any(_positional(p) for p in preds):
            # boolean predicates filter the whole step alike: the step is then kept per document
            stepped, _ = self.step_from(left, kind, base, env, False)
            return self.filter(self.hoist(stepped), preds, env), N
        x = self.fresh()
        inner, ikind = self.step(x, right, env)
        source = left
        if ikind == E:
            return source, N
        if ikind == N:
            out = f"[y for {x} in {source} for y in {inner}]"
            return (out if _child_like(right) else f"srt({out}, X)"), N
        if ikind == A:
            return f"[y for {x} in {source} for y in {inner}]", A
        if ikind in (S, B):
            out = f"[{inner} for {x} in {source}]"
            if ikind == S:
                self.string_lists.add(out)
            return out, Q
        if ikind == V:
            out = f"[y for {x} in {source} for y in ({inner},) if y is not None]"
            self.value_lists.add(out)
            return out, Q
        return f"dedupe([y for {x} in {source} for y in {inner}])", Q

    # --- rules ------------------------------------------------------------------------------------

    def rule_function(self, name: str, rule: Rule, checks: list[int], where: tuple[int, int] = (0, 0)) -> str:
        """`def name(c0, X)`: the indexes (in `rule.checks`) of the listed checks that fire.

        XPath 2.0 lets `A or B` answer true from B when A raises an error (and `A and B` false),
        and Saxon does so (it may evaluate the cheaper side first): a test that raises is asked
        again through `X.retry(pattern, rule, check, node, X)`, whose code (`masking`) keeps the
        error of one side only when the other does not decide. Errors are rare: the usual path
        stays plain Python `and`/`or`."""
        env = Env("c0", {})
        lines = [f"def {name}(c0, X):", _PROLOGUE.rstrip("\n"), "    out = []"]
        for var, select in rule.variables:
            tree = self.fallback.parse(select, tuple(env.vars))
            code, kind = self.ex(tree, env)
            if kind == A:
                code, kind = self.closure(tree, env)
            local = self.fresh("v")
            lines.append(f"    {local} = {code}")
            env = env.bind(var, (local, kind))
        names = tuple(env.vars)
        presence = False
        when_present: dict[tuple, list[int]] = {}  # path -> checks that fire when it is there
        for i in checks:
            check = rule.checks[i]
            found = self.fallback.presence(check.test, {}, names)
            if found is not None and not found[1] and found[0] == (check.kind == "report"):
                for path in found[2]:
                    when_present.setdefault(path, []).append(i)
                continue
            if found is not None:
                if not presence:
                    lines.append("    R = X.rel(c0)")
                    presence = True
                test = self.presence_test(*found)
            else:
                test = self.ebv(self.fallback.parse(check.test, names), env)
            fires = f"not {test}" if check.kind == "assert" else test
            if found is not None or self.masking or " and " not in test and " or " not in test:
                lines.append(f"    if {fires}:")
                lines.append(f"        out.append({i})")
                continue
            lines += ["    try:", f"        if {fires}:", f"            out.append({i})",
                      "    except XPathError:", f"        out += X.retry({where[0]}, {where[1]}, {i}, c0, X)"]
        if when_present:
            # one set intersection for the many "this element must not be there" checks
            table = self.const({k: tuple(v) for k, v in when_present.items()}, key=("present", name))
            if not presence:
                lines.append("    R = X.rel(c0)")
            lines.append(f"    out.extend(present(R, {table}))")
            lines.append("    out.sort()")
        lines.append("    return out")
        return "\n".join(lines)

    def presence_test(self, wanted: bool, descendant: bool, alternatives: tuple) -> str:
        if descendant:
            found = " or ".join(f"X.ends({self.const(a)})" for a in alternatives)
        else:
            found = "(" + " or ".join(f"{self.const(a)} in R" for a in alternatives) + ")"
        return f"({found})" if wanted else f"(not {found})"

    def predicate_function(self, name: str, pred: Any) -> str:
        """`def name(c0, X)`: a match pattern's predicate on a candidate element."""
        return f"def {name}(c0, X):\n{_PROLOGUE}    return {self.ebv(pred, Env('c0', {}))}"


def _names(code: str) -> list[str]:
    """The Python names in generated code, in order (string literals skipped)."""
    return [m.group(0) for m in _TOKEN.finditer(code) if m.group(0)[0] not in "'\""]


def _free(code: str) -> set[str]:
    """Values the code reads from outside (the generator's names, less its own loop variables)."""
    names = _names(code)
    bound = {b for a, b in zip(names, names[1:]) if a == "for"}
    return {n for n in names if _NAME.fullmatch(n)} - bound


def _canonical(body: str, renamed: dict[str, str]) -> str:
    """The body with `renamed` applied and its loop variables renamed in order of appearance,
    so that the same subexpression generated twice (with other fresh names) is recognised."""
    names = dict(renamed)
    tokens = _names(body)
    for a, b in zip(tokens, tokens[1:]):
        if a == "for" and b not in names:
            names[b] = f"b{len(names)}"
    return _TOKEN.sub(lambda m: names.get(m.group(0), m.group(0)), body)


def _predicates(t: Any) -> tuple[Any, list]:
    preds = []
    while t.symbol == "[" and len(t) == 2:
        preds.insert(0, t[1])
        t = t[0]
    return t, preds


def _positional(t: Any) -> bool:
    """Whether a predicate may depend on the position (a number, last(), position())."""
    return t.symbol in ("(integer)", "(decimal)") or _uses_position(t)


def _uses_position(t: Any) -> bool:
    return t.symbol in ("last", "position") or any(_uses_position(c) for c in t)


def _alternatives(t: Any) -> list:
    """Branches of a parenthesised union (`(a | b)`), or the token itself."""
    while t.symbol == "(" and len(t) == 1:
        t = t[0]
    if t.symbol in ("|", "union") and len(t) == 2:
        return _alternatives(t[0]) + _alternatives(t[1])
    return [t]


def _child_like(t: Any) -> bool:
    """Whether the step keeps document order and distinctness when taken from distinct
    elements in document order (child, attribute and self steps)."""
    base, _ = _predicates(t)
    return base.symbol in ("(name)", ":", "*", "@", "child", "self")


def _digest() -> str:
    """What the generated form depends on besides the stylesheet: this generator, the runtime
    its code calls and the XPath semantics they share (any change: generated again)."""
    here = Path(__file__).parent
    data = b"".join((here / f).read_bytes() for f in ("codegen.py", "runtime.py", "xpath.py", "engine.py"))
    return hashlib.sha256(data).hexdigest()[:16]


GENERATOR = _digest()


def encode(value: Any) -> Any:
    """A constant as JSON (tuples, frozensets, dicts, decimals, lists tagged)."""
    if isinstance(value, tuple):
        return {"t": [encode(v) for v in value]}
    if isinstance(value, frozenset):
        return {"f": sorted(value)}
    if isinstance(value, dict):
        return {"d": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, Decimal):
        return {"D": str(value)}
    if isinstance(value, list):
        return {"l": [encode(v) for v in value]}
    return value


def decode(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    [(tag, v)] = value.items()
    if tag == "t":
        return tuple(decode(x) for x in v)
    if tag == "f":
        return frozenset(v)
    if tag == "d":
        return {decode(k): decode(x) for k, x in v}
    if tag == "D":
        return Decimal(v)
    return [decode(x) for x in v]


def namespace() -> dict[str, Any]:
    """The globals of generated code: the runtime functions by their short names."""
    g = {k: getattr(runtime, k) for k in dir(runtime) if not k.startswith("__")}
    g["dedupe"] = _dedupe  # a step's results: elements once each, atoms kept
    g["cast"] = cast_one
    g["after"] = lambda a, b: a.partition(b)[2] if b in a else ""
    g["before"] = lambda a, b: a.partition(b)[0] if b in a else ""
    return g
