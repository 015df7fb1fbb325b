"""Differential harness: the native engine against Saxon (the reference), document by document.

Per document and rule set, both engines run and the sets of (rule id, flag, location) they fire
are compared; a dynamic error (Saxon stops the transformation) must be an error on both sides.
The corpus is generated (`edi.gen.differential_corpus`: UBL and CII invoices with every error kind, credit notes
derived from them) plus targeted mutations of each (one element removed, emptied, given a bad
code, or an amount shifted by a cent or given a third decimal) and insertions read off the rules
(each path a rule forbids, added), so that each rule is seen both firing and passing;
`Report.unexercised` lists the rule ids that were not.
"""

from __future__ import annotations

import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from lxml import etree

from edi.validate import schematron
from edi.validate.native import engine_for
from edi.validate.native.xpath import XPathError

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
_SYNTAX = {"Invoice": "UBL", "CreditNote": "UBL", "CrossIndustryInvoice": "CII"}


@dataclass
class Disagreement:
    document: str
    ruleset: str
    only_saxon: list[tuple[str, str, str]]
    only_native: list[tuple[str, str, str]]

    def __str__(self) -> str:
        lines = [f"{self.document} [{self.ruleset}]"]
        lines += [f"  Saxon seulement : {i} ({f or 'sans flag'}) {loc}" for i, f, loc in self.only_saxon]
        lines += [f"  natif seulement : {i} ({f or 'sans flag'}) {loc}" for i, f, loc in self.only_native]
        return "\n".join(lines)


@dataclass
class Report:
    documents: int = 0
    agreed: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    seen: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # ruleset -> id -> [fired, passed]
    fired: Counter = field(default_factory=Counter)

    @property
    def agreement(self) -> float:
        return self.agreed / self.documents if self.documents else 1.0

    def unexercised(self, ruleset: str) -> list[str]:
        """Rule ids of the rule set not seen both firing and passing."""
        counts = self.seen.get(ruleset, {})
        ids = {c.id for c in engine_for(ruleset).ruleset.checks() if c.kind == "assert" or c.flag}
        return sorted(i for i in ids if min(counts.get(i, [0, 0])) == 0)


def syntax_of(raw: bytes) -> str | None:
    try:
        root = etree.fromstring(raw, _PARSER)
    except etree.XMLSyntaxError:
        return None
    return _SYNTAX.get(etree.QName(root).localname)


def saxon_hits(ruleset: str, raw: bytes) -> Counter | str:
    try:
        report = etree.fromstring(schematron.for_ruleset(ruleset).svrl(raw), _PARSER)
    except schematron.SchematronError as exc:
        return f"erreur : {exc}"
    return Counter((h.get("id") or "", (h.get("flag") or ""), h.get("location") or "")
                   for h in schematron.SVRL_HITS(report))


def native_hits(ruleset: str, raw: bytes, seen: dict | None = None) -> Counter | str:
    try:
        root = etree.fromstring(raw, _PARSER)
        hits = engine_for(ruleset).run(root, seen)
    except (XPathError, etree.XMLSyntaxError) as exc:
        return f"erreur : {exc}"
    return Counter((h.id, h.flag, h.location) for h in hits if h.kind == "assert" or h.flag)


def compare(documents: Iterable[tuple[str, bytes]], french: bool = False, report: Report | None = None) -> Report:
    """Run both engines on each (name, bytes) document of a known syntax."""
    report = report or Report()
    for name, raw in documents:
        syntax = syntax_of(raw)
        if syntax is None:
            continue
        report.documents += 1
        same = True
        for rules in schematron.for_syntax(syntax, french):
            ref = saxon_hits(rules.ruleset, raw)
            seen = report.seen.setdefault(rules.ruleset, {})
            got = native_hits(rules.ruleset, raw, seen)
            if isinstance(ref, Counter):
                report.fired.update(i for i, _, _ in ref)
            if isinstance(ref, str) or isinstance(got, str):
                if isinstance(ref, str) != isinstance(got, str):
                    same = False
                    report.disagreements.append(Disagreement(
                        name, rules.ruleset,
                        [(ref, "", "")] if isinstance(ref, str) else sorted(ref),
                        [(got, "", "")] if isinstance(got, str) else sorted(got)))
                continue
            if ref != got:
                same = False
                report.disagreements.append(Disagreement(
                    name, rules.ruleset, sorted((ref - got).elements()), sorted((got - ref).elements())))
        report.agreed += same
    return report


# --- corpus -----------------------------------------------------------------------------------

