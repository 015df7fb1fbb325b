"""Spool layout (design: "Spool layout") and the file operations every stage shares.

    spool/partners/<APP>/in/     flows uploaded by the operator
    spool/partners/<APP>/out/    reports for the operator
    spool/work/                  claimed flows being processed
    spool/archive/YYYY/MM/DD/    originals, never modified
    spool/recipients/<SIRET>/<CODE_SERVICE or _>/   routed invoices

A name in `in/` that starts with `.` or ends with `.part`, `.tmp` or `.filepart` is an upload in
progress and is never taken (the temporary-name-then-rename convention); any other file is taken
once its size and mtime have been stable for `[intake] settle_seconds`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".filepart")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def in_progress(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(IN_PROGRESS_SUFFIXES)


def safe_name(text: str, empty: str = "_") -> str:
    """A path component that cannot escape its folder (code service, attachment name)."""
    cleaned = _SAFE.sub("_", text).lstrip(".")
    return cleaned[:120] or empty


@dataclass(frozen=True)
class Spool:
    root: Path

    def partner(self, app: str) -> Path:
        return self.root / "partners" / app

    def inbox(self, app: str) -> Path:
        return self.partner(app) / "in"

    def outbox(self, app: str) -> Path:
        return self.partner(app) / "out"

    @property
    def work(self) -> Path:
        return self.root / "work"

    def archive_dir(self, when: datetime) -> Path:
        return self.root / "archive" / f"{when:%Y}" / f"{when:%m}" / f"{when:%d}"

    def recipient_dir(self, siret: str, code_service: str) -> Path:
        return self.root / "recipients" / safe_name(siret) / (safe_name(code_service) if code_service else "_")

    def staging(self, flow_id: int) -> Path:
        return self.work / f"flow-{flow_id}"

    def ensure(self, apps=()) -> None:
        for folder in (self.work, self.root / "archive", self.root / "recipients", self.root / "partners"):
            folder.mkdir(parents=True, exist_ok=True)
        for app in apps:
            self.inbox(app).mkdir(parents=True, exist_ok=True)
            self.outbox(app).mkdir(parents=True, exist_ok=True)

    def partner_apps(self) -> list[str]:
        base = self.root / "partners"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: Path, data, *, durable: bool = True) -> bool:
    """Write `data` atomically under `path` unless it exists; never overwrite.

    Temporary name then link(2): the final name appears complete or not at all, and an existing
    file (a report already sent) is left untouched. Returns False when `path` already existed.
    `data` is bytes or an iterable of byte chunks (a large report is never whole in memory).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        for chunk in (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data:
            fh.write(chunk)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    try:
        os.link(tmp, path)
        created = True
    except FileExistsError:
        created = False
    finally:
        tmp.unlink(missing_ok=True)
    if durable and created:
        fsync_dir(path.parent)
    return created
