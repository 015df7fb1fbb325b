"""Targeted documents for the rules that generated invoices and their one-change mutations leave
unexercised (`differential.Report.unexercised`): what the generator never writes.

For each syntax, a "full" invoice (`full_cii`, `full_ubl`) carries every optional group the
rules look at, with valid codes and amounts that keep the totals right (so the group's rules
pass); its one-change mutations and doubled elements then fire them one by one. Variants add
what one document cannot hold at once: VAT categories mixed, on allowances and charges, with
wrong bases; periods ending before they start; exemption reasons where none belongs.
`documents(raw)` yields them all for one generated UBL or CII invoice.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from lxml import etree

from edi.validate.native.differential import (
    _PARSER, _RAM, _UBL_CAC, _UBL_CBC, VAT_CATEGORIES, _optional_groups, _serialise, _vat_category,
    duplications, mutations, syntax_of)

_UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
_QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
_NS = {"ram": _RAM, "udt": _UDT, "qdt": _QDT, "cac": _UBL_CAC, "cbc": _UBL_CBC}
_DECLS = " ".join(f'xmlns:{p}="{u}"' for p, u in _NS.items())


def _add(parent: etree._Element, xml: str, before: str | None = None) -> list[etree._Element]:
    """The elements of an XML fragment (prefixes ram, udt, qdt, cac, cbc) added to `parent`,
    before its first `before` child (a prefixed name) when there is one, else at the end."""
    wrapper = etree.fromstring(f"<w {_DECLS}>{xml}</w>".encode(), _PARSER)
    added = list(wrapper)
    anchor = None
    if before:
        prefix, name = before.split(":")
        anchor = next(parent.iterchildren(f"{{{_NS[prefix]}}}{name}"), None)
    for el in added:
        if anchor is not None:
            anchor.addprevious(el)
        else:
            parent.append(el)
    return added


def _done(root: etree._Element) -> bytes:
    """The document serialised, the fragments' unused namespace declarations dropped."""
    etree.cleanup_namespaces(root)
    return _serialise(root)


def _one(root: etree._Element, path: str) -> etree._Element:
    found = root.xpath(path, namespaces={**_NS, "rsm": _RSM})
    if not found:
        raise ValueError(f"no {path} in the document")
    return found[0]


_RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
_T = "/rsm:CrossIndustryInvoice/rsm:SupplyChainTradeTransaction"


# --- CII ---------------------------------------------------------------------------------------

