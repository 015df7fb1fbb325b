"""CPPStatut V1_19 reports: the integration report of a flow and the processing reports.

Pure builders: plain data in, UTF-8 XML bytes out (no I/O, no database), so the pipeline
decides where and when a report is written. The same input always gives the same bytes.
The shape is AIFE's official `CPPStatutPivot_V1_19.xsd` (copied in `schemas/aife/`, reference
§2.4), which a connected operator's software may validate against: an `Enveloppe` (parameters
DtPrd and IdFlx, then `Partenaires` with `Recepteur` before `Emetteur`), then either the flow
block `CPPFluxStatuts` (integration report) or the invoice block `CPPFactureStatuts`
(life-cycle statuses: `Debiteur/TypeIdentifiant` 1 = SIRET, `Fournisseur/RaisonSociale` always
present, `Producteur` an empty element whose `Id` attribute names who set the status).

Free text (messages, descriptions, comments, names) may come from the partner's own files.
XML 1.0 cannot hold some characters (most C0 controls, lone surrogates, U+FFFE/U+FFFF); the
builders replace each of them with U+FFFD so a report is always written and shows where
something was lost. Structured fields (application codes, status codes, SIRET, lengths the
schema fixes) are programming errors when wrong and raise ValueError.

Data the partner sent that the schema bounds or types are fitted rather than refused, so an
accepted invoice always gets its report: `Debiteur/CodeService` (at most 100 characters) is cut
to its first 100 characters (the code is an identifier: no ellipsis is added, and the full value
stays in the database); `DateFacture` is written only when it is a real YYYY-MM-DD date (the
element is optional). Values quoted in a `DescriptionErreur` are shortened to 120 characters,
ending with "…". The other free texts (messages, comments, names) have no bound in the schema
and are kept whole.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timezone
from functools import cache
from operator import attrgetter
from pathlib import Path

from lxml import etree

from edi import lifecycle
from edi.finding import Finding

VERSION = "V1_19"
#: AIFE's official schema, kept verbatim in the repository (see schemas/aife/README.md).
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "aife" / "CPPStatutPivot_V1_19.xsd"

# Flow statuses (IdStatut of the flow block, reference §2.4).
FLOW_RECEIVED = "90"  # received, every invoice integrated
FLOW_REJECTED = "93"  # reception error: irrecevable, or no invoice integrated
FLOW_PARTIAL = "96"  # received, partial integration

FLOW_STATUS_LABELS: dict[str, str] = {
    "90": "Flux reçu",
    "91": "Flux en cours de transmission",
    "92": "Flux reçu par le destinataire final",
    "93": "Erreur de réception du flux",
    "94": "Erreur de réception chez le destinataire final",
    "95": "Erreur de transmission au destinataire final",
    "96": "Flux reçu, intégration partielle",
}

# Invoice life-cycle statuses (IdStatut of the invoice block, reference §2.5): edi.lifecycle.
LIFECYCLE_LABELS = lifecycle.LABELS

_LIFECYCLE_CODE = re.compile(r"0[1-9]|[1-3][0-9]|4[01]")
# Everything XML 1.0 cannot hold (its Char production), lone surrogates included.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_VALUE_MAX = 120  # longest offending value quoted in a description
_CODE_SERVICE_MAX = 100  # Debiteur/CodeService maxLength
_COMPLEMENT_MAX = 40  # ComplementStatut maxLength (flow block; reference §2.4 for both blocks)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class ErrorLine:
    """One `LigneErreurDetail` of an integration report."""

    reason: str  # NatureErreur: reform reason code (IRR_SYNTAX, DEST_INC, REJ_SEMAN, ...)
    code: str  # CodeErreur: rule code (BR-CO-15, XSD, platform code)
    message: str  # LibelleErreur: French, one line
    description: str = ""  # DescriptionErreur: invoice, field and value (see `description`)

    @classmethod
    def from_finding(cls, finding: Finding) -> ErrorLine:
        return cls(
            reason=finding.reason,
            code=finding.code,
            message=finding.message,
            description=description(finding.invoice_number, finding.location, finding.value),
        )


@dataclass(frozen=True, slots=True)
class InvoiceStatusLine:
    """One `CPPFactureStatutUnitaire` of a processing report: one status change of one invoice."""

    supplier_id_type: str | int  # 1 SIRET .. 7
    supplier_id: str
    supplier_name: str
    supplier_country: str  # 2 letters, or "" when unknown
    recipient_siret: str  # 14 characters
    code_service: str  # "" when none
    status: str  # life-cycle code 01..41
    complement: str  # deposit number for the statuses the platform sets (<= 40)
    comment: str  # deposit certificate (base64 SHA-256) or the producer's comment
    at: datetime
    invoice_number: str
    invoice_date: str = ""  # YYYY-MM-DD; anything else is left out of the report
    producer: str = "EDI"  # Producteur/@Id: who set the status: EDI (the platform), a recipient's APP, an ops user
    mandate: str = ""  # IdMandatDP: the recipient's mandate number (08 to 11), when given


#: Every field of a status line but its status: lines equal on these are the same invoice's.
_ALL_BUT_STATUS = attrgetter(*(f.name for f in fields(InvoiceStatusLine) if f.name != "status"))


def xml_text(value: str) -> str:
    """`value` with every character XML 1.0 cannot hold replaced by U+FFFD."""
    if _NOT_XML_CHAR.search(value) is None:
        return value
    return _NOT_XML_CHAR.sub("\ufffd", value)


def description(invoice_number: str, location: str, value: str) -> str:
    """The French `DescriptionErreur`: which invoice, which field, which value.

    >>> description("F2026-001", "Debiteur/Identifiant", "12345678900011")
    'Facture F2026-001 — champ Debiteur/Identifiant, valeur « 12345678900011 »'
    >>> description("", "Compteur", "3")
    'Champ Compteur, valeur « 3 »'
    >>> description("F1", "", "")
    'Facture F1'
    """
    where = []
    if location:
        where.append(f"champ {location}")
    if value:
        shown = value if len(value) <= _VALUE_MAX else value[: _VALUE_MAX - 1] + "…"
        where.append(f"valeur « {shown} »")
    detail = ", ".join(where)
    if invoice_number:
        return f"Facture {invoice_number} — {detail}" if detail else f"Facture {invoice_number}"
    return detail[:1].upper() + detail[1:]


def flow_status(accepted: int, rejected: int) -> str:
    """IdStatut of a processed flow: 90 all accepted, 96 some rejected, 93 none accepted."""
    if accepted <= 0:
        return FLOW_REJECTED
    return FLOW_PARTIAL if rejected > 0 else FLOW_RECEIVED


def integration_report_name(interface: str, app: str, flow_ref: str) -> str:
    """`CSO1100A_<APP>_<FLOWID>.xml`: the deposit's interface with its first letter F made C."""
    if not interface.startswith("F") or len(interface) < 2:
        raise ValueError(f"interface code must start with F: {interface!r}")
    return f"C{interface[1:]}_{app}_{flow_ref}.xml"


