"""Differential harness: the native engine against Saxon (the reference), document by document.

Per document and rule set, both engines run and the sets of (rule id, flag, location) they fire
are compared; a dynamic error (Saxon stops the transformation) must be an error on both sides.
The corpus is generated (`edi.gen.differential_corpus`: UBL and CII invoices with every error kind, credit notes
derived from them) plus targeted mutations of each (one element removed, emptied, given a bad
code, or an amount shifted by a cent or given a third decimal) and insertions read off the rules
(each path a rule forbids, added) and targeted documents (`targeted`: each VAT category, the
UBL optional groups; `duplications`: every element doubled; `corpus.documents`: full UBL and
CII invoices with every optional group, their mutations and variants), so that each rule is
seen both firing and passing;
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

    rules = engine_for(ruleset).ruleset
    c = Compiler(rules.namespaces, {})
    for pattern in rules.patterns:
        for rule in pattern.rules:
            names = tuple(n for n, _ in rule.variables)
            forbidding = []
            for check in rule.checks:
                found = c.presence(check.test, {}, names) if check.kind == "assert" or check.flag else None
                if found is not None and not found[0]:
                    forbidding.append((check, found[2][0]))
            if not forbidding:
                continue
            where = c.translate(select_expression(rule.context), {})
            if where is None:
                continue
            for check, steps in forbidding:
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
                yield f"{check.id}:insert", etree.tostring(copy, xml_declaration=True, encoding="UTF-8")


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


# --- targeted documents: what the generator never writes -------------------------------------

_UBL_CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
_UBL_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
_RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
_UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
VAT_CATEGORIES = ("AE", "E", "G", "K", "L", "M", "O", "Z", "B")
_ZERO_RATED = {"AE", "E", "G", "K", "O", "Z"}  # no VAT charged: amounts 0, an exemption reason for all but Z


def _sub(parent: etree._Element, tag: str, text: str = "", before: str | None = None, **attrib: str) -> etree._Element:
    """A child element, placed before the first `before` child when there is one."""
    el = etree.Element(tag, attrib)
    el.text = text or None
    _place(parent, [el], before)
    return el


def _place(parent: etree._Element, elements: list[etree._Element], before: str | None) -> None:
    """Elements added to `parent`, before its first `before` child (a Clark name) if any, else last."""
    anchor = next(parent.iterchildren(before), None) if before else None
    for el in elements:
        if anchor is not None:
            anchor.addprevious(el)
        else:
            parent.append(el)


def _serialise(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _set_category(tax: etree._Element, code_tag: str, rate_tag: str, code: str, zero: bool) -> None:
    """The category code set; with `zero`, the rate 0 (none at all for O, "not subject")."""
    tax.find(code_tag).text = code
    rate = tax.find(rate_tag)
    if zero and rate is not None:
        if code == "O":
            tax.remove(rate)
        else:
            rate.text = "0"


def _vat_category(raw: bytes, code: str, consistent: bool, lines_only: bool = False,
                  seller_vat: bool = True) -> bytes:
    """Every VAT category of the document (or of its lines only) set to `code`; when
    `consistent`, the amounts and the exemption reasons made as the category wants them (zero
    VAT, totals without VAT); without `seller_vat`, the seller's VAT identifiers and the tax
    representative removed. For CII, document allowances and charges are in the category too."""
    root = etree.fromstring(raw, _PARSER)
    if not seller_vat:
        for gone in [*root.iterfind(f".//{{{_UBL_CAC}}}AccountingSupplierParty//{{{_UBL_CAC}}}PartyTaxScheme"),
                     *root.iterfind(f".//{{{_UBL_CAC}}}TaxRepresentativeParty"),
                     *root.iterfind(f".//{{{_RAM}}}SellerTradeParty/{{{_RAM}}}SpecifiedTaxRegistration"),
                     *root.iterfind(f".//{{{_RAM}}}SellerTaxRepresentativeTradeParty")]:
            gone.getparent().remove(gone)
    zero = consistent and code in _ZERO_RATED
    reason = consistent and code not in ("Z", "S", "L", "M", "B")
    if etree.QName(root).localname == "CrossIndustryInvoice":
        for tax in root.iter(f"{{{_RAM}}}ApplicableTradeTax", f"{{{_RAM}}}CategoryTradeTax"):
            if lines_only and tax.getparent().tag != f"{{{_RAM}}}SpecifiedLineTradeSettlement":
                continue
            _set_category(tax, f"{{{_RAM}}}CategoryCode", f"{{{_RAM}}}RateApplicablePercent", code, zero)
            if zero and tax.find(f"{{{_RAM}}}CalculatedAmount") is not None:
                tax.find(f"{{{_RAM}}}CalculatedAmount").text = "0.00"
            if reason and tax.find(f"{{{_RAM}}}BasisAmount") is not None:
                _sub(tax, f"{{{_RAM}}}ExemptionReason", f"Exonération {code}", before=f"{{{_RAM}}}BasisAmount")
                _sub(tax, f"{{{_RAM}}}ExemptionReasonCode", f"VATEX-EU-{code}", before=f"{{{_RAM}}}CategoryCode")
        totals = root.find(f".//{{{_RAM}}}SpecifiedTradeSettlementHeaderMonetarySummation")
        if zero and totals is not None:
            basis = totals.findtext(f"{{{_RAM}}}TaxBasisTotalAmount")
            for name, value in (("TaxTotalAmount", "0.00"), ("GrandTotalAmount", basis), ("DuePayableAmount", basis)):
                el = totals.find(f"{{{_RAM}}}{name}")
                if el is not None:
                    el.text = value
        return _serialise(root)
    tags = [f"{{{_UBL_CAC}}}ClassifiedTaxCategory"] + ([] if lines_only else [f"{{{_UBL_CAC}}}TaxCategory"])
    for cat in list(root.iter(*tags)):
        _set_category(cat, f"{{{_UBL_CBC}}}ID", f"{{{_UBL_CBC}}}Percent", code, zero)
        if reason and cat.getparent().tag == f"{{{_UBL_CAC}}}TaxSubtotal":
            _sub(cat, f"{{{_UBL_CBC}}}TaxExemptionReasonCode", f"VATEX-EU-{code}", before=f"{{{_UBL_CAC}}}TaxScheme")
            _sub(cat, f"{{{_UBL_CBC}}}TaxExemptionReason", f"Exonération {code}", before=f"{{{_UBL_CAC}}}TaxScheme")
    if zero:
        for total in root.iterfind(f"{{{_UBL_CAC}}}TaxTotal"):
            for amount in total.iter(f"{{{_UBL_CBC}}}TaxAmount"):
                amount.text = "0.00"
        totals = root.find(f"{{{_UBL_CAC}}}LegalMonetaryTotal")
        if totals is not None:
            basis = totals.findtext(f"{{{_UBL_CBC}}}TaxExclusiveAmount")
            for name in ("TaxInclusiveAmount", "PayableAmount"):
                el = totals.find(f"{{{_UBL_CBC}}}{name}")
                if el is not None:
                    el.text = basis
    return _serialise(root)


def _optional_groups(raw: bytes) -> bytes:
    """The UBL invoice with the optional groups the generator leaves out: invoicing period
    (document and lines), payee, tax representative, a document allowance and charge, a line
    allowance, an item price discount — with their mandatory parts, so each group's rules pass."""
    root = etree.fromstring(raw, _PARSER)
    cac, cbc = f"{{{_UBL_CAC}}}", f"{{{_UBL_CBC}}}"
    currency = root.findtext(f"{cbc}DocumentCurrencyCode") or "EUR"
    period = _sub(root, f"{cac}InvoicePeriod", before=f"{cac}AdditionalDocumentReference")
    _sub(period, f"{cbc}StartDate", "2026-01-01")
    _sub(period, f"{cbc}EndDate", "2026-01-31")
    payee = _sub(root, f"{cac}PayeeParty", before=f"{cac}Delivery")
    _sub(_sub(payee, f"{cac}PartyIdentification"), f"{cbc}ID", "PAYEE-1")
    _sub(_sub(payee, f"{cac}PartyName"), f"{cbc}Name", "Affactureur SA")
    _sub(_sub(payee, f"{cac}PartyLegalEntity"), f"{cbc}CompanyID", "123456789", schemeID="0002")
    rep = _sub(root, f"{cac}TaxRepresentativeParty", before=f"{cac}Delivery")
    _sub(_sub(rep, f"{cac}PartyName"), f"{cbc}Name", "Représentant fiscal SARL")
    address = _sub(rep, f"{cac}PostalAddress")
    _sub(address, f"{cbc}StreetName", "1 rue de la Paix")
    _sub(address, f"{cbc}CityName", "Paris")
    _sub(address, f"{cbc}PostalZone", "75002")
    _sub(_sub(address, f"{cac}Country"), f"{cbc}IdentificationCode", "FR")
    scheme = _sub(rep, f"{cac}PartyTaxScheme")
    _sub(scheme, f"{cbc}CompanyID", "FR40303265045")
    _sub(_sub(scheme, f"{cac}TaxScheme"), f"{cbc}ID", "VAT")
    first_line = next(root.iterchildren(f"{cac}InvoiceLine", f"{cac}CreditNoteLine"), None)
    if first_line is not None:
        line_period = _sub(first_line, f"{cac}InvoicePeriod", before=f"{cac}Item")
        _sub(line_period, f"{cbc}StartDate", "2026-01-01")
        _sub(line_period, f"{cbc}EndDate", "2026-01-31")
        line_allowance = _sub(first_line, f"{cac}AllowanceCharge", before=f"{cac}Item")
        _sub(line_allowance, f"{cbc}ChargeIndicator", "false")
        _sub(line_allowance, f"{cbc}AllowanceChargeReasonCode", "95")
        _sub(line_allowance, f"{cbc}AllowanceChargeReason", "Remise")
        _sub(line_allowance, f"{cbc}MultiplierFactorNumeric", "0")
        _sub(line_allowance, f"{cbc}Amount", "0.00", currencyID=currency)
        _sub(line_allowance, f"{cbc}BaseAmount", "0.00", currencyID=currency)
        price = first_line.find(f"{cac}Price")
        if price is not None:
            _sub(price, f"{cbc}BaseQuantity", "1", unitCode="C62")
            discount = _sub(price, f"{cac}AllowanceCharge")
            _sub(discount, f"{cbc}ChargeIndicator", "false")
            _sub(discount, f"{cbc}Amount", "0.00", currencyID=currency)
            _sub(discount, f"{cbc}BaseAmount", price.findtext(f"{cbc}PriceAmount") or "0", currencyID=currency)
    category = root.find(f".//{cac}TaxSubtotal/{cac}TaxCategory")
    for charge in ("false", "true"):  # amounts 0: the totals stay right
        ac = _sub(root, f"{cac}AllowanceCharge", before=f"{cac}TaxTotal")
        _sub(ac, f"{cbc}ChargeIndicator", charge)
        _sub(ac, f"{cbc}AllowanceChargeReasonCode", "95" if charge == "false" else "FC")
        _sub(ac, f"{cbc}AllowanceChargeReason", "Remise" if charge == "false" else "Fret")
        _sub(ac, f"{cbc}MultiplierFactorNumeric", "0")
        _sub(ac, f"{cbc}Amount", "0.00", currencyID=currency)
        _sub(ac, f"{cbc}BaseAmount", "0.00", currencyID=currency)
        if category is not None:
            copy = etree.fromstring(etree.tostring(category))
            for child in list(copy):
                if child.tag not in (f"{cbc}ID", f"{cbc}Percent", f"{cac}TaxScheme"):
                    copy.remove(child)
            ac.append(copy)
    totals = root.find(f"{cac}LegalMonetaryTotal")
    if totals is not None:
        _sub(totals, f"{cbc}AllowanceTotalAmount", "0.00", before=f"{cbc}PayableAmount", currencyID=currency)
        _sub(totals, f"{cbc}ChargeTotalAmount", "0.00", before=f"{cbc}PayableAmount", currencyID=currency)
        _sub(totals, f"{cbc}PrepaidAmount", "0.00", before=f"{cbc}PayableAmount", currencyID=currency)
        _sub(totals, f"{cbc}PayableRoundingAmount", "0.00", before=f"{cbc}PayableAmount", currencyID=currency)
    return _serialise(root)


