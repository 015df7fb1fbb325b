"""One pass over one recorded flow: checks, split, invoice checks, routing, outcome, reports.

Stages talk in plain data (`InvoiceResult`); the database is written once, at the end, in one
transaction holding the invoices, findings, status events, reports and the flow's final state.
Until that commit nothing of the flow is visible, so a crash anywhere before it is replayed from
the archived original by the next worker (`resumable`), and files written before it (staged
invoices, recipient deliveries) have deterministic names and bytes. A flow is held by one
worker at a time through a lease on its row (`owner`, `lease_until`).
"""

from __future__ import annotations

import shutil
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert, select, update

from edi import db, log
from edi.config import Config
from edi.db.models import (
    INTEGRATED, PARTIAL, REJECTED,
    Finding as FindingRow, Flow, Invoice, Packed, Partner, Report, StatusEvent, pack, utcnow,
)
from edi.ingest.intake import crash_point
from edi.lease import Lease, LeaseLost, acquire, owner_id
from edi.spool import Spool
from edi.ingest.split import read_flow
from edi.interfaces import INTERFACES
from edi.invoice import InvoiceData
from edi.reports import statut
from edi.reports.outbox import unique_filename
from edi.route import delivery
from edi.validate import checks, flowchecks, pool
from edi.finding import Finding
from edi.validate.flowchecks import FlowRejected, Limits

LOG = log.get("edi.pipeline")
PLATFORM_APP = "EDI"  # Emetteur/Id of the reports the platform sends
DEPOSITED, AVAILABLE = statut.INVOICE_DEPOSITED, statut.INVOICE_AVAILABLE


@dataclass(slots=True)
class InvoiceResult:
    """What the flow keeps of one invoice until its commit: its row, findings, staged files.
    The parsed invoice itself is dropped as soon as it is decided (memory stays flat)."""

    seq: int
    row: dict
    findings: list[Finding]
    staged: delivery.Staged | None = None

    @property
    def accepted(self) -> bool:
        return self.row["accepted"]


@dataclass
class Outcome:
    flow_findings: list[Finding] = field(default_factory=list)
    invoices: list[InvoiceResult] = field(default_factory=list)
    interface: str = ""
    flow_ref: str = ""
    rules: list[str] = field(default_factory=list)  # schema and rule-set versions that ran
    staging: str = ""  # the flow's scratch folder under spool/work

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.invoices if r.accepted)

    @property
    def state(self) -> str:
        if self.flow_findings or not self.accepted:
            return REJECTED
        return INTEGRATED if self.accepted == len(self.invoices) else PARTIAL


# ------------------------------------------------------------------ processing


def process(cfg: Config, flow_id: int) -> Flow | None:
    """Process one recorded flow to its final state and queue its reports. None if not ours."""
    url = cfg.database_url
    spool = Spool(cfg.spool_root)
    if not acquire(url, flow_id, float(cfg.data["intake"]["lease_seconds"])):
        return None
    with db.session(url) as s:
        flow = s.get(Flow, flow_id)
    shutil.rmtree(spool.staging(flow_id), ignore_errors=True)
    outcome = Outcome(staging=str(spool.staging(flow_id)))
    deliveries = delivery.Deliveries(spool, flow_id)
    lease = Lease(url, flow_id, float(cfg.data["intake"]["lease_seconds"]))
    log_ = LOG.bind(flow=flow_id, app=flow.app, file=flow.filename)
    log_.info("flow_processing")
    try:
        _run(cfg, flow, outcome, deliveries, lease)
    except FlowRejected as rejected:
        outcome.flow_findings.append(rejected.finding)
        outcome.invoices.clear()  # an irrecevable flow stops: none of its invoices is integrated
        log_.warning("flow_irrecevable", code=rejected.finding.code, detail=rejected.finding.message)
    except LeaseLost:
        log_.warning("flow_lease_lost")
        return None
    else:
        for result in outcome.invoices:
            if result.accepted:
                row = result.row
                row["path"] = deliveries.deliver(result.staged, row["recipient_siret"], row["code_service"])
    crash_point("delivered")
    try:
        flow = _commit(url, flow, outcome)
    except LeaseLost:
        log_.warning("flow_lease_lost")
        return None
    shutil.rmtree(spool.staging(flow_id), ignore_errors=True)
    log_.info("flow_done", state=flow.state, invoices=flow.invoice_count, accepted=flow.accepted_count)
    return flow


