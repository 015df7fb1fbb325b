"""What the generated rule code calls at run time: the per-document index and the XPath 2.0
value semantics on plain Python values.

The generated code (see `codegen`) keeps values unwrapped where their kind is known at compile
time — an element, a list of elements, a string, a boolean, one atomic value or None for the
empty sequence — and calls these small functions for the steps whose meaning is subtle (casts,
exact decimal arithmetic, comparisons with promotion, one-item checks). Anything more general
goes through `xpath`'s sequence functions, so both paths share one definition of the semantics.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from lxml import etree

from edi.validate.native.xpath import (
    _EXACT,
    _OPS,
    _VALUE_OPS,
    _XML_SPACE,
    MEMO,
    Untyped,
    XPathError,
    _arith_operand,
    _boolean_cast,
    _decimal,
    _double,
    _numeric,
    _one_string,
    one_item,
    _promote,
    arithmetic,
    atomize,
    decimal_divide,
    ebv,
    ebv_atom,
    general_compare,
    string_value,
    to_decimal,
    xpath_round,
)

ELEMENT = etree.Element  # as a tag filter: elements only (no comments, no processing instructions)
NIL: tuple = ()


class DocumentNode:
    """The document node above the root element (`..` of the root): its one child is the root."""

    __slots__ = ("root",)
    tag = ""
    text = None
    prefix = None

    def __init__(self, root: etree._Element) -> None:
        self.root = root

    def __len__(self) -> int:
        return 1

    def iterchildren(self, tag: Any = None) -> Any:
        return iter((self.root,) if tag in (None, ELEMENT, self.root.tag) else ())

    def iterdescendants(self, tag: Any = None) -> Any:
        return self.root.iter(tag) if tag is not None else self.root.iter()

    def itertext(self) -> Any:
        return self.root.itertext()

    def iterancestors(self, tag: Any = None) -> Any:
        return iter(())

    def getparent(self) -> None:
        return None

    def get(self, name: str) -> None:
        return None

    def keys(self) -> list:
        return []


class Doc:
    """One document being checked: its root, its elements by name and in document order, and
    (built on first use) the set of element and attribute paths the presence tests read."""

    __slots__ = ("root", "document", "idx", "all", "memo", "paths", "path_list", "kids", "retry", "_pos",
                 "_present", "_by_last", "_rel", "_ends")

    def __init__(self, root: etree._Element) -> None:
        self.root = root
        self.all = every = [root, *root.iterdescendants(ELEMENT)]
        paths: dict[Any, tuple] = {root: ()}  # names from the root (the root itself is `()`)
        path_list: list[tuple] = [()]  # the same, in document order
        idx: dict[str, list] = {root.tag: [root]}
        for el in every[1:]:
            tag = el.tag
            paths[el] = p = paths[el.getparent()] + (tag,)
            path_list.append(p)
            found = idx.get(tag)
            if found is None:
                idx[tag] = [el]
            else:
                found.append(el)
        self.document = DocumentNode(root)
        self.idx, self.paths, self.path_list = idx, paths, path_list
        self._pos: dict | None = None
        self.retry: Any = None  # set by the engine: a test asked again, errors masked (codegen)
        self.memo: dict = {}
        self.kids: dict = {}  # element -> its children by name (built when first asked)
        self._present: set | None = None
        self._rel: dict = {}
        self._ends: dict = {}

    @property
    def pos(self) -> dict:
        """Element -> its rank in document order (built when first asked: sorting is rare)."""
        if self._pos is None:
            self._pos = {el: i for i, el in enumerate(self.all)}
            self._pos[self.document] = -1
        return self._pos

    def _build_paths(self) -> None:
        """The set of element paths, with the attributes as a last `@name`."""
        present = set(self.path_list)
        present.discard(())
        paths = self.paths
        for el in self.all:
            names = el.keys()
            if names:
                p = paths[el]
                for a in names:
                    present.add(p + ("@" + a,))
        self._present = present
        by_last: dict[str, list] = {}
        for p in present:
            found = by_last.get(p[-1])
            if found is None:
                by_last[p[-1]] = [p]
            else:
                found.append(p)
        self._by_last = by_last

    def _under(self, node: etree._Element, k: int) -> set[tuple]:
        """The element and attribute paths below `node` (at depth `k`), relative to it."""
        paths = self.paths
        found: set[tuple] = {("@" + a,) for a in node.keys()}
        for el in node.iterdescendants(ELEMENT):
            p = paths[el][k:]
            found.add(p)
            for a in el.keys():
                found.add(p + ("@" + a,))
        return found

    def rel(self, node: etree._Element) -> set:
        """The paths present under `node`, relative to it (what `not(cac:A/cbc:B)` asks)."""
        found = self._rel.get(node)
        if found is None:
            if node is self.root:
                if self._present is None:
                    self._build_paths()
                found = self._present
            else:
                found = self._under(node, len(self.paths[node]))
            self._rel[node] = found
        return found

    def ends(self, steps: tuple) -> bool:
        """Whether some element or attribute path of the document ends with `steps` (`//a/b`)."""
        found = self._ends.get(steps)
        if found is None:
            if self._present is None:
                self._build_paths()
            k = len(steps)
            root = (self.root.tag,)  # the paths start below the root: a step may name it
            found = self._ends[steps] = any(p[-k:] == steps or len(p) == k - 1 and root + p == steps
                                            for p in self._by_last.get(steps[-1], NIL))
        return found

    def vs(self, values: dict) -> dict:
        """The variables dict of a fallback closure (`xpath.Compiler.build`)."""
        values[MEMO] = self.memo
        return values


def present(rel: set, table: dict) -> set[int]:
    """The checks of `table` (path -> check indexes) whose path is under the node of `rel`."""
    if len(rel) < len(table):
        return {i for path in rel if path in table for i in table[path]}
    return {i for path, ids in table.items() if path in rel for i in ids}


# --- nodes ------------------------------------------------------------------------------------

def kids(doc: Doc, el: etree._Element) -> dict:
    """The children of `el` by name, in order (the generated code reads `doc.kids` first): the
    rules ask one element for many names (a monetary total for its eight amounts, twice each)."""
    found: dict[str, list] = {}
    for c in el.iterchildren(ELEMENT):
        same = found.get(c.tag)
        if same is None:
            found[c.tag] = [c]
        else:
            same.append(c)
    doc.kids[el] = found
    return found

def sv(el: etree._Element) -> str:
    """String value of an element."""
    if len(el) == 0:
        t = el.text
        return "" if t is None else t
    return "".join(el.itertext())


def par(doc: Doc, el: Any) -> list:
    """`..`: the parent; the root's is the document node."""
    p = el.getparent()
    if p is None:
        return [] if el is doc.document else [doc.document]
    return [p]


