"""Reprocessing ("retraitement") of finished flows from their archived originals.

What ops expect from Chorus Pro's retraitement, after they fixed what rejected invoices (a
directory import, a partner account, a rule setting): the *same* flow is read again from its
archive and checked again, invoice by invoice, with today's directory and rules.

- An invoice already deposited (it has a deposit number) is never touched: it was delivered,
  reported 01/03 and may have moved on in its life cycle. If today it would be rejected or
  routed elsewhere, the run says so and changes nothing.
- An invoice rejected before and accepted now is deposited under the number it would have had
  (`EDI` + flow id + position: the same deterministic number and file names as the pipeline),
  delivered, and gets its 01 and 03 events; a rejected invoice rejected again gets today's findings.
- The flow keeps its id and its FLOWID; its state and counts are those of all its invoices now.
- The sender gets a new integration report (CSO, a name never used before: `_<flow id>` then
  `_<flow id>_<n>` before `.xml`) and a FEN1200A for the newly deposited invoices; old reports
  stay as they were. A run that changes nothing writes no report (running twice is harmless).
- A flow irrecevable today that was not is left as it is (deposits are never undone).
- Every run is a trace step (`reprocessed`) naming who asked for it; a dry run writes nothing
  and returns the same per-invoice changes.
- A recipient's status flow (FEN1200A) is refused (`NotReprocessable`): its lines were applied
  once and moved invoices on in their life cycle; reading it again would apply them twice, and
  there is no invoice in it to check again. A status that was refused is sent again in a new flow.

The flow's row is locked for the run (`owner`): two reprocesses of one flow never overlap, and
workers never take finished flows. The checks are those of the pipeline (`pipeline.run_checks`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import timedelta, timezone

from sqlalchemy import delete, insert, or_, select, update

from edi import db, log, trace
from edi.config import Config
from edi.finding import FATAL
from edi.db.models import (
    TERMINAL_STATES, Finding as FindingRow, Flow, FlowStep, Invoice, Report, StatusEvent, flow_state, utcnow,
)
from edi.interfaces import INTERFACES
from edi.lease import Lease, _owner_dead, hold, owner_id
from edi.pipeline import (
    AVAILABLE, DEPOSITED, PLATFORM_APP, InvoiceResult, Outcome, error_line, finding_row, integration_report,
    invoice_step, run_checks,
)
from edi.reports import statut
from edi.reports.outbox import deliver_pending, unique_filename
from edi.route import delivery
from edi.route.status import processing_id, report_app, status_line
from edi.spool import Spool
from edi.validate.flowchecks import FlowRejected

LOG = log.get("edi.reprocess")

# what happens to one invoice
DEPOSIT = "rejetée → acceptée"  # deposited now
NEW = "nouvelle"  # no row before (the flow was irrecevable): decided now
REDECIDED = "rejetée → rejetée"  # still rejected, for other reasons
KEPT_REJECTED = "acceptée → rejetée"  # deposited already: kept, though rejected today
KEPT_ROUTING = "routage changé"  # deposited already: kept, though routed elsewhere today


class NotReprocessable(Exception):
    """The flow cannot be reprocessed (a status flow), or not now (not finished, or being
    reprocessed elsewhere)."""


@dataclass(frozen=True, slots=True)
class InvoiceChange:
    seq: int
    number: str
    kind: str  # one of the constants above
    detail: str
    applied: bool  # the database changes for it (False: reported only)


@dataclass
class Reprocessed:
    flow_id: int
    filename: str
    state_before: str
    state_after: str
    dry_run: bool
    by: str
    changes: list[InvoiceChange] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    note: str = ""  # why nothing changes at flow level (irrecevable today, ...)

    @property
    def changed(self) -> bool:
        return any(c.applied for c in self.changes)

    def as_dict(self) -> dict:
        return dict(flow=self.flow_id, filename=self.filename, state_before=self.state_before,
                    state_after=self.state_after, dry_run=self.dry_run, by=self.by, note=self.note,
                    reports=self.reports,
                    changes=[dict(seq=c.seq, number=c.number, kind=c.kind, detail=c.detail, applied=c.applied)
                             for c in self.changes])


class _DryDeliveries:
    """Stages nothing: a dry run writes no file."""

    def stage(self, *_args):
        return None


class _RowLock(Lease):
    """The flow's row held for the run (`owner`), renewed like a worker's lease."""

    def take(self) -> None:
        with db.session(self.url) as s:
            row = s.execute(select(Flow.state, Flow.owner).where(Flow.id == self.flow_id)).one()
            if row.state not in TERMINAL_STATES:
                raise NotReprocessable(f"flux {self.flow_id} dans l'état {row.state} : seul un flux terminé se retraite")
            if row.owner is not None and not _owner_dead(row.owner):
                raise NotReprocessable(f"flux {self.flow_id} en cours de retraitement par {row.owner}")
            taken = s.execute(update(Flow).where(
                Flow.id == self.flow_id, Flow.owner.is_(None) if row.owner is None else Flow.owner == row.owner)
                .values(owner=owner_id(), lease_until=utcnow() + timedelta(seconds=self.seconds)))
            if taken.rowcount != 1:
                raise NotReprocessable(f"flux {self.flow_id} pris par un autre retraitement")
            s.commit()

    def hold(self, s) -> None:
        """First statement of the run's transaction: still ours (a finished flow, whatever its
        state), row locked until the commit."""
        hold(s, self.flow_id, state=None)

    def release(self) -> None:
        with db.session(self.url) as s:
            s.execute(update(Flow).where(Flow.id == self.flow_id, Flow.owner == owner_id())
                      .values(owner=None, lease_until=None))
            s.commit()


class _NoLock:
    def renew(self, seq: int) -> None:
        pass


def reprocess(cfg: Config, flow_id: int, *, by: str, dry_run: bool = False) -> Reprocessed:
    """Reprocess one finished invoice flow (see the module's docstring); NotReprocessable when it
    is a status flow, is not finished or another run holds it. A dry run takes no lock and
    writes nothing."""
    url = cfg.database_url
    with db.session(url) as s:
        flow = s.get(Flow, flow_id)
    if flow.interface in INTERFACES and INTERFACES[flow.interface].role == "recipient":
        raise NotReprocessable(f"flux {flow.id} : un flux de statuts ({flow.interface}) ne se retraite pas : "
                               "ses statuts sont appliqués une fois")
    if flow.state not in TERMINAL_STATES:
        raise NotReprocessable(f"flux {flow.id} dans l'état {flow.state} : seul un flux terminé se retraite")
    spool = Spool(cfg.spool_root)
    lock = _NoLock() if dry_run else _RowLock(url, flow_id, cfg.intake.lease_seconds)
    if not dry_run:
        lock.take()
    try:
        with db.session(url) as s:  # read under the lock: another run may have just committed
            flow = s.get(Flow, flow_id)
            before = {i.seq: i for i in s.execute(select(Invoice).where(Invoice.flow_id == flow_id)).scalars()}
            fatal = _fatal_codes(s, flow_id)
        deliveries = _DryDeliveries() if dry_run else delivery.Deliveries(spool, flow_id)
        outcome = Outcome(staging=str(spool.staging(flow_id)))
        try:
            run_checks(cfg, flow, outcome, deliveries, lock)
        except FlowRejected as rejected:
            outcome.flow_findings.append(rejected.finding)
            outcome.invoices.clear()
        result = Reprocessed(flow.id, flow.filename, flow.state, flow.state, dry_run, by)
        if outcome.flow_findings:
            code = outcome.flow_findings[0].code
            result.note = (f"toujours irrecevable ({code})" if flow.error_code else
                           f"aujourd'hui irrecevable ({code}) : les factures déposées restent déposées, rien n'est changé")
        else:
            result.changes = _compare(before, fatal, outcome.invoices)
            result.state_after = _state(before, outcome.invoices)
        if not dry_run:
            _apply(cfg, flow, outcome, result, lock)
            deliver_pending(url, spool, flow.id)
    finally:
        if not dry_run:
            shutil.rmtree(spool.staging(flow_id), ignore_errors=True)
            lock.release()
    LOG.info("flow_reprocessed", flow=flow.id, by=by, dry_run=dry_run, state=result.state_after,
             changes=sum(c.applied for c in result.changes), reports=result.reports)
    return result


def _fatal_codes(s, flow_id: int) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    rows = s.execute(select(FindingRow.invoice_id, FindingRow.code).where(
        FindingRow.flow_id == flow_id, FindingRow.invoice_id.is_not(None), FindingRow.severity == FATAL)
        .order_by(FindingRow.seq))
    for invoice_id, code in rows:
        out.setdefault(invoice_id, [])
        if code not in out[invoice_id]:
            out[invoice_id].append(code)
    return out


def _codes(r: InvoiceResult) -> list[str]:
    return list(dict.fromkeys(f.code for f in r.findings if f.fatal))


def _route(siret: str, code: str) -> str:
    return f"{siret}/{code or '_'}"


def _compare(before: dict[int, Invoice], fatal: dict[int, list[str]], results: list[InvoiceResult]) -> list[InvoiceChange]:
    changes = []
    for r in results:
        old, row = before.get(r.seq), r.row
        now_route = _route(row["recipient_siret"], row["code_service"])
        if old is None:
            detail = f"acceptée, dépôt {row['deposit_no']} vers {now_route}" if r.accepted else \
                f"rejetée : {', '.join(_codes(r))}"
            changes.append(InvoiceChange(r.seq, row["number"], NEW, detail, True))
        elif old.accepted:
            old_route = _route(old.recipient_siret, old.code_service)
            if not r.accepted:
                changes.append(InvoiceChange(r.seq, old.number, KEPT_REJECTED,
                                             f"déjà déposée ({old.deposit_no}) : inchangée ; serait rejetée aujourd'hui : "
                                             f"{', '.join(_codes(r))}", False))
            elif now_route != old_route:
                changes.append(InvoiceChange(r.seq, old.number, KEPT_ROUTING,
                                             f"déjà déposée ({old.deposit_no}) vers {old_route} : inchangée ; "
                                             f"serait routée vers {now_route} aujourd'hui", False))
        elif r.accepted:
            changes.append(InvoiceChange(r.seq, row["number"], DEPOSIT,
                                         f"dépôt {row['deposit_no']} vers {now_route} "
                                         f"(était : {', '.join(fatal.get(old.id, [])) or 'rejetée'})", True))
        elif _codes(r) != fatal.get(old.id, []):
            changes.append(InvoiceChange(r.seq, row["number"], REDECIDED,
                                         f"{', '.join(fatal.get(old.id, []))} → {', '.join(_codes(r))}", True))
    return changes


def _state(before: dict[int, Invoice], results: list[InvoiceResult]) -> str:
    accepted = {seq for seq, i in before.items() if i.accepted} | {r.seq for r in results if r.accepted}
    return flow_state(len(accepted), max(len(before), len(results)))


def _apply(cfg: Config, flow: Flow, outcome: Outcome, result: Reprocessed, lock: _RowLock) -> None:
    """Write the run: every changed invoice, its findings, events and reports, the flow's state
    and the trace, in one transaction (files are delivered just before, under their
    deterministic names, as the pipeline does)."""
    url, now = cfg.database_url, utcnow()
    applied = {c.seq for c in result.changes if c.applied}
    redo = [r for r in outcome.invoices if r.seq in applied]
    summary = _summary(result)
    if not redo:
        trace.write(url, flow.id, trace.REPROCESSED, trace.OK, f"par {result.by} : aucun changement{summary}")
        return
    deliveries = delivery.Deliveries(Spool(cfg.spool_root), flow.id)
    for r in redo:
        if r.accepted:
            r.row["path"] = deliveries.deliver(r.staged, r.row["recipient_siret"], r.row["code_service"])
    with db.session(url) as s:
        lock.hold(s)
        existing = dict(s.execute(select(Invoice.seq, Invoice.id).where(Invoice.flow_id == flow.id)).all())
        replaced = [existing[r.seq] for r in redo if r.seq in existing]
        s.execute(delete(FindingRow).where(FindingRow.flow_id == flow.id, or_(
            FindingRow.invoice_id.in_(replaced), FindingRow.invoice_id.is_(None))))
        for r in redo:
            if r.seq in existing:
                values = {k: v for k, v in r.row.items() if k not in ("flow_id", "seq")}
                s.execute(update(Invoice).where(Invoice.id == existing[r.seq]).values(**values))
            else:
                s.execute(insert(Invoice.__table__), [r.row])
        ids = dict(s.execute(select(Invoice.seq, Invoice.id).where(Invoice.flow_id == flow.id)).all())
        last = s.execute(select(FindingRow.seq).where(FindingRow.flow_id == flow.id)
                         .order_by(FindingRow.seq.desc())).scalars().first() or 0
        rows = []
        for r in redo:
            rows += [finding_row(flow.id, ids[r.seq], last + len(rows) + n, f) for n, f in enumerate(r.findings, start=1)]
        if rows:
            s.execute(insert(FindingRow.__table__), rows)
        steps = [trace.row(flow.id, trace.REPROCESSED, trace.OK, f"par {result.by}{summary}")]
        steps += [invoice_step(flow.id, ids[r.seq], r) for r in redo]
        deposited = [r for r in redo if r.accepted]
        accepted = s.execute(select(Invoice.id).where(Invoice.flow_id == flow.id, Invoice.accepted.is_(True))).all()
        total = len(ids)
        status = statut.flow_status(len(accepted), total - len(accepted))
        integration = _integration_report(s, flow, outcome, redo, status, result.by, now)
        result.reports.append(integration.filename)
        steps.append(trace.row(flow.id, trace.REPORTED, trace.OK, f"{integration.filename} (statut {status})"))
        if deposited:
            report = _deposit_report(s, flow, [ids[r.seq] for r in deposited], now)
            result.reports.append(report.filename)
            steps.append(trace.row(flow.id, trace.REPORTED, trace.OK,
                                   f"{report.filename} ({len(deposited)} facture(s) : statuts 01 et 03)"))
        steps.append(trace.row(flow.id, trace.FINISHED, result.state_after,
                               f"{len(accepted)}/{total} facture(s) acceptée(s)"))
        s.execute(insert(FlowStep.__table__), steps)
        s.execute(update(Flow).where(Flow.id == flow.id).values(
            interface=outcome.interface, flow_ref=outcome.flow_ref, state=result.state_after, error_code=None,
            invoice_count=total, accepted_count=len(accepted), finished_at=now))
        s.commit()


def _summary(result: Reprocessed) -> str:
    counts: dict[str, int] = {}
    for c in result.changes:
        counts[c.kind] = counts.get(c.kind, 0) + 1
    parts = [f"{n} {kind}" for kind, n in counts.items()]
    if result.note:
        parts.append(result.note)
    return (" ; " + ", ".join(parts)) if parts else ""


def _integration_report(s, flow: Flow, outcome: Outcome, redo: list[InvoiceResult], status: str, by: str, now) -> Report:
    """A new CSO for the invoices decided again; its IdFlx and file name are new."""
    count = len(s.execute(select(Report.id).where(Report.flow_id == flow.id, Report.kind == "integration")).all())
    return integration_report(s, flow, outcome, status, [error_line(f) for r in redo for f in r.findings],
                              f"CSO{flow.id:012d}{count:010d}", now, comment=f"Retraitement demandé par {by}")


def _deposit_report(s, flow: Flow, invoice_ids: list[int], now) -> Report:
    """Statuses 01 and 03 of the newly deposited invoices, one FEN1200A named after its first event."""
    invoices = s.execute(select(Invoice).where(Invoice.id.in_(invoice_ids)).order_by(Invoice.seq)).scalars().all()
    events = [StatusEvent(invoice_id=i.id, code=code, at=now, producer=PLATFORM_APP, reason="",
                          comment=i.certificate if code == DEPOSITED else "")
              for i in invoices for code in (DEPOSITED, AVAILABLE)]
    s.add_all(events)
    s.flush()
    report_id = processing_id(flow.id, events[0].id)
    report = Report(
        flow_id=flow.id, app=flow.app, kind="processing", created_at=now,
        filename=unique_filename(s, statut.processing_report_name(flow.app, report_id), flow.id),
        content=statut.processing_report(
            sender_app=PLATFORM_APP, recipient_app=report_app(flow.app), report_flow_id=report_id, produced_at=now,
            lines=[status_line(i, status=code, complement=i.deposit_no, comment=i.certificate, at=now,
                               producer=PLATFORM_APP) for i in invoices for code in (DEPOSITED, AVAILABLE)]),
    )
    s.add(report)
    s.flush()
    for event in events:
        event.report_id = report.id
    return report


def select_flows(url: str, refs: list[str], *, state: str | None = None, since=None,
                 partner: str | None = None) -> tuple[list[int], list[str]]:
    """The flows of `edi reprocess`: the given REFs (FLOWID or id), else the finished flows
    matching the filters, oldest first. Returns (ids, REFs not found)."""
    from edi.queries import find_flow

    if refs:
        ids, missing = [], []
        with db.session(url) as s:
            for ref in refs:
                flow = find_flow(s, ref)
                if flow is None:
                    missing.append(ref)
                else:
                    ids.append(flow.id)
        return list(dict.fromkeys(ids)), missing
    query = select(Flow.id).where(Flow.state.in_((state,) if state else TERMINAL_STATES)).order_by(Flow.id)
    if partner:
        query = query.where(Flow.app == partner)
    if since is not None:
        query = query.where(Flow.received_at >= (since if since.tzinfo else since.replace(tzinfo=timezone.utc)))
    with db.session(url) as s:
        return list(s.execute(query).scalars()), []
