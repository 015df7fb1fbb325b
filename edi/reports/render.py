"""Human-readable rendering of CPPStatut reports, in French, for suppliers and ops.

A supplier should understand an integration or processing report without reading XML:
the flow's status and what it means, then each error (invoice, rule, reason, message,
field and value), or each invoice's new status with its deposit number and certificate.

The XML may come back from disk or from a partner, so it is parsed defensively: no DTD,
no entity expansion, no network access; a document with a DOCTYPE is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from edi.reports.statut import FLOW_STATUS_LABELS, LIFECYCLE_LABELS

# What each flow status means for the supplier who deposited the flow.
_FLOW_MEANING = {
    "90": "toutes les factures ont été intégrées.",
    "93": "aucune facture n'a été intégrée.",
    "96": (
        "seules les factures sans erreur ont été intégrées ; "
        "les autres sont à corriger et à redéposer."
    ),
}
# Statuses whose ComplementStatut is the deposit number (the platform deposits and makes available;
# 12 is the same invoice made available again). For the others it is shown as a plain complement.
_PLATFORM_STATUSES = {"01", "02", "03", "12"}
_LINE_BREAKS = re.compile("[\r\n\x85\u2028\u2029]+")
_CERTIFICATE = re.compile(r"[A-Za-z0-9+/]{43}=")  # base64 of a SHA-256 digest


@dataclass(frozen=True, slots=True)
class _Error:
    number: str
    reason: str
    code: str
    message: str
    description: str


@dataclass(frozen=True, slots=True)
class _FlowStatus:
    status: str
    flow_id: str
    at: str
    complement: str
    comment: str
    errors: list[_Error]


@dataclass(frozen=True, slots=True)
class _InvoiceStatus:
    invoice: str
    invoice_date: str
    supplier: str
    recipient: str
    code_service: str
    status: str
    complement: str
    comment: str
    at: str
    producer: str


@dataclass(slots=True)
class _Report:
    produced: str = ""
    report_id: str = ""
    sender: str = ""
    recipient: str = ""
    flows: list[_FlowStatus] = field(default_factory=list)
    invoices: list[_InvoiceStatus] | None = None  # None: flow block


def render_text(xml: bytes) -> str:
    """The report as plain French text, one fact per line."""
    report = _read(xml)
    out = [*_header(report)]
    if report.invoices is None:
        for flow in report.flows:
            out.extend(_flow_lines(flow))
    else:
        count = len(report.invoices)
        out.append(f"{count} changement{'s' if count > 1 else ''} de statut :")
        out.extend(f"  - {_invoice_line(item)}" for item in report.invoices)
    return "\n".join(out) + "\n"


def render_rich(xml: bytes):
    """The report as a rich renderable (a header, then a table), for the terminal."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    report = _read(xml)
    parts: list = [Text(line) for line in _header(report)]
    if report.invoices is None:
        for flow in report.flows:
            parts.append(Text(f"Flux : {flow.flow_id} — statut du {_when(flow.at)}"))
            parts.append(Text(_status_sentence(flow.status), style="bold"))
            table = Table("N°", "Règle", "Motif", "Message", "Facture, champ, valeur")
            for error in flow.errors:
                cells = (error.number, error.code, error.reason, error.message, error.description)
                table.add_row(*(Text(cell) for cell in cells))
            if flow.errors:
                parts.append(table)
    else:
        table = Table("Facture", "Statut", "Date", "N° de dépôt / complément", "Certificat / commentaire")
        for item in report.invoices:
            cells = (
                item.invoice,
                f"{item.status} {LIFECYCLE_LABELS.get(item.status, '')}".strip(),
                _when(item.at),
                item.complement,
                item.comment,
            )
            table.add_row(*(Text(cell) for cell in cells))
        parts.append(table)
    return Group(*parts)


# ----- reading -----


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )


def _read(xml: bytes) -> _Report:
    tree = etree.fromstring(xml, _parser()).getroottree()
    if tree.docinfo.doctype:
        raise ValueError("compte rendu refusé : DOCTYPE interdit")
    root = tree.getroot()
    if root.tag != "CPPStatut":
        raise ValueError(f"compte rendu illisible : racine {root.tag!r} au lieu de CPPStatut")
    report = _Report()
    for param in root.iterfind("Enveloppe/EnveloppeUnitaire/Parametres/ParametreIndiv"):
        code, value = _get(param, "Code"), _get(param, "Valeurparametre")
        if code == "DtPrd":
            report.produced = value
        elif code == "IdFlx":
            report.report_id = value
    report.sender = _get(root, "Enveloppe/EnveloppeUnitaire/Partenaires/Emetteur/Id")
    report.recipient = _get(root, "Enveloppe/EnveloppeUnitaire/Partenaires/Recepteur/Id")
    if root.find("CPPFactureStatuts") is not None:
        report.invoices = [_invoice(u) for u in root.iterfind("CPPFactureStatuts/CPPFactureStatutUnitaire")]
    for data in root.iterfind("CPPFluxStatuts/CPPFluxStatutUnitaire/DonneesStatut"):
        report.flows.append(
            _FlowStatus(
                status=_get(data, "IdStatut"),
                flow_id=_get(data, "IdFlux"),
                at=_get(data, "Horodatage"),
                complement=_get(data, "ComplementStatut"),
                comment=_get(data, "Commentaire"),
                errors=[
                    _Error(
                        number=line.get("IdLigne", ""),
                        reason=_get(line, "NatureErreur"),
                        code=_get(line, "CodeErreur"),
                        message=_get(line, "LibelleErreur"),
                        description=_get(line, "DescriptionErreur"),
                    )
                    for line in data.iterfind("Details/LigneErreurDetail")
                ],
            )
        )
    return report