def duplications(raw: bytes) -> Iterator[tuple[str, bytes]]:
    """One element doubled each (its copy right after it): the cardinality rules (UBL-SR,
    CII-SR, most `count(x) <= 1`) fire on these."""
    count = sum(1 for e in etree.fromstring(raw, _PARSER).iter() if isinstance(e.tag, str))
    for index in range(1, count):
        copy = etree.fromstring(raw, _PARSER)
        target = [e for e in copy.iter() if isinstance(e.tag, str)][index]
        clone = etree.fromstring(etree.tostring(target))
        clone.tail = target.tail
        target.addnext(clone)
        yield f"{etree.QName(target).localname}#{index}:double", _serialise(copy)


def targeted(raw: bytes) -> Iterator[tuple[str, bytes]]:
    """Documents for the rules generated invoices leave unexercised: each VAT category as
    written by the generator's amounts (the category's rules fire) and as the category wants
    it (they pass); for UBL, the optional groups added, alone, with every one-change mutation
    and with each element doubled."""
    ubl = syntax_of(raw) == "UBL"
    rich = _optional_groups(raw) if ubl else None
    for code in VAT_CATEGORIES:
        yield f"vat-{code}", _vat_category(raw, code, consistent=False)
        yield f"vat-{code}:consistent", _vat_category(raw, code, consistent=True)
        yield f"vat-{code}:lines", _vat_category(raw, code, consistent=True, lines_only=True)
        yield f"vat-{code}:no-seller-vat", _vat_category(raw, code, consistent=True, seller_vat=False)
        if rich is not None:  # document allowances and charges in the category too
            yield f"optional-groups:vat-{code}", _vat_category(rich, code, consistent=False)
            yield f"optional-groups:vat-{code}:consistent", _vat_category(rich, code, consistent=True)
    if rich is not None:
        yield "optional-groups", rich
        yield from ((f"optional-groups:{name}", doc) for name, doc in [*mutations(rich), *duplications(rich)])
