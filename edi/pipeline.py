"""One pass over one recorded flow: checks, split, invoice checks, routing, outcome, reports.

Stages talk in plain data (`InvoiceResult`); the database is written once, at the end, in one
transaction holding the invoices, findings, status events, reports and the flow's final state.
Until that commit nothing of the flow is visible, so a crash anywhere before it is replayed from
the archived original by the next worker (`resumable`), and files written before it (staged
invoices, recipient deliveries) have deterministic names and bytes. A flow is held by one
worker at a time through a lease on its row (`owner`, `lease_until`): the commit first checks
the lease is still held (`lease.hold`), so a worker that stalled past it writes nothing.
Each step is a trace row (`edi.trace`); those of the processing go in the same transaction.
"""

from __future__ import annotations

import shutil
from collections import deque
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert, select, update

from datetime import datetime
from decimal import Decimal

from edi import db, lifecycle, log, trace
from edi.config import Config
from edi.db.models import (
    REJECTED, Finding as FindingRow, Flow, FlowStep, Invoice, Packed, Partner, Report, StatusEvent, flow_state, pack,
    utcnow,
)
from edi.ingest.intake import crash_point
from edi.lease import Lease, LeaseLost, acquire, hold, release_failed
from edi.spool import Spool
from edi.ingest.split import read_flow
from edi.interfaces import INTERFACES
from edi.invoice import InvoiceData
from edi.reports import pivot, statut
from edi.reports.outbox import unique_filename
from edi.ingest.statuses import read_statuses
from edi.route import delivery, recipients, resend, statusflow
from edi.route.status import link_reports, report as status_report
from edi.route.status import processing_id as _processing_id, report_app as _report_app, status_line
from edi.validate import checks, flowchecks, pool, rules
from edi.finding import Finding
from edi.validate.flowchecks import FlowRejected, Limits

LOG = log.get("edi.pipeline")
PLATFORM_APP = lifecycle.PLATFORM_APP  # Emetteur/Id of the reports the platform sends
DEPOSITED, AVAILABLE = lifecycle.DEPOSITED, lifecycle.AVAILABLE
# UBL/CII invoices are decided a window at a time (in flow order), after one duplicate query for
# the window; its bytes wait in memory meanwhile, hence the bound on their size too.
DECIDE_WINDOW, DECIDE_WINDOW_BYTES = 64, 8 << 20


@dataclass(slots=True)
class InvoiceResult:
    """What the flow keeps of one invoice until its commit: its row, findings, staged files.
    The parsed invoice itself is dropped as soon as it is decided (memory stays flat)."""

    seq: int
    row: dict
    findings: list[Finding]
    staged: delivery.Staged | None = None
    at: datetime | None = None  # when it was decided (its trace row)
    resend: resend.Resend | None = None  # a known invoice recycled or completed by this one

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
    steps: list[dict] = field(default_factory=list)  # flow-level trace rows, written with the outcome

    def step(self, flow_id: int, step: str, outcome: str = trace.OK, detail: str = "") -> None:
        self.steps.append(trace.row(flow_id, step, outcome, detail))

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.invoices if r.accepted)

    @property
    def state(self) -> str:
        return REJECTED if self.flow_findings else flow_state(self.accepted, len(self.invoices))


# ------------------------------------------------------------------ processing


def process(cfg: Config, flow_id: int) -> Flow | None:
    """Process one recorded flow to its final state and queue its reports. None if not ours."""
    url = cfg.database_url
    spool = Spool(cfg.spool_root)
    if not acquire(url, flow_id, cfg.intake.lease_seconds):
        return None
    with db.session(url) as s:
        flow = s.get(Flow, flow_id)
    shutil.rmtree(spool.staging(flow_id), ignore_errors=True)
    outcome = Outcome(staging=str(spool.staging(flow_id)))
    deliveries = delivery.Deliveries(spool, flow_id)
    lease = Lease(url, flow_id, cfg.intake.lease_seconds)
    log_ = LOG.bind(flow=flow_id, app=flow.app, file=flow.filename)
    log_.info("flow_processing")
    try:
        flow = _process(cfg, flow, outcome, deliveries, lease, log_)
    except LeaseLost:
        log_.warning("flow_lease_lost", hint="un autre worker a repris le flux ; ce traitement est abandonné")
        trace.write(url, flow_id, trace.LEASE_LOST, trace.KO, "repris par un autre worker ; ce traitement est abandonné")
        return None
    except Exception as exc:
        _failed(url, flow_id, exc, log_)
        raise
    shutil.rmtree(spool.staging(flow_id), ignore_errors=True)
    log_.info("flow_done", state=flow.state, invoices=flow.invoice_count, accepted=flow.accepted_count)
    return flow


