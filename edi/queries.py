"""Read-only views for the ops CLI: plain dicts, ready for `--json` (a contract for scripts).

A flow's JSON holds its state, its report files, its invoices with number, deposit number,
status and findings (code, reason, message, location), and its trace (every step, in order).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import or_, select

from edi import db
from edi.db.models import Finding, Flow, FlowStep, Invoice, Report, StatusEvent
from edi.reports.statut import LIFECYCLE_LABELS
from edi.route.status import by_deposit


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _flow_dict(f: Flow) -> dict:
    return dict(
        id=f.id, flow_ref=f.flow_ref, app=f.app, interface=f.interface, filename=f.filename, size=f.size,
        sha256=f.sha256, state=f.state, error_code=f.error_code, invoice_count=f.invoice_count,
        accepted_count=f.accepted_count, received_at=_iso(f.received_at), finished_at=_iso(f.finished_at),
        archive_path=f.archive_path, source=f.source, attempts=f.attempts, last_error=f.last_error,
    )


def _finding_dict(f: Finding) -> dict:
    return dict(code=f.code, reason=f.reason, severity=f.severity, message=f.message, location=f.location,
                value=f.value, invoice_number=f.invoice_number)


def list_flows(url: str, *, partner=None, state=None, since=None, limit: int = 100) -> list[dict]:
    query = select(Flow).order_by(Flow.id.desc()).limit(limit)
    if partner:
        query = query.where(Flow.app == partner)
    if state:
        query = query.where(Flow.state == state)
    if since:
        if since.tzinfo is None:  # the CLI's dates are UTC, as stored
            since = since.replace(tzinfo=timezone.utc)
        query = query.where(Flow.received_at >= since)
    with db.session(url) as s:
        return [_flow_dict(f) for f in s.execute(query).scalars()]


def find_flow(s, ref: str, app: str | None = None) -> Flow | None:
    """REF is the FLOWID (the latest flow with it) or the internal id; `app`: among that
    sender's flows only (the console's scope, in the query itself)."""
    conditions = [Flow.flow_ref == ref]
    if ref.isdigit() and len(ref) < 19:
        conditions.append(Flow.id == int(ref))
    query = select(Flow).where(or_(*conditions))
    if app is not None:
        query = query.where(Flow.app == app)
    return s.execute(query.order_by(Flow.id.desc())).scalars().first()


def flow_detail(url: str, ref: str, *, page: tuple[int, int] | None = None, app: str | None = None) -> dict | None:
    """A flow, its reports, findings, invoices and trace (`edi flows show --json`). `page`
    (offset, size): only that slice of the invoices, their findings, `has_more`, and the trace
    without its per-invoice steps — what the console shows of a flow of 100,000 invoices.
    `app`: as `find_flow`."""
    with db.session(url) as s:
        flow = find_flow(s, ref, app)
        if flow is None:
            return None
        out = _flow_dict(flow)
        reports = s.execute(select(Report).where(Report.flow_id == flow.id).order_by(Report.id)).scalars().all()
        out["reports"] = [dict(kind=r.kind, filename=r.filename, created_at=_iso(r.created_at),
                               written_at=_iso(r.written_at), retrieved_at=_iso(r.retrieved_at)) for r in reports]
        query = select(Invoice).where(Invoice.flow_id == flow.id).order_by(Invoice.seq)
        if page is not None:
            query = query.offset(page[0]).limit(page[1] + 1)
        invoices = s.execute(query).scalars().all()
        if page is not None:
            out["has_more"] = len(invoices) > page[1]
            invoices = invoices[:page[1]]
        findings = select(Finding).where(Finding.flow_id == flow.id).order_by(Finding.seq)
        if page is not None:
            findings = findings.where(or_(Finding.invoice_id.is_(None), Finding.invoice_id.in_([i.id for i in invoices])))
        by_invoice: dict[int | None, list[dict]] = {}
        for f in s.execute(findings).scalars():
            by_invoice.setdefault(f.invoice_id, []).append(_finding_dict(f))
        out["findings"] = by_invoice.get(None, [])
        out["invoices"] = [
            dict(seq=i.seq, number=i.number, deposit_no=i.deposit_no, status=i.status, accepted=i.accepted,
                 recipient_siret=i.recipient_siret, code_service=i.code_service,
                 findings=by_invoice.get(i.id, []))
            for i in invoices
        ]
        out["trace"] = flow_trace(s, flow.id, invoices=page is None)
        return out


def flow_trace(s, flow_id: int, invoices: bool = True) -> list[dict]:
    """The flow's steps in the order they happened (invoice steps name their invoice's seq;
    `invoices=False` leaves them out)."""
    query = (select(FlowStep.at, FlowStep.step, FlowStep.outcome, FlowStep.detail, Invoice.seq)
             .outerjoin(Invoice, Invoice.id == FlowStep.invoice_id)
             .where(FlowStep.flow_id == flow_id).order_by(FlowStep.at, FlowStep.id))
    if not invoices:
        query = query.where(FlowStep.invoice_id.is_(None))
    return [dict(at=_iso(at), step=step, outcome=outcome, detail=detail, invoice_seq=seq)
            for at, step, outcome, detail, seq in s.execute(query)]


def trace_text(trace: list[dict]) -> str:
    """The timeline of `edi flows show`: one line per step (time, step, outcome, detail)."""
    width = max((len(t["step"]) for t in trace), default=0)
    return "\n".join(f"{t['at'][:23].replace('T', ' ')}  {t['step']:<{width}}  {t['outcome']:<18}  {t['detail']}"
                     for t in trace)


def report_contents(url: str, flow_id: int) -> list[dict]:
    with db.session(url) as s:
        rows = s.execute(select(Report.filename, Report.content).where(Report.flow_id == flow_id)
                         .order_by(Report.id)).all()
    return [dict(filename=name, content=content) for name, content in rows]


def report_content(url: str, flow_id: int, filename: str) -> bytes | None:
    """One report of a flow as stored (a download), None when the flow has none by that name."""
    with db.session(url) as s:
        return s.execute(select(Report.content).where(Report.flow_id == flow_id, Report.filename == filename)).scalar()


def invoice_detail(url: str, deposit_no: str) -> dict | None:
    with db.session(url) as s:
        inv = by_deposit(s, deposit_no)
        if inv is None:
            return None
        flow = s.get(Flow, inv.flow_id)
        events = s.execute(select(StatusEvent).where(StatusEvent.invoice_id == inv.id)
                           .order_by(StatusEvent.at, StatusEvent.id)).scalars().all()
        findings = s.execute(select(Finding).where(Finding.invoice_id == inv.id).order_by(Finding.seq)).scalars().all()
        return dict(
            number=inv.number, deposit_no=inv.deposit_no, status=inv.status, accepted=inv.accepted,
            flow=flow.flow_ref or str(flow.id), flow_id=flow.id, syntax=inv.syntax, doc_type=inv.doc_type,
            supplier_id=inv.supplier_id, supplier_name=inv.supplier_name, recipient_siret=inv.recipient_siret,
            code_service=inv.code_service, ej=inv.ej, issue_date=inv.issue_date, currency=inv.currency,
            total_ht=inv.total_ht, total_ttc=inv.total_ttc, certificate=inv.certificate, path=inv.path,
            events=[dict(code=e.code, label=LIFECYCLE_LABELS.get(e.code, ""), at=_iso(e.at), producer=e.producer,
                         reason=e.reason, comment=e.comment) for e in events],
            findings=[_finding_dict(f) for f in findings],
        )
