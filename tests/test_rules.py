"""Platform rules (edi.validate.rules): every rule both ways, then what ties them together.

Invoices come from tests/samples/ (valid against their XSD and the EN 16931 schematron),
read with edi.invoice.extract, and are then broken one field at a time: with
dataclasses.replace for most cases, by editing the XML for the ones where the reported path
matters. The rule under test is run alone (`codes=`), and the good variant must also pass
every rule, so "good" really means an invoice the platform accepts.
"""

from __future__ import annotations

import copy
import dataclasses
import doctest
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree
from stdnum import luhn

from edi.invoice import extract
from edi.validate import rules, severity
from edi.finding import FATAL, WARNING, Finding
from edi.validate.rules import RULES, RuleContext, check

SAMPLES = Path(__file__).parent / "samples"
TODAY = date(2025, 6, 1)
D = Decimal


def _load(name: str):
    return etree.parse(str(SAMPLES / name)).getroot()


SAMPLE = {
    "cpp": extract(_load("cpp_unitaire.xml")),
    "ubl": extract(_load("ubl_invoice.xml")),
    "ubl_cn": extract(_load("ubl_creditnote.xml")),
    "cii": extract(_load("cii_invoice.xml")),
}


def ctx(**kw) -> RuleContext:
    return RuleContext(today=TODAY, **kw)


def variant(sample: str, **changes):
    return dataclasses.replace(SAMPLE[sample], **changes)


def _vat(data, i, **changes):
    """The VAT breakdown with line i (0-based) changed."""
    vat = list(data.vat)
    vat[i] = dataclasses.replace(vat[i], **changes)
    return tuple(vat)


def _line(data, i, **changes):
    lines = list(data.lines)
    lines[i] = dataclasses.replace(lines[i], **changes)
    return tuple(lines)


CPP, UBL, CN = SAMPLE["cpp"], SAMPLE["ubl"], SAMPLE["ubl_cn"]