def _process(cfg: Config, flow: Flow, outcome: Outcome, deliveries: delivery.Deliveries, lease: Lease, log_) -> Flow:
    """Run the checks, deliver the accepted invoices, commit the outcome (LeaseLost when
    another worker took the flow over). A recipient's status flow, once its flow checks pass,
    is applied and committed by `_apply_statuses` instead."""
    try:
        name, partner = check_flow(cfg, flow, outcome)
        if INTERFACES[name.interface].role == "recipient":
            return _apply_statuses(cfg.database_url, flow, outcome, partner, Limits.of(cfg))
        check_invoices(cfg, flow, outcome, deliveries, lease, name)
    except FlowRejected as rejected:
        finding = rejected.finding
        outcome.flow_findings.append(finding)
        outcome.invoices.clear()  # an irrecevable flow stops: none of its invoices is integrated
        outcome.step(flow.id, trace.SPLIT if outcome.steps else trace.CHECKED, trace.KO,
                     f"{finding.code} : {finding.message}" + (f" ({finding.value})" if finding.value else ""))
        log_.warning("flow_irrecevable", code=finding.code, detail=finding.message)
    else:
        outcome.step(flow.id, trace.SPLIT, trace.OK, f"{len(outcome.invoices)} facture(s)")
        crash_point("decided")
        lease.check()  # a worker that stalled and lost the flow delivers nothing
        delivered = 0
        for result in outcome.invoices:
            if result.accepted:
                row = result.row
                row["path"] = deliveries.deliver(result.staged, row["recipient_siret"], row["code_service"])
                delivered += 1
        if delivered:
            outcome.step(flow.id, trace.DELIVERED, trace.OK, f"{delivered} facture(s) remise(s) aux destinataires")
    crash_point("delivered")
    return _commit(cfg.database_url, flow, outcome)


def _failed(url: str, flow_id: int, exc: Exception, log_) -> None:
    """A platform error: its text goes into the flow's trace and `last_error`, and the flow is
    released (or put on hold) — if this worker still holds it."""
    error = f"{type(exc).__name__}: {exc}"
    try:
        state = release_failed(url, flow_id, error)
    except Exception:  # the database itself may be what failed: the log still has it all
        log_.exception("flow_release_failed")
        state = None
    log_.error("flow_failed", error=error, state=state, exc_info=exc,
               hint=f"voir `edi flows show {flow_id}` ; après correction : edi flows retry {flow_id}")


def run_checks(cfg: Config, flow: Flow, outcome: Outcome, deliveries: delivery.Deliveries, lease: Lease) -> None:
    """Flow checks, split and invoice checks of an invoice flow into `outcome` (FlowRejected
    when irrecevable); run by `edi.reprocess` on a finished flow (never a status flow)."""
    name, _ = check_flow(cfg, flow, outcome)
    check_invoices(cfg, flow, outcome, deliveries, lease, name)


def check_flow(cfg: Config, flow: Flow, outcome: Outcome) -> tuple[flowchecks.FlowName, Partner]:
    """The flow checks (name, sender, FLOWID, size) into `outcome`; FlowRejected when
    irrecevable. Returns the flow's parsed name and its sender's partner account."""
    name = flowchecks.parse_name(flow.filename)
    outcome.interface, outcome.flow_ref = name.interface, name.flow_ref
    with db.session(cfg.database_url) as s:
        partner = s.get(Partner, name.app)
    flowchecks.check_sender(name, flow.app, partner)
    flowchecks.reserve_flow_id(cfg.database_url, flow, name)
    flowchecks.check_size(flow.size, cfg.max_flow_bytes)
    outcome.step(flow.id, trace.CHECKED, trace.OK, f"{name.interface}, émetteur {name.app}, flux {name.flow_ref}")
    return name, partner


