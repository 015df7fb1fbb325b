"""Push delivery: reports sent to a partner's own SFTP server, besides its `out/` folder.

Optional per partner (issue 4, point 6). A partner with a destination in its configuration entry

    [[partners]]
    app = "ACME"
    push = { host = "sftp.acme.example", port = 22, user = "chorus", key_file = "config/push_key",
             known_hosts = "config/push_known_hosts", path = "/inbox", timeout = 10 }

gets each report, once written to its `out/`, uploaded with the paramiko client under a
temporary name (`<name>.<random>.part`) then renamed to its own name, so the partner never sees a
half file and nothing is overwritten (SFTP RENAME fails on an existing name). The host key must be
in `known_hosts` (never accepted blindly). A file already present at the destination with the
same size counts as delivered: a rename whose answer was lost is not sent twice.

Every report of such a partner has a `ReportPush` row (its state). A failed attempt is retried
after `push_backoff_seconds`, doubled at each failure up to `push_backoff_max_seconds`; after
`push_max_attempts` failures the delivery is `failed` and waits for `edi reports resend REF`.
Every attempt is a log line (`report_pushed` / `report_push_failed`) and a line of the row's
history. Several workers share the work safely: a row is taken by a conditional update (state
`sending` with a lease), so each attempt is made by one worker.

`[reports]` keys read here (declared, with their defaults, in edi/config.py):

    push_max_attempts = 8           # failures before giving up (then: edi reports resend)
    push_backoff_seconds = 30       # wait after the first failure, doubled each time ...
    push_backoff_max_seconds = 3600 # ... up to this
    push_lease_seconds = 300        # a `sending` row whose worker died is taken over after this
"""

from __future__ import annotations

import json
import posixpath
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paramiko
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.exc import IntegrityError

from edi import db, log
from edi.config import ReportsSettings
from edi.db.models import Partner, Report, ReportPush, utcnow
from edi.spool import Spool, write_new
from edi.reports.retention import retention

LOG = log.get("edi.push")


PENDING, SENDING, RETRY, FAILED, PUSHED = "pending", "sending", "retry", "failed", "pushed"
STATE_LABELS = {PENDING: "à envoyer", SENDING: "envoi en cours", RETRY: "échec, nouvel essai prévu",
                FAILED: "échec définitif", PUSHED: "envoyé"}


class PushError(Exception):
    """A delivery that cannot be made (destination refused, unreachable, or misconfigured)."""


@dataclass(frozen=True)
class Destination:
    """A partner's remote SFTP folder."""

    app: str
    host: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    path: str
    timeout: float

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}{self.path}"


@dataclass(frozen=True)
class Outcome:
    """What `resend` did: the report, whether out/ got its file back, and the push result."""

    report_id: int
    filename: str
    app: str
    rewritten: bool
    push_state: str | None
    error: str | None = None


# --- configuration ---------------------------------------------------------------------------


def destinations(cfg) -> dict[str, Destination]:
    """Partners with a push destination (the `push` table of their `[[partners]]` entry, checked
    when the configuration was loaded)."""
    out = {}
    for entry in cfg.partners:
        if (raw := entry.push) is None:
            continue
        out[entry.app] = Destination(
            app=entry.app, host=raw.host, port=raw.port, user=raw.user, key_file=cfg.resolve(raw.key_file),
            known_hosts=cfg.resolve(raw.known_hosts), path="/" + raw.path.strip("/"), timeout=raw.timeout,
        )
    return out


def backoff(attempts: int, base: float, ceiling: float) -> float:
    """Seconds to wait after the `attempts`-th failure: base, 2*base, 4*base, ... <= ceiling.

    >>> [backoff(n, 30, 200) for n in (1, 2, 3, 4)]
    [30.0, 60.0, 120.0, 200.0]
    """
    return float(min(ceiling, base * 2 ** max(0, attempts - 1)))


# --- the transfer ----------------------------------------------------------------------------