# (code, good invoice, bad invoice, expected location, expected value) — one row per case.
CASES = [
    ("PLT-01", CPP, variant("cpp", supplier_id=""), "Fournisseur/Identifiant", ""),
    ("PLT-01", UBL, variant("ubl", supplier_id="", supplier_id_type=""),
     "cac:AccountingSupplierParty/cac:Party/cac:PartyIdentification/cbc:ID", ""),
    ("PLT-02", variant("cpp", supplier_id_type="3", supplier_id="CHE-123.456.789"),
     variant("cpp", supplier_id_type="9"), "Fournisseur/TypeIdentifiant", "9"),
    ("PLT-02", UBL, variant("ubl", supplier_id="812345676", supplier_id_type=""),  # a SIREN
     "cac:AccountingSupplierParty/cac:Party/cac:PartyIdentification/cbc:ID", "812345676"),
    ("PLT-03", CPP, variant("cpp", supplier_id="79865432300013"),
     "Fournisseur/Identifiant", "79865432300013"),
    ("PLT-03", CPP, variant("cpp", supplier_id="798 654 323 00012"),  # 14 digits, no spaces
     "Fournisseur/Identifiant", "798 654 323 00012"),
    ("PLT-04", variant("cpp", supplier_id_type="2", supplier_id="DE136695976"),
     variant("cpp", supplier_id_type="2", supplier_id="DE136695975"),
     "Fournisseur/Identifiant", "DE136695975"),
    ("PLT-04", variant("cpp", supplier_id_type="2", supplier_id="EL094259216"),
     variant("cpp", supplier_id_type="2", supplier_id="FR40303265045"),  # valid, but French
     "Fournisseur/Identifiant", "FR40303265045"),
    ("PLT-05", variant("cpp", supplier_id_type="4", supplier_id="1234567.001"),
     variant("cpp", supplier_id_type="4", supplier_id="12345"), "Fournisseur/Identifiant", "12345"),
    ("PLT-06", variant("cpp", supplier_id_type="5", supplier_id="A12345"),
     variant("cpp", supplier_id_type="5", supplier_id="AB1234"), "Fournisseur/Identifiant",
     "AB1234"),
    ("PLT-06", variant("cpp", supplier_id_type="5", supplier_id="A12345001"),
     variant("cpp", supplier_id_type="5", supplier_id="A1234500"), "Fournisseur/Identifiant",
     "A1234500"),
    ("PLT-10", CPP, variant("cpp", number=""), "DonneesFacture/Id", ""),
    ("PLT-11", variant("cpp", number="F" * 20), variant("cpp", number="F" * 21),
     "DonneesFacture/Id", "F" * 21),
    ("PLT-12", variant("ubl", number="FA-2025/00042+_x"), variant("ubl", number="FA 2025.42"),
     "cbc:ID", "FA 2025.42"),
    ("PLT-12", SAMPLE["cii"], variant("cii", number="PD-25-0318é"),
     "rsm:ExchangedDocument/ram:ID", "PD-25-0318é"),
    ("PLT-13", CPP, variant("cpp", number="NPA 2025.0311"), "DonneesFacture/Id", "NPA 2025.0311"),
    ("PLT-30", variant("cpp", total_ht=D("1230.01"), total_ttc=D("1462.96")),  # one cent off: ok
     variant("cpp", total_ht=D("1230.02"), total_ttc=D("1462.97")),
     "DonneesFacture/Montants/MontantHT", "1230.02"),
    ("PLT-31", variant("cpp", total_ttc=D("1462.96"), net_to_pay=D("1462.96")),
     variant("cpp", total_ttc=D("1462.97"), net_to_pay=D("1462.97")),
     "DonneesFacture/TVAS/TVA/MontantTVA", "232.95"),
    ("PLT-32", variant("cpp", net_to_pay=D("1000.00")), variant("cpp", net_to_pay=D("1462.96")),
     "DonneesFacture/Montants/MontantNetAPayer", "1462.96"),
    ("PLT-33", variant("cpp", vat=_vat(CPP, 0, rate=D("20.000"))),  # same rate, more zeros
     variant("cpp", vat=_vat(CPP, 0, rate=D("19"), amount=D("216.60"))),
     "DonneesFacture/TVAS/TVA[1]/Taux", "19"),
    ("PLT-33", CPP, variant("cpp", lines=_line(CPP, 1, vat_rate=D("6"))),
     "DonneesFacture/Lignes/Ligne[2]/TauxTVA", "6"),
    ("PLT-34", variant("cpp", vat=_vat(CPP, 1, amount=D("4.96")), total_ttc=D("1462.96"),
                       net_to_pay=D("1462.96")),
     variant("cpp", vat=_vat(CPP, 1, amount=D("4.97")), total_ttc=D("1462.97"),
             net_to_pay=D("1462.97")),
     "DonneesFacture/TVAS/TVA[2]/MontantTVA", "4.97"),
    ("PLT-35", variant("cpp", total_ht=D("1230.000")), variant("cpp", total_ht=D("1230.001")),
     "DonneesFacture/Montants/MontantHT", "1230.001"),
    ("PLT-35", variant("cpp", lines=_line(CPP, 0, unit_price=D("28.500000"))),
     variant("cpp", lines=_line(CPP, 0, unit_price=D("28.4999999"))),
     "DonneesFacture/Lignes/Ligne[1]/PrixUnitaire", "28.4999999"),
    ("PLT-35", CPP, variant("cpp", net_to_pay=D("123456789012345678.91")),  # 20 digits
     "DonneesFacture/Montants/MontantNetAPayer", "123456789012345678.91"),
    ("PLT-36", CPP, variant("cpp", lines=()), "DonneesFacture/Lignes/Ligne", ""),
    ("PLT-40", variant("cpp", payment_means="20", iban=""),  # cheque: no IBAN needed
     variant("cpp", iban="FR7630006000011234567890188"),
     "Fournisseur/ReferenceBancaire/Compte", "FR7630006000011234567890188"),
    ("PLT-40", variant("cpp", payment_means="042", iban="FR76 3000 6000 0112 3456 7890 189"),
     variant("cpp", payment_means="042", iban=""), "Fournisseur/ReferenceBancaire/Compte", ""),
    ("PLT-40", variant("ubl", payment_means="58"), variant("ubl", payment_means="58", iban=""),
     "cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID", ""),
    ("PLT-41", variant("cpp", doc_type="381", payment_means="01", iban="",
                       original_invoice="NPA-2025-0300"),
     variant("cpp", doc_type="381", payment_means="30", original_invoice="NPA-2025-0300"),
     "DonneesFacture/ModePaiement/Code", "30"),
    ("PLT-42", CN, variant("ubl_cn", payment_means="30", iban="FR7630006000011234567890189"),
     "cac:PaymentMeans/cbc:PaymentMeansCode", "30"),
    ("PLT-43", CN, variant("ubl_cn", original_invoice=""),
     "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID", ""),
    ("PLT-50", variant("cpp", cadre="A25"), variant("cpp", cadre="A11"),
     "DonneesFacture/Cadre", "A11"),
    ("PLT-50", variant("cpp", cadre=""), variant("cpp", cadre="B1"), "DonneesFacture/Cadre", "B1"),
    ("PLT-50", variant("ubl", cadre="B1"), variant("ubl", cadre="A26"), "cbc:ProfileID", "A26"),
    ("PLT-50", variant("ubl", cadre="urn:cen.eu:en16931:2017"), variant("ubl", cadre="A0"),
     "cbc:ProfileID", "A0"),
    ("PLT-51", variant("cpp", issue_date="2024-02-29"), variant("cpp", issue_date="2025-02-29"),
     "DonneesFacture/DateEmissionFacture", "2025-02-29"),
    ("PLT-51", variant("ubl", issue_date="2025-03-10+01:00"),
     variant("ubl", issue_date="10/03/2025"), "cbc:IssueDate", "10/03/2025"),
    ("PLT-51", UBL, variant("ubl", due_date="2025-04-31"), "cbc:DueDate", "2025-04-31"),
    ("PLT-52", variant("ubl", issue_date=TODAY.isoformat(), due_date=""),
     variant("ubl", issue_date="2025-06-02", due_date=""), "cbc:IssueDate", "2025-06-02"),
    ("PLT-53", variant("ubl", due_date="2025-03-10"), variant("ubl", due_date="2025-03-09"),
     "cbc:DueDate", "2025-03-09"),
    ("PLT-53", variant("ubl", due_date="2025-03-09", cadre="S2"),  # already paid: exempt
     variant("ubl", due_date="2025-03-09", cadre="B1"), "cbc:DueDate", "2025-03-09"),
    ("PLT-53", variant("cii", due_date="2025-03-01", doc_type="386"),  # deposit invoice: exempt
     variant("cii", due_date="2025-03-01"),
     "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement/"
     "ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime/udt:DateTimeString", "2025-03-01"),
]