def check_invoices(cfg: Config, flow: Flow, outcome: Outcome, deliveries: delivery.Deliveries, lease: Lease,
                   name: flowchecks.FlowName) -> None:
    """The split and invoice checks of an invoice flow `check_flow` passed, into `outcome`."""
    context = checks.Context.for_flow(cfg, name.interface, INTERFACES[name.interface].syntax.name, flow_id=flow.id)
    try:
        _check_invoices(cfg, flow, outcome, deliveries, lease, name, Limits.of(cfg), context)
    finally:
        context.close()


def _check_invoices(cfg, flow, outcome, deliveries, lease, name, limits, context) -> None:
    outcome.rules = pool.rule_versions(INTERFACES[name.interface].syntax.name, context.settings)
    pieces = read_flow(Path(flow.archive_path), name, limits)
    if INTERFACES[name.interface].syntax.name == "CPP":
        # CPP: checked here, element in hand (attachments are staged from it)
        for piece in pieces:
            data, found = pool.check_raw(piece.raw, context.settings, context.rules.today, piece.element)
            _decide(cfg.database_url, deliveries, flow, outcome, context, piece.seq, piece.raw, data, found,
                    piece.element)
            lease.renew(piece.seq)
        return
    # UBL / CII: the schematron runs on the pool; results come back in flow order
    raws: deque[bytes] = deque()

    def feed():
        for piece in pieces:
            raws.append(piece.raw)
            yield piece.raw, piece.element

    checker = pool.shared(cfg.validation.processes)
    window: list[tuple[int, bytes, InvoiceData, list[Finding]]] = []
    size = 0

    def decide_window() -> None:
        context.prefetch(data for _, _, data, _ in window)  # one duplicate query for the window
        for seq, raw, data, found in window:
            _decide(cfg.database_url, deliveries, flow, outcome, context, seq, raw, data, found, None)
            lease.renew(seq)
        window.clear()

    for seq, (data, found) in enumerate(checker.check(feed(), context.settings, context.rules.today), start=1):
        raw = raws.popleft()
        window.append((seq, raw, data, found))
        size += len(raw)
        if len(window) == DECIDE_WINDOW or size >= DECIDE_WINDOW_BYTES:
            decide_window()
            size = 0
    decide_window()


def _decide(url, deliveries, flow, outcome, context, seq, raw, data, found, element) -> None:
    """Business checks on a document-checked invoice, then accept (stage it) or reject it. A
    known number (PLT-20) is a recycling or a completion of that invoice when the life cycle
    allows it (`edi.route.resend`): accepted, staged under the known invoice's deposit number."""
    findings = context.finish(data, found)
    row = _invoice_row(flow.id, seq, data, len(raw))
    staged = again = None
    fatal = {f.code for f in findings if f.fatal}
    if fatal == {"PLT-20"} and (again := resend.classify(url, data)) is not None:
        findings = [f for f in findings if f.code != "PLT-20"]
        context.rules.seen_in_flow.add(rules.duplicate_key(data))
        row.update(accepted=True, resend_of=again.invoice_id, certificate=delivery.certificate(raw))
        staged = deliveries.stage(seq, again.deposit_no, raw, element)
    elif not fatal:
        row.update(accepted=True, deposit_no=delivery.deposit_number(flow.id, seq),
                   certificate=delivery.certificate(raw), status=AVAILABLE, amount_ttc=_amount(data.total_ttc))
        staged = deliveries.stage(seq, row["deposit_no"], raw, element)
    outcome.invoices.append(InvoiceResult(seq, row, findings, staged, utcnow(), again))


