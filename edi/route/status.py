"""Status changes after deposit: check, record, and route back to the supplier (issue 9).

A change is checked against the life-cycle table (`edi.lifecycle`), applied to the invoice only
if nobody changed its status meanwhile, recorded as a StatusEvent row, and reported to the
supplier's sender — the partner that deposited the invoice — as a line of a FEN1200A processing
report: one report per sender for each batch (an ops action, a recipient's status flow). All of
it in the caller's transaction, so a refused or interrupted change leaves nothing behind; the
report then leaves through the outbox (`edi.reports.outbox.deliver_pending`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update

from edi import db, lifecycle
from edi.db.models import Flow, Invoice, Report, StatusEvent, utcnow
from edi.lifecycle import PLATFORM_APP, Refusal
from edi.reports import statut


@dataclass(frozen=True, slots=True)
class Change:
    """A status someone wants to set: who (`actor` role, `producer` name) and why."""

    status: str
    actor: str  # edi.lifecycle.ACTORS
    producer: str  # Producteur of the report: EDI, the recipient's APP, the ops user name
    reason: str = ""  # reform reason code (04, 05, 06)
    comment: str = ""  # free text for the supplier
    mandate: str = ""  # IdMandatDP (08 to 11)


class Refused(Exception):
    """The change breaks a life-cycle rule; nothing was changed."""

    def __init__(self, refusal: Refusal):
        super().__init__(str(refusal))
        self.refusal = refusal


class Conflict(Exception):
    """The invoice's status changed between reading it and writing the new one."""


@dataclass(frozen=True, slots=True)
class Applied:
    deposit_no: str
    number: str
    flow_id: int
    previous: str
    status: str
    report: str  # file name of the FEN1200A sent to the supplier's sender


def by_deposit(s, deposit_no: str) -> Invoice | None:
    """The invoice deposited under this number (ops, the console and the CLI name an invoice by
    it), None when there is none."""
    return s.execute(select(Invoice).where(Invoice.deposit_no == deposit_no)).scalars().first()


def deposited(s, deposit_no: str) -> Invoice:
    """`by_deposit` for a change asked on the invoice: Refused (REJ_INEX) when there is none."""
    invoice = by_deposit(s, deposit_no)
    if invoice is None:
        raise Refused(Refusal("REJ_INEX", f"aucune facture déposée sous le numéro {deposit_no}"))
    return invoice


def record(s, invoice: Invoice, change: Change, at: datetime) -> StatusEvent:
    """Check `change` against the invoice's current status and apply it in session `s` (not
    committed): Refused when the table forbids it, Conflict when the status moved meanwhile."""
    refusal = lifecycle.check_move(invoice.status, change.status, change.actor, change.reason, change.mandate)
    if refusal is not None:
        raise Refused(refusal)
    done = s.execute(update(Invoice).where(Invoice.id == invoice.id, Invoice.status == invoice.status)
                     .values(status=change.status))
    if done.rowcount != 1:
        raise Conflict()
    event = StatusEvent(invoice_id=invoice.id, code=change.status, at=at, actor=change.actor,
                        producer=change.producer, reason=change.reason, comment=change.comment,
                        mandate=change.mandate)
    s.add(event)
    s.flush()
    return event


@dataclass(slots=True)
class Recorded:
    """A StatusEvent row `record_many` inserted, as plain data (a SQLModel instance costs more to
    build than the row costs to insert); what `report` and `link_reports` read of it."""

    id: int
    invoice_id: int
    code: str
    at: datetime
    actor: str
    producer: str
    reason: str
    comment: str
    mandate: str
    report_id: int | None = None