def _invoice(unit: etree._Element) -> _InvoiceStatus:
    return _InvoiceStatus(
        invoice=_get(unit, "DonneesStatut/IdFacture"),
        invoice_date=_get(unit, "DonneesStatut/DateFacture"),
        supplier=_get(unit, "Fournisseur/Identifiant"),
        recipient=_get(unit, "Debiteur/Identifiant"),
        code_service=_get(unit, "Debiteur/CodeService"),
        status=_get(unit, "DonneesStatut/IdStatut"),
        complement=_get(unit, "DonneesStatut/ComplementStatut"),
        comment=_get(unit, "DonneesStatut/Commentaire"),
        at=_get(unit, "DonneesStatut/Horodatage"),
        producer=_attribute(unit, "DonneesStatut/Producteur", "Id"),
    )


def _get(element: etree._Element, path: str) -> str:
    """The text at `path`, on one line (a report line must not be broken by its content)."""
    return _LINE_BREAKS.sub(" ", element.findtext(path) or "")


def _attribute(element: etree._Element, path: str, name: str) -> str:
    """The attribute `name` of the element at `path`, "" when either is missing."""
    found = element.find(path)
    return "" if found is None else _LINE_BREAKS.sub(" ", found.get(name, ""))


# ----- writing -----


def _header(report: _Report) -> list[str]:
    title = "Compte rendu de traitement" if report.invoices is not None else "Compte rendu d'intégration"
    lines = [f"{title} n° {report.report_id}" if report.report_id else title]
    if report.produced:
        lines.append(f"Produit le : {_when(report.produced)}")
    lines.append(f"Émetteur : {report.sender} — destinataire : {report.recipient}")
    return lines


def _status_sentence(status: str) -> str:
    label = FLOW_STATUS_LABELS.get(status, "statut inconnu")
    meaning = _FLOW_MEANING.get(status)
    return f"Statut : {status} – {label}" + (f" : {meaning}" if meaning else "")


def _flow_lines(flow: _FlowStatus) -> list[str]:
    lines = [f"Flux : {flow.flow_id}", _status_sentence(flow.status), f"Date du statut : {_when(flow.at)}"]
    if flow.complement:
        lines.append(f"Complément : {flow.complement}")
    if flow.comment:
        lines.append(f"Commentaire : {flow.comment}")
    if not flow.errors:
        lines.append("Aucune erreur.")
        return lines
    count = len(flow.errors)
    lines.append(f"{count} erreur{'s' if count > 1 else ''} :")
    for error in flow.errors:
        lines.append(f"  {error.number}. Règle {error.code} (motif {error.reason}) : {error.message}")
        if error.description:
            lines.append(f"     {error.description}")
    return lines


def _invoice_line(item: _InvoiceStatus) -> str:
    label = LIFECYCLE_LABELS.get(item.status, "statut inconnu")
    invoice = f"Facture {item.invoice}" + (f" du {_day(item.invoice_date)}" if item.invoice_date else "")
    recipient = f"destinataire {item.recipient}" + (
        f", service {item.code_service}" if item.code_service else ""
    )
    parts = [f"{invoice} ({recipient}) : {item.status} {label}", f"le {_when(item.at)}"]
    if item.producer:
        parts.append(f"par {item.producer}")
    if item.complement:
        what = "n° de dépôt" if item.status in _PLATFORM_STATUSES else "complément"
        parts.append(f"{what} {item.complement}")
    if item.comment:
        what = "certificat de dépôt" if _CERTIFICATE.fullmatch(item.comment) else "commentaire"
        parts.append(f"{what} : {item.comment}")
    return " — ".join(parts)


def _when(value: str) -> str:
    """An xs:dateTime (or xs:date) as a French reader writes it; unparsable text as is."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if len(value) == 10:
        return moment.strftime("%d/%m/%Y")
    shown = moment.strftime("%d/%m/%Y %H:%M:%S")
    offset = moment.strftime("%z")
    if offset:
        shown += " UTC" + ("" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}")
    return shown


def _day(value: str) -> str:
    try:
        return datetime.strptime(value, "%Y-%m-%d").strftime("%d/%m/%Y")
    except ValueError:
        return value