def _commit(url: str, flow: Flow, outcome: Outcome) -> Flow:
    now = utcnow()
    rejected = len(outcome.invoices) - outcome.accepted
    with db.session(url) as s:
        hold(s, flow.id)  # first: a worker that lost the flow writes nothing
        for chunk in _chunks([r.row for r in outcome.invoices]):
            s.execute(insert(Invoice.__table__), chunk)
        ids = dict(s.execute(select(Invoice.seq, Invoice.id).where(Invoice.flow_id == flow.id)).all())
        findings = list(outcome.flow_findings) + [f for r in outcome.invoices for f in r.findings]
        rows = [finding_row(flow.id, None, n, f) for n, f in enumerate(outcome.flow_findings, start=1)]
        for r in outcome.invoices:
            rows += [finding_row(flow.id, ids[r.seq], len(rows) + n, f) for n, f in enumerate(r.findings, start=1)]
        for chunk in _chunks(rows):
            s.execute(insert(FindingRow.__table__), chunk)
        steps = outcome.steps + [invoice_step(flow.id, ids[r.seq], r) for r in outcome.invoices]
        status = statut.FLOW_REJECTED if outcome.flow_findings else statut.flow_status(outcome.accepted, rejected)
        integration = integration_report(s, flow, outcome, status, [error_line(f) for f in findings],
                                         f"CSO{flow.id:022d}", now)
        steps.append(trace.row(flow.id, trace.REPORTED, trace.OK, f"{integration.filename} (statut {status})"))
        firsts = [r for r in outcome.invoices if r.accepted and r.resend is None]  # deposited now
        if firsts:
            rendered = Path(outcome.staging) / "processing-report.xml"
            rendered.parent.mkdir(parents=True, exist_ok=True)
            with open(rendered, "wb") as fh:
                statut.write_processing_report(
                    fh, sender_app=PLATFORM_APP, recipient_app=_report_app(flow.app),
                    report_flow_id=_processing_id(flow.id, 1), produced_at=now,
                    lines=_status_lines(s, flow.id, now), count=2 * len(firsts),
                )
            report = Report(
                flow_id=flow.id, app=flow.app, kind="processing", created_at=now,
                filename=statut.processing_report_name(flow.app, _processing_id(flow.id, 1)),
                content=_packed(rendered),
            )
            s.add(report)
            s.flush()
            steps.append(trace.row(flow.id, trace.REPORTED, trace.OK,
                                   f"{report.filename} ({len(firsts)} facture(s) : statuts 01 et 03)"))
            events = (dict(invoice_id=ids[r.seq], code=code, at=now, producer=PLATFORM_APP, report_id=report.id,
                           reason="", comment=r.row["certificate"] if code == DEPOSITED else "")
                      for r in firsts for code in (DEPOSITED, AVAILABLE))
            for chunk in _chunks(events):
                s.execute(insert(StatusEvent.__table__), chunk)
        items = [(r.row["recipient_siret"], partial(recipients.delivered, r.row, ids[r.seq], pivot.FIRST,
                                                    flow.received_at)) for r in firsts]
        items += _resends(s, flow, outcome, now, steps)
        for sent in recipients.deliver(s, flow.id, items, now) if items else ():
            steps.append(trace.row(flow.id, trace.REPORTED, trace.OK, f"{sent.filename} (factures pour {sent.app})"))
        steps.append(trace.row(flow.id, trace.FINISHED, outcome.state,
                               f"{outcome.accepted}/{len(outcome.invoices)} facture(s) acceptée(s)"))
        for chunk in _chunks(steps):
            s.execute(insert(FlowStep.__table__), chunk)
        s.execute(update(Flow).where(Flow.id == flow.id).values(
            interface=outcome.interface, flow_ref=outcome.flow_ref, state=outcome.state,
            error_code=outcome.flow_findings[0].code if outcome.flow_findings else None,
            invoice_count=len(outcome.invoices), accepted_count=outcome.accepted,
            owner=None, lease_until=None, finished_at=now,
        ))
        s.commit()
        return s.get(Flow, flow.id)


def _status_steps(flow_id: int, done, at: datetime) -> list[dict]:
    """Trace rows of status lines just applied or refused."""
    return [trace.row(flow_id, trace.INVOICE, trace.KO, f"ligne {line.seq}, n° {line.number} : {outcome.refusal}", at=at)
            if isinstance(outcome, statusflow.LineRefused) else
            trace.row(flow_id, trace.INVOICE, trace.OK, f"ligne {line.seq}, n° {line.number} : statut {line.status}",
                      at=at, invoice_id=outcome.id)
            for line, outcome in done]