def record_many(s, items: list[tuple[object, Change]], at: datetime) -> list[Recorded | Refusal]:
    """`record` for the lines of a status flow, in their order: the same checks (the status each
    invoice reached on an earlier line counts), then one UPDATE and one INSERT for the whole
    batch — a 10,000-line flow is thousands of lines a second. `items` hold Invoice rows or
    Core rows (id, status); the caller holds them locked (SELECT … FOR UPDATE on PostgreSQL,
    the database write lock on SQLite), so none moves meanwhile. The events returned are not in
    the session: `link_reports` records which report carried them."""
    current: dict[int, str] = {}
    out: list[Recorded | Refusal] = []
    moves, rows = [], []
    for invoice, change in items:
        now = current.get(invoice.id, invoice.status)
        refusal = lifecycle.check_move(now, change.status, change.actor, change.reason, change.mandate)
        if refusal is not None:
            out.append(refusal)
            continue
        current[invoice.id] = change.status
        moves.append(dict(b_id=invoice.id, b_from=now, b_to=change.status))
        rows.append(dict(invoice_id=invoice.id, code=change.status, at=at, actor=change.actor, producer=change.producer,
                         reason=change.reason, comment=change.comment, mandate=change.mandate, report_id=None))
        out.append(None)
    if not rows:
        return out
    table, events = Invoice.__table__, StatusEvent.__table__
    s.execute(update(table).where(table.c.id == bindparam("b_id"), table.c.status == bindparam("b_from"))
              .values(status=bindparam("b_to")), moves)
    ids = iter(s.execute(insert(events).returning(events.c.id, sort_by_parameter_order=True), rows).scalars().all())
    made = iter(Recorded(id=next(ids), **row) for row in rows)
    return [next(made) if item is None else item for item in out]


def link_reports(s, events: list[Recorded]) -> None:
    """Record in the database the report `report` gave each event of `record_many`."""
    table = StatusEvent.__table__
    s.execute(update(table).where(table.c.id == bindparam("b_id")).values(report_id=bindparam("b_report")),
              [dict(b_id=e.id, b_report=e.report_id) for e in events])


def report(s, changed: list[tuple[Invoice, StatusEvent]], at: datetime) -> list[Report]:
    """One FEN1200A per sender for these recorded changes, in their order; each event is linked
    to its report. The report's id joins the first invoice's flow and the first event's id: never
    the deposit's own report (number 1), since the invoice's 01 event came before."""
    senders = dict(s.execute(select(Flow.id, Flow.app).where(Flow.id.in_({i.flow_id for i, _ in changed}))).all())
    by_sender: dict[str, list[tuple[Invoice, StatusEvent]]] = {}
    for invoice, event in changed:
        by_sender.setdefault(senders[invoice.flow_id], []).append((invoice, event))
    reports = []
    for app, items in by_sender.items():
        first_invoice, first_event = items[0]
        report_id = processing_id(first_invoice.flow_id, first_event.id)
        content = statut.processing_report(
            sender_app=PLATFORM_APP, recipient_app=report_app(app), report_flow_id=report_id, produced_at=at,
            lines=[status_line(invoice, status=event.code, complement=event.reason, comment=supplier_comment(event),
                               at=event.at, producer=event.producer, mandate=event.mandate)
                   for invoice, event in items],
        )
        row = Report(flow_id=first_invoice.flow_id, app=app, kind="processing", created_at=at, content=content,
                     filename=statut.processing_report_name(app, report_id))
        s.add(row)
        s.flush()
        for _, event in items:
            event.report_id = row.id
        reports.append(row)
    return reports


def change_status(url: str, deposit_no: str, change: Change, attempts: int = 3) -> Applied:
    """One change of one invoice (ops), in one transaction: checked, recorded, reported.
    Refused (REJ_INEX for an unknown deposit number) leaves the database as it was."""
    for _ in range(attempts):
        at = utcnow()
        with db.session(url) as s:
            invoice = deposited(s, deposit_no)
            previous = invoice.status
            try:
                event = record(s, invoice, change, at)
            except Conflict:
                s.rollback()
                continue
            (sent,) = report(s, [(invoice, event)], at)
            s.commit()
            return Applied(deposit_no, invoice.number, invoice.flow_id, previous, change.status, sent.filename)
    raise Refused(Refusal("REJ_RG", f"la facture {deposit_no} change de statut en ce moment : réessayez"))


