"""XPath 2.0 expressions of the schematron as closures over lxml trees: the value semantics
the generated code shares (`runtime`), and the evaluators of the few forms `codegen` has no
code for and of the contexts' checks when a generated predicate raises.

An expression is parsed once with `elementpath` (a complete XPath 2.0 parser). Each subtree
whose XPath 1.0 meaning is provably the same as its XPath 2.0 one — paths, predicates, string
functions, comparisons of node values with strings, counts — is translated to XPath 1.0 and
compiled by libxml2 (`etree.XPath`), the fast part. The rest — `xs:decimal` arithmetic (exact,
with Python `Decimal`), `every/some … satisfies`, sequences, `xs:date`, value comparisons, path
steps that are function calls (`cac:TaxTotal/xs:decimal(cbc:TaxAmount)`) — becomes Python
closures with XPath 2.0 semantics (general comparisons with untypedAtomic promotion, effective
boolean value, empty-sequence propagation). Dynamic errors (a value that cannot be cast, a
sequence where one item is expected) raise `XPathError`, as Saxon fails the transformation.

Values: a sequence is a Python list of items. Items are lxml elements, attribute values as
lxml returns them ("smart strings" that know their parent), `Untyped` (an atomised node),
`str`, `int`, `Decimal`, `float`, `bool` and `datetime.date`.
"""

from __future__ import annotations

import datetime
import math
import re
import threading
from collections.abc import Callable
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Context, Decimal, Inexact, localcontext
from functools import lru_cache
from typing import Any

from lxml import etree

EDI_NS = "urn:edi:native"

Seq = list
_EXACT = Context(prec=400)  # + - * of invoice amounts stay exact, as BigDecimal is
_HALF = Decimal("0.5")
Fn = Callable[[Any, dict], Seq]


class XPathError(Exception):
    """A dynamic error: the reference engine would stop the whole transformation."""


class Untranslatable(Exception):
    """The subtree has no XPath 1.0 equivalent with the same meaning."""


_XML_SPACE = re.compile(r"[ \t\r\n]+")
_DOUBLE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_DATE = re.compile(r"(-?\d{4,})-(\d\d)-(\d\d)(Z|[+-]\d\d:\d\d)?")


class Untyped(str):
    """xs:untypedAtomic: the atomised value of a node."""


# --- XPath 2.0 value semantics ----------------------------------------------------------

def one_item(items: Any, what: str) -> Any:
    """The item of a sequence of at most one (None when empty); several: XPTY0004, as Saxon."""
    if len(items) > 1:
        raise XPathError(f"XPTY0004: {what} of several items")
    return items[0] if items else None


def _is_node(item: Any) -> bool:
    return isinstance(item, etree._Element) or (
        isinstance(item, etree._ElementUnicodeResult) and (item.is_attribute or item.is_text))


def string_value(item: Any) -> str:
    if isinstance(item, etree._Element):
        return "".join(item.itertext())
    return str(item)


def atomize(seq: Seq) -> Seq:
    return [Untyped(string_value(i)) if _is_node(i) else i for i in seq]


def ebv(seq: Seq) -> bool:
    if not seq:
        return False
    first = seq[0]
    if _is_node(first):
        return True
    if len(seq) > 1:
        raise XPathError("FORG0006: effective boolean value of several atomic values")
    return ebv_atom(first)


