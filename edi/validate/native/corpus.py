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
    _PARSER, _RAM, _UBL_CAC, _UBL_CBC, _UDT, VAT_CATEGORIES, _optional_groups, _place, _serialise,
    _vat_category, credit_note, duplications, mutations, syntax_of)

_RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
_T = "/rsm:CrossIndustryInvoice/rsm:SupplyChainTradeTransaction"  # where CII's groups are
_QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
_NS = {"ram": _RAM, "udt": _UDT, "qdt": _QDT, "cac": _UBL_CAC, "cbc": _UBL_CBC}
_DECLS = " ".join(f'xmlns:{p}="{u}"' for p, u in _NS.items())


def _add(parent: etree._Element, xml: str, before: str | None = None) -> list[etree._Element]:
    """The elements of an XML fragment (prefixes ram, udt, qdt, cac, cbc) added to `parent`,
    before its first `before` child (a prefixed name) when there is one, else at the end."""
    added = list(etree.fromstring(f"<w {_DECLS}>{xml}</w>".encode(), _PARSER))
    if before:
        prefix, name = before.split(":")
        before = f"{{{_NS[prefix]}}}{name}"
    _place(parent, added, before)
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
    _add(seller, _contact("Jean Dupont"), before="ram:PostalTradeAddress")
    _add(_one(seller, "ram:PostalTradeAddress"), "<ram:CountrySubDivisionName>Gironde</ram:CountrySubDivisionName>")
    _add(seller, '<ram:URIUniversalCommunication><ram:URIID schemeID="EM">facturation@vendeur.fr</ram:URIID>'
                 "</ram:URIUniversalCommunication>", before="ram:SpecifiedTaxRegistration")
    _add(seller, '<ram:SpecifiedTaxRegistration><ram:ID schemeID="FC">123/456/78901</ram:ID>'
                 "</ram:SpecifiedTaxRegistration>")
    buyer = _one(agreement, "ram:BuyerTradeParty")
    _add(buyer, "<ram:ID>ACHETEUR-1</ram:ID>", before="ram:GlobalID")
    _add(buyer, '<ram:SpecifiedLegalOrganization><ram:ID schemeID="0002">213800428</ram:ID>'
                "</ram:SpecifiedLegalOrganization>" + _contact("Marie Martin"), before="ram:PostalTradeAddress")
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