def mor(a: Any, b: Any) -> bool:
    """`A or B` where an error of one side does not count if the other side is true."""
    try:
        first = a()
    except XPathError:
        if b():
            return True
        raise
    return first or b()


def mand(a: Any, b: Any) -> bool:
    """`A and B` where an error of one side does not count if the other side is false."""
    try:
        first = a()
    except XPathError:
        if not b():
            return False
        raise
    return first and b()


def at(el: etree._Element, name: str) -> list:
    v = el.get(name)
    return [] if v is None else [v]


def anc(el: etree._Element, tag: str) -> list:
    out = list(el.iterancestors(tag))
    out.reverse()
    return out


_LOCAL: dict[str, str] = {}


def ln(el: etree._Element) -> str:
    """local-name() of an element."""
    tag = el.tag
    found = _LOCAL.get(tag)
    if found is None:
        found = _LOCAL[tag] = tag.rpartition("}")[2]
    return found


def nm(el: etree._Element) -> str:
    """name() of an element: the prefix it has in the document, and its local name."""
    prefix = el.prefix
    return f"{prefix}:{ln(el)}" if prefix else ln(el)


def ln1(nodes: Any) -> str:
    """local-name() of at most one element."""
    if len(nodes) > 1:
        raise XPathError("XPTY0004: local-name() on a sequence of several items")
    return ln(nodes[0]) if nodes else ""


def nm1(nodes: Any) -> str:
    if len(nodes) > 1:
        raise XPathError("XPTY0004: name() on a sequence of several items")
    return nm(nodes[0]) if nodes else ""