def _resends(s, flow: Flow, outcome: Outcome, now: datetime, steps: list[dict]) -> list:
    """The known invoices this flow recycled or completed: changed and recorded, reported to their
    senders (FEN1200A), and what to deliver again to recipient partners (`Renvoi`)."""
    changed, items = [], []
    for r in outcome.invoices:
        if not (r.accepted and r.resend is not None):
            continue
        row, invoice = r.row, s.get(Invoice, r.resend.invoice_id)
        where = f"flux {outcome.flow_ref or flow.id} de {flow.app}"
        if r.resend.kind == resend.RECYCLE:
            event = resend.recycle(s, invoice, siret=row["recipient_siret"], code_service=row["code_service"],
                                   ej=row["ej"], path=row["path"], producer=PLATFORM_APP,
                                   comment=f"Facture recyclée par le fournisseur ({where})", at=now)
        else:
            event = resend.complete(s, invoice, path=row["path"], producer=flow.app, actor=lifecycle.SUPPLIER,
                                    comment=f"Pièces complémentaires déposées ({where})", at=now)
        changed.append((invoice, event))
        items.append((invoice.recipient_siret, partial(recipients.delivered, invoice.model_dump(), invoice.id,
                                                       resend.RENVOI[r.resend.kind], now)))
    for sent in status_report(s, changed, now) if changed else ():
        steps.append(trace.row(flow.id, trace.REPORTED, trace.OK, f"{sent.filename} (recyclage, complétude)"))
    return items


def _apply_statuses(url: str, flow: Flow, outcome: Outcome, partner: Partner, limits: Limits) -> Flow:
    """A recipient's status flow, in one transaction: every line checked and applied as it is
    read, one FEN1200A per sender concerned, the CEN1200A for the recipient, the flow's state.
    FlowRejected (irrecevable) rolls it all back: the flow is then reported as any other."""
    now = utcnow()
    with db.session(url) as s:
        hold(s, flow.id)  # first: a worker that lost the flow writes nothing
        applier = statusflow.Applier(s, partner.app, {x for x in partner.sirets.split(",") if x}, now)
        steps = list(outcome.steps)
        try:
            for line in read_statuses(Path(flow.archive_path), limits):
                steps += _status_steps(flow.id, applier.add(line), now)
            steps += _status_steps(flow.id, applier.flush(), now)
        except FlowRejected:
            s.rollback()
            raise
        steps.append(trace.row(flow.id, trace.SPLIT, trace.OK, f"{applier.count} statut(s)"))
        for sent in status_report(s, applier.changed, now) if applier.changed else ():
            steps.append(trace.row(flow.id, trace.REPORTED, trace.OK, f"{sent.filename} ({sent.app})"))
        if applier.changed:
            link_reports(s, [event for _, event in applier.changed])
        accepted = len(applier.changed)
        status = statut.flow_status(accepted, len(applier.refused))
        cen = integration_report(s, flow, outcome, status, [r.error_line() for r in applier.refused],
                                 f"CEN{flow.id:022d}", now,
                                 comment=f"{accepted} statut(s) appliqué(s), {len(applier.refused)} refusé(s)")
        state = flow_state(accepted, applier.count)
        steps.append(trace.row(flow.id, trace.REPORTED, trace.OK, f"{cen.filename} (statut {status})"))
        steps.append(trace.row(flow.id, trace.FINISHED, state, f"{accepted}/{applier.count} statut(s) appliqué(s)"))
        for chunk in _chunks(steps):
            s.execute(insert(FlowStep.__table__), chunk)
        s.execute(update(Flow).where(Flow.id == flow.id).values(
            interface=outcome.interface, flow_ref=outcome.flow_ref, state=state, error_code=None,
            invoice_count=applier.count, accepted_count=accepted, owner=None, lease_until=None, finished_at=now,
        ))
        crash_point("statuses_applied")
        s.commit()
        return s.get(Flow, flow.id)


