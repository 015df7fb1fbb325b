"""CPPFacturePivot V2_01: the invoices a recipient partner receives (`FDE2001A_<APP>_<ID>.xml`).

Design, "Life cycle after deposit": one `CPPFacturePivotUnitaire` per invoice, `IdCPRO` = the
platform's invoice id, `Renvoi` = `Non` on first delivery (`Recyclée`, `Complétée` on a new one),
the original invoice and its attachments as base64 pieces. The shape is AIFE's official
`CPPFacturePivot_V2_01.xsd` (schemas/aife/). Written as a stream (`etree.xmlfile`) to a binary
file: a delivery of thousands of invoices with their pieces never sits whole in memory.

The schema requires data the platform does not keep for every syntax (delivery date, payment
mode); the builder fills them from what it has: the issue date, payment by transfer (30).
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from lxml import etree

from edi.reports import statut
from edi.reports.statut import _is_date, xml_text

VERSION = "V2_01"
INTERFACE = "FDE2001A"  # this platform's interface code for invoices delivered to a recipient
FIRST, RECYCLED, COMPLETED = "Non", "Recyclée", "Complétée"  # Renvoi
_ID_MAX, _NAME_MAX, _SERVICE_MAX, _EJ_MAX = 20, 50, 100, 50
_TRANSFER = "30"  # ModePaiement/Code: virement
_PAYMENT_CODES = {"10", "20", "30", "31", "42", "48", "49", "97"}


@dataclass(frozen=True, slots=True)
class Piece:
    """One file of an invoice: the original document, or one of its attachments."""

    name: str  # NomPJ (cut to 50 characters)
    path: str  # where the platform keeps it (spool/recipients)
    main: bool = False  # the invoice itself (TypePJ 01) rather than an attachment (02)


@dataclass(frozen=True, slots=True)
class DeliveredInvoice:
    platform_id: int  # IdCPRO
    renvoi: str  # FIRST | RECYCLED | COMPLETED
    number: str
    doc_type: str
    supplier_id_type: str
    supplier_id: str
    supplier_name: str
    supplier_country: str
    recipient_siret: str
    code_service: str
    ej: str
    issue_date: str
    received: date  # DateReception: the deposit's day
    currency: str
    total_ht: str
    total_ttc: str
    pieces: tuple[Piece, ...]
    payment_means: str = ""


def name(app: str, delivery_id: str) -> str:
    """`FDE2001A_<APP>_<ID>.xml`."""
    return f"{INTERFACE}_{app}_{delivery_id}.xml"


def write_delivery(out, *, sender_app: str, recipient_app: str, delivery_id: str, produced_at: datetime,
                   invoices: Iterable[DeliveredInvoice], count: int) -> None:
    """The CPPFacturePivot for `count` invoices, written to the binary file object `out`. Its
    envelope is the one of the platform's reports (same elements in both official schemas)."""
    envelope = statut._document(sender_app, recipient_app, delivery_id, produced_at).find("Enveloppe")
    with etree.xmlfile(out, encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element("CPPFacturePivot", Version=VERSION):
            xf.write(envelope, pretty_print=True)
            with xf.element("CPPFactures", Compteur=str(count)):
                written = 0
                for written, invoice in enumerate(invoices, start=1):
                    xf.write(_unit(written, invoice), pretty_print=True)
    if written != count:
        raise ValueError(f"delivery announced {count} invoices, got {written}")
    out.write(b"\n")


def _unit(number: int, inv: DeliveredInvoice) -> etree._Element:
    unit = etree.Element("CPPFacturePivotUnitaire", NumOrdre=str(number))
    supplier = etree.SubElement(unit, "Fournisseur")
    id_type = inv.supplier_id_type if inv.supplier_id_type in set("1234567") and inv.supplier_id_type else (
        "1" if len(inv.supplier_id) == 14 and inv.supplier_id.isdigit() else "3")
    _leaf(supplier, "TypeIdentifiant", id_type)
    _leaf(supplier, "Identifiant", inv.supplier_id)
    _leaf(supplier, "RaisonSociale", inv.supplier_name)
    country = inv.supplier_country.upper()
    _leaf(supplier, "CodePays", country if len(country) == 2 and country.isalpha() else "FR")
    _leaf(supplier, "ModeEmission", "flux")
    debtor = etree.SubElement(unit, "Debiteur")
    _leaf(debtor, "TypeIdentifiant", "1")
    _leaf(debtor, "Identifiant", inv.recipient_siret)
    if inv.code_service:
        _leaf(debtor, "CodeService", inv.code_service[:_SERVICE_MAX])
    data = etree.SubElement(unit, "DonneesFacture")
    _leaf(data, "Id", inv.number[:_ID_MAX])
    _leaf(data, "IdCPRO", str(inv.platform_id))
    _leaf(data, "Renvoi", inv.renvoi)
    _leaf(data, "Type", "381" if inv.doc_type == "381" else "380")
    _leaf(data, "Cadre", "A1")
    issued = inv.issue_date if _is_date(inv.issue_date) else inv.received.isoformat()
    _leaf(data, "DateEmissionFacture", issued)
    _leaf(data, "DateLivraison", issued)
    payment = etree.SubElement(data, "ModePaiement")
    _leaf(payment, "Code", inv.payment_means if inv.payment_means in _PAYMENT_CODES else _TRANSFER)
    _leaf(data, "DateReception", inv.received.isoformat())
    currency = inv.currency.upper()
    _leaf(data, "Devise", currency if len(currency) == 3 and currency.isalpha() else "EUR")
    amounts = etree.SubElement(data, "Montants")
    _leaf(amounts, "MontantHT", _decimal(inv.total_ht))
    _leaf(amounts, "MontantTTC", _decimal(inv.total_ttc))
    _leaf(amounts, "MontantNetAPayer", _decimal(inv.total_ttc))
    if inv.ej:
        _leaf(etree.SubElement(data, "Engagement"), "NumeroEngagement", inv.ej[:_EJ_MAX])
    for n, piece in enumerate(inv.pieces, start=1):
        pj = etree.SubElement(unit, "PJ", NumOrdre=str(n))
        with open(piece.path, "rb") as fh:
            _leaf(pj, "Contenu", base64.b64encode(fh.read()).decode("ascii"))
        _leaf(pj, "NomPJ", piece.name[:_NAME_MAX])
        _leaf(pj, "TypePJ", "01" if piece.main else "02")
        _leaf(pj, "MimeTypePJ", mimetypes.guess_type(piece.name)[0] or "application/octet-stream")
    return unit


def _decimal(value: str) -> str:
    """An amount as xs:decimal; one the invoice did not give (or not as a number) is 0."""
    try:
        float(value)
    except ValueError:
        return "0"
    return value if value.replace(".", "", 1).lstrip("-").isdigit() else "0"


def _leaf(parent: etree._Element, tag: str, value: str) -> None:
    etree.SubElement(parent, tag).text = xml_text(value)