def prec(doc: Doc, el: etree._Element, tag: str) -> list:
    """`preceding::tag`: the elements of that name before `el`, its ancestors excepted."""
    here = doc.pos[el]
    before = [e for e in doc.idx.get(tag, NIL) if doc.pos[e] < here]
    if before:
        ancestors = set(el.iterancestors())
        before = [e for e in before if e not in ancestors]
    return before


def atall(doc: Doc, name: str) -> list:
    """`//@name`: the values of that attribute on every element, in document order."""
    return [v for v in (el.get(name) for el in doc.all) if v is not None]


def srt(nodes: list, doc: Doc) -> list:
    """Distinct elements in document order (after a step that can repeat or reorder them)."""
    if len(nodes) < 2:
        return nodes
    return sorted(set(nodes), key=doc.pos.__getitem__)


def un(a: Any, b: Any, doc: Doc) -> list:
    return srt([*a, *b], doc)


def s1(nodes: Any, fname: str) -> str:
    """The string of at most one element (XPath 2.0 refuses several)."""
    el = one_item(nodes, f"{fname}() on a sequence")
    return "" if el is None else sv(el)


def a1(values: list, fname: str) -> str:
    value = one_item(values, f"{fname}() on a sequence")
    return "" if value is None else value


def v2s(v: Any) -> str:
    return "" if v is None else string_value(v)


def q1(seq: list, fname: str) -> str:
    return _one_string(seq, fname)


_NS: dict[str, str] = {}


def ns(s: str) -> str:
    """normalize-space() (XML white space only: a no-break space stays)."""
    found = _NS.get(s)
    if found is None:
        found = " ".join(_XML_SPACE.split(s)).strip(" ")
        if len(_NS) < 65536:
            _NS[s] = found
    return found


def ua(values: list) -> list:
    """Attribute values atomised."""
    return [Untyped(v) for v in values]


def cnt1(v: Any) -> int:
    return 0 if v is None else 1


def opt(v: Any) -> list:
    return [] if v is None else [v]


def ebv1(v: Any) -> bool:
    """Effective boolean value of one atomic value or of the empty sequence (None)."""
    return False if v is None else ebv_atom(v)


# --- numbers ----------------------------------------------------------------------------------

def nn(nodes: Any) -> Any:
    """Arithmetic operand from elements: None when empty, xs:double of the one value."""
    el = one_item(nodes, "arithmetic on a sequence")
    return None if el is None else _double(sv(el))


def na(values: list) -> Any:
    value = one_item(values, "arithmetic on a sequence")
    return None if value is None else _double(value)


def num(seq: list) -> Any:
    return _arith_operand(seq)


def nv(v: Any) -> Any:
    """Arithmetic operand from one typed atomic value."""
    if v is None or (_numeric(v)):
        return v
    return _arith_operand([v])


_EXACT_OPS = {"+": _EXACT.add, "-": _EXACT.subtract, "*": _EXACT.multiply}


def ar(op: str, a: Any, b: Any) -> Any:
    """`a op b` with XPath 2.0 typing (integer, exact decimal, double); None propagates."""
    if a is None or b is None:
        return None
    ta, tb = type(a), type(b)
    if ta is Decimal or tb is Decimal:
        if (ta is Decimal or ta is int) and (tb is Decimal or tb is int):
            f = _EXACT_OPS.get(op)
            if f is not None:
                return f(a, b)
            if op == "div":
                if b == 0:
                    raise XPathError("FOAR0001: division by zero")
                return decimal_divide(Decimal(a), Decimal(b))
    return arithmetic(op, [a], [b])[0]


def rnd(v: Any) -> Any:
    return None if v is None else xpath_round(v)


def ab(v: Any) -> Any:
    return None if v is None else abs(v)


def sm(items: list) -> Any:
    """sum() of atomised items (untyped values count as xs:double)."""
    if not items:
        return 0
    acc: Any = None
    for it in items:
        v = _double(it) if isinstance(it, Untyped) else it
        if not _numeric(v):
            raise XPathError("FORG0006: sum() of non-numeric values")
        acc = v if acc is None else ar("+", acc, v)
    return acc


def dn(nodes: Any) -> Any:
    """xs:decimal() of at most one element."""
    el = one_item(nodes, "cast")
    return None if el is None else _decimal(sv(el))