def ebv_atom(v: Any) -> bool:
    """Effective boolean value of one atomic value."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        return v != ""
    if isinstance(v, float):
        return not (v == 0 or math.isnan(v))
    if isinstance(v, (int, Decimal)):
        return v != 0
    raise XPathError(f"FORG0006: effective boolean value of {type(v).__name__}")


def _double(text: str) -> float:
    t = text.strip()
    if t in ("INF", "+INF"):
        return math.inf
    if t == "-INF":
        return -math.inf
    if t == "NaN":
        return math.nan
    if not _DOUBLE.fullmatch(t):
        raise XPathError(f"FORG0001: cannot cast {text!r} to xs:double")
    return float(t)


def to_decimal(item: Any) -> Decimal:
    if isinstance(item, bool):
        return Decimal(int(item))
    if isinstance(item, (int, Decimal)):
        return Decimal(item)
    if isinstance(item, float):
        if math.isnan(item) or math.isinf(item):
            raise XPathError("FOCA0002: cannot cast NaN/INF to xs:decimal")
        return Decimal(item)  # exact binary value, as Saxon converts
    return _decimal(str(item))


@lru_cache(maxsize=4096)
def _decimal(text: str) -> Decimal:
    """xs:decimal of a lexical value; cached, as amounts and rates repeat within an invoice
    (each VAT breakdown rule casts the same lines again)."""
    t = text.strip()
    if not _DECIMAL.fullmatch(t):
        raise XPathError(f"FORG0001: cannot cast {text!r} to xs:decimal")
    return Decimal(t)


def _to_date(item: Any) -> datetime.date:
    if isinstance(item, datetime.date):
        return item
    t = str(item).strip()
    m = _DATE.fullmatch(t)
    try:
        if not m:
            raise ValueError
        return datetime.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise XPathError(f"FORG0001: cannot cast {item!r} to xs:date") from None


def _to_boolean(item: Any) -> bool:
    if isinstance(item, bool):
        return item
    if _numeric(item):
        return not (item == 0 or item != item)
    return _boolean_cast(str(item))


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def _promote(a: Any, b: Any) -> tuple[Any, Any]:
    """Operands of a general comparison after XPath 2.0 promotion."""
    if isinstance(a, Untyped) and isinstance(b, Untyped):
        return str(a), str(b)
    if isinstance(a, Untyped):
        b2, a2 = _promote(b, a)
        return a2, b2
    if isinstance(b, Untyped):
        if _numeric(a):
            return (float(a) if not isinstance(a, float) else a), _double(b)
        if isinstance(a, bool):
            return a, _boolean_cast(b)
        if isinstance(a, datetime.date):
            return a, _to_date(b)
        return a, str(b)
    if _numeric(a) and _numeric(b):
        if isinstance(a, float) or isinstance(b, float):
            return float(a), float(b)
        return a, b
    if isinstance(a, str) and isinstance(b, str):
        return str(a), str(b)
    if type(a) is type(b):
        return a, b
    raise XPathError(f"XPTY0004: cannot compare {type(a).__name__} with {type(b).__name__}")


def _boolean_cast(text: str) -> bool:
    t = text.strip()
    if t in ("true", "1"):
        return True
    if t in ("false", "0"):
        return False
    raise XPathError(f"FORG0001: cannot cast {text!r} to xs:boolean")


_CASTS = {
    "decimal": to_decimal, "date": _to_date, "string": string_value, "boolean": _to_boolean,
    "double": lambda i: _double(string_value(i)) if not _numeric(i) else float(i),
    "integer": lambda i: int(to_decimal(i)),
}

_OPS = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}
_VALUE_OPS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def general_compare(op: str, left: Seq, right: Seq) -> bool:
    fn = _OPS[op]
    la, ra = atomize(left), atomize(right)
    for a in la:
        for b in ra:
            x, y = _promote(a, b)
            if fn(x, y):
                return True
    return False


def _arith_operand(seq: Seq) -> Any:
    v = one_item(atomize(seq), "arithmetic on a sequence")
    if v is None:
        return None
    if isinstance(v, Untyped):
        return _double(v)
    if not _numeric(v):
        raise XPathError(f"XPTY0004: arithmetic on {type(v).__name__}")
    return v


def arithmetic(op: str, left: Seq, right: Seq) -> Seq:
    a, b = _arith_operand(left), _arith_operand(right)
    if a is None or b is None:
        return []
    if isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)
        if op == "div":
            if b == 0:
                return [math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1, b)]
            return [a / b]
        if op == "mod":
            return [math.fmod(a, b) if b else math.nan]
        return [{"+": a + b, "-": a - b, "*": a * b}[op]]
    with localcontext(_EXACT):
        if op == "div":
            if b == 0:
                raise XPathError("FOAR0001: division by zero")
            return [decimal_divide(Decimal(a), Decimal(b))]
        if op == "mod":
            if b == 0:
                raise XPathError("FOAR0001: modulo by zero")
            if isinstance(a, Decimal) or isinstance(b, Decimal):
                return [Decimal(a) % Decimal(b)]
            return [int(math.fmod(a, b))]
        return [{"+": a + b, "-": a - b, "*": a * b}[op]]


_local = threading.local()


def decimal_divide(a: Decimal, b: Decimal) -> Decimal:
    """xs:decimal division as Saxon does it: exact when the quotient terminates, otherwise
    rounded half-up to 18 more decimals than the (normalised) dividend has. (A context of this
    thread's own: whether the quotient was exact is read from its flags.)"""
    ctx = getattr(_local, "exact", None)
    if ctx is None:
        ctx = _local.exact = _EXACT.copy()
    ctx.clear_flags()
    q = ctx.divide(a, b)
    if not ctx.flags[Inexact]:
        return q
    scale = max(0, -a.normalize(ctx).as_tuple().exponent) + 18
    return q.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP, context=ctx)


def xpath_round(v: Any) -> Any:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return v
        return float(math.floor(v + 0.5))
    if isinstance(v, int):
        return v
    return _EXACT.add(v, _HALF).to_integral_value(rounding=ROUND_FLOOR, context=_EXACT)


def cast_one(fn: Any, seq: Seq, optional: bool = True) -> Any:
    """A constructor function (`xs:date(...)`) or `... cast as xs:type` (`optional`: with `?`)
    on a sequence: None for the empty sequence where allowed, else the one value cast."""
    item = one_item(atomize(seq), "cast")
    if item is None:
        if optional:
            return None
        raise XPathError("XPTY0004: cast of an empty sequence")
    return fn(item)


def _one_string(seq: Seq, fname: str) -> str:
    item = one_item(seq, f"{fname}() on a sequence")
    return "" if item is None else string_value(item)


# --- translation to XPath 1.0 -----------------------------------------------------------

NODES, STRING, NUM, NUMQ, BOOL = "nodes", "string", "num", "numq", "bool"


def _alternatives(t: Any) -> list:
    """Branches of a union used as a path step (XPath 1.0 has no `a/(b|c)`: it is `a/b | a/c`)."""
    while t.symbol == "(" and len(t) == 1:
        t = t[0]
    if t.symbol in ("|", "union"):
        return _alternatives(t[0]) + _alternatives(t[1])
    return [t]