def _run(cfg: Config, flow: Flow, outcome: Outcome, deliveries: delivery.Deliveries, lease: Lease) -> None:
    name = flowchecks.parse_name(flow.filename)
    outcome.interface, outcome.flow_ref = name.interface, name.flow_ref
    with db.session(cfg.database_url) as s:
        partner = s.get(Partner, name.app)
    flowchecks.check_sender(name, flow.app, partner)
    flowchecks.reserve_flow_id(cfg.database_url, flow, name)
    flowchecks.check_size(flow.size, cfg.max_flow_bytes)
    limits = Limits.of(cfg)
    context = checks.Context.for_flow(cfg, name.interface, INTERFACES[name.interface].syntax.name)
    try:
        _check_invoices(cfg, flow, outcome, deliveries, lease, name, limits, context)
    finally:
        context.close()


def _check_invoices(cfg, flow, outcome, deliveries, lease, name, limits, context) -> None:
    outcome.rules = pool.rule_versions(INTERFACES[name.interface].syntax.name, context.settings)
    pieces = read_flow(Path(flow.archive_path), name, limits)
    if INTERFACES[name.interface].syntax.name == "CPP":
        # CPP: checked here, element in hand (attachments are staged from it)
        for piece in pieces:
            data, found = pool.check_raw(piece.raw, context.settings, context.rules.today, piece.element)
            _decide(deliveries, flow, outcome, context, piece.seq, piece.raw, data, found, piece.element)
            lease.renew(piece.seq)
        return
    # UBL / CII: the schematron runs on the pool; results come back in flow order
    raws: deque[bytes] = deque()

    def feed():
        for piece in pieces:
            raws.append(piece.raw)
            yield piece.raw, piece.element

    checker = pool.shared(int(cfg.data["validation"]["processes"]))
    for seq, (data, found) in enumerate(checker.check(feed(), context.settings, context.rules.today), start=1):
        _decide(deliveries, flow, outcome, context, seq, raws.popleft(), data, found, None)
        lease.renew(seq)


def _decide(deliveries, flow, outcome, context, seq, raw, data, found, element) -> None:
    """Business checks on a document-checked invoice, then accept (stage it) or reject it."""
    findings = context.finish(data, found)
    row = _invoice_row(flow.id, seq, data, len(raw))
    staged = None
    if not any(f.fatal for f in findings):
        row.update(accepted=True, deposit_no=delivery.deposit_number(flow.id, seq),
                   certificate=delivery.certificate(raw), status=AVAILABLE)
        staged = deliveries.stage(seq, row["deposit_no"], raw, element)
    outcome.invoices.append(InvoiceResult(seq, row, findings, staged))


def _commit(url: str, flow: Flow, outcome: Outcome) -> Flow:
    now = utcnow()
    rejected = len(outcome.invoices) - outcome.accepted
    with db.session(url) as s:
        for chunk in _chunks([r.row for r in outcome.invoices]):
            s.execute(insert(Invoice.__table__), chunk)
        ids = dict(s.execute(select(Invoice.seq, Invoice.id).where(Invoice.flow_id == flow.id)).all())
        findings = list(outcome.flow_findings) + [f for r in outcome.invoices for f in r.findings]
        rows = [_finding_row(flow.id, None, n, f) for n, f in enumerate(outcome.flow_findings, start=1)]
        for r in outcome.invoices:
            rows += [_finding_row(flow.id, ids[r.seq], len(rows) + n, f) for n, f in enumerate(r.findings, start=1)]
        for chunk in _chunks(rows):
            s.execute(insert(FindingRow.__table__), chunk)
        status = statut.FLOW_REJECTED if outcome.flow_findings else statut.flow_status(outcome.accepted, rejected)
        s.add(Report(
            flow_id=flow.id, app=flow.app, kind="integration", created_at=now,
            filename=unique_filename(s, _integration_name(flow, outcome), flow.id),
            content=statut.integration_report(
                sender_app=PLATFORM_APP, recipient_app=_report_app(flow.app),
                report_flow_id=f"CSO{flow.id:022d}", flow_ref=outcome.flow_ref or flow.filename[:100],
                status=status, produced_at=now, lines=[_error_line(f) for f in findings],
                comment=("Règles : " + " ; ".join(outcome.rules)) if outcome.rules else "",
            ),
        ))
        if outcome.accepted:
            rendered = Path(outcome.staging) / "processing-report.xml"
            rendered.parent.mkdir(parents=True, exist_ok=True)
            with open(rendered, "wb") as fh:
                statut.write_processing_report(
                    fh, sender_app=PLATFORM_APP, recipient_app=_report_app(flow.app),
                    report_flow_id=_processing_id(flow.id, 1), produced_at=now,
                    lines=_status_lines(s, flow.id, now), count=2 * outcome.accepted,
                )
            report = Report(
                flow_id=flow.id, app=flow.app, kind="processing", created_at=now,
                filename=statut.processing_report_name(flow.app, _processing_id(flow.id, 1)),
                content=_packed(rendered),
            )
            s.add(report)
            s.flush()
            events = (dict(invoice_id=ids[r.seq], code=code, at=now, producer=PLATFORM_APP, report_id=report.id,
                           reason="", comment=r.row["certificate"] if code == DEPOSITED else "")
                      for r in outcome.invoices if r.accepted for code in (DEPOSITED, AVAILABLE))
            for chunk in _chunks(events):
                s.execute(insert(StatusEvent.__table__), chunk)
        done = s.execute(update(Flow).where(Flow.id == flow.id, Flow.owner == owner_id()).values(
            interface=outcome.interface, flow_ref=outcome.flow_ref, state=outcome.state,
            error_code=outcome.flow_findings[0].code if outcome.flow_findings else None,
            invoice_count=len(outcome.invoices), accepted_count=outcome.accepted,
            owner=None, lease_until=None, finished_at=now,
        ))
        if done.rowcount != 1:
            s.rollback()
            raise LeaseLost()
        s.commit()
        return s.get(Flow, flow.id)


