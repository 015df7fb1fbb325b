"""Retention of the reports made available in partners' `out/` (reference §1.6).

Chorus Pro purges made-available files after 7 days; so does the platform. The SFTP server
runs the purge every `purge_interval` seconds; every purged file is a `ReportPurge` row.

Configuration: `[reports] retention_days` and `purge_interval` (declared in `edi.config`).
"""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import structlog

from edi import db
from edi.db.models import ReportPurge, utcnow

log = structlog.get_logger("edi.partners")

def retention(cfg) -> timedelta:
    return timedelta(days=cfg.reports.retention_days)


def purge_reports(cfg, now: datetime | None = None) -> list[Path]:
    """Delete the files of every partner's `out/` older than the retention; record each one.

    Age is the file's modification time (when the report was made available). Symbolic links
    and folders are left alone. Returns the purged paths.
    """
    now = now or utcnow()
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    limit = (now - retention(cfg)).timestamp()
    base = cfg.spool_root / "partners"
    purged: list[tuple[str, Path, int, datetime]] = []
    if base.is_dir():
        for partner_dir in sorted(base.iterdir()):
            out = partner_dir / "out"
            if partner_dir.is_symlink() or out.is_symlink() or not out.is_dir():
                continue
            for entry in os.scandir(out):
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode) or st.st_mtime >= limit:
                    continue
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue  # downloaded-and-deleted meanwhile
                modified = datetime.fromtimestamp(st.st_mtime, timezone.utc)
                purged.append((partner_dir.name, Path(entry.path), st.st_size, modified))
                log.info("purge", partner=partner_dir.name, action="purge", file=entry.name,
                         bytes=st.st_size, modified_at=modified.isoformat())
    if purged:
        at = now.astimezone(timezone.utc)
        with db.session(cfg.database_url) as s:
            for app, path, size, modified in purged:
                s.add(ReportPurge(app=app, filename=path.name, size=size, modified_at=modified, purged_at=at))
            s.commit()
    return [p for _, p, _, _ in purged]