def _literal(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise Untranslatable("literal with both quote kinds")


_STRING_FUNCS = {"normalize-space", "contains", "starts-with", "substring-after", "substring-before",
                 "substring", "concat", "string", "translate", "name", "local-name"}
_EXT_STRING = {"upper-case", "lower-case", "ends-with"}
_LOWER = "abcdefghijklmnopqrstuvwxyz"


class Translator:
    """XPath 2.0 token tree → XPath 1.0 text, for the subtrees where both mean the same."""

    def __init__(self, variables: dict[str, str], forgiving: bool = False):
        self.variables = variables  # variable name -> kind (only those bound to node sets)
        self.ascii_upper = False
        # forgiving: also translate what XPath 1.0 forgives and XPath 2.0 refuses — a one-item
        # function given several nodes (XPath 1.0 takes the first), a bad boolean (false) —, as
        # the match patterns' checks always did (Saxon recovers from errors in patterns)
        self.forgiving = forgiving

    def _single(self, args: list[tuple[str, str]], tokens: list) -> None:
        """Node-set arguments of a one-item function: refused unless forgiving."""
        for (text, kind), token in zip(args, tokens):
            if kind != NODES or text in (".", "..") or (token.symbol == "@" and len(token) == 1):
                continue
            if not self.forgiving:
                raise Untranslatable("one-item function of a node set (several nodes: an error in XPath 2.0)")

    def __call__(self, t: Any) -> tuple[str, str]:
        s, n = t.symbol, len(t)
        if s == "(name)":
            return t.value, NODES
        if s == ":" and n == 2:
            if t[1].symbol in ("(name)", "*"):
                return f"{t[0].value}:{t[1].value if t[1].symbol == '(name)' else '*'}", NODES
            if t[0].value == "fn":
                return self(t[1])
            raise Untranslatable(f"prefixed function {t[0].value}:{t[1].symbol}")
        if s == "*" and n == 0:
            return "*", NODES
        if s in (".", ".."):
            return s, NODES
        if s == "@" and n == 1:
            inner, kind = self(t[0])
            return "@" + inner, NODES
        if s in ("/", "//"):
            if n == 0:
                return "/", NODES
            lefts = [""] if n == 1 else [self(c)[0] for c in _alternatives(t[0])]
            rights = [self(c) for c in _alternatives(t[n - 1])]
            if any(k != NODES for _, k in rights) or (n == 2 and self(t[0])[1] != NODES):
                raise Untranslatable("path step that is not a node step")
            paths = [f"{a}{s}{b}" for a in lefts for b, _ in rights]
            return (paths[0] if len(paths) == 1 else "(" + " | ".join(paths) + ")"), NODES
        if s in ("ancestor", "preceding", "self", "child", "parent", "descendant", "following-sibling",
                 "preceding-sibling", "following", "ancestor-or-self", "descendant-or-self", "attribute") and n == 1:
            inner, _ = self(t[0])
            return f"{s}::{inner}", NODES
        if s == "[" and n == 2:
            left, lk = self(t[0])
            if lk != NODES:
                raise Untranslatable("predicate on atomic values")
            pred, pk = self(t[1])
            if pk in (NUM, NUMQ) and t[1].symbol != "(integer)":
                raise Untranslatable("computed numeric predicate")
            return f"{left}[{pred}]", NODES
        if s in ("|", "union"):
            a, b = self(t[0]), self(t[1])
            if a[1] != NODES or b[1] != NODES:
                raise Untranslatable("union of atomic values")
            return f"({a[0]} | {b[0]})", NODES
        if s == "(" and n == 1:
            inner, kind = self(t[0])
            return f"({inner})", kind
        if s in ("and", "or"):
            a, b = self(t[0])[0], self(t[1])[0]
            return f"(boolean({a}) {s} boolean({b}))", BOOL
        if s == "not":
            return f"not({self(t[0])[0]})", BOOL
        if s == "exists":
            inner, kind = self(t[0])
            if kind != NODES:
                raise Untranslatable("exists() of atomic values")
            return f"boolean({inner})", BOOL
        if s == "empty":
            inner, kind = self(t[0])
            if kind != NODES:
                raise Untranslatable("empty() of atomic values")
            return f"not({inner})", BOOL
        if s in ("true", "false") and n == 0:
            return f"{s}()", BOOL
        if s == "(string)":
            return _literal(t.value), STRING
        if s == "(integer)":
            return str(t.value), NUM
        if s == "(decimal)":
            return str(t.value), NUM
        if s == "$":
            name = t[0].value
            if self.variables.get(name) != NODES:
                raise Untranslatable(f"variable ${name}")
            return f"${name}", NODES
        if s in ("=", "!="):
            return self._equality(t)
        if s in ("<", "<=", ">", ">="):
            a, b = self(t[0]), self(t[1])
            if NUM not in (a[1], b[1]) and NUMQ not in (a[1], b[1]):
                raise Untranslatable("relational comparison without a number (string order in XPath 2.0)")
            if NODES in (a[1], b[1]):
                raise Untranslatable("node compared with a number (a bad number is an error in XPath 2.0)")
            if BOOL in (a[1], b[1]) or STRING in (a[1], b[1]):
                raise Untranslatable("relational comparison of a number with a string or boolean")
            return f"({a[0]} {s} {b[0]})", BOOL
        if s in ("+", "-", "*", "div") and n == 2:
            a, b = self(t[0]), self(t[1])
            if a[1] not in (NUM, NUMQ, NODES) or b[1] not in (NUM, NUMQ, NODES):
                raise Untranslatable("arithmetic on strings or booleans")
            if (a[1] == NODES or b[1] == NODES) or NUMQ in (a[1], b[1]):
                raise Untranslatable("arithmetic on nodes (a bad number is an error in XPath 2.0)")
            if t[0].symbol in ("(integer)",) and t[1].symbol in ("(integer)",) and s == "div":
                raise Untranslatable("integer division (decimal result in XPath 2.0)")
            return f"({a[0]} {s} {b[0]})", NUM
        if s == "-" and n == 1:
            a = self(t[0])
            if a[1] not in (NUM, NUMQ):
                raise Untranslatable("negation of a node")
            return f"(-{a[0]})", a[1]
        if s == "count":
            inner, kind = self(t[0])
            if kind != NODES:
                raise Untranslatable("count() of atomic values")
            return f"count({inner})", NUM
        if s == "sum" and n == 1:
            inner, kind = self(t[0])
            if kind != NODES:
                raise Untranslatable("sum() of atomic values")
            raise Untranslatable("sum() (a bad number is an error in XPath 2.0)")
        if s == "round":
            inner, kind = self(t[0])
            if kind not in (NUM, NUMQ):
                raise Untranslatable("round() of a node")
            return f"round({inner})", kind
        if s == "string-length":
            args = [self(c) for c in t]
            self._single(args, list(t))
            return f"string-length({', '.join(a for a, _ in args)})", NUM
        if s in _STRING_FUNCS:
            args = [self(c) for c in t]
            checked = args[:1] if s == "substring" else args
            if any(k in (NUM, NUMQ, BOOL) for _, k in checked):
                raise Untranslatable(f"{s}() of a number or boolean (formatting differs)")
            if s == "substring" and any(c.symbol != "(integer)" for c in list(t)[1:]):
                raise Untranslatable("substring() with computed bounds")
            self._single(args, list(t))
            return f"{s}({', '.join(a for a, _ in args)})", STRING if s not in ("contains", "starts-with") else BOOL
        if s == "upper-case" and self.ascii_upper and n == 1:
            inner, kind = self(t[0])
            if kind in (NUM, NUMQ, BOOL):
                raise Untranslatable("upper-case() of a number")
            self._single([(inner, kind)], [t[0]])
            return f"translate({inner}, '{_LOWER}', '{_LOWER.upper()}')", STRING
        if s == "ends-with" and n == 2 and t[1].symbol == "(string)":
            inner, kind = self(t[0])
            if kind in (NUM, NUMQ, BOOL):
                raise Untranslatable("ends-with() of a number")
            self._single([(inner, kind)], [t[0]])
            lit = _literal(t[1].value)
            return (f"(substring({inner}, string-length({inner}) - string-length({lit}) + 1) = {lit})",
                    BOOL)
        if s in _EXT_STRING:
            args = [self(c) for c in t]
            if any(k in (NUM, NUMQ, BOOL) for _, k in args):
                raise Untranslatable(f"{s}() of a number")
            self._single(args, list(t))
            return f"edi:{s}({', '.join(a for a, _ in args)})", BOOL if s == "ends-with" else STRING
        if s == "codelist":
            ident, _ = self(t[0])
            value, kind = self(t[1])
            return f"edi:codelist({ident}, {value})", BOOL
        raise Untranslatable(f"{s}/{n}")

    def _function_step(self, path: Any, other: Any) -> str | None:
        """`A/f(B) = 'x'` (f a string function: one string per A) is `A[f(B) = 'x']` exists."""
        while path.symbol == "(" and len(path) == 1:
            path = path[0]
        if path.symbol != "/" or len(path) != 2 or other.symbol != "(string)":
            return None
        step = path[1]
        if step.symbol == ":" and len(step) == 2 and step[0].value == "fn":
            step = step[1]
        if step.symbol not in ("normalize-space", "upper-case", "lower-case", "string") or len(step) != 1:
            return None
        left, kind = self(path[0])
        if kind != NODES:
            return None
        # Only ASCII letters upper-case to a literal free of S, I, F, L (ſ, ı and the ligatures
        # ﬀ ﬁ ﬂ ﬅ ﬆ are the non-ASCII ways to them): there translate() is upper-case().
        self.ascii_upper = other.value.isascii() and not set(other.value) & set("SIFL")
        try:
            inner, _ = self(step)
        finally:
            self.ascii_upper = False
        return f"boolean({{base}}[{inner} {{op}} {_literal(other.value)}])".replace(
            "{base}", {".": "self::node()", "..": "parent::node()"}.get(left, left))

    def _equality(self, t: Any) -> tuple[str, str]:
        s = t.symbol
        for path, other in ((t[0], t[1]), (t[1], t[0])):
            rewritten = self._function_step(path, other)
            if rewritten is not None:
                return rewritten.replace("{op}", s), BOOL
        a, b = self(t[0]), self(t[1])
        kinds = {a[1], b[1]}
        if BOOL in kinds and NODES in kinds:
            nodes = a[0] if a[1] == NODES else b[0]
            other = b if a[1] == NODES else a
            if other[0] not in ("true()", "false()"):
                raise Untranslatable("node compared with a computed boolean")
            if not self.forgiving:
                raise Untranslatable("node compared with a boolean (a bad value is an error in XPath 2.0)")
            value = other[0] == "true()"
            if s == "!=":
                value = not value
            lexical = "'true' or normalize-space(.)='1'" if value else "'false' or normalize-space(.)='0'"
            return f"boolean({nodes}[normalize-space(.)={lexical}])", BOOL
        if BOOL in kinds and kinds != {BOOL}:
            raise Untranslatable("boolean compared with a non-boolean")
        if NUMQ in kinds and s == "!=":
            raise Untranslatable("!= with a possibly empty number (NaN in XPath 1.0)")
        if kinds & {STRING, NODES} and kinds & {NUM, NUMQ}:
            raise Untranslatable("string or node compared with a number")
        return f"({a[0]} {s} {b[0]})", BOOL


# --- Python closures for the rest --------------------------------------------------------

def _ext_functions(codelists: dict[str, frozenset[str]]) -> dict:
    def first(v: Any) -> str:
        if isinstance(v, list):
            return string_value(v[0]) if v else ""
        return str(v)

    def codelist(_ctx: Any, ident: Any, value: Any) -> bool:
        allowed = codelists[first(ident)]
        items = value if isinstance(value, list) else [value]
        return any(string_value(i) in allowed for i in items)

    return {
        (EDI_NS, "upper-case"): lambda _c, v: first(v).upper(),
        (EDI_NS, "lower-case"): lambda _c, v: first(v).lower(),
        (EDI_NS, "ends-with"): lambda _c, a, b: first(a).endswith(first(b)),
        (EDI_NS, "codelist"): codelist,
    }


class Compiler:
    """Builds evaluators `fn(node, variables) -> sequence` for one rule set's expressions."""

    def __init__(self, namespaces: dict[str, str], codelists: dict[str, list[str]], strict: bool = False):
        self.forgiving = not strict
        self.namespaces = dict(namespaces)
        self.namespaces["edi"] = EDI_NS
        self.lists = {k: frozenset(v) for k, v in codelists.items()}
        self.extensions = _ext_functions(self.lists)
        self._parsers: dict[frozenset[str], Any] = {}  # per set of in-scope variables

    def parse(self, expr: str, variables: tuple[str, ...]) -> Any:
        """The token tree of an expression. One parser per set of in-scope variables: building
        a parser and its tokenizer cost more than parsing (most of the engine's start-up)."""
        key = frozenset(variables)
        parser = self._parsers.get(key)
        if parser is None:
            from elementpath import XPath2Parser  # only when parsing: a cached engine never does

            parser = XPath2Parser(namespaces=self.namespaces, variable_types={v: "item()*" for v in variables})
            parser.external_function(lambda a, b: True, name="codelist", prefix="edi",
                                     sequence_types=("xs:string", "item()*", "xs:boolean"))
            self._parsers[key] = parser
        return parser.parse(expr)

    def compile(self, expr: str, substitutions: dict[str, str], variables: tuple[str, ...] = ()) -> Fn:
        """`substitutions`: rule variables whose XPath 1.0 select can stand in for them textually."""
        return self.build(self.parse(expr, tuple(variables) + tuple(substitutions)), substitutions)

    def translate(self, expr: str, substitutions: dict[str, str], variables: tuple[str, ...] = ()) -> str | None:
        """The whole expression as XPath 1.0 text (its effective boolean value is the same), or
        None when some part of it needs Python."""
        t = self.parse(expr, tuple(variables) + tuple(substitutions))
        try:
            text, kind = _SubstTranslator(substitutions, self.forgiving)(t)
        except Untranslatable:
            return None
        return text if kind in (BOOL, NODES, STRING, NUM) else None

    def presence(self, expr: str, substitutions: dict[str, str], variables: tuple[str, ...] = ()
                 ) -> tuple[bool, bool, tuple[tuple[str, ...], ...]] | None:
        """`(wanted, descendant, alternatives)` when the test only asks whether a plain path
        exists (`not(cac:A/cbc:B)`, `exists(cbc:C/@d)`, `not((cac:X | cac:Y)/cbc:Z)`, or
        `//cac:A/@b` anywhere): answered from the set of the document's element and attribute
        paths, without libxml2. None otherwise."""
        t = self.parse(expr, tuple(variables) + tuple(substitutions))
        wanted = True
        while True:
            if t.symbol == "not" and len(t) == 1:
                wanted, t = not wanted, t[0]
            elif t.symbol in ("exists", "boolean") and len(t) == 1:
                t = t[0]
            elif t.symbol == "empty" and len(t) == 1:
                wanted, t = not wanted, t[0]
            elif t.symbol == "(" and len(t) == 1:
                t = t[0]
            else:
                break
        descendant = False
        if t.symbol == "//" and len(t) == 1:
            descendant, t = True, t[0]
        alternatives = []
        for branch in _alternatives(t) if t.symbol != "/" else [t]:
            expanded = self.union_steps(branch)
            if expanded is None:
                return None
            alternatives += expanded
        return wanted, descendant, tuple(alternatives)

    def union_steps(self, t: Any) -> list[tuple[str, ...]] | None:
        """child_steps, where a step may be a union of plain paths: every expansion."""
        alts = _alternatives(t)
        if len(alts) > 1:
            out = []
            for a in alts:
                x = self.union_steps(a)
                if x is None:
                    return None
                out += x
            return out
        if t.symbol == "/" and len(t) == 2:
            left, right = self.union_steps(t[0]), self.union_steps(t[1])
            if left is None or right is None or any(x and x[-1].startswith("@") for x in left):
                return None
            return [a + b for a in left for b in right]
        steps = self.child_steps(t)
        return None if steps is None else [steps]

    def child_steps(self, t: Any) -> tuple[str, ...] | None:
        """Clark names of a relative path made of child name steps only (an attribute last)."""
        if t.symbol == "/" and len(t) == 2:
            left, right = self.child_steps(t[0]), self.child_steps(t[1])
            if left is None or right is None or any(x.startswith("@") for x in left):
                return None
            return left + right
        if t.symbol == "@" and len(t) == 1:
            inner = self.child_steps(t[0])
            return None if inner is None or len(inner) != 1 else ("@" + inner[0],)
        if t.symbol == ":" and len(t) == 2 and t[1].symbol == "(name)":
            ns = self.namespaces.get(t[0].value)
            return None if ns is None else (f"{{{ns}}}{t[1].value}",)
        if t.symbol == "(name)":
            return (t.value,)
        return None

    def translate_token(self, t: Any) -> str | None:
        """XPath 1.0 text of a parsed subtree, or None."""
        try:
            text, kind = _SubstTranslator({}, self.forgiving)(t)
        except Untranslatable:
            return None
        return text if kind in (BOOL, NODES, STRING) else None

    def boolean_xpath(self, text: str) -> Callable[[Any], bool]:
        return self._xpath(f"boolean({text})")

    def _xpath(self, text: str) -> etree.XPath:
        extensions = self.extensions if "edi:" in text else None  # they cost ~3 µs a call
        return etree.XPath(text, namespaces=self.namespaces, extensions=extensions, regexp=False)

    def build(self, t: Any, subst: dict[str, str]) -> Fn:
        s = t.symbol
        if s == "(string)":
            v = [t.value]
            return lambda node, vs: v
        if s in ("(integer)", "(decimal)", "(float)", "(double)"):
            v = [float(t.value) if s in ("(float)", "(double)") else t.value]
            return lambda node, vs: v
        if s == "$" and t[0].value not in subst:
            name = t[0].value
            return lambda node, vs: vs[name]
        if s not in ("sum", "round", "abs", "+", "-", "*", "div", "mod"):
            try:
                text, kind = _SubstTranslator(subst, self.forgiving)(t)
            except Untranslatable:
                pass
            else:
                try:
                    return self._lxml(text, kind)
                except etree.XPathSyntaxError as exc:
                    raise XPathError(f"translation not accepted by libxml2: {text}") from exc
        return self._closure(t, subst)

    def _lxml(self, text: str, kind: str) -> Fn:
        xp = self._xpath(text)
        if kind == BOOL:
            return lambda node, vs: [xp(node)]
        if kind == NODES:
            return _memoized(xp, text)
        if kind == STRING:
            return lambda node, vs: [str(xp(node))]
        # NUM: count() or string-length(): integers in XPath 2.0
        return lambda node, vs: [int(xp(node))]

    def _closure(self, t: Any, subst: dict[str, str]) -> Fn:
        s, n = t.symbol, len(t)
        b = lambda c: self.build(c, subst)  # noqa: E731
        if s in ("cast", "castable") and n == 2:
            arg = b(t[0])
            cast = _CASTS.get(str(t[1].value).removeprefix("xs:"))
            if cast is None:
                raise Untranslatable(f"cast as {t[1].value}")
            optional = t.source.rstrip().endswith("?")
            def cast_as(node, vs, castable=s == "castable"):
                items = atomize(arg(node, vs))
                if len(items) != 1:
                    if castable:
                        return [not items and optional]
                    if not items and optional:
                        return []
                    raise XPathError("XPTY0004: cast of an empty sequence or of several items")
                try:
                    value = cast(items[0])
                except XPathError:
                    if castable:
                        return [False]
                    raise
                return [True] if castable else [value]
            return cast_as
        if s == ":" and n == 2:
            prefix, inner = t[0].value, t[1]
            if prefix == "xs":
                arg = b(inner[0])
                cast = _CASTS.get(inner.symbol)
                if cast is None:
                    raise Untranslatable(f"xs:{inner.symbol}")
                def xs_cast(node, vs, arg=arg, cast=cast):
                    value = cast_one(cast, arg(node, vs))
                    return [] if value is None else [value]
                return xs_cast
            return self.build(inner, subst)
        if s == "(" and n == 1:
            return b(t[0])
        if s in ("/", "//"):
            peeled = self._peel(t, subst)
            if peeled is not None:
                return peeled
        if s in ("/", "//") and n == 1:
            right = b(t[0])
            descend = s == "//"
            def absolute(node, vs):
                tree = node.getroottree()
                if not descend:
                    return right(tree, vs)
                out: list = list(right(tree, vs))
                for target in tree.getroot().iter():
                    if isinstance(target.tag, str):
                        out.extend(right(target, vs))
                return _dedupe(out)
            return absolute
        if s in ("/", "//") and n == 2:
            left, right = b(t[0]), b(t[1])
            descend = s == "//"
            def step(node, vs):
                out: list = []
                for item in left(node, vs):
                    if isinstance(item, etree._ElementTree):
                        targets = [item, *item.getroot().iter()] if descend else (item,)
                    elif isinstance(item, etree._Element):
                        targets = item.iter() if descend else (item,)
                    else:
                        raise XPathError("XPTY0019: path step from an atomic value")
                    for target in targets:
                        if isinstance(target, etree._ElementTree) or isinstance(target.tag, str):
                            out.extend(right(target, vs))
                return _dedupe(out)
            return step
        if s in ("and", "or"):
            left, right = b(t[0]), b(t[1])
            if s == "and":
                return lambda node, vs: [ebv(left(node, vs)) and ebv(right(node, vs))]
            return lambda node, vs: [ebv(left(node, vs)) or ebv(right(node, vs))]
        if s == "not":
            arg = b(t[0])
            return lambda node, vs: [not ebv(arg(node, vs))]
        if s in ("exists", "empty"):
            arg = b(t[0])
            want = s == "exists"
            return lambda node, vs: [bool(arg(node, vs)) == want]
        if s in ("true", "false") and n == 0:
            v = [s == "true"]
            return lambda node, vs: v
        if s in _OPS:
            left, right = b(t[0]), b(t[1])
            return lambda node, vs: [general_compare(s, left(node, vs), right(node, vs))]
        if s in _VALUE_OPS:
            left, right = b(t[0]), b(t[1])
            op = _VALUE_OPS[s]
            def value_compare(node, vs):
                la, ra = atomize(left(node, vs)), atomize(right(node, vs))
                if not la or not ra:
                    return []
                if len(la) > 1 or len(ra) > 1:
                    raise XPathError("XPTY0004: value comparison of several items")
                x = str(la[0]) if isinstance(la[0], Untyped) else la[0]
                y = str(ra[0]) if isinstance(ra[0], Untyped) else ra[0]
                x, y = _promote(x, y)
                return [_OPS[op](x, y)]
            return value_compare
        if s in ("+", "-", "*", "div", "mod") and n == 2:
            left, right = b(t[0]), b(t[1])
            return lambda node, vs: arithmetic(s, left(node, vs), right(node, vs))
        if s == "-" and n == 1:
            arg = b(t[0])
            return lambda node, vs: arithmetic("-", [0], arg(node, vs))
        if s == "sum":
            arg = b(t[0])
            def total(node, vs):
                items = atomize(arg(node, vs))
                if not items:
                    return [0]
                acc: Any = None
                for it in items:
                    v = _double(it) if isinstance(it, Untyped) else it
                    if not _numeric(v):
                        raise XPathError("FORG0006: sum() of non-numeric values")
                    acc = v if acc is None else arithmetic("+", [acc], [v])[0]
                return [acc]
            return total
        if s in ("round", "abs"):
            arg = b(t[0])
            fn = xpath_round if s == "round" else abs
            def numeric1(node, vs):
                v = _arith_operand(arg(node, vs))
                return [] if v is None else [fn(v)]
            return numeric1
        if s == "count":
            arg = b(t[0])
            return lambda node, vs: [len(arg(node, vs))]
        if s in ("every", "some"):
            return self._quantified(t, subst)
        if s == "[" and n == 2:
            left, pred = b(t[0]), b(t[1])
            def filt(node, vs):
                items = left(node, vs)
                out = []
                for pos, item in enumerate(items, 1):
                    r = pred(item, vs)
                    if len(r) == 1 and _numeric(r[0]):
                        if r[0] == pos:
                            out.append(item)
                    elif ebv(r):
                        out.append(item)
                return out
            return filt
        if s in ("|", "union") and n == 2:
            left, right = b(t[0]), b(t[1])
            return lambda node, vs: _dedupe(left(node, vs) + right(node, vs))  # order: unused by the rules
        if s == "," and n == 2:
            left, right = b(t[0]), b(t[1])
            return lambda node, vs: left(node, vs) + right(node, vs)
        if s in ("normalize-space", "upper-case", "lower-case", "string", "string-length") and n == 1:
            arg = b(t[0])
            fn1 = {"normalize-space": lambda x: " ".join(_XML_SPACE.split(x)).strip(" "),
                   "upper-case": str.upper, "lower-case": str.lower, "string": lambda x: x,
                   "string-length": len}[s]
            return lambda node, vs: [fn1(_one_string(arg(node, vs), s))]
        if s in ("contains", "starts-with", "ends-with", "substring-after", "substring-before") and n == 2:
            a1, a2 = b(t[0]), b(t[1])
            fn2 = {"contains": lambda x, y: y in x, "starts-with": str.startswith, "ends-with": str.endswith,
                   "substring-after": lambda x, y: x.partition(y)[2] if y in x else "",
                   "substring-before": lambda x, y: x.partition(y)[0] if y in x else ""}[s]
            return lambda node, vs: [fn2(_one_string(a1(node, vs), s), _one_string(a2(node, vs), s))]
        if s == "substring" and n in (2, 3):
            text_arg, bounds = b(t[0]), [b(c) for c in list(t)[1:]]

            def substring(node, vs):
                text = _one_string(atomize(text_arg(node, vs)), s)
                start = float(xpath_round(_arith_operand(bounds[0](node, vs))))
                end = math.inf if n == 2 else start + float(xpath_round(_arith_operand(bounds[1](node, vs))))
                return ["".join(ch for p, ch in enumerate(text, 1) if start <= p < end)]
            return substring
        if s == "translate" and n == 3:
            a1, a2, a3 = b(t[0]), b(t[1]), b(t[2])

            def translate(node, vs):
                src, frm, to = (_one_string(atomize(a(node, vs)), s) for a in (a1, a2, a3))
                table = {}
                for i, ch in enumerate(frm):
                    table.setdefault(ord(ch), to[i] if i < len(to) else None)
                return [src.translate(table)]
            return translate
        if s in ("name", "local-name") and n == 1:
            arg = b(t[0])

            def node_name(node, vs):
                items = arg(node, vs)
                if len(items) > 1:
                    raise XPathError(f"XPTY0004: {s}() on a sequence of several items")
                if not items or not isinstance(items[0], etree._Element):
                    return [""]
                q = etree.QName(items[0])
                prefix = items[0].prefix
                return [q.localname if s == "local-name" or not prefix else f"{prefix}:{q.localname}"]
            return node_name
        if s == "concat":
            args = [b(c) for c in t]
            return lambda node, vs: ["".join(_one_string(atomize(a(node, vs)), s) if a(node, vs) else ""
                                             for a in args)]
        if s == "tokenize" and n == 2:
            a1, a2 = b(t[0]), b(t[1])
            def tokenize(node, vs):
                text = _one_string(a1(node, vs), s)
                if not text:
                    return []
                return re.split(_one_string(a2(node, vs), s), text)
            return tokenize
        if s == "codelist":
            a1, a2 = b(t[0]), b(t[1])
            lists = self.lists
            return lambda node, vs: [any(string_value(i) in lists[_one_string(a1(node, vs), s)]
                                         for i in a2(node, vs))]
        if s == "if":
            cond, then, other = b(t[0]), b(t[1]), b(t[2])
            return lambda node, vs: then(node, vs) if ebv(cond(node, vs)) else other(node, vs)
        if s in ("(name)", "@", "..", ".", "*") or s in ("/", "//"):
            raise Untranslatable(f"path {s} not translatable")  # handled by _lxml when translatable
        raise Untranslatable(f"no native form for {s}/{n}")

    def _peel(self, t: Any, subst: dict[str, str]) -> Fn | None:
        """`L/A[p]` or `//A[p]` whose predicates only are not XPath 1.0: libxml2 selects
        `L/A` (or `//A`), Python filters (boolean predicates give the same nodes either way)."""
        right = t[len(t) - 1]
        preds = []
        while right.symbol == "[" and len(right) == 2:
            preds.insert(0, right[1])
            right = right[0]
        if not preds or any(p.symbol in ("(integer)", "(decimal)", "last", "position") for p in preds):
            return None
        try:
            tr = _SubstTranslator(subst, self.forgiving)
            base = tr(right)[0] if right.symbol != "(" else None
            if base is None or tr(right)[1] != NODES:
                return None
            text = t.symbol + base if len(t) == 1 else f"{tr(t[0])[0]}{t.symbol}{base}"
            if len(t) == 2 and tr(t[0])[1] != NODES:
                return None
        except Untranslatable:
            return None
        # boolean predicates commute: the translatable ones go into libxml2's selection
        rest = []
        for p in preds:
            tp = _SubstTranslator(subst, self.forgiving)
            tp.depth = 1
            try:
                ptext, pkind = tp(p)
            except Untranslatable:
                rest.append(p)
                continue
            if pkind in (NUM, NUMQ):
                return None
            text += f"[{ptext}]"
        try:
            xp = self._xpath(text)
        except etree.XPathSyntaxError:
            return None
        filters = [self.build(p, subst) for p in rest]

        base = _memoized(xp, text)

        def select(node, vs):
            items = base(node, vs)
            for f in filters:
                kept = []
                for item in items:
                    r = f(item, vs)
                    if len(r) == 1 and _numeric(r[0]):
                        raise XPathError("numeric predicate computed at run time (not supported natively)")
                    if ebv(r):
                        kept.append(item)
                items = kept
            return items

        return select

    def _quantified(self, t: Any, subst: dict[str, str]) -> Fn:
        every = t.symbol == "every"
        # children: ($var, in-expr) pairs, then the satisfies expression
        children = list(t)
        pairs = []
        for i in range(0, len(children) - 1, 2):
            pairs.append((children[i][0].value, self.build(children[i + 1], subst)))
        cond = self.build(children[-1], subst)

        def loop(node, vs, k=0):
            if k == len(pairs):
                return ebv(cond(node, vs))
            name, seq = pairs[k]
            for item in seq(node, vs):
                ok = loop(node, {**vs, name: [item]}, k + 1)
                if every and not ok:
                    return False
                if not every and ok:
                    return True
            return every

        return lambda node, vs: [loop(node, vs)]


MEMO = "#memo"  # key, in the variables dict, of the per-document cache of node selections


def _memoized(xp: etree.XPath, text: str) -> Fn:
    """A node selection cached for the document being checked (`vs[MEMO]`, set by the engine):
    the rules select the same nodes again and again (every VAT category rule walks the same
    tax categories). Absolute paths are cached once per document, relative ones per node."""
    absolute = text.startswith("/") and "|" not in text

    def select(node, vs):
        memo = vs.get(MEMO)
        if memo is None:
            return xp(node)
        key = (xp, None if absolute else node)
        found = memo.get(key)
        if found is None:
            found = memo[key] = xp(node)
        return found

    return select


def _dedupe(items: list) -> list:
    if len(items) < 2 or not isinstance(items[0], etree._Element):
        return items
    seen: set[int] = set()
    out = []
    for i in items:
        if id(i) not in seen:
            seen.add(id(i))
            out.append(i)
    return out


class _SubstTranslator(Translator):
    """Translator where rule variables bound to a relative path are replaced by that path
    (same context node), outside predicates only."""

    def __init__(self, subst: dict[str, str], forgiving: bool = False):
        super().__init__({}, forgiving)
        self.subst = subst
        self.depth = 0

    def __call__(self, t: Any) -> tuple[str, str]:
        if t.symbol == "$":
            name = t[0].value
            if name in self.subst and self.depth == 0:
                return f"({self.subst[name]})", NODES
            raise Untranslatable(f"variable ${name}")
        if t.symbol == "[" and len(t) == 2:
            left = self(t[0])
            self.depth += 1
            try:
                pred = self(t[1])
            finally:
                self.depth -= 1
            if left[1] != NODES:
                raise Untranslatable("predicate on atomic values")
            if pred[1] in (NUM, NUMQ) and t[1].symbol != "(integer)":
                raise Untranslatable("computed numeric predicate")
            base = {".": "self::node()", "..": "parent::node()"}.get(left[0], left[0])
            return f"{base}[{pred[0]}]", NODES
        return super().__call__(t)