def _packed(path: Path) -> Packed:
    """A rendered report read and compressed piece by piece: never whole in memory."""
    with open(path, "rb") as fh:
        return pack(iter(lambda: fh.read(1 << 20), b""))


def _chunks(rows, size: int = 1000):
    """Bulk inserts a thousand rows at a time: fast, and the driver's buffers stay small."""
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _report_app(app: str) -> str:
    return app if 3 <= len(app) <= 8 else (app + "___")[:8]


def _processing_id(flow_id: int, n: int) -> str:
    return f"FEN{flow_id:010d}{n:012d}"


def _integration_name(flow: Flow, outcome: Outcome) -> str:
    """The design's name; a flow whose own name could not be read gets interface `FSO0000A`
    and its internal id (25 digits) in place of the FLOWID."""
    interface = outcome.interface or "FSO0000A"
    flow_ref = outcome.flow_ref or f"{flow.id:025d}"
    return statut.integration_report_name(interface, flow.app, flow_ref)


def _error_line(f: Finding) -> statut.ErrorLine:
    line = statut.ErrorLine.from_finding(f)
    if not f.fatal:
        line = statut.ErrorLine(line.reason, line.code, "Avertissement : " + line.message, line.description)
    return line


_STATUS_COLUMNS = (Invoice.supplier_id_type, Invoice.supplier_id, Invoice.supplier_name, Invoice.supplier_country,
                   Invoice.recipient_siret, Invoice.code_service, Invoice.deposit_no, Invoice.certificate,
                   Invoice.number, Invoice.issue_date)


def _status_lines(s, flow_id: int, at):
    """Statuses 01 and 03 of each accepted invoice, read back from the rows just inserted (in
    flow order, a thousand at a time) so the report is a view of what the database holds."""
    query = (select(*_STATUS_COLUMNS).where(Invoice.flow_id == flow_id, Invoice.accepted.is_(True))
             .order_by(Invoice.seq).execution_options(yield_per=1000))
    for id_type, supplier, name, country, siret, service, deposit, cert, number, issued in s.execute(query):
        id_type = id_type or ("1" if len(supplier) == 14 and supplier.isdigit() else "3")
        country = country if len(country) == 2 and country.isalpha() else ""
        for code in (DEPOSITED, AVAILABLE):
            yield statut.InvoiceStatusLine(
                supplier_id_type=id_type, supplier_id=supplier, supplier_name=name, supplier_country=country,
                recipient_siret=siret, code_service=service, status=code, complement=deposit, comment=cert,
                at=at, invoice_number=number, invoice_date=issued if len(issued) == 10 else "",
                producer=PLATFORM_APP,
            )


def _invoice_row(flow_id: int, seq: int, d: InvoiceData, size: int) -> dict:
    return dict(
        flow_id=flow_id, seq=seq, number=d.number[:200], doc_type=d.doc_type, syntax=d.syntax,
        supplier_id=d.supplier_id, supplier_name=d.supplier_name, supplier_id_type=d.supplier_id_type,
        supplier_country=d.supplier_country, recipient_siret=d.recipient_siret, code_service=d.code_service,
        ej=d.ej, issue_date=d.issue_date, currency=d.currency,
        total_ht="" if d.total_ht is None else str(d.total_ht),
        total_ttc="" if d.total_ttc is None else str(d.total_ttc), accepted=False,
        deposit_no=None, certificate="", status="", path="", size=size,
    )


def _finding_row(flow_id: int, invoice_id: int | None, seq: int, f: Finding) -> dict:
    return dict(flow_id=flow_id, invoice_id=invoice_id, seq=seq, code=f.code, reason=f.reason,
                severity=f.severity, message=f.message, location=f.location, value=f.value[:500],
                invoice_number=f.invoice_number)
