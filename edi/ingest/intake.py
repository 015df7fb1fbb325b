"""Intake: take a complete flow exactly once, archive it unmodified, record it.

Order, so that a crash at any point loses nothing and takes nothing twice:
1. claim: atomic rename from `in/` into `work/` (only one process can win the rename);
   `edi ingest` on a file outside the spool copies it into `work/` instead (the user's file stays);
2. hash the claimed file (SHA-256, streamed);
3. record the Flow row (state RECU) with its planned archive path and its work path;
4. move the file into `archive/YYYY/MM/DD/` (rename, read-only, directory fsynced).
On restart, `recover()` finishes step 4 for rows whose archive is missing, and re-runs steps 2-4
for files in `work/` that no row knows. Steps 2-4 run under an exclusive flock(2) on the claimed
file, so a `recover()` in another live process (a second `edi serve`, a worker process) never
records a file whose claimer is still at work; the kernel drops the lock when the claimer dies.

Readiness in `in/` (watcher events are only hints): a file is taken when its name is not an
upload in progress (see `edi.spool`) and its size and mtime are unchanged since the
previous scan and older than `[intake] settle_seconds`; the SFTP server, which knows when an
upload is complete, hands files over directly.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from edi import db, log, trace
from edi.db.models import RECEIVED, Flow, utcnow
from edi.spool import Spool, fsync_dir, in_progress

LOG = log.get("edi.intake")
_SEP = "__"
CRASH_ENV = "EDI_TEST_CRASH_AT"
STALL_ENV, GATE_ENV = "EDI_TEST_STALL_AT", "EDI_TEST_STALL_GATE"


def crash_point(name: str) -> None:
    """Test hooks for the crash-and-resume and stale-worker tests: `EDI_TEST_CRASH_AT=<name>`
    kills the process here as `kill -9` would (no cleanup, no flush beyond this line);
    `EDI_TEST_STALL_AT=<name>` with `EDI_TEST_STALL_GATE=<file>` creates the file and stalls
    here until the test removes it (at most two minutes), as a worker stuck on a slow disk."""
    if os.environ.get(CRASH_ENV) == name:
        LOG.warning("test_crash", point=name)
        os._exit(137)
    if os.environ.get(STALL_ENV) == name:
        gate = Path(os.environ[GATE_ENV])
        gate.touch()
        LOG.warning("test_stall", point=name)
        deadline = time.monotonic() + 120
        while gate.exists() and time.monotonic() < deadline:
            time.sleep(0.02)


class Readiness:
    """Remembers what each scan saw, to tell a finished file from one still being written."""

    def __init__(self, settle_seconds: float):
        self.settle = settle_seconds
        self._seen: dict[Path, tuple[int, int]] = {}
        self._complete: set[Path] = set()

    def complete(self, path: Path) -> None:
        """Told by a source that knows the upload ended (SFTP close): no settle delay."""
        self._complete.add(path)

    def ready(self, path: Path, now: float | None = None) -> bool:
        if in_progress(path.name):
            return False
        if path in self._complete:
            return path.is_file() and not path.is_symlink()
        try:
            st = path.stat()
        except FileNotFoundError:
            self._seen.pop(path, None)
            return False
        if not path.is_file() or path.is_symlink():
            return False
        now = time.time() if now is None else now
        signature = (st.st_size, st.st_mtime_ns)
        previous = self._seen.get(path)
        self._seen[path] = signature
        if self.settle <= 0:
            return True
        return previous == signature and now - st.st_mtime >= self.settle

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)
        self._complete.discard(path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def claim(spool: Spool, source: Path, app: str, *, move: bool) -> Path | None:
    """Move (or copy) `source` into work/. Returns None when another process claimed it first."""
    spool.work.mkdir(parents=True, exist_ok=True)
    target = spool.work / f"{app}{_SEP}{uuid.uuid4().hex[:12]}{_SEP}{source.name}"
    if move:
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return None
    else:
        tmp = target.with_name("." + target.name + ".tmp")
        shutil.copyfile(source, tmp)
        os.rename(tmp, target)
    return target


def record(url: str, spool: Spool, work_file: Path, *, source: str) -> Flow:
    """Steps 2-4 for a claimed file: hash, Flow row, archive."""
    app, _token, filename = work_file.name.split(_SEP, 2)
    now = utcnow()
    archive = spool.archive_dir(now) / work_file.name
    flow = Flow(
        app=app, filename=filename, size=work_file.stat().st_size, sha256=sha256_of(work_file),
        archive_path=str(archive), work_path=str(work_file), source=source, state=RECEIVED, received_at=now,
    )
    _record(url, flow, trace.OK, f"{source}, {flow.size} octets, sha256 {flow.sha256}")
    crash_point("recorded")
    _archive(url, flow.id, work_file, archive)
    LOG.info("flow_received", flow=flow.id, app=app, file=filename, bytes=flow.size, sha256=flow.sha256,
             archive=str(archive), source=source)
    return flow


def _archive(url: str, flow_id: int, work_file: Path, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    os.rename(work_file, archive)
    os.chmod(archive, 0o444)
    fsync_dir(archive.parent)
    trace.write(url, flow_id, trace.ARCHIVED, trace.OK, str(archive))


@contextmanager
def _locked(work_file: Path, *, wait: bool):
    """Hold an exclusive lock on the claimed file; yields False when it is gone (another process
    recorded it) or, with `wait=False`, when a live process holds the lock."""
    try:
        fd = os.open(work_file, os.O_RDONLY)
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield work_file.exists()  # still there under that name: nobody archived it meanwhile
    finally:
        os.close(fd)


def take(url: str, spool: Spool, source: Path, app: str, *, move: bool, origin: str) -> Flow | None:
    work_file = claim(spool, source, app, move=move)
    if work_file is None:
        return None
    crash_point("claimed")
    with _locked(work_file, wait=True) as mine:
        return record(url, spool, work_file, source=origin) if mine else None


def _record(url: str, flow: Flow, outcome: str, detail: str) -> None:
    """Insert the Flow row and its `received` step in one transaction (the id exists from then on)."""
    with db.session(url) as s:
        s.add(flow)
        s.flush()
        trace.add(s, flow.id, trace.RECEIVED, outcome, detail)
        s.commit()
        s.refresh(flow)


def record_refused(url: str, app: str, filename: str, size: int, *, source: str) -> Flow:
    """A flow refused while it arrived (SFTP upload over the size limit): no bytes to archive,
    but a Flow row all the same, so that it gets its IRR_TAILLE report like any other."""
    flow = Flow(app=app, filename=filename, size=size, source=source, state=RECEIVED)
    _record(url, flow, trace.KO, f"{source}, {size} octets, refusé à l'arrivée")
    LOG.warning("flow_refused_on_arrival", flow=flow.id, app=app, file=filename, bytes=size, source=source)
    return flow


def recover(url: str, spool: Spool) -> int:
    """Finish the intake of files left in work/ by a crash. Returns how many were resumed."""
    if not spool.work.is_dir():
        return 0
    resumed = 0
    for work_file in sorted(spool.work.iterdir()):
        if not work_file.is_file() or work_file.name.startswith(".") or work_file.name.count(_SEP) < 2:
            continue
        with _locked(work_file, wait=False) as mine:
            if not mine:
                continue
            with db.session(url) as s:
                row = s.execute(select(Flow).where(Flow.work_path == str(work_file))).scalars().first()
            if row is None:
                record(url, spool, work_file, source="recovered")
            elif not Path(row.archive_path).exists():
                _archive(url, row.id, work_file, Path(row.archive_path))
                LOG.info("flow_archived_on_recovery", flow=row.id, archive=row.archive_path)
            else:  # archived and still in work/ cannot happen (rename); keep the archived copy
                continue
            resumed += 1
    return resumed
