"""The uniform view of one invoice, whatever its syntax (UBL 2.1, CII D16B, CPP V1.17).

Routing, the database and the business rules read invoices through `InvoiceData` so that
none of them needs to know three XML vocabularies. `extract` is called for every invoice of
every flow, often after the XSD check has already failed: it never raises on missing or
malformed content (empty string / None instead), so the report can still name the invoice
and its routing data. Each `InvoiceData` carries `locations`, the path of every field in its
own syntax, so a finding can tell the user where to look ("cbc:BuyerReference",
"Debiteur/CodeService", ...).

All paths are compiled once at import (10,000+ invoices per flow) and are relative to the
invoice element, so a `CPPFactureMixteUnitaire` taken out of a streamed bulk flow works as is.

>>> from lxml import etree
>>> inv = extract(etree.fromstring(
...     "<CPPFactureMixteUnitaire><DonneesFacture><Id>F-1</Id>"
...     "<Montants><MontantHT>12,5</MontantHT></Montants></DonneesFacture>"
...     "</CPPFactureMixteUnitaire>"))
>>> inv.syntax, inv.number, inv.total_ht, inv.locations["number"]
('CPP', 'F-1', None, 'DonneesFacture/Id')
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from types import MappingProxyType

from lxml import etree
from stdnum.eu import vat as eu_vat

from edi import interfaces

NS = {
    "cac": interfaces.UBL_CAC_NS,
    "cbc": interfaces.UBL_CBC_NS,
    "rsm": interfaces.CII_NS,
    "ram": interfaces.CII_RAM_NS,
    "udt": interfaces.CII_UDT_NS,
    "qdt": interfaces.CII_QDT_NS,
}

UBL, CII_SYNTAX, CPP = "UBL", "CII", "CPP"

_ROOTS = {root: s.name for s in interfaces.SYNTAXES.values() for root in s.invoice_roots}

# EU member-state prefixes of VAT numbers (Greece is "EL"), France excluded: a French
# supplier is identified by its SIRET, type 2 is "TVA intracommunautaire" from elsewhere.
_EU_VAT_PREFIXES = frozenset(
    "AT BE BG CY CZ DE DK EE EL ES FI HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK XI".split()
)
_EU_COUNTRIES = (_EU_VAT_PREFIXES - {"EL", "XI"}) | {"GR", "FR"}
_VAT_SHAPE = re.compile(r"[A-Z]{2}[0-9A-Z+*]{2,13}")
VAT_SCHEME = "VA"  # CII schemeID of a VAT registration; implied for UBL PartyTaxScheme
_XS_DECIMAL = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)\s*")
_SPACES = re.compile(r"[\s.]")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Line:
    number: str
    description: str
    quantity: Decimal | None
    unit_price: Decimal | None
    net_amount: Decimal | None
    vat_rate: Decimal | None


@dataclass(frozen=True, slots=True)
class VatBreakdown:
    rate: Decimal | None
    base: Decimal | None
    amount: Decimal | None
    category: str  # EN 16931 VAT category (S, Z, E, AE, ...); "" in CPP, which has none


@dataclass(frozen=True, slots=True)
class Attachment:
    """An embedded attachment, described without its content (flows can be huge)."""

    name: str
    mime: str
    kind: str  # CPP TypePJ (01 invoice, 02 supporting doc); UBL/CII: BT-123 (LISIBLE, RIB, ...)
    size: int  # bytes of the decoded content


@dataclass(frozen=True, slots=True)
class InvoiceData:
    """One invoice in a syntax-free shape. Text fields are "" when absent; amounts None when
    absent or not an xs:decimal."""

    syntax: str  # "UBL" | "CII" | "CPP"; "" when the element is not an invoice we know
    number: str = ""
    doc_type: str = ""  # 380 invoice, 381 credit note, ...
    cadre: str = ""  # cadre de facturation (A1..A25, or the reform's B1/S1/M1...)
    issue_date: str = ""  # as written; CII format 102 (YYYYMMDD) turned into YYYY-MM-DD
    due_date: str = ""
    supplier_id_type: str = ""  # 1 SIRET, 2 EU VAT, 3 outside EU, ... ("" when unknown)
    supplier_id: str = ""
    supplier_name: str = ""
    supplier_country: str = ""
    recipient_siret: str = ""
    code_service: str = ""
    ej: str = ""  # engagement juridique (purchase order number)
    currency: str = ""
    payment_means: str = ""
    iban: str = ""
    original_invoice: str = ""  # the invoice a credit note refers to
    total_ht: Decimal | None = None
    total_vat: Decimal | None = None
    total_ttc: Decimal | None = None
    net_to_pay: Decimal | None = None
    vat: tuple[VatBreakdown, ...] = ()
    lines: tuple[Line, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    # field name -> path in this invoice's syntax (relative to the invoice element); also
    # "lines.net_amount", "vat.rate", "attachments.name"... for the parts of repeated groups.
    locations: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, hash=False, repr=False
    )

    def location(self, name: str) -> str:
        """Where to find `name` in this syntax; the field name itself when it has no path."""
        return self.locations.get(name, name)

    def __reduce__(self):
        """Picklable (the validation pool sends it between processes): a mappingproxy is not."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["locations"] = dict(self.locations)
        return (_restore_invoice, (values,))