def full_cii(raw: bytes) -> bytes:
    """The CII invoice with every optional group the EN 16931 and Factur-X rules look at: a
    document note, a line note, item identifiers, attributes, classification and origin, a
    gross price with a discount, line and document allowances and charges, invoicing periods,
    payee, tax representative, ship-to, references (order, contract, despatch, receipt, tender,
    invoiced object, preceding invoice), contacts and electronic addresses, a tax currency, a
    card and a debtor account, a tax point date. Added amounts are 0, so the totals stay right."""
    root = etree.fromstring(raw, _PARSER)
    currency = root.findtext(f".//{{{_RAM}}}InvoiceCurrencyCode") or "EUR"
    _add(_one(root, "/rsm:CrossIndustryInvoice/rsm:ExchangedDocument"),
         "<ram:IncludedNote><ram:Content>Note de document</ram:Content><ram:SubjectCode>AAI</ram:SubjectCode>"
         "</ram:IncludedNote>")
    line = _one(root, f"{_T}/ram:IncludedSupplyChainTradeLineItem")
    _add(_one(line, "ram:AssociatedDocumentLineDocument"),
         "<ram:IncludedNote><ram:Content>Note de ligne</ram:Content></ram:IncludedNote>")
    product = _one(line, "ram:SpecifiedTradeProduct")
    _add(product, '<ram:GlobalID schemeID="0160">03012345678901</ram:GlobalID>', before="ram:SellerAssignedID")
    _add(product, '<ram:BuyerAssignedID>ACH-1</ram:BuyerAssignedID>', before="ram:Name")
    _add(product, "<ram:Description>Description de l'article</ram:Description>"
                  "<ram:ApplicableProductCharacteristic><ram:Description>Couleur</ram:Description>"
                  "<ram:Value>Bleu</ram:Value></ram:ApplicableProductCharacteristic>"
                  '<ram:DesignatedProductClassification><ram:ClassCode listID="STI">12345</ram:ClassCode>'
                  "</ram:DesignatedProductClassification>"
                  "<ram:OriginTradeCountry><ram:ID>FR</ram:ID></ram:OriginTradeCountry>")
    agreement = _one(line, "ram:SpecifiedLineTradeAgreement")
    net = _one(agreement, "ram:NetPriceProductTradePrice")
    price = net.findtext(f"{{{_RAM}}}ChargeAmount")
    _add(agreement, "<ram:BuyerOrderReferencedDocument><ram:LineID>1</ram:LineID></ram:BuyerOrderReferencedDocument>"
                    f"<ram:GrossPriceProductTradePrice><ram:ChargeAmount>{price}</ram:ChargeAmount>"
                    '<ram:BasisQuantity unitCode="C62">1</ram:BasisQuantity>'
                    "<ram:AppliedTradeAllowanceCharge><ram:ChargeIndicator><udt:Indicator>false</udt:Indicator>"
                    "</ram:ChargeIndicator><ram:ActualAmount>0.00</ram:ActualAmount></ram:AppliedTradeAllowanceCharge>"
                    "</ram:GrossPriceProductTradePrice>", before="ram:NetPriceProductTradePrice")
    _add(net, '<ram:BasisQuantity unitCode="C62">1</ram:BasisQuantity>')
    settlement = _one(line, "ram:SpecifiedLineTradeSettlement")
    _add(settlement, _period() + _allowance_charge("false", "95", "Remise") + _allowance_charge("true", "FC", "Fret"),
         before="ram:SpecifiedTradeSettlementLineMonetarySummation")
    _add(settlement, "<ram:AdditionalReferencedDocument><ram:IssuerAssignedID>OBJ-1</ram:IssuerAssignedID>"
                     "<ram:TypeCode>130</ram:TypeCode><ram:ReferenceTypeCode>AAA</ram:ReferenceTypeCode>"
                     "</ram:AdditionalReferencedDocument>"
                     "<ram:ReceivableSpecifiedTradeAccountingAccount><ram:ID>706000</ram:ID>"
                     "</ram:ReceivableSpecifiedTradeAccountingAccount>")

    agreement = _one(root, f"{_T}/ram:ApplicableHeaderTradeAgreement")
    seller = _one(agreement, "ram:SellerTradeParty")
    _add(seller, "<ram:ID>VENDEUR-1</ram:ID>", before="ram:GlobalID")
    _add(seller, "<ram:Description>Société par actions simplifiée</ram:Description>",
         before="ram:SpecifiedLegalOrganization")
    _add(seller, _contact("Service comptable"), before="ram:PostalTradeAddress")
    _add(_one(seller, "ram:PostalTradeAddress"), "<ram:CountrySubDivisionName>Gironde</ram:CountrySubDivisionName>")
    _add(seller, '<ram:URIUniversalCommunication><ram:URIID schemeID="EM">facturation@vendeur.fr</ram:URIID>'
                 "</ram:URIUniversalCommunication>", before="ram:SpecifiedTaxRegistration")
    _add(seller, '<ram:SpecifiedTaxRegistration><ram:ID schemeID="FC">123/456/78901</ram:ID>'
                 "</ram:SpecifiedTaxRegistration>")
    buyer = _one(agreement, "ram:BuyerTradeParty")
    _add(buyer, "<ram:ID>ACHETEUR-1</ram:ID>", before="ram:GlobalID")
    _add(buyer, '<ram:SpecifiedLegalOrganization><ram:ID schemeID="0002">213800428</ram:ID>'
                "</ram:SpecifiedLegalOrganization>" + _contact("Service achats"), before="ram:PostalTradeAddress")
    _add(_one(buyer, "ram:PostalTradeAddress"), "<ram:CountrySubDivisionName>Isère</ram:CountrySubDivisionName>")
    _add(buyer, '<ram:URIUniversalCommunication><ram:URIID schemeID="EM">factures@acheteur.fr</ram:URIID>'
                '</ram:URIUniversalCommunication><ram:SpecifiedTaxRegistration><ram:ID schemeID="VA">FR40213800428'
                "</ram:ID></ram:SpecifiedTaxRegistration>")
    _add(agreement, "<ram:SellerTaxRepresentativeTradeParty><ram:Name>Représentant fiscal SARL</ram:Name>"
                    + _address("Paris", "Île-de-France") +
                    '<ram:SpecifiedTaxRegistration><ram:ID schemeID="VA">FR40303265045</ram:ID>'
                    "</ram:SpecifiedTaxRegistration></ram:SellerTaxRepresentativeTradeParty>"
                    "<ram:SellerOrderReferencedDocument><ram:IssuerAssignedID>CV-1</ram:IssuerAssignedID>"
                    "</ram:SellerOrderReferencedDocument>"
                    "<ram:BuyerOrderReferencedDocument><ram:IssuerAssignedID>BC-1</ram:IssuerAssignedID>"
                    "</ram:BuyerOrderReferencedDocument>"
                    "<ram:ContractReferencedDocument><ram:IssuerAssignedID>MARCHE-1</ram:IssuerAssignedID>"
                    "</ram:ContractReferencedDocument>", before="ram:AdditionalReferencedDocument")
    _add(agreement, "<ram:AdditionalReferencedDocument><ram:IssuerAssignedID>LOT-1</ram:IssuerAssignedID>"
                    "<ram:TypeCode>50</ram:TypeCode></ram:AdditionalReferencedDocument>"
                    "<ram:AdditionalReferencedDocument><ram:IssuerAssignedID>COMPTEUR-1</ram:IssuerAssignedID>"
                    "<ram:TypeCode>130</ram:TypeCode><ram:ReferenceTypeCode>AAA</ram:ReferenceTypeCode>"
                    "</ram:AdditionalReferencedDocument>"
                    "<ram:SpecifiedProcuringProject><ram:ID>PROJ-1</ram:ID><ram:Name>Projet</ram:Name>"
                    "</ram:SpecifiedProcuringProject>")

    delivery = _one(root, f"{_T}/ram:ApplicableHeaderTradeDelivery")
    _add(delivery, '<ram:ShipToTradeParty><ram:ID>LIVRE-1</ram:ID><ram:GlobalID schemeID="0088">3012345000010'
                   "</ram:GlobalID><ram:Name>Entrepôt</ram:Name>" + _address("Lyon", "Rhône") +
                   "</ram:ShipToTradeParty>", before="ram:ActualDeliverySupplyChainEvent")
    _add(delivery, "<ram:DespatchAdviceReferencedDocument><ram:IssuerAssignedID>EXP-1</ram:IssuerAssignedID>"
                   "</ram:DespatchAdviceReferencedDocument>"
                   "<ram:ReceivingAdviceReferencedDocument><ram:IssuerAssignedID>REC-1</ram:IssuerAssignedID>"
                   "</ram:ReceivingAdviceReferencedDocument>")

    settlement = _one(root, f"{_T}/ram:ApplicableHeaderTradeSettlement")
    _add(settlement, "<ram:CreditorReferenceID>FR12ZZZ123456</ram:CreditorReferenceID>", before="ram:PaymentReference")
    _add(settlement, "<ram:TaxCurrencyCode>USD</ram:TaxCurrencyCode>", before="ram:InvoiceCurrencyCode")
    _add(settlement, '<ram:PayeeTradeParty><ram:ID>BENEF-1</ram:ID><ram:GlobalID schemeID="0088">3012345000027'
                     "</ram:GlobalID><ram:Name>Affactureur SA</ram:Name><ram:SpecifiedLegalOrganization>"
                     '<ram:ID schemeID="0002">123456789</ram:ID></ram:SpecifiedLegalOrganization></ram:PayeeTradeParty>',
         before="ram:SpecifiedTradeSettlementPaymentMeans")
    means = _one(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
    code = means.findtext(f"{{{_RAM}}}TypeCode")
    _add(means, "<ram:Information>Virement</ram:Information>", before="ram:PayeePartyCreditorFinancialAccount")
    _add(means, "<ram:PayeeSpecifiedCreditorFinancialInstitution><ram:BICID>AGRIFRPP</ram:BICID>"
                "</ram:PayeeSpecifiedCreditorFinancialInstitution>")
    _add(settlement, f"<ram:SpecifiedTradeSettlementPaymentMeans><ram:TypeCode>{code}</ram:TypeCode>"
                     "<ram:Information>Virement</ram:Information><ram:ApplicableTradeSettlementFinancialCard>"
                     "<ram:ID>1234</ram:ID><ram:CardholderName>Jean Dupont</ram:CardholderName>"
                     "</ram:ApplicableTradeSettlementFinancialCard><ram:PayerPartyDebtorFinancialAccount>"
                     "<ram:IBANID>FR7630006000011234567890189</ram:IBANID></ram:PayerPartyDebtorFinancialAccount>"
                     "<ram:PayeePartyCreditorFinancialAccount><ram:IBANID>FR7613306112440462209358369</ram:IBANID>"
                     "</ram:PayeePartyCreditorFinancialAccount>"
                     "</ram:SpecifiedTradeSettlementPaymentMeans>", before="ram:ApplicableTradeTax")
    taxes = settlement.findall(f"{{{_RAM}}}ApplicableTradeTax")
    _add(taxes[0], '<ram:TaxPointDate><udt:DateString format="102">20260131</udt:DateString></ram:TaxPointDate>',
         before="ram:RateApplicablePercent")
    if len(taxes) > 1:
        _add(taxes[1], "<ram:DueDateTypeCode>5</ram:DueDateTypeCode>", before="ram:RateApplicablePercent")
    category = taxes[0].findtext(f"{{{_RAM}}}CategoryCode")
    rate = taxes[0].findtext(f"{{{_RAM}}}RateApplicablePercent")
    _add(settlement, _period() + _allowance_charge("false", "95", "Remise", category, rate)
         + _allowance_charge("true", "FC", "Fret", category, rate), before="ram:SpecifiedTradePaymentTerms")
    _add(_one(settlement, "ram:SpecifiedTradePaymentTerms"), "<ram:DirectDebitMandateID>MANDAT-1</ram:DirectDebitMandateID>")
    totals = _one(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    tax = _one(totals, "ram:TaxTotalAmount")
    _add(totals, "<ram:ChargeTotalAmount>0.00</ram:ChargeTotalAmount>"
                 "<ram:AllowanceTotalAmount>0.00</ram:AllowanceTotalAmount>", before="ram:TaxBasisTotalAmount")
    _add(totals, f'<ram:TaxTotalAmount currencyID="USD">{tax.text}</ram:TaxTotalAmount>'
                 "<ram:RoundingAmount>0.00</ram:RoundingAmount>", before="ram:GrandTotalAmount")
    _add(totals, "<ram:TotalPrepaidAmount>0.00</ram:TotalPrepaidAmount>", before="ram:DuePayableAmount")
    _add(settlement, "<ram:InvoiceReferencedDocument><ram:IssuerAssignedID>F-PRECEDENTE</ram:IssuerAssignedID>"
                     '<ram:FormattedIssueDateTime><qdt:DateTimeString format="102">20251231</qdt:DateTimeString>'
                     "</ram:FormattedIssueDateTime></ram:InvoiceReferencedDocument>"
                     "<ram:ReceivableSpecifiedTradeAccountingAccount><ram:ID>411000</ram:ID>"
                     "</ram:ReceivableSpecifiedTradeAccountingAccount>")
    if tax.get("currencyID") is None:
        tax.set("currencyID", currency)
    return _done(root)


def _contact(department: str) -> str:
    return ("<ram:DefinedTradeContact><ram:PersonName>Jean Dupont</ram:PersonName>"
            f"<ram:TelephoneUniversalCommunication><ram:CompleteNumber>0102030405</ram:CompleteNumber>"
            "</ram:TelephoneUniversalCommunication><ram:EmailURIUniversalCommunication>"
            "<ram:URIID>jean.dupont@example.fr</ram:URIID></ram:EmailURIUniversalCommunication>"
            "</ram:DefinedTradeContact>")


def _address(city: str, region: str) -> str:
    return (f"<ram:PostalTradeAddress><ram:PostcodeCode>75001</ram:PostcodeCode><ram:LineOne>1 rue de la Paix"
            f"</ram:LineOne><ram:CityName>{city}</ram:CityName><ram:CountryID>FR</ram:CountryID>"
            f"<ram:CountrySubDivisionName>{region}</ram:CountrySubDivisionName></ram:PostalTradeAddress>")


def _period(start: str = "20260101", end: str = "20260131") -> str:
    return (f'<ram:BillingSpecifiedPeriod><ram:StartDateTime><udt:DateTimeString format="102">{start}'
            f'</udt:DateTimeString></ram:StartDateTime><ram:EndDateTime><udt:DateTimeString format="102">{end}'
            "</udt:DateTimeString></ram:EndDateTime></ram:BillingSpecifiedPeriod>")


def _allowance_charge(charge: str, code: str, reason: str, category: str | None = None,
                      rate: str | None = None) -> str:
    """A CII allowance (charge "false") or charge of 0.00; with `category`, a document-level one."""
    tax = ""
    if category:
        tax = (f"<ram:CategoryTradeTax><ram:TypeCode>VAT</ram:TypeCode><ram:CategoryCode>{category}"
               "</ram:CategoryCode>" + (f"<ram:RateApplicablePercent>{rate}</ram:RateApplicablePercent>" if rate else "")
               + "</ram:CategoryTradeTax>")
    return (f"<ram:SpecifiedTradeAllowanceCharge><ram:ChargeIndicator><udt:Indicator>{charge}</udt:Indicator>"
            "</ram:ChargeIndicator><ram:CalculationPercent>0</ram:CalculationPercent>"
            "<ram:BasisAmount>0.00</ram:BasisAmount><ram:ActualAmount>0.00</ram:ActualAmount>"
            f"<ram:ReasonCode>{code}</ram:ReasonCode><ram:Reason>{reason}</ram:Reason>{tax}"
            "</ram:SpecifiedTradeAllowanceCharge>")


def documents(raw: bytes) -> Iterator[tuple[str, bytes]]:
    """The targeted documents built from one generated UBL or CII invoice."""
    if syntax_of(raw) != "CII":
        return
    full = full_cii(raw)
    yield "full", full
    yield from ((f"full:{name}", doc) for name, doc in [*mutations(full), *duplications(full)])
