"""What users do from the console and the API, through the very functions of the command line
(no second implementation): ops retry a held flow (`edi.worker.retry`), resend a report
(`edi.reports.push.resend`), reprocess a flow (`edi.reprocess`); recipients — and ops for them —
set an invoice's status (`edi.route.status.change_status`); senders — and ops for them —
recycle an invoice in 04 and complete one in 06 (`edi.route.resend.recycle_by_ops` and
`complete_by_ops`, as `edi invoices recycle|complete`). Each is recorded with the user's login
(trace step, event producer). `ActionRefused` carries the HTTP status and a French message.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable

from sqlalchemy import select

from edi import db, lifecycle, log
from edi.db.models import ON_HOLD, RECEIVED, Flow, Report
from edi.reports.outbox import deliver_pending
from edi.spool import Spool
from edi.web import search, upload
from edi.web.users import User

LOG = log.get("edi.web.actions")
BY_REASON = "motif"  # the form's choice "04, 05 or 06, as the reason decides"


class ActionRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _ops_flow(web, user: User, ref: str) -> int:
    """The flow's id, for an ops user; 404 for what the user cannot see, 403 for a sender."""
    flow_id = search.visible_flow_id(web.url, search.scope_of(web.cfg, user), ref)
    if flow_id is None:
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


# ------------------------------------------------------------------ senders: recycle (04), complete (06)


def _sender_invoice(web, user: User, deposit_no: str) -> None:
    """A sender on an invoice its APP deposited, or ops on any; 404 for any other, 403 for a recipient."""
    if user.role == "recipient":
        raise ActionRefused(403, "Recycler ou compléter une facture revient à son fournisseur.")
    if user.role not in ("ops", "sender") or not search.invoice_visible(
            web.url, search.scope_of(web.cfg, user), deposit_no):
        raise ActionRefused(404, f"Facture {deposit_no} introuvable.")


def _on_behalf(user: User) -> str:
    return "l'exploitation" if user.role == "ops" else f"le fournisseur ({who(user)})"


def recycle(web, user: User, deposit_no: str, siret: str | None, service: str | None, ej: str | None):
    """`edi invoices recycle`: the new SIRET, code service and EJ (None or an empty SIRET: kept;
    an empty service or EJ: none), checked by the routing rules; back to 03, the FEN1200A to the sender, the invoice delivered again."""
    from edi.route import resend, status

    _sender_invoice(web, user, deposit_no)
    try:
        applied = resend.recycle_by_ops(
            web.url, Spool(web.cfg.spool_root), web.cfg.ej_patterns, deposit_no, siret=(siret or "").strip() or None,
            code_service=None if service is None else service.strip()[:100],
            ej=None if ej is None else ej.strip()[:100], producer=who(user), by=_on_behalf(user))
    except status.Refused as refused:
        raise ActionRefused(400, str(refused)) from None
    deliver_pending(web.url, Spool(web.cfg.spool_root), applied.flow_id)
    LOG.info("console_invoice_recycled", deposit=deposit_no, user=user.login)
    return applied


class Piece:
    """One uploaded attachment: its name as sent and its bytes, read by chunks."""

    def __init__(self, filename: str, chunks: Iterable[bytes]):
        self.filename, self.chunks = filename, chunks


def safe_filename(filename: str) -> str:
    """The last part of what the browser sent (no folder, either separator), never empty or dotted."""
    from edi.spool import safe_name

    base = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return safe_name(base if base.strip(".") else "", "piece")


def complete(web, user: User, deposit_no: str, pieces: list[Piece], comment: str):
    """`edi invoices complete`: the uploaded pieces (each within `limits.max_file_bytes`) written to
    a temporary folder, then added by the command's function; 12 Complétée, reported, delivered again."""
    from edi.route import resend, status

    _sender_invoice(web, user, deposit_no)
    pieces = [p for p in pieces if p.filename]
    limit = web.cfg.limits.max_file_bytes
    folder = tempfile.mkdtemp(prefix=".pieces-")
    try:
        paths = []
        for n, piece in enumerate(pieces, start=1):
            path = os.path.join(folder, str(n))
            os.mkdir(path)
            name = safe_filename(piece.filename)
            path = os.path.join(path, name)
            too_big = ActionRefused(413, f"REJ_INC : pièce jointe {name} de plus de {limit} octets")
            if upload.write(path, piece.chunks, limit, too_big) == 0:
                raise ActionRefused(400, f"REJ_INC : pièce jointe {name} vide")
            paths.append(path)
        if not paths:
            raise ActionRefused(400, "REJ_INC : aucune pièce jointe : joignez au moins un fichier")
        try:
            applied = resend.complete_by_ops(web.url, paths, deposit_no=deposit_no, comment=comment.strip()[:1000],
                                             producer=who(user), by=_on_behalf(user))
        except status.Refused as refused:
            raise ActionRefused(400, str(refused)) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    deliver_pending(web.url, Spool(web.cfg.spool_root), applied.flow_id)
    LOG.info("console_invoice_completed", deposit=deposit_no, pieces=len(paths), user=user.login)
    return applied