def _contact(person: str) -> str:
    return (f"<ram:DefinedTradeContact><ram:PersonName>{person}</ram:PersonName>"
            "<ram:TelephoneUniversalCommunication><ram:CompleteNumber>0102030405</ram:CompleteNumber>"
            "</ram:TelephoneUniversalCommunication><ram:EmailURIUniversalCommunication>"
            "<ram:URIID>contact@example.fr</ram:URIID></ram:EmailURIUniversalCommunication>"
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


# --- UBL ---------------------------------------------------------------------------------------

def full_ubl(raw: bytes) -> bytes:
    """The UBL invoice (or credit note) with the optional groups of `differential._optional_groups`
    and all the others the rules look at: a coded note, a tax currency with its tax total,
    references (preceding invoice, despatch, receipt, originator, contract, invoiced object,
    project), electronic addresses, extra party identifiers (SEPA, legal form, non-VAT tax
    scheme), the buyer's VAT and legal identifiers, a delivery place, a card and a mandate, and on
    the first line a note, an order line reference, a document reference, a charge, item
    description, identifiers, origin, classification and attribute. Added amounts are 0."""
    root = etree.fromstring(_optional_groups(raw), _PARSER)
    currency = root.findtext(f"{{{_UBL_CBC}}}DocumentCurrencyCode") or "EUR"
    _add(root, "<cbc:Note>#AAI#Note de document</cbc:Note>", before="cbc:DocumentCurrencyCode")
    _add(root, "<cbc:TaxCurrencyCode>USD</cbc:TaxCurrencyCode>", before="cbc:BuyerReference")
    _add(_one(root, "cac:InvoicePeriod"), "<cbc:DescriptionCode>3</cbc:DescriptionCode>")
    _add(root, "<cac:BillingReference><cac:InvoiceDocumentReference><cbc:ID>F-PRECEDENTE</cbc:ID>"
               "<cbc:IssueDate>2025-12-31</cbc:IssueDate></cac:InvoiceDocumentReference></cac:BillingReference>"
               "<cac:DespatchDocumentReference><cbc:ID>EXP-1</cbc:ID></cac:DespatchDocumentReference>"
               "<cac:ReceiptDocumentReference><cbc:ID>REC-1</cbc:ID></cac:ReceiptDocumentReference>"
               "<cac:OriginatorDocumentReference><cbc:ID>LOT-1</cbc:ID></cac:OriginatorDocumentReference>"
               "<cac:ContractDocumentReference><cbc:ID>MARCHE-1</cbc:ID></cac:ContractDocumentReference>",
         before="cac:AdditionalDocumentReference")
    _add(root, '<cac:AdditionalDocumentReference><cbc:ID schemeID="AAA">COMPTEUR-1</cbc:ID>'
               "<cbc:DocumentTypeCode>130</cbc:DocumentTypeCode></cac:AdditionalDocumentReference>"
               "<cac:ProjectReference><cbc:ID>PROJ-1</cbc:ID></cac:ProjectReference>",
         before="cac:AccountingSupplierParty")
    seller = _one(root, "cac:AccountingSupplierParty/cac:Party")
    _add(seller, '<cbc:EndpointID schemeID="0009">82908068800460</cbc:EndpointID>', before="cac:PartyIdentification")
    _add(seller, '<cac:PartyIdentification><cbc:ID schemeID="SEPA">FR12ZZZ123456</cbc:ID></cac:PartyIdentification>',
         before="cac:PartyName")
    _add(seller, "<cac:PartyTaxScheme><cbc:CompanyID>123/456/78901</cbc:CompanyID><cac:TaxScheme><cbc:ID>LOC</cbc:ID>"
                 "</cac:TaxScheme></cac:PartyTaxScheme>", before="cac:PartyLegalEntity")
    _add(_one(seller, "cac:PartyLegalEntity"), "<cbc:CompanyLegalForm>SAS au capital de 10 000 EUR</cbc:CompanyLegalForm>")
    _add(seller, "<cac:Contact><cbc:Name>Jean Dupont</cbc:Name><cbc:Telephone>0102030405</cbc:Telephone>"
                 "<cbc:ElectronicMail>jean.dupont@example.fr</cbc:ElectronicMail></cac:Contact>")
    buyer = _one(root, "cac:AccountingCustomerParty/cac:Party")
    _add(buyer, '<cbc:EndpointID schemeID="0009">21380042800111</cbc:EndpointID>', before="cac:PartyIdentification")
    _add(buyer, "<cac:PartyTaxScheme><cbc:CompanyID>FR40213800428</cbc:CompanyID><cac:TaxScheme><cbc:ID>VAT</cbc:ID>"
                "</cac:TaxScheme></cac:PartyTaxScheme>", before="cac:PartyLegalEntity")
    _add(_one(buyer, "cac:PartyLegalEntity"), '<cbc:CompanyID schemeID="0002">213800428</cbc:CompanyID>')
    _add(_one(root, "cac:Delivery"), '<cac:DeliveryLocation><cbc:ID schemeID="0088">3012345000010</cbc:ID><cac:Address>'
                                     "<cbc:StreetName>1 rue de la Paix</cbc:StreetName><cac:AddressLine><cbc:Line>Quai 3"
                                     "</cbc:Line></cac:AddressLine><cbc:CityName>Lyon</cbc:CityName>"
                                     "<cbc:PostalZone>69001</cbc:PostalZone><cac:Country><cbc:IdentificationCode>FR"
                                     "</cbc:IdentificationCode></cac:Country></cac:Address></cac:DeliveryLocation>"
                                     "<cac:DeliveryParty><cac:PartyName><cbc:Name>Entrepôt</cbc:Name></cac:PartyName>"
                                     "</cac:DeliveryParty>")
    means = _one(root, "cac:PaymentMeans")
    code = means.findtext(f"{{{_UBL_CBC}}}PaymentMeansCode")
    payment_id = means.findtext(f"{{{_UBL_CBC}}}PaymentID") or "PAIEMENT-1"
    _add(root, f'<cac:PaymentMeans><cbc:PaymentMeansCode name="Virement">{code}</cbc:PaymentMeansCode>'
               f"<cbc:PaymentID>{payment_id}</cbc:PaymentID><cac:CardAccount><cbc:PrimaryAccountNumberID>1234"
               "</cbc:PrimaryAccountNumberID><cbc:NetworkID>VISA</cbc:NetworkID><cbc:HolderName>Jean Dupont"
               "</cbc:HolderName></cac:CardAccount><cac:PayeeFinancialAccount><cbc:ID>FR7613306112440462209358369"
               "</cbc:ID></cac:PayeeFinancialAccount><cac:PaymentMandate><cbc:ID>MANDAT-1</cbc:ID>"
               "<cac:PayerFinancialAccount><cbc:ID>FR7630006000011234567890189</cbc:ID></cac:PayerFinancialAccount>"
               "</cac:PaymentMandate></cac:PaymentMeans>", before="cac:PaymentTerms")
    tax = _one(root, "cac:TaxTotal/cbc:TaxAmount")
    _add(root, f'<cac:TaxTotal><cbc:TaxAmount currencyID="USD">{tax.text}</cbc:TaxAmount></cac:TaxTotal>',
         before="cac:LegalMonetaryTotal")
    line = _one(root, "cac:InvoiceLine|cac:CreditNoteLine")
    credited = line.find(f"{{{_UBL_CBC}}}CreditedQuantity") is not None
    _add(line, "<cbc:Note>Note de ligne</cbc:Note>", before="cbc:CreditedQuantity" if credited else "cbc:InvoicedQuantity")
    _add(line, "<cac:OrderLineReference><cbc:LineID>1</cbc:LineID></cac:OrderLineReference>"
               '<cac:DocumentReference><cbc:ID schemeID="AAA">OBJ-1</cbc:ID>'
               "<cbc:DocumentTypeCode>130</cbc:DocumentTypeCode></cac:DocumentReference>", before="cac:AllowanceCharge")
    _add(line, f'<cac:AllowanceCharge><cbc:ChargeIndicator>true</cbc:ChargeIndicator><cbc:AllowanceChargeReasonCode>'
               f'FC</cbc:AllowanceChargeReasonCode><cbc:AllowanceChargeReason>Fret</cbc:AllowanceChargeReason>'
               f'<cbc:MultiplierFactorNumeric>0</cbc:MultiplierFactorNumeric><cbc:Amount currencyID="{currency}">0.00'
               f'</cbc:Amount><cbc:BaseAmount currencyID="{currency}">0.00</cbc:BaseAmount></cac:AllowanceCharge>',
         before="cac:Item")
    item = _one(line, "cac:Item")
    _add(item, "<cbc:Description>Description de l'article</cbc:Description>", before="cbc:Name")
    _add(item, "<cac:BuyersItemIdentification><cbc:ID>ACH-1</cbc:ID></cac:BuyersItemIdentification>",
         before="cac:SellersItemIdentification")
    _add(item, '<cac:StandardItemIdentification><cbc:ID schemeID="0160">03012345678901</cbc:ID>'
               "</cac:StandardItemIdentification><cac:OriginCountry><cbc:IdentificationCode>FR</cbc:IdentificationCode>"
               '</cac:OriginCountry><cac:CommodityClassification><cbc:ItemClassificationCode listID="STI">12345'
               "</cbc:ItemClassificationCode></cac:CommodityClassification>", before="cac:ClassifiedTaxCategory")
    _add(item, "<cac:AdditionalItemProperty><cbc:Name>Couleur</cbc:Name><cbc:Value>Bleu</cbc:Value>"
               "</cac:AdditionalItemProperty>")
    return _done(root)


# --- variants: what one full document cannot hold at once -------------------------------------

def _edited(raw: bytes, *edits: tuple[str, str, str | None]) -> bytes:
    """A copy with each (xpath, action, value) applied to every node the path selects: "text"
    sets the text, "@name" sets that attribute, "remove" drops it, "add" appends the fragment,
    "before" inserts the fragment just before it."""
    root = etree.fromstring(raw, _PARSER)
    for path, action, value in edits:
        for node in root.xpath(path, namespaces={**_NS, "rsm": _RSM}):
            if action == "text":
                node.text = value
            elif action.startswith("@"):
                node.set(action[1:], value)
            elif action == "remove":
                node.getparent().remove(node)
            elif action == "add":
                _add(node, value)
            elif action == "before":
                for el in _add(node.getparent(), value):
                    node.addprevious(el)
    return _done(root)


def _doubled(raw: bytes, path: str) -> bytes:
    """A copy with the first node `path` selects doubled (its copy right after it)."""
    root = etree.fromstring(raw, _PARSER)
    node = root.xpath(path, namespaces={**_NS, "rsm": _RSM})[0]
    node.addnext(etree.fromstring(etree.tostring(node)))
    return _done(root)


def _single_rate(raw: bytes) -> bytes:
    """One VAT breakdown for the whole document (the first, its base and tax the totals'), every
    line and allowance at its rate: a category's base then equals the sum of its lines."""
    root = etree.fromstring(raw, _PARSER)
    ns = {**_NS, "rsm": _RSM}
    if etree.QName(root).localname == "CrossIndustryInvoice":
        taxes = root.xpath(f"{_T}/ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax", namespaces=ns)
        totals = "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:"
        basis, tax = (root.xpath(f"string({totals}{n})", namespaces=ns) for n in ("TaxBasisTotalAmount", "TaxTotalAmount"))
        taxes[0].find(f"{{{_RAM}}}BasisAmount").text, taxes[0].find(f"{{{_RAM}}}CalculatedAmount").text = basis, tax
        rate, rates = taxes[0].findtext(f"{{{_RAM}}}RateApplicablePercent"), "//ram:RateApplicablePercent"
    else:
        taxes = root.xpath("cac:TaxTotal/cac:TaxSubtotal", namespaces=ns)
        basis = root.xpath("string(cac:LegalMonetaryTotal/cbc:TaxExclusiveAmount)", namespaces=ns)
        taxes[0].find(f"{{{_UBL_CBC}}}TaxableAmount").text = basis
        taxes[0].find(f"{{{_UBL_CBC}}}TaxAmount").text = taxes[0].getparent().findtext(f"{{{_UBL_CBC}}}TaxAmount")
        rate, rates = taxes[0].findtext(f"{{{_UBL_CAC}}}TaxCategory/{{{_UBL_CBC}}}Percent"), "//cbc:Percent"
    for other in taxes[1:]:
        other.getparent().remove(other)
    for node in root.xpath(rates, namespaces=ns):
        node.text = rate
    return _done(root)


def _vat_variants(full: bytes, one_line: bytes) -> Iterator[tuple[str, bytes]]:
    """Each VAT category on the full document: as generated, as the category wants it, without
    the seller's VAT identifier, alone at one rate, on the first line and breakdown only (mixed
    with another category), with a wrong base and tax, a negative rate, an
    exemption reason where none belongs; on a one-line invoice, on the line only or on the
    breakdown only; for CII, a rate misplaced on the settlement, which BR-AF-08 and BR-AG-08 read
    (`../ram:RateApplicablePercent` from the breakdown: without it, "every" holds on nothing)."""
    cii = syntax_of(full) == "CII"
    first = ([f"({_T}/ram:IncludedSupplyChainTradeLineItem)[1]//ram:ApplicableTradeTax",
              f"({_T}/ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax)[1]"]
             if cii else ["(//cac:ClassifiedTaxCategory)[1]", "(cac:TaxTotal/cac:TaxSubtotal)[1]/cac:TaxCategory"])
    headers = (f"{_T}/ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax" if cii
               else "cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory")
    code_of = "ram:CategoryCode" if cii else "cbc:ID"
    rate_of = "ram:RateApplicablePercent" if cii else "cbc:Percent"
    basis = ([f"({_T}/ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax)[1]/ram:{n}"
              for n in ("BasisAmount", "CalculatedAmount")] if cii
             else [f"(cac:TaxTotal/cac:TaxSubtotal)[1]/cbc:{n}" for n in ("TaxableAmount", "TaxAmount")])
    reason = ('<ram:ExemptionReason>Exonération</ram:ExemptionReason>' if cii
              else "<cbc:TaxExemptionReason>Exonération</cbc:TaxExemptionReason>")
    reason_before = (f"{_T}/ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:BasisAmount" if cii
                     else "cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory/cac:TaxScheme")
    for code in (*VAT_CATEGORIES, "S"):
        consistent = _vat_category(full, code, consistent=True)
        yield f"vat-{code}", _vat_category(full, code, consistent=False)
        yield f"vat-{code}:consistent", consistent
        yield f"vat-{code}:no-seller-vat", _vat_category(full, code, consistent=True, seller_vat=False)
        if code == "O":  # not subject to VAT: no VAT identifier for the buyer either
            buyer_vat = ("//ram:BuyerTradeParty/ram:SpecifiedTaxRegistration" if cii
                         else "cac:AccountingCustomerParty/cac:Party/cac:PartyTaxScheme")
            yield "vat-O:no-vat-ids", _edited(_vat_category(full, code, consistent=True, seller_vat=False),
                                              (buyer_vat, "remove", None))
        yield f"vat-{code}:single-rate", _vat_category(_single_rate(full), code, consistent=True)
        yield f"vat-{code}:mixed", _edited(full, *((f"{p}/{code_of}", "text", code) for p in first))
        amounts = etree.fromstring(consistent, _PARSER)
        shifted = [(p, "text", str(Decimal(amounts.xpath(f"string({p})", namespaces={**_NS, "rsm": _RSM})) + 10))
                   for p in basis]
        yield f"vat-{code}:wrong-basis", _edited(consistent, *shifted)
        yield f"vat-{code}:negative-rate", _edited(_vat_category(full, code, consistent=False), (f"//{rate_of}", "text", "-1"))
        yield f"vat-{code}:reason", _edited(consistent, (reason_before, "before", reason))
        yield f"vat-{code}:one-line", _vat_category(one_line, code, consistent=True, lines_only=True)
        yield f"vat-{code}:one-line-breakdown", _edited(one_line, (f"{headers}/{code_of}", "text", code))
        if cii:
            yield f"vat-{code}:settlement-rate", _edited(consistent, (
                f"{_T}/ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax", "before",
                "<ram:RateApplicablePercent>20</ram:RateApplicablePercent>"))


# UBL-CR rules whose test is not a plain forbidden path (`differential.insertions` misses them):
# the path each forbids, added to the full invoice.
_UBL_FORBIDDEN = (
    ("UBL-CR-002", ("cbc:CustomizationID", "before", "<cbc:UBLVersionID>2.0</cbc:UBLVersionID>")),
    ("UBL-CR-412", ("(cac:PaymentMeans)[1]/cbc:PaymentID", "before", "<cbc:PaymentDueDate>2026-11-08</cbc:PaymentDueDate>")),
    ("UBL-CR-652", ("//cac:PartyTaxScheme/cbc:CompanyID", "@schemeID", "VAT")),
    ("UBL-CR-660", ("//cac:Country/cbc:IdentificationCode", "@listID", "ISO3166-1:Alpha2")),
    ("UBL-CR-662", ("//cbc:AllowanceChargeReasonCode", "@listID", "UNCL5189")),
    ("UBL-CR-665", ("cac:AdditionalDocumentReference[not(cbc:DocumentTypeCode = '130')]/cbc:ID", "@schemeID", "AAA")),
    ("UBL-CR-666", ("cac:AdditionalDocumentReference[cbc:DocumentTypeCode = '130']", "add",
                    "<cac:Attachment><cac:ExternalReference><cbc:URI>https://example.fr/releve</cbc:URI>"
                    "</cac:ExternalReference></cac:Attachment>")),
    ("UBL-CR-667", ("//cac:BuyersItemIdentification/cbc:ID", "@schemeID", "0160")),
    ("UBL-CR-668", ("//cac:SellersItemIdentification/cbc:ID", "@schemeID", "0160")),
    ("UBL-CR-673", ("cac:AdditionalDocumentReference[cbc:DocumentTypeCode = '130']", "add",
                    "<cbc:DocumentDescription>Relevé</cbc:DocumentDescription>")),
    ("UBL-CR-674", ("//cbc:PrimaryAccountNumberID", "@schemeID", "VISA")),
    ("UBL-CR-675", ("//cac:CardAccount/cbc:NetworkID", "@schemeID", "VISA")),
    ("UBL-CR-676", ("//cac:PaymentMandate/cbc:ID", "@schemeID", "SEPA")),
    ("UBL-CR-677", ("//cac:PaymentMandate/cac:PayerFinancialAccount/cbc:ID", "@schemeID", "IBAN")),
    ("UBL-CR-678", ("//cac:TaxCategory/cbc:ID", "@schemeID", "UNCL5305")),
    ("UBL-CR-679", ("//cac:ClassifiedTaxCategory/cbc:ID", "@schemeID", "UNCL5305")),
    ("UBL-CR-680", ("(cac:PaymentMeans)[1]", "add", "<cac:PayerFinancialAccount><cbc:ID>FR7630006000011234567890189"
                                                  "</cbc:ID></cac:PayerFinancialAccount>")),
    ("UBL-DT-18", ("cbc:InvoiceTypeCode | cbc:CreditNoteTypeCode", "@name", "Facture")),
)


def _ubl_variants(raw: bytes, full: bytes) -> Iterator[tuple[str, bytes]]:
    yield from ((rule, _edited(full, edit)) for rule, edit in _UBL_FORBIDDEN)
    yield "period-reversed", _edited(full, ("//cac:InvoicePeriod/cbc:StartDate", "text", "2026-02-28"))
    yield "tax-point-date", _edited(full, ("cbc:DocumentCurrencyCode", "before", "<cbc:TaxPointDate>2026-01-31</cbc:TaxPointDate>"))
    yield "no-reasons", _edited(full, ("//cac:AllowanceCharge/cbc:AllowanceChargeReason", "remove", None),
                                ("//cac:AllowanceCharge/cbc:AllowanceChargeReasonCode", "remove", None))
    yield "long-card-number", _edited(full, ("//cbc:PrimaryAccountNumberID", "text", "4970101234567890"))
    yield "note-bad-subject", _edited(full, ("cbc:Note", "text", "#ZZY#Note de document"))
    yield "bad-unit", _edited(full, ("//@unitCode/..", "@unitCode", "ZZZ"))
    yield "credit-note:two-due-dates", _edited(credit_note(full), ("cac:PaymentMeans/cbc:PaymentID", "before",
                                                                      "<cbc:PaymentDueDate>2026-11-08</cbc:PaymentDueDate>"))
    yield "vat-E:reason-doubled", _doubled(_vat_category(full, "E", consistent=True), "(//cbc:TaxExemptionReason)[1]")
    yield "vat-K:no-delivery", _vat_category(_edited(raw, ("cac:Delivery", "remove", None)), "K", consistent=True)


def _cii_variants(raw: bytes, full: bytes) -> Iterator[tuple[str, bytes]]:
    settlement = f"{_T}/ram:ApplicableHeaderTradeSettlement"
    yield "period-reversed", _edited(full, ("//ram:BillingSpecifiedPeriod/ram:StartDateTime/udt:DateTimeString",
                                            "text", "20260228"))
    yield "period-empty", _edited(full, ("//ram:BillingSpecifiedPeriod/*", "remove", None))
    yield "tax-point-and-code", _edited(full, (f"{settlement}/ram:ApplicableTradeTax[ram:TaxPointDate]/ram:TaxPointDate",
                                               "before", "<ram:DueDateTypeCode>5</ram:DueDateTypeCode>"))
    yield "no-reasons", _edited(full, ("//ram:SpecifiedTradeAllowanceCharge/ram:Reason", "remove", None),
                                ("//ram:SpecifiedTradeAllowanceCharge/ram:ReasonCode", "remove", None))
    yield "long-card-number", _edited(full, ("//ram:ApplicableTradeSettlementFinancialCard/ram:ID", "text", "4970101234567890"))
    yield "contact-department", _edited(full, ("//ram:DefinedTradeContact/ram:PersonName", "before",
                                               "<ram:DepartmentName>Comptabilité</ram:DepartmentName>"))
    yield "no-lines", _edited(full, (f"{_T}/ram:IncludedSupplyChainTradeLineItem", "remove", None))
    yield "bad-currencies", _edited(full, (f"{settlement}/ram:InvoiceCurrencyCode", "text", "ZZZ"),
                                    (f"{settlement}/ram:TaxCurrencyCode", "text", "ZZY"),
                                    ("//ram:TaxTotalAmount[@currencyID = 'USD']", "@currencyID", "ZZY"),
                                    ("//ram:TaxTotalAmount[@currencyID != 'ZZY']", "@currencyID", "ZZZ"))
    yield "bad-unit", _edited(full, ("//@unitCode/..", "@unitCode", "ZZZ"))
    yield "seller-unidentified", _edited(full, *((f"//ram:SellerTradeParty/ram:{n}", "remove", None) for n in
                                                 ("ID", "GlobalID", "SpecifiedLegalOrganization", "SpecifiedTaxRegistration")))
    yield "allowance-two-rates", _edited(full, (f"({settlement}/ram:SpecifiedTradeAllowanceCharge)[1]", "add",
                                                "<ram:RateApplicablePercent>0</ram:RateApplicablePercent>" * 2))
    yield "vat-K:no-delivery", _vat_category(_edited(raw, ("//ram:ActualDeliverySupplyChainEvent", "remove", None)),
                                             "K", consistent=True)


def documents(raw: bytes) -> Iterator[tuple[str, bytes]]:
    """The targeted documents built from one generated UBL or CII invoice: the full document,
    its one-change mutations and doubled elements, the VAT category variants and the others."""
    cii = syntax_of(raw) == "CII"
    full = full_cii(raw) if cii else full_ubl(raw)
    lines = f"{_T}/ram:IncludedSupplyChainTradeLineItem[position() > 1]" if cii else "cac:InvoiceLine[position() > 1]"
    yield "full", full
    yield from ((f"full:{name}", doc) for name, doc in [*mutations(full), *duplications(full)])
    yield from ((f"full:{name}", doc) for name, doc in _vat_variants(full, _edited(raw, (lines, "remove", None))))
    yield from (_cii_variants if cii else _ubl_variants)(raw, full)