def invoice_step(flow_id: int, invoice_id: int, r: InvoiceResult) -> dict:
    row = r.row
    if r.resend is not None:
        detail = (f"n° {row['number']} acceptée : {'recyclage' if r.resend.kind == resend.RECYCLE else 'complétude'} "
                  f"de la facture déposée {r.resend.deposit_no}, destinataire {row['recipient_siret']}/"
                  f"{row['code_service'] or '_'}")
    elif r.accepted:
        detail = (f"n° {row['number']} acceptée, dépôt {row['deposit_no']}, "
                  f"destinataire {row['recipient_siret']}/{row['code_service'] or '_'}")
    else:
        codes = dict.fromkeys(f.code for f in r.findings if f.fatal)
        detail = f"n° {row['number']} rejetée : {', '.join(codes)}"
    return trace.row(flow_id, trace.INVOICE, trace.OK if r.accepted else trace.KO, detail, at=r.at,
                     invoice_id=invoice_id)


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


def integration_report(s, flow: Flow, outcome: Outcome, status: str, lines: list[statut.ErrorLine],
                       report_flow_id: str, now: datetime, comment: str = "") -> Report:
    """The integration report of a flow (CSO, or the CEN of a status flow; added to session `s`):
    its error lines (`error_line` of each finding, or each refused status line), the rule sets
    that ran, under a report name never used before."""
    rules = ("Règles : " + " ; ".join(outcome.rules)) if outcome.rules else ""
    report = Report(
        flow_id=flow.id, app=flow.app, kind="integration", created_at=now,
        filename=unique_filename(s, integration_name(flow, outcome), flow.id),
        content=statut.integration_report(
            sender_app=PLATFORM_APP, recipient_app=_report_app(flow.app), report_flow_id=report_flow_id,
            flow_ref=outcome.flow_ref or flow.filename[:100], status=status, produced_at=now,
            lines=lines, comment=" ; ".join(c for c in (comment, rules) if c),
        ),
    )
    s.add(report)
    return report


def integration_name(flow: Flow, outcome: Outcome) -> str:
    """The design's name; a flow whose own name could not be read gets interface `FSO0000A`
    and its internal id (25 digits) in place of the FLOWID."""
    interface = outcome.interface or "FSO0000A"
    flow_ref = outcome.flow_ref or f"{flow.id:025d}"
    return statut.integration_report_name(interface, flow.app, flow_ref)


def error_line(f: Finding) -> statut.ErrorLine:
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
    query = (select(*_STATUS_COLUMNS).where(Invoice.flow_id == flow_id, Invoice.accepted.is_(True),
                                            Invoice.resend_of.is_(None))
             .order_by(Invoice.seq).execution_options(yield_per=1000))
    for row in s.execute(query):
        for code in (DEPOSITED, AVAILABLE):
            yield status_line(row, status=code, complement=row.deposit_no, comment=row.certificate, at=at,
                              producer=PLATFORM_APP)


def _invoice_row(flow_id: int, seq: int, d: InvoiceData, size: int) -> dict:
    return dict(
        flow_id=flow_id, seq=seq, number=d.number[:200], doc_type=d.doc_type, syntax=d.syntax,
        supplier_id=d.supplier_id, supplier_name=d.supplier_name, supplier_id_type=d.supplier_id_type,
        supplier_country=d.supplier_country, recipient_siret=d.recipient_siret, code_service=d.code_service,
        ej=d.ej, issue_date=d.issue_date, currency=d.currency,
        total_ht="" if d.total_ht is None else str(d.total_ht),
        total_ttc="" if d.total_ttc is None else str(d.total_ttc), amount_ttc=None, accepted=False,
        deposit_no=None, certificate="", status="", path="", size=size, resend_of=None,
    )


def _amount(value) -> Decimal | None:
    """The searchable TTC amount (`Invoice.amount_ttc`): cents, within NUMERIC(18, 2)."""
    if value is None or not value.is_finite() or abs(value) >= Decimal(10) ** 15:
        return None
    return value.quantize(Decimal("0.01"))


def finding_row(flow_id: int, invoice_id: int | None, seq: int, f: Finding) -> dict:
    return dict(flow_id=flow_id, invoice_id=invoice_id, seq=seq, code=f.code, reason=f.reason,
                severity=f.severity, message=f.message, location=f.location, value=f.value[:500],
                invoice_number=f.invoice_number)
