"""Download records: who fetched which report from `out/`, and when it counts as retrieved.

Every download (even partial) is a `ReportDownload` row; a complete one sets the report's
`retrieved_at` the first time.
"""

from __future__ import annotations

from sqlmodel import select

from edi import db
from edi.db.models import Report, ReportDownload, utcnow


def record_download(url: str, app: str, name: str, session: str, address: str, nbytes: int,
                    complete: bool) -> None:
    now = utcnow()
    with db.session(url) as s:
        s.add(ReportDownload(app=app, filename=name, session=session, address=address,
                             bytes=nbytes, complete=complete, at=now))
        if complete:
            report = s.exec(select(Report).where(Report.filename == name, Report.app == app)).first()
            if report is not None and report.retrieved_at is None:
                report.retrieved_at = now
                s.add(report)
        s.commit()