def history(url: str, deposit_no: str) -> dict | None:
    """An invoice's life so far, for `edi invoices history`: its current status, what each role
    may set next, and every event (oldest first) with the report that carried it."""
    with db.session(url) as s:
        invoice = by_deposit(s, deposit_no)
        if invoice is None:
            return None
        rows = s.execute(select(StatusEvent, Report.filename).outerjoin(Report, Report.id == StatusEvent.report_id)
                         .where(StatusEvent.invoice_id == invoice.id)
                         .order_by(StatusEvent.at, StatusEvent.id)).all()
    current = lifecycle.BY_CODE.get(invoice.status)
    return dict(
        deposit_no=invoice.deposit_no, number=invoice.number, issue_date=invoice.issue_date,
        supplier_id=invoice.supplier_id, recipient_siret=invoice.recipient_siret,
        code_service=invoice.code_service, status=invoice.status, label=current.label if current else "",
        final=bool(current and current.final),
        next={actor: lifecycle.next_statuses(invoice.status, actor) for actor in lifecycle.ACTORS},
        events=[dict(at=e.at.isoformat(), status=e.code, label=lifecycle.LABELS.get(e.code, ""),
                     name=lifecycle.BY_CODE[e.code].name if e.code in lifecycle.BY_CODE else "", actor=e.actor,
                     producer=e.producer, reason=e.reason, reason_label=lifecycle.REASONS.get(e.reason, ""),
                     comment=e.comment, mandate=e.mandate, report=filename)
                for e, filename in rows],
    )


# ------------------------------------------------------------------ report lines


def supplier_comment(event: StatusEvent) -> str:
    """The reason, comment and mandate number in plain French, for the report's Commentaire.

    >>> supplier_comment(StatusEvent(invoice_id=1, code="06", reason="JUSTIF_ABS", comment="Joindre le PV."))
    'Motif : Justificatif absent ou insuffisant (JUSTIF_ABS). Commentaire : Joindre le PV.'
    """
    parts = []
    if event.reason:
        parts.append(f"Motif : {lifecycle.REASONS.get(event.reason, event.reason)} ({event.reason}).")
    if event.comment:
        parts.append(f"Commentaire : {event.comment}")
    if event.mandate:
        parts.append(f"Mandat n° {event.mandate}.")
    return " ".join(parts)


def status_line(invoice, *, status: str, complement: str, comment: str, at: datetime, producer: str,
                mandate: str = "") -> statut.InvoiceStatusLine:
    """A report line for `invoice` (an Invoice, or a row with its supplier, recipient and number
    columns): a supplier without identifier type is typed from its identifier's shape."""
    supplier = invoice.supplier_id
    id_type = invoice.supplier_id_type or ("1" if len(supplier) == 14 and supplier.isdigit() else "3")
    country = invoice.supplier_country if len(invoice.supplier_country) == 2 and invoice.supplier_country.isalpha() else ""
    return statut.InvoiceStatusLine(
        supplier_id_type=id_type, supplier_id=supplier, supplier_name=invoice.supplier_name, supplier_country=country,
        recipient_siret=invoice.recipient_siret, code_service=invoice.code_service, status=status,
        complement=complement, comment=comment, at=at, invoice_number=invoice.number,
        invoice_date=invoice.issue_date if len(invoice.issue_date) == 10 else "", producer=producer, mandate=mandate,
    )


def report_app(app: str) -> str:
    """A partner code as the report envelope takes it (3 to 8 characters)."""
    return app if 3 <= len(app) <= 8 else (app + "___")[:8]


def processing_id(flow_id: int, n: int) -> str:
    """IdFlx of a FEN1200A (25 characters): FEN, the flow's id, a number within the flow."""
    return f"FEN{flow_id:010d}{n:012d}"