def da(values: list) -> Any:
    value = one_item(values, "cast")
    return None if value is None else _decimal(value)


def dv(v: Any) -> Any:
    return None if v is None else to_decimal(v)


def grp(doc: Doc, base: list, fn: Any, several: bool) -> dict:
    """`base` (a list kept for the document) grouped by `fn` (one key, or a list of keys)."""
    m = doc.memo
    key = ("grp", fn, id(base))
    found = m.get(key)
    if found is None:
        found = m[key] = {}
        for el in base:
            for k in (set(fn(doc, el)) if several else (fn(doc, el),)):
                found.setdefault(k, []).append(el)
    return found


def grpv(doc: Doc, base: list, fn: Any, value: Any) -> list:
    """The elements of `base` one of whose values `fn(x)` equals `value`: a lookup in `base`
    grouped by those values when they and `value` are decimals or integers (Python then
    compares them as XPath does), the plain filter otherwise (doubles, strings, dates)."""
    if type(value) is Decimal or type(value) is int:
        found = grp(doc, base, fn, True)
        exact = doc.memo.get(("grpv", id(found)))
        if exact is None:
            exact = doc.memo[("grpv", id(found))] = all(type(k) is Decimal or type(k) is int for k in found)
        if exact:
            return found.get(value, NIL)
    return [x for x in base if qv("=", fn(doc, x), value)]


def nb(op: str, nodes: Any, value: bool) -> bool:
    """Elements compared with a boolean: each value cast to xs:boolean (a bad one is an error)."""
    f = _OPS[op]
    return any(f(_boolean_cast(sv(x)), value) for x in nodes)


def nq(op: str, nodes: Any, v: Any) -> bool:
    """Elements compared with one value or None (each element's value promoted to its type)."""
    if v is None:
        return False
    f = _OPS[op]
    for x in nodes:
        a, b = _promote(Untyped(sv(x)), v)
        if f(a, b):
            return True
    return False


def cv(op: str, a: Any, b: Any) -> bool:
    """General comparison of two singletons-or-empty (None)."""
    if a is None or b is None:
        return False
    ta = type(a)
    if ta is type(b) or (ta is int or ta is Decimal) and type(b) in (int, Decimal):
        return _OPS[op](a, b)
    x, y = _promote(a, b)
    return _OPS[op](x, y)


def vc(op: str, a: list, b: list) -> Any:
    """Value comparison (`eq`, `lt`...): None when a side is empty, an error for several items."""
    la, ra = atomize(a), atomize(b)
    if not la or not ra:
        return None
    if len(la) > 1 or len(ra) > 1:
        raise XPathError("XPTY0004: value comparison of several items")
    x = str(la[0]) if isinstance(la[0], Untyped) else la[0]
    y = str(ra[0]) if isinstance(ra[0], Untyped) else ra[0]
    x, y = _promote(x, y)
    return _OPS[_VALUE_OPS[op]](x, y)


def pv(v: Any) -> bool:
    """A predicate's truth from one value: a number would select by position, which only the
    steps written with a literal position do here (as the `xpath` closures refuse it too)."""
    if _numeric(v):
        raise XPathError("numeric predicate computed at run time (not supported natively)")
    return ebv1(v)


def pq(seq: list) -> bool:
    if len(seq) == 1 and _numeric(seq[0]):
        raise XPathError("numeric predicate computed at run time (not supported natively)")
    return ebv(seq)


def uu(op: str, a: Any, b: Any) -> bool:
    """Untyped values (of elements or attributes, as strings) compared: as strings."""
    f = _OPS[op]
    return any(f(x, y) for x in a for y in b)


def svs(nodes: Any) -> list[str]:
    return [sv(x) for x in nodes]


def qv(op: str, values: list, v: Any) -> bool:
    """Atomic values (a path ending in a cast) compared with one value or None."""
    return v is not None and any(cv(op, a, v) for a in values)


def qq(op: str, a: list, b: list) -> bool:
    return any(cv(op, x, y) for x in a for y in b)


def gc(op: str, a: list, b: list) -> bool:
    return general_compare(op, a, b)


def eb(seq: list) -> bool:
    return ebv(seq)


def cl(allowed: frozenset, items: Any) -> bool:
    return any(string_value(i) in allowed for i in items)
