"""What users do from the console and the API, through the very functions of the command line
(no second implementation): ops retry a held flow (`edi.worker.retry`), resend a report
(`edi.reports.push.resend`), reprocess a flow (`edi.reprocess`); recipients — and ops for them —
set an invoice's status (`edi.route.status.change_status`). Each is recorded with the user's
login (trace step, event producer). `ActionRefused` carries the HTTP status and a French message.

Recycling and completing by the supplier (issue 10, point 4, senders) are built on another
branch (`edi invoices recycle|complete`); they belong here, beside `set_status`, as calls to
those functions.
"""

from __future__ import annotations

from sqlalchemy import select

from edi import db, lifecycle, log
from edi.db.models import ON_HOLD, RECEIVED, Flow, Report
from edi.reports.outbox import deliver_pending
from edi.spool import Spool
from edi.web import search
from edi.web.users import User

LOG = log.get("edi.web.actions")
BY_REASON = "motif"  # the form's choice "04, 05 or 06, as the reason decides"


class ActionRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _ops_flow(web, user: User, ref: str) -> int:
    """The flow's id, for an ops user; 404 for what the user cannot see, 403 for a sender."""
    from edi.queries import find_flow

    with db.session(web.url) as s:
        flow = find_flow(s, ref)
        flow_id = flow.id if flow is not None else None
    if flow_id is None or not search.flow_visible(web.url, search.scope_of(web.cfg, user), flow_id):
        raise ActionRefused(404, f"Flux {ref} introuvable.")
    if user.role != "ops":
        raise ActionRefused(403, "Action réservée à l'exploitation.")
    return flow_id


def who(user: User) -> str:
    """How an action is signed: the console login (the trace and reports name it)."""
    return user.login


def retry_flow(web, user: User, ref: str) -> str:
    from edi.worker import retry

    flow_id = _ops_flow(web, user, ref)
    with db.session(web.url) as s:
        state = s.get(Flow, flow_id).state
    flow = retry(web.url, str(flow_id), by=who(user)) if state == ON_HOLD else None
    if flow is None or flow.state != RECEIVED:
        raise ActionRefused(409, f"Le flux {flow_id} n'est pas en attente de retraitement (état {state}).")
    LOG.info("console_flow_retried", flow=flow_id, user=user.login)
    if web.on_deposit:
        web.on_deposit(flow_id)  # `edi serve` wakes its workers
    return f"Flux {flow_id} remis en file ; il sera repris depuis son original archivé."


def resend_report(web, user: User, ref: str, filename: str) -> str:
    from edi import trace
    from edi.reports import push

    flow_id = _ops_flow(web, user, ref)
    with db.session(web.url) as s:
        report_id = s.execute(select(Report.id).where(Report.flow_id == flow_id, Report.filename == filename)).scalar()
    if report_id is None:
        raise ActionRefused(404, f"Compte rendu {filename} introuvable pour ce flux.")
    outcome = push.resend(web.cfg, str(report_id))
    done = ("de nouveau dans out/" if outcome.rewritten else "déjà présent dans out/") + (
        "" if outcome.push_state is None else f" ; envoi SFTP : {push.STATE_LABELS.get(outcome.push_state)}")
    trace.write(web.url, flow_id, trace.WRITTEN, trace.OK, f"{filename} renvoyé par {who(user)} ({done})")
    LOG.info("console_report_resent", flow=flow_id, file=filename, user=user.login)
    return f"{filename} : {done}."


def reprocess_flow(web, user: User, ref: str, dry_run: bool):
    from edi import reprocess

    flow_id = _ops_flow(web, user, ref)
    try:
        return reprocess.reprocess(web.cfg, flow_id, by=who(user), dry_run=dry_run)
    except reprocess.NotReprocessable as exc:
        raise ActionRefused(409, str(exc)) from None


def status_choices(user: User, current: str) -> list[tuple[str, str]]:
    """What the status form offers: the statuses this role may set next, 04/05/06 as one choice
    whose reason decides (as in the portal)."""
    actor = lifecycle.OPS if user.role == "ops" else lifecycle.RECIPIENT
    codes = lifecycle.next_statuses(current, actor)
    refusals = {lifecycle.TO_RECYCLE, lifecycle.REJECTED, lifecycle.SUSPENDED}
    out = [(BY_REASON, "Refus, suspension ou renvoi au recyclage (selon le motif)")] if refusals & set(codes) else []
    return out + [(c, f"{c} {lifecycle.BY_CODE[c].name}") for c in codes if c not in refusals]


def set_status(web, user: User, deposit_no: str, choice: str, reason: str, comment: str, mandate: str):
    """A recipient on an invoice of its SIRETs, or ops on any: `change_status`, then the report
    leaves for the supplier's sender at once."""
    from edi.route import status

    if user.role not in ("ops", "recipient") or not search.invoice_visible(
            web.url, search.scope_of(web.cfg, user), deposit_no):
        raise ActionRefused(404, f"Facture {deposit_no} introuvable.")
    reason = reason.strip().upper()
    if choice == BY_REASON:
        if reason not in lifecycle.REASONS:
            raise ActionRefused(422, "REJ_INC : choisissez un motif dans la liste.")
        choice = lifecycle.status_for_reason(reason)
    actor = lifecycle.OPS if user.role == "ops" else lifecycle.RECIPIENT
    change = status.Change(status=choice.strip().zfill(2), actor=actor, producer=who(user), reason=reason,
                           comment=comment.strip()[:1000], mandate=mandate.strip()[:100])
    try:
        applied = status.change_status(web.url, deposit_no, change)
    except status.Refused as refused:
        raise ActionRefused(422, str(refused)) from None
    deliver_pending(web.url, Spool(web.cfg.spool_root), applied.flow_id)
    LOG.info("console_status_set", deposit=deposit_no, status=applied.status, user=user.login)
    return applied
