"""Reports for partners: built when a flow ends (stored in the Report table, in the same
transaction as the flow's outcome), then written to `partners/<APP>/out/`.

The table is an outbox: a crash between the commit and the file write is finished by the next
`deliver_pending`, and a file already present is never rewritten, so no report goes out twice.
A report for an application code no partner has stays in the database (`edi flows show`).
"""

from __future__ import annotations

from itertools import count

from sqlalchemy import LargeBinary, select, type_coerce, update

from edi import db, log, trace
from edi.db.models import Partner, Report, unpack, utcnow
from edi.spool import Spool, write_new

LOG = log.get("edi.reports")


def unique_filename(session, filename: str, flow_id: int) -> str:
    """The design's name, or — when a flow reuses an id already reported (IRR_UNCITE) — the same
    name with `_<internal flow id>` before `.xml`, then `_<internal flow id>_<n>` (n = 2, 3, …:
    a reprocessed flow's later reports), since partner files are never overwritten."""
    stem = filename[:-4]
    for n in count(1):
        candidate = filename if n == 1 else f"{stem}_{flow_id}.xml" if n == 2 else f"{stem}_{flow_id}_{n - 1}.xml"
        if session.execute(select(Report.id).where(Report.filename == candidate)).first() is None:
            return candidate


def deliver_pending(url: str, spool: Spool, flow_id: int | None = None) -> int:
    """Write every report not yet written (of one flow, or all). Returns how many were written."""
    written = 0
    with db.session(url) as s:
        query = select(Report.id, Report.app, Report.filename, Report.flow_id).where(Report.written_at.is_(None))
        if flow_id is not None:
            query = query.where(Report.flow_id == flow_id)
        pending = s.execute(query.order_by(Report.id)).all()
        known = {app for (app,) in s.execute(select(Partner.app))}
    for report_id, app, filename, report_flow in pending:
        if app not in known:
            continue
        with db.session(url) as s:
            stored = s.execute(select(type_coerce(Report.content, LargeBinary)).where(Report.id == report_id)).scalar_one()
            created = write_new(spool.outbox(app) / filename, unpack(stored))
            s.execute(update(Report).where(Report.id == report_id).values(written_at=utcnow()))
            if report_flow is not None:
                trace.add(s, report_flow, trace.WRITTEN, trace.OK,
                          f"partners/{app}/out/{filename}" + ("" if created else " (déjà présent)"))
            s.commit()
        LOG.info("report_written" if created else "report_already_present", app=app, file=filename)
        written += created
    return written
