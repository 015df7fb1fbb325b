"""What a worker does: take ready flows from the inboxes, process recorded flows, send reports.

Used by `edi serve` (in a loop, woken by the watcher) and by `edi ingest` (once, for the given
paths). Several workers — processes on one machine or several sharing the database and the
spool — can run this at once: the claim rename and the flow lease make each flow processed once.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select

from edi import db, trace
from edi.config import Config
from edi.db.models import ON_HOLD, RECEIVED, Flow
from edi.ingest import intake
from edi.spool import Spool
from edi.lease import resumable
from edi.pipeline import process
from edi.reports import push
from edi.reports.outbox import deliver_pending

_APP_IN_NAME = re.compile(r"^[A-Z0-9]{8}_([A-Z0-9]{3,8})_")


def prepare(cfg: Config) -> Spool:
    """Create or upgrade the schema, load the configured partners, make their folders."""
    from edi import partners

    db.engine_for(cfg.database_url)
    spool = Spool(cfg.spool_root)
    apps = partners.load_from_config(cfg)
    known = [p.app for p in partners.list_partners(cfg.database_url)]
    spool.ensure(sorted(set(apps) | set(known)))
    return spool


def inbox_app(spool: Spool, path: Path) -> str | None:
    """The partner whose `in/` folder holds `path`, if it is in one."""
    try:
        rel = path.resolve().relative_to((spool.root / "partners").resolve())
    except ValueError:
        return None
    return rel.parts[0] if len(rel.parts) == 3 and rel.parts[1] == "in" else None


def ingest_paths(cfg: Config, paths: list[Path], partner: str | None = None) -> list[Flow]:
    """`edi ingest`: take each path now (no settle delay), process it, write its reports."""
    spool = prepare(cfg)
    return [flow for path in paths if (flow := ingest_one(cfg, spool, path, partner)) is not None]


def ingest_one(cfg: Config, spool: Spool, path: Path, partner: str | None = None) -> Flow | None:
    """One flow of `edi ingest` on a prepared platform; None when another process took it."""
    in_box = inbox_app(spool, path)
    match = _APP_IN_NAME.match(path.name)
    app = partner or in_box or (match.group(1) if match else "INCONNU")
    flow = intake.take(cfg.database_url, spool, path, app, move=in_box is not None, origin="cli")
    if flow is None:
        return None
    done = process(cfg, flow.id)
    deliver_pending(cfg.database_url, spool)  # a status flow's reports go to the deposits' senders (their flows)
    return done or flow


def scan_inboxes(cfg: Config, spool: Spool, readiness: intake.Readiness) -> list[int]:
    """Claim and record every ready file of every partner inbox; returns the new flow ids."""
    taken = []
    for app in spool.partner_apps():
        inbox = spool.inbox(app)
        if not inbox.is_dir():
            continue
        for path in sorted(inbox.iterdir()):
            if readiness.ready(path):
                readiness.forget(path)
                flow = intake.take(cfg.database_url, spool, path, app, move=True, origin="spool")
                if flow is not None:
                    taken.append(flow.id)
    return taken


def run_once(cfg: Config, spool: Spool, readiness: intake.Readiness, should_stop=lambda: False) -> int:
    """One round: intake, processing of every flow waiting, report delivery. Returns flows done."""
    intake.recover(cfg.database_url, spool)  # cheap; finishes what a dead process left in work/
    scan_inboxes(cfg, spool, readiness)
    done = 0
    for flow_id in resumable(cfg.database_url):
        if should_stop():
            break
        if not _archived(cfg.database_url, flow_id):
            continue  # recorded a moment ago by another process, still being moved into the archive
        try:
            finished = process(cfg, flow_id)
        except Exception:  # a platform error on this flow must not block the others; process()
            continue  # recorded it (trace, last_error), released the flow or put it on hold, and logged it
        if finished is not None:
            done += 1
            intake.crash_point("committed")
    deliver_pending(cfg.database_url, spool)
    push.push_pending(cfg)  # partners with a remote SFTP destination; no query when there is none
    return done


def retry(url: str, ref: str, by: str = "") -> Flow | None:
    """`edi flows retry REF` (and the console's button): put a flow on hold back in the queue
    (attempts reset); `by` names who asked, in the trace."""
    from edi.queries import find_flow

    with db.session(url) as s:
        flow = find_flow(s, ref)
        if flow is None or flow.state != ON_HOLD:
            return flow
        flow.state, flow.attempts = RECEIVED, 0
        trace.add(s, flow.id, trace.RETRIED, trace.OK, f"remis en file par {by}" if by else "remis en file (edi flows retry)")
        s.commit()
        s.refresh(flow)
        return flow


def _archived(url: str, flow_id: int) -> bool:
    """A Flow row is committed just before its file is renamed into the archive; a worker that
    processed it in between would find no file (and reject a tar.gz as IRR_EXTRAC). A flow
    refused on arrival (`intake.record_refused`) has no archive and is processed at once."""
    with db.session(url) as s:
        path = s.execute(select(Flow.archive_path).where(Flow.id == flow_id)).scalar_one_or_none()
    return not path or Path(path).exists()