# the duplicate rules need their lookups; tested on their own below
NEEDS_LOOKUP = {"PLT-20", "PLT-21"}


def test_every_rule_has_cases():
    assert {c[0] for c in CASES} | NEEDS_LOOKUP == set(RULES)


@pytest.mark.parametrize("code, good, bad, location, value", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rule_both_ways(code, good, bad, location, value):
    rule = RULES[code]
    assert check(good, ctx(), codes=[code]) == []
    assert check(good, ctx()) == [], "the good variant must pass every rule"
    found = check(bad, ctx(), codes=[code])
    assert len(found) == 1, found
    (f,) = found
    assert (f.code, f.reason, f.severity) == (code, rule.reason, rule.severity)
    assert f.message.startswith(rule.message)
    assert (f.location, f.value) == (location, value)
    assert f.invoice_number == bad.number


# --------------------------------------------------------------------------- identifiers


def test_la_poste_siret_exception():
    """La Poste establishments fail Luhn; their digit sum must be a multiple of 5 (§3.1)."""
    establishment, wrong = "35600000000010", "35600000000011"
    assert not luhn.is_valid(establishment)  # the exception is what makes it pass
    assert sum(map(int, establishment)) % 5 == 0 and sum(map(int, wrong)) % 5 != 0
    assert check(variant("cpp", supplier_id=establishment), ctx(), codes=["PLT-03"]) == []
    assert check(variant("cpp", supplier_id="35600000000048"), ctx(), codes=["PLT-03"]) == []
    assert [f.value for f in check(variant("cpp", supplier_id=wrong), ctx(),
                                   codes=["PLT-03"])] == [wrong]


def test_siret_rule_only_for_type_1():
    not_a_siret = variant("cpp", supplier_id_type="3", supplier_id="79865432300013")
    assert check(not_a_siret, ctx()) == []


def test_number_charset_detail_names_the_characters():
    (f,) = check(variant("ubl", number="FA 2025.42"), ctx(), codes=["PLT-12"])
    assert "espace" in f.message and "« . »" in f.message


# --------------------------------------------------------------------------- duplicates


def test_already_deposited_asks_supplier_number_and_year():
    asked = []

    def deposited(supplier, number, year):
        asked.append((supplier, number, year))
        return (supplier, number, year) == ("79865432300012", "NPA-2025-0311", 2025)

    found = check(CPP, ctx(already_deposited=deposited))
    assert asked == [("79865432300012", "NPA-2025-0311", 2025)]
    assert [(f.code, f.reason, f.location) for f in found] == [
        ("PLT-20", "DOUBLON", "DonneesFacture/Id")]
    # same number, another year: not a duplicate
    assert check(variant("cpp", issue_date="2024-12-31"), ctx(already_deposited=deposited)) == []


def test_twice_in_the_same_flow():
    seen: set = set()
    flow = ctx(seen_in_flow=seen, already_deposited=lambda *key: False)
    assert check(CPP, flow) == []
    assert seen == {("79865432300012", "NPA-2025-0311", 2025)}
    again = check(CPP, flow)
    assert [(f.code, f.reason) for f in again] == [("PLT-21", "DOUBLON")]
    # another supplier with the same number is not a duplicate
    assert check(variant("cpp", supplier_id="81234567600017"), flow) == []


def test_invoice_rejected_at_integration_is_not_remembered():
    seen: set = set()
    flow = ctx(seen_in_flow=seen)
    rejected = variant("cpp", total_ht=D("1.00"))  # amounts wrong: rejected
    assert any(f.fatal for f in check(rejected, flow))
    assert seen == set()
    assert check(CPP, flow) == []  # the corrected invoice is not a duplicate of it


def test_duplicate_rules_need_their_lookups():
    """Without lookups (e.g. in a worker process) the duplicate rules do not run."""
    assert check(CPP, ctx()) == []
    assert check(CPP, ctx(), codes=rules.DUPLICATE_CODES) == []


# --------------------------------------------------------------------------- from real XML


def test_cpp_xml_edit_points_at_the_repeated_element():
    root = _load("cpp_unitaire.xml")
    root.findall("DonneesFacture/TVAS/TVA")[1].find("MontantTVA").text = "5.95"
    root.find("DonneesFacture/Montants/MontantTTC").text = "1463.95"
    root.find("DonneesFacture/Montants/MontantNetAPayer").text = "1463.95"
    found = check(extract(root), ctx())
    assert [(f.code, f.location, f.value) for f in found] == [
        ("PLT-34", "DonneesFacture/TVAS/TVA[2]/MontantTVA", "5.95")]
    assert "90.00 × 5.50 / 100 = 4.95" in found[0].message


def test_ubl_xml_edit_without_account():
    root = _load("ubl_invoice.xml")
    ns = {"cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"}
    account = root.find("cac:PaymentMeans/cac:PayeeFinancialAccount", ns)
    account.getparent().remove(account)
    (f,) = check(extract(root), ctx())
    assert (f.code, f.reason, f.location, f.value) == (
        "PLT-40", "COORD_BANC_ERR", "cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID", "")


def test_cpp_lines_mandatory_from_xml():
    root = _load("cpp_unitaire.xml")
    data = root.find("DonneesFacture")
    data.remove(data.find("Lignes"))
    assert [f.code for f in check(extract(root), ctx())] == ["PLT-36"]


def test_amount_rules_do_not_apply_to_ubl_and_cii():
    """EN 16931's schematron (BR-CO-*) judges them; the platform does not say it twice."""
    broken = variant("ubl", total_ht=D("1.001"), lines=(), net_to_pay=D("99999"))
    assert check(broken, ctx()) == []


def test_context_syntax_wins():
    """The flow's syntax decides which rules apply (an FSO1110A flow is CPP)."""
    no_lines = variant("cpp", lines=())
    assert [f.code for f in check(no_lines, ctx(syntax="CPP"))] == ["PLT-36"]
    assert check(no_lines, ctx(syntax="UBL")) == []


# --------------------------------------------------------------------------- severity


def test_override_downgrades_fatal_to_warning():
    bad = variant("cpp", total_ht=D("1230.02"), total_ttc=D("1462.97"))
    (f,) = check(bad, ctx(severity_overrides={"PLT-30": "warning"}))
    assert (f.code, f.severity, f.fatal) == ("PLT-30", WARNING, False)


def test_override_upgrades_warning_to_fatal():
    bad = variant("ubl_cn", original_invoice="")
    assert [f.severity for f in check(bad, ctx())] == [WARNING]
    assert [f.severity for f in check(bad, ctx(severity_overrides={"PLT-43": "fatal"}))] == [FATAL]


def test_override_off_disables_the_rule():
    bad = variant("cpp", supplier_id="79865432300013")
    assert [f.code for f in check(bad, ctx())] == ["PLT-03"]
    assert check(bad, ctx(severity_overrides={"PLT-03": "off"})) == []


def test_override_with_a_bad_value_is_refused():
    with pytest.raises(ValueError, match="PLT-03"):
        check(CPP, ctx(severity_overrides={"PLT-03": "loud"}))


def test_apply_overrides_to_findings_of_other_stages():
    """One resolver for every stage; flow codes and the XSD keep their severity whatever is asked."""
    findings = [
        Finding("BR-CO-15", "MONTANTTOTAL_ERR", "m"),
        Finding("ROUT-07", "CODE_ROUTAGE_ERR", "m"),
        Finding("BR-S-08", "CALCUL_ERR", "m", severity=WARNING),
    ]
    out = severity.apply(findings, {"BR-CO-15": "warning", "ROUT-07": "off", "BR-S-08": "fatal"})
    assert [(f.code, f.severity) for f in out] == [("BR-CO-15", WARNING), ("BR-S-08", FATAL)]
    fixed = [Finding("XSD", "REJ_SEMAN", "m"), Finding("IRR_SYNTAX", "IRR_SYNTAX", "m")]
    assert severity.apply(fixed, {"XSD": "off", "IRR_SYNTAX": "warning"}) == fixed


# --------------------------------------------------------------------------- order


def test_findings_come_in_code_then_document_order():
    bad = dataclasses.replace(
        CPP, number="NPA 2025-0311", cadre="A11", issue_date="2025-07-01",
        vat=(dataclasses.replace(CPP.vat[0], rate=D("19")),
             dataclasses.replace(CPP.vat[1], rate=D("6"))),
        iban="", supplier_id="79865432300013",
    )
    first = check(bad, ctx())
    assert [(f.code, f.location) for f in first] == [
        ("PLT-03", "Fournisseur/Identifiant"),
        ("PLT-13", "DonneesFacture/Id"),
        ("PLT-33", "DonneesFacture/TVAS/TVA[1]/Taux"),
        ("PLT-33", "DonneesFacture/TVAS/TVA[2]/Taux"),
        ("PLT-34", "DonneesFacture/TVAS/TVA[1]/MontantTVA"),
        ("PLT-34", "DonneesFacture/TVAS/TVA[2]/MontantTVA"),
        ("PLT-40", "Fournisseur/ReferenceBancaire/Compte"),
        ("PLT-50", "DonneesFacture/Cadre"),
        ("PLT-52", "DonneesFacture/DateEmissionFacture"),
    ]
    assert all(check(bad, ctx()) == first for _ in range(3))


def test_registry_is_in_code_order_with_sane_metadata():
    assert list(RULES) == sorted(RULES)
    for code, r in RULES.items():
        assert r.code == code and r.severity in (FATAL, WARNING)
        assert r.syntaxes and r.syntaxes <= rules.ALL
        assert r.message and not r.message.endswith(".")


def test_doctests():
    assert doctest.testmod(rules).failed == 0


def test_samples_are_untouched_by_checks():
    before = copy.deepcopy(SAMPLE["cpp"])
    check(SAMPLE["cpp"], ctx(seen_in_flow=set()))
    assert SAMPLE["cpp"] == before