def send(dest: Destination, filename: str, content: bytes) -> str:
    """Upload one file to the destination; returns "sent" or "already_present". Raises on failure."""
    if not dest.known_hosts.is_file():
        raise PushError(f"fichier known_hosts absent : {dest.known_hosts}")
    try:
        key = paramiko.PKey.from_path(str(dest.key_file))
    except (OSError, paramiko.SSHException) as exc:
        raise PushError(f"clé privée illisible ({dest.key_file}) : {exc}") from None
    client = paramiko.SSHClient()
    client.load_host_keys(str(dest.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(dest.host, dest.port, username=dest.user, pkey=key, timeout=dest.timeout,
                       banner_timeout=dest.timeout, auth_timeout=dest.timeout, channel_timeout=dest.timeout,
                       look_for_keys=False, allow_agent=False)
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(dest.timeout)
        target = posixpath.join(dest.path, filename)
        present = _size(sftp, target)
        if present is not None:
            if present == len(content):
                return "already_present"
            raise PushError(f"un autre fichier du même nom existe déjà chez le destinataire ({present} octets)")
        temporary = posixpath.join(dest.path, f"{filename}.{uuid.uuid4().hex[:8]}.part")
        try:
            with sftp.open(temporary, "wb") as fh:
                fh.write(content)
            if _size(sftp, temporary) != len(content):
                raise PushError("fichier incomplet chez le destinataire après l'envoi")
            # The rename is the delivery: once it succeeds the name is the partner's (who may
            # take the file at once), so it is not looked at again.
            sftp.rename(temporary, target)
        except Exception:
            _remove_quietly(sftp, temporary)
            raise
        return "sent"
    finally:
        client.close()


def _size(sftp: paramiko.SFTPClient, path: str) -> int | None:
    try:
        return sftp.stat(path).st_size
    except FileNotFoundError:
        return None


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.remove(path)
    except Exception:  # noqa: BLE001 - best effort; the destination may forbid deletes
        pass


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, PushError):
        return text
    return f"{type(exc).__name__}: {text}"[:500]


# --- state in the database -------------------------------------------------------------------


def _enqueue(url: str, apps: list[str], window: timedelta) -> int:
    """A `ReportPush` row for every written report of these partners that has none yet.

    Only reports younger than the retention are considered: the query stays bounded, and a
    destination configured today does not receive months of history."""
    since = utcnow() - window
    with db.session(url) as s:
        new = s.execute(
            select(Report.id, Report.app).where(
                Report.app.in_(apps), Report.written_at.is_not(None), Report.created_at >= since,
                ~exists().where(ReportPush.report_id == Report.id),
            ).order_by(Report.id)
        ).all()
    added = 0
    for report_id, app in new:
        with db.session(url) as s:
            s.add(ReportPush(report_id=report_id, app=app, state=PENDING))
            try:
                s.commit()
                added += 1
            except IntegrityError:  # another worker made it
                s.rollback()
    return added


def _claimable(now: datetime):
    return or_(
        and_(ReportPush.state.in_((PENDING, RETRY)), or_(ReportPush.next_at.is_(None), ReportPush.next_at <= now)),
        and_(ReportPush.state == SENDING, ReportPush.lease_until < now),
    )


def _claim(url: str, push_id: int, lease: float) -> bool:
    now = utcnow()
    with db.session(url) as s:
        result = s.execute(update(ReportPush).where(ReportPush.id == push_id, _claimable(now))
                           .values(state=SENDING, lease_until=now + timedelta(seconds=lease)))
        s.commit()
        return result.rowcount == 1


def _attempt(url: str, push_id: int, dest: Destination, conf: ReportsSettings) -> str:
    """One delivery attempt of a claimed row; records and logs it. Returns the new state."""
    with db.session(url) as s:
        row = s.get(ReportPush, push_id)
        report_id, attempts, history = row.report_id, row.attempts + 1, row.history
        filename, content = s.execute(select(Report.filename, Report.content).where(Report.id == report_id)).one()
    started = utcnow()
    try:
        result = send(dest, filename, content)
        error = None
    except Exception as exc:  # noqa: BLE001 - any failure is recorded and retried
        result, error = None, _describe(exc)
    now = utcnow()
    values = dict(attempts=attempts, destination=dest.label, lease_until=None, last_error=error)
    entry = {"at": now.isoformat(), "attempt": attempts, "destination": dest.label,
             "ok": error is None, "seconds": round((now - started).total_seconds(), 3)}
    if error is None:
        values.update(state=PUSHED, pushed_at=now, next_at=None)
        entry["result"] = result
        LOG.info("report_pushed", app=dest.app, file=filename, destination=dest.label, attempt=attempts,
                 result=result, bytes=len(content))
    elif attempts >= conf.push_max_attempts:
        values.update(state=FAILED, next_at=None)
        entry["error"] = error
        LOG.error("report_push_failed", app=dest.app, file=filename, destination=dest.label, attempt=attempts,
                  error=error, gave_up=True)
    else:
        delay = backoff(attempts, conf.push_backoff_seconds, conf.push_backoff_max_seconds)
        values.update(state=RETRY, next_at=now + timedelta(seconds=delay))
        entry["error"] = error
        LOG.warning("report_push_failed", app=dest.app, file=filename, destination=dest.label, attempt=attempts,
                    error=error, retry_in=delay)
    values["history"] = history + json.dumps(entry, ensure_ascii=False) + "\n"
    with db.session(url) as s:
        s.execute(update(ReportPush).where(ReportPush.id == push_id).values(**values))
        s.commit()
    return values["state"]


def push_pending(cfg, limit: int = 100) -> int:
    """Worker-loop step: push every report that is due. Returns how many were delivered.

    Costs nothing (no query) when no partner has a destination, two indexed queries otherwise."""
    dests = destinations(cfg)
    if not dests:
        return 0
    url, conf = cfg.database_url, cfg.reports
    _enqueue(url, sorted(dests), retention(cfg))
    with db.session(url) as s:
        due = s.execute(
            select(ReportPush.id, ReportPush.app)
            .where(ReportPush.app.in_(sorted(dests)), _claimable(utcnow()))
            .order_by(ReportPush.id).limit(limit)
        ).all()
    pushed, unreachable = 0, set()
    for push_id, app in due:
        if app in unreachable:
            continue  # one failure per destination and round: a dead host must not hold the loop
        if _claim(url, push_id, conf.push_lease_seconds):
            if _attempt(url, push_id, dests[app], conf) == PUSHED:
                pushed += 1
            else:
                unreachable.add(app)
    return pushed


# --- operator commands -----------------------------------------------------------------------


def find_report(url: str, ref: str) -> Report | None:
    """A report by file name, or by internal id."""
    with db.session(url) as s:
        report = s.execute(select(Report).where(Report.filename == ref)).scalars().first()
        if report is None and ref.isdigit():
            report = s.get(Report, int(ref))
        return report


def resend(cfg, ref: str) -> Outcome:
    """Send a report again: back into `out/` if it is no longer there, and — for a partner with
    a destination — a new push now, with a fresh attempt budget. Raises LookupError if unknown."""
    url = cfg.database_url
    report = find_report(url, ref)
    if report is None:
        raise LookupError(f"compte rendu introuvable : {ref}")
    spool = Spool(cfg.spool_root)
    with db.session(url) as s:
        known = s.get(Partner, report.app) is not None
    rewritten = False
    if known:
        out = spool.outbox(report.app)
        out.mkdir(parents=True, exist_ok=True)
        rewritten = write_new(out / report.filename, report.content)
        with db.session(url) as s:
            s.execute(update(Report).where(Report.id == report.id, Report.written_at.is_(None))
                      .values(written_at=utcnow()))
            s.commit()
        LOG.info("report_resent", app=report.app, file=report.filename, rewritten=rewritten)
    dest = destinations(cfg).get(report.app)
    if dest is None:
        return Outcome(report.id, report.filename, report.app, rewritten, None)
    push_id = _reset(url, report)
    if push_id is None:
        return Outcome(report.id, report.filename, report.app, rewritten, SENDING,
                       "un envoi de ce compte rendu est déjà en cours")
    conf = cfg.reports
    if not _claim(url, push_id, conf.push_lease_seconds):
        return Outcome(report.id, report.filename, report.app, rewritten, SENDING,
                       "un envoi de ce compte rendu est déjà en cours")
    state = _attempt(url, push_id, dest, conf)
    with db.session(url) as s:
        error = s.get(ReportPush, push_id).last_error
    return Outcome(report.id, report.filename, report.app, rewritten, state, error)


def _reset(url: str, report: Report) -> int | None:
    """Make the report's push due now with a fresh budget; None while a worker is sending it."""
    now = utcnow()
    with db.session(url) as s:
        row = s.execute(select(ReportPush).where(ReportPush.report_id == report.id)).scalars().first()
        if row is None:
            row = ReportPush(report_id=report.id, app=report.app, state=PENDING)
            s.add(row)
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                row = s.execute(select(ReportPush).where(ReportPush.report_id == report.id)).scalars().one()
            else:
                s.refresh(row)
                return row.id
        entry = json.dumps({"at": now.isoformat(), "event": "resend"}) + "\n"
        result = s.execute(
            update(ReportPush)
            .where(ReportPush.id == row.id, or_(ReportPush.state != SENDING, ReportPush.lease_until < now))
            .values(state=PENDING, attempts=0, next_at=None, lease_until=None, history=ReportPush.history + entry)
        )
        s.commit()
        return row.id if result.rowcount == 1 else None


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()


def list_reports(url: str, partner: str | None = None, failed: bool = False, limit: int = 100) -> list[dict]:
    """Reports, newest first, with their delivery: written to out/, retrieved, pushed.

    `failed`: only those whose last push attempt failed (`retry`: will be tried again,
    `failed`: given up)."""
    query = (select(Report.id, Report.filename, Report.app, Report.kind, Report.flow_id, Report.created_at,
                    Report.written_at, Report.retrieved_at, ReportPush)
             .outerjoin(ReportPush, ReportPush.report_id == Report.id))
    if partner:
        query = query.where(Report.app == partner)
    if failed:
        query = query.where(ReportPush.state.in_((RETRY, FAILED)))
    rows = []
    with db.session(url) as s:
        for rid, filename, app, kind, flow_id, created, written, retrieved, push in s.execute(
                query.order_by(Report.id.desc()).limit(limit)).all():
            rows.append({
                "id": rid, "file": filename, "partner": app, "kind": kind, "flow_id": flow_id,
                "created": _iso(created), "written": _iso(written), "retrieved": _iso(retrieved),
                "push": None if push is None else {
                    "state": push.state, "attempts": push.attempts, "destination": push.destination,
                    "next_at": _iso(push.next_at), "last_error": push.last_error, "pushed_at": _iso(push.pushed_at),
                    "history": [json.loads(line) for line in push.history.splitlines() if line.strip()],
                },
            })
    return rows


__all__ = ["Destination", "Outcome", "PushError", "backoff", "destinations", "find_report",
           "list_reports", "push_pending", "resend", "send"]