def documents_in(paths: Iterable[Path]) -> Iterator[tuple[str, bytes]]:
    """Invoices from files, folders (recursively) and flows (`.tar.gz`)."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            yield from documents_in(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(path) as tar:
                for m in tar.getmembers():
                    if m.isreg():
                        yield f"{path.name}:{m.name}", tar.extractfile(m).read()
        else:
            yield str(path), path.read_bytes()


def credit_note(raw: bytes) -> bytes:
    """A UBL CreditNote made from a UBL Invoice (the rules cover both)."""
    text = raw.decode("utf-8")
    for a, b in (("urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
                  "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"),
                 ("<Invoice", "<CreditNote"), ("</Invoice>", "</CreditNote>"),
                 ("InvoiceTypeCode>380<", "CreditNoteTypeCode>381<"), ("InvoiceTypeCode", "CreditNoteTypeCode"),
                 ("InvoiceLine>", "CreditNoteLine>"), ("InvoicedQuantity", "CreditedQuantity")):
        text = text.replace(a, b)
    root = etree.fromstring(text.encode(), _PARSER)
    for due in root.findall("{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}DueDate"):
        root.remove(due)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def mutations(raw: bytes, limit: int | None = None) -> Iterator[tuple[str, bytes]]:
    """One change each: an element removed, emptied, given a bad code, an amount moved by a cent
    or given a third decimal, an attribute removed or given a bad value."""
    root = etree.fromstring(raw, _PARSER)
    elements = [e for e in root.iter() if isinstance(e.tag, str)]
    count = 0
    for index, elem in enumerate(elements):
        text = (elem.text or "").strip()
        changes: list[tuple[str, str]] = []
        if elem is not root:
            changes.append(("remove", ""))
        if len(elem) == 0:
            changes += [("empty", ""), ("code", "ZZ")]
            try:
                value = Decimal(text)
            except InvalidOperation:
                value = None
            if value is not None and text:
                changes += [("cent", str(value + Decimal("0.01"))), ("third", str(value + Decimal("0.005"))),
                            ("negative", str(-value - 1))]
        for attr in elem.attrib:
            changes += [(f"attr-remove:{attr}", ""), (f"attr-code:{attr}", "ZZ")]
        for kind, value in changes:
            copy = etree.fromstring(raw, _PARSER)
            target = [e for e in copy.iter() if isinstance(e.tag, str)][index]
            if kind == "remove":
                target.getparent().remove(target)
            elif kind.startswith("attr-remove:"):
                del target.attrib[kind.split(":", 1)[1]]
            elif kind.startswith("attr-code:"):
                target.set(kind.split(":", 1)[1], value)
            else:
                target.text = value
            yield f"{etree.QName(elem).localname}#{index}:{kind}", etree.tostring(copy, xml_declaration=True,
                                                                                 encoding="UTF-8")
            count += 1
            if limit is not None and count >= limit:
                return


def insertions(raw: bytes, ruleset: str) -> Iterator[tuple[str, bytes]]:
    """Targeted mutations read off the compiled rules: for each test that forbids a path under
    its context (`not(cac:A/cbc:B)`, most UBL-CR rules), a copy of the document where the first
    node of that context gets the path (element chain, attribute last) — so the rule fires."""
    from edi.validate.native.engine import select_expression
    from edi.validate.native.xpath import Compiler

    engine = engine_for(ruleset)
    c = Compiler(engine.ruleset.namespaces, {})
    for pattern, rules in zip(engine.ruleset.patterns, engine.patterns):
        for rule, built in zip(pattern.rules, rules):
            forbidding = [(i, alts[0]) for i, wanted, descendant, alts in built.present if not wanted]
            if not forbidding:
                continue
            where = c.translate(select_expression(rule.context), {})
            if where is None:
                continue
            for i, steps in forbidding:
                copy = etree.fromstring(raw, _PARSER)
                targets = copy.xpath(where, namespaces=c.namespaces)
                if not targets or not isinstance(targets[0], etree._Element):
                    break
                node = targets[0]
                for step in steps:
                    if step.startswith("@"):
                        node.set(step[1:], "1")
                    else:  # reuse the element when there is one: the schema's cardinalities hold
                        existing = next(node.iterchildren(step), None)
                        node = existing if existing is not None else etree.SubElement(node, step)
                        if existing is None:
                            node.text = "1"
                yield f"{built.checks[i].check.id}:insert", etree.tostring(copy, xml_declaration=True, encoding="UTF-8")


def verify_engine(paths: Iterable[Path], french: bool = False) -> Report:
    """`edi rules verify-engine PATH...`: both engines on an operator's own invoices or flows
    (files, folders, `.tar.gz` flows); documents that are neither UBL nor CII are skipped."""
    return compare(documents_in(paths), french=french)


def render(report: Report) -> str:
    """The comparison as the operator reads it (French, one block per disagreement)."""
    lines = [f"{report.documents} document(s) comparé(s), {report.agreed} identique(s) "
             f"({report.agreement:.1%} d'accord entre Saxon et le moteur natif)."]
    for d in report.disagreements:
        lines.append(str(d))
    return "\n".join(lines)