def processing_report_name(app: str, report_id: str) -> str:
    """`FEN1200A_<APP>_<ID>.xml`."""
    return f"FEN1200A_{app}_{report_id}.xml"


@cache
def load_schema() -> etree.XMLSchema:
    """The CPPStatut schema, parsed once per process, to validate every emitted report."""
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))


def integration_report(
    *,
    sender_app: str,
    recipient_app: str,
    report_flow_id: str,
    flow_ref: str,
    status: str,
    produced_at: datetime,
    lines: Sequence[ErrorLine],
    comment: str = "",
    complement: str = "",
) -> bytes:
    """The integration report of one flow (flow block): its status and one line per finding.

    `sender_app` is the platform, `recipient_app` the partner who deposited flow `flow_ref`.
    """
    if status not in FLOW_STATUS_LABELS:
        raise ValueError(f"unknown flow status {status!r}")
    _check_max("complement", complement, _COMPLEMENT_MAX)
    root = _document(sender_app, recipient_app, report_flow_id, produced_at)
    block = etree.SubElement(root, "CPPFluxStatuts", compteur="1")
    unit = etree.SubElement(block, "CPPFluxStatutUnitaire", NumOrdre="1")
    data = etree.SubElement(unit, "DonneesStatut")
    _leaf(data, "IdStatut", status)
    _optional(data, "ComplementStatut", complement)
    _optional(data, "Commentaire", comment)
    _leaf(data, "Horodatage", _timestamp(produced_at))
    _leaf(data, "IdFlux", flow_ref)
    if lines:
        details = etree.SubElement(data, "Details", NbLignesErreur=str(len(lines)))
        for number, line in enumerate(lines, start=1):
            item = etree.SubElement(details, "LigneErreurDetail", IdLigne=str(number))
            _leaf(item, "NatureErreur", line.reason)
            _leaf(item, "CodeErreur", line.code)
            _leaf(item, "LibelleErreur", line.message)
            _optional(item, "DescriptionErreur", line.description)
    return _serialize(root)


def processing_report(**fields) -> bytes:
    """`write_processing_report` (same keyword arguments) into bytes: a processing report
    (invoice block), one entry per status change, in the given order."""
    buffer = io.BytesIO()
    write_processing_report(buffer, **fields)
    return buffer.getvalue()