def _restore_invoice(values: dict) -> InvoiceData:
    values["locations"] = MappingProxyType(values["locations"])
    return InvoiceData(**values)


# --------------------------------------------------------------------------- values


def parse_decimal(text: str | None) -> Decimal | None:
    """An xs:decimal ("-12.50", "3", ".5"), or None: no comma, exponent, NaN or underscore.

    >>> parse_decimal(" 1965.00 "), parse_decimal("12,50"), parse_decimal("1e3")
    (Decimal('1965.00'), None, None)
    """
    if not text or not _XS_DECIMAL.fullmatch(text):
        return None
    try:
        return Decimal(text.strip())
    except InvalidOperation:  # pragma: no cover - the pattern already excludes it
        return None


def base64_size(text: str | None) -> int:
    """Decoded size of base64 `text` without decoding it (whitespace and padding ignored).

    >>> base64_size("SGVsbG8="), base64_size("SGVs\\nbG8h\\n")
    (5, 6)
    """
    if not text:
        return 0
    n = len(text)
    for ws in " \n\r\t":
        n -= text.count(ws)
    pad = 0
    for ch in reversed(text):  # padding may be split by line breaks too
        if ch == "=":
            pad += 1
        elif ch not in " \n\r\t":
            break
    return max(0, (n - pad) * 3 // 4)


def supplier_id_type(identifier: str, scheme: str = "", country: str = "") -> str:
    """Chorus Pro supplier identifier type (1 SIRET, 2 EU VAT, 3 outside the EU) for a UBL or
    CII party identifier; "" when it cannot be told (e.g. a SIREN, a French VAT number).

    An identifier declared as a VAT number (`scheme` "VA") only needs an EU prefix; any other
    must be a valid EU VAT number to count as one ("HRB 12345" is not Croatian VAT).

    >>> supplier_id_type("81234567600017"), supplier_id_type("DE123456789", "VA", "DE")
    ('1', '2')
    >>> supplier_id_type("CHE-123.456.789", "", "CH"), supplier_id_type("812345676", "0002")
    ('3', '')
    """
    if not identifier:
        return ""
    compact = _SPACES.sub("", identifier).upper()
    if scheme == "0009" or (len(compact) == 14 and compact.isdigit()):
        return "1"
    if compact[:2] in _EU_VAT_PREFIXES and _VAT_SHAPE.fullmatch(compact) and (
            scheme == VAT_SCHEME or eu_vat.is_valid(compact)):
        return "2"
    if country and country.upper() not in _EU_COUNTRIES:
        return "3"
    return ""


def _is_siret(identifier: str, scheme: str = "", country: str = "") -> bool:
    """A recipient candidate that is meant as a SIRET (even a mistyped one, for the report)."""
    if scheme == "0009":
        return True
    compact = _SPACES.sub("", identifier)
    return len(compact) == 14 and compact.isdigit()


def _iso_date(text: str) -> str:
    """CII format 102 (YYYYMMDD) -> YYYY-MM-DD; anything else is kept as written."""
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


# --------------------------------------------------------------------------- paths


def _xp(path: str) -> etree.XPath:
    return etree.XPath(path, namespaces=NS, smart_strings=False)


def _text(path: str) -> etree.XPath:
    return _xp(f"string({path})")


@dataclass(frozen=True, slots=True)
class _Scalar:
    """A text field: alternatives tried in order, each (shown path, compiled XPath)."""

    name: str
    alternatives: tuple[tuple[str, etree.XPath], ...]


def _scalar(name: str, *paths: str) -> _Scalar:
    return _Scalar(name, tuple((p, _text(p)) for p in paths))


@dataclass(frozen=True, slots=True)
class _Party:
    """A party identifier: candidates in order; the first that `good` accepts wins, else the
    first non-empty one. Each is (shown path, XPath giving the element, to read @schemeID)."""

    name: str
    candidates: tuple[tuple[str, etree.XPath, str], ...]  # + scheme implied by the place
    good: Callable[[str, str, str], bool]


def _party(name: str, good, *paths: str | tuple[str, ...]) -> _Party:
    """A path is shown as is, or given as (shown path, real path[, implied scheme])."""
    candidates = []
    for p in paths:
        shown, real, implied = (*p, "")[:3] if isinstance(p, tuple) else (p, p, "")
        candidates.append((shown, _xp(f"({real})[1]"), implied))
    return _Party(name, tuple(candidates), good)


@dataclass(frozen=True, slots=True)
class _Group:
    """A repeated group (lines, VAT breakdown): its items and their parts, relative paths."""

    path: str
    items: etree.XPath
    parts: tuple[tuple[str, str, etree.XPath], ...]  # (part name, relative path, compiled)


def _group(path: str, **parts: str) -> _Group:
    return _Group(path, _xp(path), tuple((k, v, _text(v)) for k, v in parts.items()))


@dataclass(frozen=True, slots=True)
class _Attachments:
    """Embedded attachments: one item element per attachment, parts relative to it."""

    path: str  # shown path of an item
    items: etree.XPath
    name: str
    mime: str
    kind: str
    content: str  # the element holding the base64 text
    xpaths: tuple[etree.XPath, ...]

    @classmethod
    def of(cls, path: str, items: str, *, name: str, mime: str, kind: str,
           content: str) -> _Attachments:
        return cls(path, _xp(items), name, mime, kind, content,
                   (_text(name), _text(mime), _text(kind), _xp(f"{content}/text()")))


@dataclass(frozen=True)
class _Spec:
    syntax: str
    scalars: tuple[_Scalar, ...]
    decimals: tuple[_Scalar, ...]
    supplier: _Party
    supplier_type: _Scalar | None  # CPP writes it; UBL/CII derive it from the identifier
    recipient: _Party
    total_vat: str  # path of the VAT total (CPP: of the amounts it is summed from)
    total_vat_xpath: etree.XPath | None  # None: sum of the breakdown (CPP has no total)
    lines: _Group
    vat: _Group
    attachments: _Attachments
    dates_102: bool = False
    locations: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        locs = {s.name: s.alternatives[0][0] for s in (*self.scalars, *self.decimals)}
        locs["supplier_id"] = self.supplier.candidates[0][0]
        locs["supplier_id_type"] = (self.supplier_type.alternatives[0][0] if self.supplier_type
                                    else locs["supplier_id"])
        locs["recipient_siret"] = self.recipient.candidates[0][0]
        locs["total_vat"] = self.total_vat
        for name, group in (("lines", self.lines), ("vat", self.vat)):
            locs[name] = group.path
            for part, rel, _ in group.parts:
                locs[f"{name}.{part}"] = f"{group.path}/{rel}"
        a = self.attachments
        locs["attachments"] = a.path
        for part, rel in (("name", a.name), ("mime", a.mime), ("kind", a.kind),
                          ("size", a.content)):
            locs[f"attachments.{part}"] = f"{a.path}/{rel}"
        object.__setattr__(self, "locations", MappingProxyType(locs))


# ---- UBL 2.1 (Invoice and CreditNote share everything but a few element names)

_UBL_SUP = "cac:AccountingSupplierParty/cac:Party"
_UBL_BUY = "cac:AccountingCustomerParty/cac:Party"


def _has_type(value: str, scheme: str, country: str) -> bool:
    return supplier_id_type(value, scheme, country) != ""


def _anything(value: str, scheme: str, country: str) -> bool:
    return True


def _ubl_spec(kind: str) -> _Spec:
    invoice = kind == "Invoice"
    # UBL 2.1 CreditNote has no cbc:DueDate: BT-9 lives in PaymentMeans there.
    due = ("cbc:DueDate", "cac:PaymentMeans/cbc:PaymentDueDate") if invoice else (
        "cac:PaymentMeans/cbc:PaymentDueDate",)
    return _Spec(
        syntax=UBL,
        scalars=(
            _scalar("number", "cbc:ID"),
            _scalar("doc_type", "cbc:InvoiceTypeCode" if invoice else "cbc:CreditNoteTypeCode"),
            _scalar("cadre", "cbc:ProfileID"),
            _scalar("issue_date", "cbc:IssueDate"),
            _scalar("due_date", *due),
            _scalar("supplier_name", f"{_UBL_SUP}/cac:PartyLegalEntity/cbc:RegistrationName",
                    f"{_UBL_SUP}/cac:PartyName/cbc:Name"),
            _scalar("supplier_country",
                    f"{_UBL_SUP}/cac:PostalAddress/cac:Country/cbc:IdentificationCode"),
            _scalar("code_service", "cbc:BuyerReference"),
            _scalar("ej", "cac:OrderReference/cbc:ID"),
            _scalar("currency", "cbc:DocumentCurrencyCode"),
            _scalar("payment_means", "cac:PaymentMeans/cbc:PaymentMeansCode"),
            _scalar("iban", "cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID"),
            _scalar("original_invoice", "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID"),
        ),
        decimals=(
            _scalar("total_ht", "cac:LegalMonetaryTotal/cbc:TaxExclusiveAmount"),
            _scalar("total_ttc", "cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount"),
            _scalar("net_to_pay", "cac:LegalMonetaryTotal/cbc:PayableAmount"),
        ),
        supplier=_party(
            "supplier_id", _has_type,
            (f"{_UBL_SUP}/cac:PartyIdentification/cbc:ID",
             f"{_UBL_SUP}/cac:PartyIdentification/cbc:ID[@schemeID='0009']"),
            f"{_UBL_SUP}/cac:PartyLegalEntity/cbc:CompanyID",
            (f"{_UBL_SUP}/cac:PartyTaxScheme/cbc:CompanyID",
             f"{_UBL_SUP}/cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='VAT']/cbc:CompanyID",
             VAT_SCHEME),
        ),
        supplier_type=None,
        recipient=_party(
            "recipient_siret", _is_siret,
            (f"{_UBL_BUY}/cac:PartyIdentification/cbc:ID",
             f"{_UBL_BUY}/cac:PartyIdentification/cbc:ID[@schemeID='0009']"),
            f"{_UBL_BUY}/cac:PartyLegalEntity/cbc:CompanyID",
            f"{_UBL_BUY}/cbc:EndpointID",
        ),
        total_vat="cac:TaxTotal/cbc:TaxAmount",
        total_vat_xpath=_xp("cac:TaxTotal/cbc:TaxAmount"),
        lines=_group(
            "cac:InvoiceLine" if invoice else "cac:CreditNoteLine",
            number="cbc:ID", description="cac:Item/cbc:Name",
            quantity="cbc:InvoicedQuantity" if invoice else "cbc:CreditedQuantity",
            unit_price="cac:Price/cbc:PriceAmount", net_amount="cbc:LineExtensionAmount",
            vat_rate="cac:Item/cac:ClassifiedTaxCategory/cbc:Percent",
        ),
        vat=_group(
            "cac:TaxTotal/cac:TaxSubtotal", rate="cac:TaxCategory/cbc:Percent",
            base="cbc:TaxableAmount", amount="cbc:TaxAmount", category="cac:TaxCategory/cbc:ID",
        ),
        attachments=_Attachments.of(
            "cac:AdditionalDocumentReference",
            "cac:AdditionalDocumentReference[cac:Attachment/cbc:EmbeddedDocumentBinaryObject]",
            name="cac:Attachment/cbc:EmbeddedDocumentBinaryObject/@filename",
            mime="cac:Attachment/cbc:EmbeddedDocumentBinaryObject/@mimeCode",
            kind="cbc:DocumentDescription",
            content="cac:Attachment/cbc:EmbeddedDocumentBinaryObject",
        ),
    )


# ---- CII D16B (EN 16931 / Factur-X)

_TX = "rsm:SupplyChainTradeTransaction"
_AGR = f"{_TX}/ram:ApplicableHeaderTradeAgreement"
_SET = f"{_TX}/ram:ApplicableHeaderTradeSettlement"
_SUM = f"{_SET}/ram:SpecifiedTradeSettlementHeaderMonetarySummation"
_SELLER = f"{_AGR}/ram:SellerTradeParty"
_BUYER = f"{_AGR}/ram:BuyerTradeParty"
_MEANS = f"{_SET}/ram:SpecifiedTradeSettlementPaymentMeans"
_LINE_SET = "ram:SpecifiedLineTradeSettlement"

_CII_SPEC = _Spec(
    syntax=CII_SYNTAX,
    scalars=(
        _scalar("number", "rsm:ExchangedDocument/ram:ID"),
        _scalar("doc_type", "rsm:ExchangedDocument/ram:TypeCode"),
        _scalar("cadre", "rsm:ExchangedDocumentContext/"
                         "ram:BusinessProcessSpecifiedDocumentContextParameter/ram:ID"),
        _scalar("issue_date", "rsm:ExchangedDocument/ram:IssueDateTime/udt:DateTimeString"),
        _scalar("due_date",
                f"{_SET}/ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime/udt:DateTimeString"),
        _scalar("supplier_name", f"{_SELLER}/ram:Name"),
        _scalar("supplier_country", f"{_SELLER}/ram:PostalTradeAddress/ram:CountryID"),
        _scalar("code_service", f"{_AGR}/ram:BuyerReference"),
        _scalar("ej", f"{_AGR}/ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID"),
        _scalar("currency", f"{_SET}/ram:InvoiceCurrencyCode"),
        _scalar("payment_means", f"{_MEANS}/ram:TypeCode"),
        _scalar("iban", f"{_MEANS}/ram:PayeePartyCreditorFinancialAccount/ram:IBANID",
                f"{_MEANS}/ram:PayeePartyCreditorFinancialAccount/ram:ProprietaryID"),
        _scalar("original_invoice", f"{_SET}/ram:InvoiceReferencedDocument/ram:IssuerAssignedID"),
    ),
    decimals=(
        _scalar("total_ht", f"{_SUM}/ram:TaxBasisTotalAmount"),
        _scalar("total_ttc", f"{_SUM}/ram:GrandTotalAmount"),
        _scalar("net_to_pay", f"{_SUM}/ram:DuePayableAmount"),
    ),
    supplier=_party(
        "supplier_id", _has_type,
        (f"{_SELLER}/ram:GlobalID", f"{_SELLER}/ram:GlobalID[@schemeID='0009']"),
        f"{_SELLER}/ram:SpecifiedLegalOrganization/ram:ID",
        (f"{_SELLER}/ram:SpecifiedTaxRegistration/ram:ID",
         f"{_SELLER}/ram:SpecifiedTaxRegistration/ram:ID[@schemeID='VA']"),  # not FC
    ),
    supplier_type=None,
    recipient=_party(
        "recipient_siret", _is_siret,
        (f"{_BUYER}/ram:GlobalID", f"{_BUYER}/ram:GlobalID[@schemeID='0009']"),
        f"{_BUYER}/ram:SpecifiedLegalOrganization/ram:ID",
    ),
    total_vat=f"{_SUM}/ram:TaxTotalAmount",
    total_vat_xpath=_xp(f"{_SUM}/ram:TaxTotalAmount"),
    lines=_group(
        f"{_TX}/ram:IncludedSupplyChainTradeLineItem",
        number="ram:AssociatedDocumentLineDocument/ram:LineID",
        description="ram:SpecifiedTradeProduct/ram:Name",
        quantity="ram:SpecifiedLineTradeDelivery/ram:BilledQuantity",
        unit_price="ram:SpecifiedLineTradeAgreement/ram:NetPriceProductTradePrice/ram:ChargeAmount",
        net_amount=f"{_LINE_SET}/ram:SpecifiedTradeSettlementLineMonetarySummation"
                   "/ram:LineTotalAmount",
        vat_rate=f"{_LINE_SET}/ram:ApplicableTradeTax/ram:RateApplicablePercent",
    ),
    vat=_group(
        f"{_SET}/ram:ApplicableTradeTax", rate="ram:RateApplicablePercent",
        base="ram:BasisAmount", amount="ram:CalculatedAmount", category="ram:CategoryCode",
    ),
    attachments=_Attachments.of(
        f"{_AGR}/ram:AdditionalReferencedDocument",
        f"{_AGR}/ram:AdditionalReferencedDocument[ram:AttachmentBinaryObject]",
        name="ram:AttachmentBinaryObject/@filename", mime="ram:AttachmentBinaryObject/@mimeCode",
        kind="ram:Name", content="ram:AttachmentBinaryObject",
    ),
    dates_102=True,
)


# ---- CPP V1.17 (CPPFactureMixteUnitaire, no namespace)

_CPP_SPEC = _Spec(
    syntax=CPP,
    scalars=(
        _scalar("number", "DonneesFacture/Id"),
        _scalar("doc_type", "DonneesFacture/Type"),
        _scalar("cadre", "DonneesFacture/Cadre"),
        _scalar("issue_date", "DonneesFacture/DateEmissionFacture"),
        _scalar("supplier_name", "Fournisseur/RaisonSociale"),
        _scalar("supplier_country", "Fournisseur/CodePays"),
        _scalar("code_service", "Debiteur/CodeService"),
        _scalar("ej", "DonneesFacture/Engagement/NumeroEngagement"),
        _scalar("currency", "DonneesFacture/Devise"),
        _scalar("payment_means", "DonneesFacture/ModePaiement/Code"),
        # Compte whatever its @Type: a RIB where an IBAN is due must still reach the IBAN check.
        _scalar("iban", "Fournisseur/ReferenceBancaire/Compte"),
        _scalar("original_invoice", "DonneesFacture/IdFactureOrigine"),
    ),
    decimals=(
        _scalar("total_ht", "DonneesFacture/Montants/MontantHT"),
        _scalar("total_ttc", "DonneesFacture/Montants/MontantTTC"),
        _scalar("net_to_pay", "DonneesFacture/Montants/MontantNetAPayer"),
    ),
    supplier=_party("supplier_id", _anything, "Fournisseur/Identifiant"),
    supplier_type=_scalar("supplier_id_type", "Fournisseur/TypeIdentifiant"),
    recipient=_party("recipient_siret", _anything, "Debiteur/Identifiant"),
    # CPP carries no VAT total: it is the sum of TVAS (None when an amount is unusable).
    total_vat="DonneesFacture/TVAS/TVA/MontantTVA",
    total_vat_xpath=None,
    lines=_group(
        "DonneesFacture/Lignes/Ligne", number="@NumOrdre", description="Description",
        quantity="Quantite", unit_price="PrixUnitaire", net_amount="MontantHT", vat_rate="TauxTVA",
    ),
    vat=_group("DonneesFacture/TVAS/TVA", rate="Taux", base="BaseHt", amount="MontantTVA"),
    attachments=_Attachments.of(
        "PJ", "PJ", name="NomPJ", mime="MimeTypePJ", kind="TypePJ", content="Contenu",
    ),
)

_SPECS = {
    interfaces.UBL_INVOICE: _ubl_spec("Invoice"),
    interfaces.UBL_CREDITNOTE: _ubl_spec("CreditNote"),
    interfaces.CII: _CII_SPEC,
    "CPPFactureMixteUnitaire": _CPP_SPEC,
}


# --------------------------------------------------------------------------- extraction


def syntax_of(element) -> str:
    """"UBL", "CII" or "CPP" for an invoice element we can read, else ""."""
    tag = getattr(element, "tag", None)
    return _ROOTS.get(tag, "") if isinstance(tag, str) else ""


def extract(element: etree._Element) -> InvoiceData:
    """Read one invoice: a UBL Invoice/CreditNote, a CII CrossIndustryInvoice or a CPP
    CPPFactureMixteUnitaire. Never raises; an element of another kind gives syntax ""."""
    tag = getattr(element, "tag", None)
    spec = _SPECS.get(tag) if isinstance(tag, str) else None
    if spec is None:
        return InvoiceData(syntax="")
    moved: dict[str, str] = {}  # field -> fallback path it was found at
    values: dict[str, object] = {}

    for s in spec.scalars:
        values[s.name] = _first(element, s, moved)
    if spec.dates_102:
        values["issue_date"] = _iso_date(values["issue_date"])
        values["due_date"] = _iso_date(values["due_date"])
    for s in spec.decimals:
        values[s.name] = parse_decimal(_first(element, s, moved))

    country = values["supplier_country"]
    supplier, scheme = _pick(element, spec.supplier, country, moved)
    values["supplier_id"] = supplier
    if spec.supplier_type is not None:
        values["supplier_id_type"] = _first(element, spec.supplier_type, moved)
    else:
        values["supplier_id_type"] = supplier_id_type(supplier, scheme, country)
        if "supplier_id" in moved:
            moved["supplier_id_type"] = moved["supplier_id"]
    values["recipient_siret"] = _pick(element, spec.recipient, country, moved)[0]

    vat = tuple(
        VatBreakdown(rate=parse_decimal(p["rate"]), base=parse_decimal(p["base"]),
                     amount=parse_decimal(p["amount"]), category=p.get("category", ""))
        for p in _items(element, spec.vat)
    )
    values["vat"] = vat
    values["total_vat"] = _total_vat(element, spec, values["currency"], vat)
    values["lines"] = tuple(
        Line(number=p["number"], description=p["description"],
             quantity=parse_decimal(p["quantity"]), unit_price=parse_decimal(p["unit_price"]),
             net_amount=parse_decimal(p["net_amount"]), vat_rate=parse_decimal(p["vat_rate"]))
        for p in _items(element, spec.lines)
    )
    values["attachments"] = _attachments(element, spec.attachments)

    locations = MappingProxyType({**spec.locations, **moved}) if moved else spec.locations
    return InvoiceData(syntax=spec.syntax, locations=locations, **values)


def _first(element, scalar: _Scalar, moved: dict[str, str]) -> str:
    for i, (shown, xpath) in enumerate(scalar.alternatives):
        value = xpath(element).strip()
        if value:
            if i:
                moved[scalar.name] = shown
            return value
    return ""


def _pick(element, party: _Party, country: str, moved: dict[str, str]) -> tuple[str, str]:
    """(value, schemeID) of the first good candidate, else of the first non-empty one."""
    fallback = None
    for i, (shown, xpath, implied) in enumerate(party.candidates):
        found = xpath(element)
        if not found:
            continue
        value = (found[0].text or "").strip()
        if not value:
            continue
        scheme = (found[0].get("schemeID") or implied).strip()
        if party.good(value, scheme, country):
            fallback = (i, shown, value, scheme)
            break
        if fallback is None:
            fallback = (i, shown, value, scheme)
    if fallback is None:
        return "", ""
    i, shown, value, scheme = fallback
    if i:
        moved[party.name] = shown
    return value, scheme


def _items(element, group: _Group):
    for item in group.items(element):
        yield {name: xpath(item).strip() for name, _, xpath in group.parts}


def _total_vat(element, spec: _Spec, currency: str, vat: tuple[VatBreakdown, ...]):
    if spec.total_vat_xpath is None:  # CPP: the sum of the breakdown
        if not vat or any(v.amount is None for v in vat):
            return None
        return sum((v.amount for v in vat), Decimal(0))
    nodes = spec.total_vat_xpath(element)
    if not nodes:
        return None
    # UBL and CII may state the VAT total twice: in the invoice and in the accounting currency.
    chosen = next((n for n in nodes if currency and n.get("currencyID") == currency), nodes[0])
    return parse_decimal(chosen.text)


def _attachments(element, spec: _Attachments) -> tuple[Attachment, ...]:
    name, mime, kind, content = spec.xpaths
    return tuple(
        Attachment(name=name(item).strip(), mime=mime(item).strip(), kind=kind(item).strip(),
                   size=base64_size("".join(content(item))))
        for item in spec.items(element)
    )
