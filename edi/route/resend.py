"""A known invoice sent again: recycled (after 04), completed (after 06), or a duplicate.

Design, "Life cycle after deposit": an invoice in 04 A recycler sent again by its sender (same
supplier, number and date) with only the recipient SIRET, code service or EJ changed is
recycled — routed again (the routing rules ran on the new data), delivered with `Renvoi` =
`Recyclée`, status back to 03. An invoice in 06 Suspendue sent again with the same data plus
attachments is completed: 12 Complétée, delivered again with `Renvoi` = `Complétée`. Any other
resend of a known number stays `DOUBLON` (PLT-20); a number whose invoice was rejected (05)
stays used. "The same data" is what the platform keeps of an invoice: type, currency, amounts.

The same rules serve ops (`edi invoices recycle|complete`): `recycle` and `complete` below
change the known invoice in the caller's session, record its event, and leave the reports to
the caller (FEN1200A to the sender, FDE2001A to a recipient partner).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from lxml import etree
from sqlalchemy import select

from edi import db, lifecycle
from edi.db.models import Invoice, StatusEvent, utcnow
from edi.invoice import InvoiceData, extract
from edi.lifecycle import Refusal
from edi.reports import pivot
from edi.route import recipients, status
from edi.route.directory import Directory
from edi.route.routing import check_routing
from edi.spool import Spool, safe_name

RECYCLE, COMPLETE = "recycle", "complete"
RENVOI = {RECYCLE: pivot.RECYCLED, COMPLETE: pivot.COMPLETED}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@dataclass(frozen=True, slots=True)
class Resend:
    """A resend that acts on the known invoice `invoice_id` (deposit `deposit_no`)."""

    kind: str  # RECYCLE | COMPLETE
    invoice_id: int
    deposit_no: str


def known(s, supplier_id: str, number: str, issue_date: str) -> Invoice | None:
    """The deposited invoice with this supplier, number and date (the latest, if several)."""
    return s.execute(select(Invoice).where(
        Invoice.supplier_id == supplier_id, Invoice.number == number, Invoice.issue_date == issue_date,
        Invoice.accepted.is_(True), Invoice.deposit_no.is_not(None)).order_by(Invoice.id.desc()).limit(1)
    ).scalars().first()


def classify(url: str, data: InvoiceData) -> Resend | None:
    """What a resend of a known number is, when it is not a duplicate (None: DOUBLON)."""
    with db.session(url) as s:
        invoice = known(s, data.supplier_id, data.number, data.issue_date)
    if invoice is None or invoice.status not in (lifecycle.TO_RECYCLE, lifecycle.SUSPENDED):
        return None
    new_total = lambda value: "" if value is None else str(value)  # noqa: E731  (as the row stores it)
    same_bill = ((invoice.doc_type, invoice.currency, invoice.total_ht, invoice.total_ttc)
                 == (data.doc_type, data.currency, new_total(data.total_ht), new_total(data.total_ttc)))
    same_route = ((invoice.recipient_siret, invoice.code_service, invoice.ej)
                  == (data.recipient_siret, data.code_service, data.ej))
    if not same_bill:
        return None
    if invoice.status == lifecycle.TO_RECYCLE and not same_route:
        return Resend(RECYCLE, invoice.id, invoice.deposit_no)
    if invoice.status == lifecycle.SUSPENDED and same_route and len(data.attachments) > attachments_of(invoice):
        return Resend(COMPLETE, invoice.id, invoice.deposit_no)
    return None


def attachments_of(invoice: Invoice) -> int:
    """Attachments of the invoice as delivered: those inside its document, or the files beside
    it (`<deposit>_PJ<n>_<name>`), whichever is more."""
    if not (invoice.path and os.path.exists(invoice.path)):
        return 0
    try:
        inside = len(extract(etree.parse(invoice.path, _PARSER).getroot()).attachments)
    except etree.XMLSyntaxError:
        inside = 0
    folder = os.path.dirname(invoice.path)
    beside = sum(1 for name in os.listdir(folder) if name.startswith(f"{invoice.deposit_no}_PJ"))
    return max(inside, beside)


def recycle(s, invoice: Invoice, *, siret: str, code_service: str, ej: str, path: str, producer: str,
            comment: str, at: datetime) -> StatusEvent:
    """Back to 03 with the new routing data, delivered at `path` (the platform sets 03; the event
    names who asked: the sender's flow, or the ops user)."""
    event = status.record(s, invoice, status.Change(lifecycle.AVAILABLE, lifecycle.PLATFORM, producer,
                                                    comment=comment), at)
    invoice.recipient_siret, invoice.code_service, invoice.ej, invoice.path = siret, code_service, ej, path
    return event


def complete(s, invoice: Invoice, *, path: str, producer: str, actor: str, comment: str,
             at: datetime) -> StatusEvent:
    """12 Complétée: the supplier (by its sender, or ops for it) added the pieces asked for."""
    event = status.record(s, invoice, status.Change(lifecycle.COMPLETED, actor, producer, comment=comment), at)
    invoice.path = path
    return event


def copy_invoice(spool: Spool, invoice: Invoice, siret: str, code_service: str) -> str:
    """The delivered files of `invoice`, copied to the folder of its new recipient (deterministic
    names: the deposit number); returns the invoice's new path."""
    target = spool.recipient_dir(siret, code_service)
    folder = os.path.dirname(invoice.path)
    if os.path.abspath(folder) == os.path.abspath(target):  # only the EJ changed: same recipient's folder
        return invoice.path
    target.mkdir(parents=True, exist_ok=True)
    for name in sorted(os.listdir(folder)):
        if name == os.path.basename(invoice.path) or name.startswith(f"{invoice.deposit_no}_PJ"):
            shutil.copyfile(os.path.join(folder, name), target / name)
    return str(target / os.path.basename(invoice.path))


def add_attachments(invoice: Invoice, files: list[str]) -> list[str]:
    """Copy `files` beside the delivered invoice as its next pieces; returns their new names."""
    folder = os.path.dirname(invoice.path)
    taken = sum(1 for name in os.listdir(folder) if name.startswith(f"{invoice.deposit_no}_PJ"))
    names = []
    for n, path in enumerate(files, start=taken + 1):
        name = f"{invoice.deposit_no}_PJ{n}_{safe_name(os.path.basename(path), 'piece')}"
        shutil.copyfile(path, os.path.join(folder, name))
        names.append(name)
    return names


# ------------------------------------------------------------------ by ops (edi invoices recycle|complete)


def recycle_by_ops(url: str, spool: Spool, ej_patterns, deposit_no: str, *, siret: str | None,
                   code_service: str | None, ej: str | None, producer: str,
                   by: str = "l'exploitation") -> status.Applied:
    """`edi invoices recycle`: an invoice in 04 routed again with the routing data given (the
    others kept), checked by the routing rules, back to 03, reported and delivered again —
    in one transaction. Refused (a REJ_* or routing code) changes nothing. `by` names who asked
    in the event's comment (the console: the supplier and its user's login)."""
    at = utcnow()
    with db.session(url) as s:
        invoice = status.deposited(s, deposit_no)
        previous = invoice.status
        _check(lifecycle.check_move(previous, lifecycle.AVAILABLE, lifecycle.PLATFORM), invoice, "recycler")
        new = (siret or invoice.recipient_siret, invoice.code_service if code_service is None else code_service,
               invoice.ej if ej is None else ej)
        if new == (invoice.recipient_siret, invoice.code_service, invoice.ej):
            raise status.Refused(Refusal("REJ_INC", "rien à recycler : donnez un autre --siret, --service ou --ej"))
        found = [f for f in check_routing(recipient_siret=new[0], code_service=new[1], ej=new[2],
                                          directory=Directory(url), ej_patterns=ej_patterns,
                                          invoice_number=invoice.number) if f.fatal]
        if found:
            raise status.Refused(Refusal(found[0].code, found[0].message + (f" ({found[0].value})" if found[0].value else "")))
        path = copy_invoice(spool, invoice, new[0], new[1])
        changes = ", ".join(f"{label} {value or '(aucun)'}" for label, value in zip(("SIRET", "service", "EJ"), new))
        event = recycle(s, invoice, siret=new[0], code_service=new[1], ej=new[2], path=path, producer=producer,
                        comment=f"Facture recyclée par {by} : {changes}", at=at)
        return _reported(s, invoice, event, previous, RECYCLE, at)


def complete_by_ops(url: str, files: list[str], *, deposit_no: str, comment: str, producer: str,
                    by: str = "l'exploitation") -> status.Applied:
    """`edi invoices complete`: the pieces a suspended (06) invoice waited for, added for its
    supplier; 12 Complétée, reported and delivered again — in one transaction."""
    at = utcnow()
    with db.session(url) as s:
        invoice = status.deposited(s, deposit_no)
        previous = invoice.status
        _check(lifecycle.check_move(previous, lifecycle.COMPLETED, lifecycle.SUPPLIER), invoice, "compléter")
        if not files:
            raise status.Refused(Refusal("REJ_INC", "aucune pièce jointe : donnez --attach FICHIER"))
        names = add_attachments(invoice, files)
        text = f"Pièces ajoutées par {by} : {', '.join(names)}" + (f". {comment}" if comment else "")
        event = complete(s, invoice, path=invoice.path, producer=producer, actor=lifecycle.SUPPLIER,
                         comment=text, at=at)
        return _reported(s, invoice, event, previous, COMPLETE, at)


def _check(refusal: Refusal | None, invoice: Invoice, verb: str) -> None:
    if refusal is not None:
        raise status.Refused(Refusal(refusal.code, f"impossible de {verb} la facture {invoice.deposit_no} : "
                                                   f"{refusal.message}"))


def _reported(s, invoice: Invoice, event: StatusEvent, previous: str, kind: str, at: datetime) -> status.Applied:
    """The FEN1200A for the sender, the FDE2001A again for a recipient partner; committed."""
    (sent,) = status.report(s, [(invoice, event)], at)
    recipients.deliver(s, invoice.flow_id, [(invoice.recipient_siret, partial(
        recipients.delivered, invoice.model_dump(), invoice.id, RENVOI[kind], at))], at, prefix="FDR", number=event.id)
    s.commit()
    return status.Applied(invoice.deposit_no, invoice.number, invoice.flow_id, previous, event.code, sent.filename)