def write_processing_report(
    out,
    *,
    sender_app: str,
    recipient_app: str,
    report_flow_id: str,
    produced_at: datetime,
    lines: Iterable[InvoiceStatusLine],
    count: int | None = None,
) -> None:
    """A processing report written to the binary file object `out` as a stream (`etree.xmlfile`):
    with `count` given, `lines` may be a generator over database rows and memory stays flat (a
    10,000-invoice report is 16 MB: the pipeline streams it to disk rather than holding it)."""
    if count is None:
        lines = list(lines)
        count = len(lines)
    if count == 0:
        raise ValueError("a processing report needs at least one status line")
    root = _document(sender_app, recipient_app, report_flow_id, produced_at)
    written = 0
    with etree.xmlfile(out, encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element("CPPStatut", Version=VERSION):
            xf.write(root.find("Enveloppe"), pretty_print=True)
            with xf.element("CPPFactureStatuts", compteur=str(count)):
                holder = etree.Element("CPPFactureStatuts")
                previous = None
                for written, line in enumerate(lines, start=1):
                    if previous is not None and _ALL_BUT_STATUS(line) == _ALL_BUT_STATUS(previous):
                        # the same invoice again (01 then 03): only its number and status change
                        _check_status(line.status)
                        unit = holder[0]
                        unit.set("NumOrdre", str(written))
                        unit.find("DonneesStatut/IdStatut").text = line.status
                    else:
                        if previous is not None:
                            del holder[0]
                        _invoice_status(holder, written, line)
                    xf.write(holder[0], pretty_print=True)
                    previous = line
    if written != count:
        raise ValueError(f"processing report announced {count} lines, got {written}")
    out.write(b"\n")


# ----- internals -----


def _document(
    sender_app: str, recipient_app: str, report_flow_id: str, produced_at: datetime
) -> etree._Element:
    for name, app in (("sender_app", sender_app), ("recipient_app", recipient_app)):
        if not 3 <= len(app) <= 8:
            raise ValueError(f"{name} must be 3 to 8 characters: {app!r}")
    root = etree.Element("CPPStatut", Version=VERSION)
    envelope = etree.SubElement(etree.SubElement(root, "Enveloppe"), "EnveloppeUnitaire", NumOrdre="1")
    params = etree.SubElement(envelope, "Parametres")
    for number, (code, value) in enumerate(
        (("DtPrd", produced_at.date().isoformat()), ("IdFlx", report_flow_id)), start=1
    ):
        param = etree.SubElement(params, "ParametreIndiv", NumOrdre=f"{number:04d}")
        _leaf(param, "Code", code)
        _leaf(param, "Valeurparametre", value)
    partners = etree.SubElement(envelope, "Partenaires")
    _leaf(etree.SubElement(partners, "Recepteur"), "Id", recipient_app)
    _leaf(etree.SubElement(partners, "Emetteur"), "Id", sender_app)
    return root


def _invoice_status(block: etree._Element, number: int, line: InvoiceStatusLine) -> None:
    id_type = str(line.supplier_id_type)
    if id_type not in {"1", "2", "3", "4", "5", "6", "7"}:
        raise ValueError(f"supplier identifier type must be 1..7: {id_type!r}")
    if len(line.recipient_siret) != 14:
        raise ValueError(f"recipient SIRET must be 14 characters: {line.recipient_siret!r}")
    if line.supplier_country and len(line.supplier_country) != 2:
        raise ValueError(f"country code must be 2 letters: {line.supplier_country!r}")
    _check_status(line.status)
    _check_max("complement", line.complement, _COMPLEMENT_MAX)

    unit = etree.SubElement(block, "CPPFactureStatutUnitaire", NumOrdre=str(number))
    supplier = etree.SubElement(unit, "Fournisseur")
    _leaf(supplier, "TypeIdentifiant", id_type)
    _leaf(supplier, "Identifiant", line.supplier_id)
    _leaf(supplier, "RaisonSociale", line.supplier_name)  # required, even when unknown (empty)
    _optional(supplier, "CodePays", line.supplier_country)
    recipient = etree.SubElement(unit, "Debiteur")
    _leaf(recipient, "TypeIdentifiant", "1")  # SIRET, the only type the schema allows
    _leaf(recipient, "Identifiant", line.recipient_siret)
    _optional(recipient, "CodeService", line.code_service[:_CODE_SERVICE_MAX])
    data = etree.SubElement(unit, "DonneesStatut")
    _leaf(data, "IdStatut", line.status)
    _optional(data, "ComplementStatut", line.complement)
    _optional(data, "Commentaire", line.comment)
    _leaf(data, "Horodatage", _timestamp(line.at))
    if line.producer:
        etree.SubElement(data, "Producteur", Id=xml_text(line.producer))
    _leaf(data, "IdFacture", line.invoice_number)
    _optional(data, "DateFacture", line.invoice_date if _is_date(line.invoice_date) else "")
    _optional(data, "IdMandatDP", line.mandate)


def _check_status(status: str) -> None:
    if not _LIFECYCLE_CODE.fullmatch(status):
        raise ValueError(f"life-cycle status must be 01..41: {status!r}")


def _leaf(parent: etree._Element, tag: str, value: str) -> None:
    etree.SubElement(parent, tag).text = xml_text(value)


def _optional(parent: etree._Element, tag: str, value: str) -> None:
    if value:
        _leaf(parent, tag, value)


def _is_date(value: str) -> bool:
    """True for a real calendar date written YYYY-MM-DD (what xs:date needs here)."""
    if not _ISO_DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _check_max(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise ValueError(f"{name} is longer than {limit} characters: {value[:limit + 20]!r}…")


def _timestamp(moment: datetime) -> str:
    """xs:dateTime to the second, always with its offset.

    A naive datetime is taken as UTC: that is how the database stores times (edi.db.models.utcnow).
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.isoformat(timespec="seconds")


def _serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
