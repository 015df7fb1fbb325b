"""`edi serve`: the long-running service — spool watcher, worker loop(s), SFTP server.

Start-up resumes whatever a crash left: claimed files in work/, flows received or in progress
(their worker is gone), reports not yet written. The watchdog observer only wakes the loop
early; a periodic scan (`[intake] poll_seconds`) is the source of truth, so a missed event
delays a flow by one period at most. SIGTERM/SIGINT stop the loop after the flow in hand;
a flow interrupted by anything harsher is replayed from its archived original on next start.
`[workers] processes` > 1 starts that many worker processes running the same loop.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from edi import config as config_mod
from edi import db, log
from edi.config import Config
from edi.ingest import intake
from edi.spool import Spool
from edi.validate import pool
from edi.worker import prepare, run_once

LOG = log.get("edi.serve")


class _Wake(FileSystemEventHandler):
    def __init__(self, event: threading.Event):
        self.event = event

    def on_any_event(self, event):  # a hint only: the scan decides
        if not event.is_directory:
            self.event.set()


class Heartbeat:
    """When the worker loop last showed life: at every round and before every flow it takes, so
    `/healthz` can tell a loop stuck (or dead) from one busy with a long flow for a while."""

    def __init__(self):
        self.at = time.monotonic()

    def beat(self) -> None:
        self.at = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.at


def _loop(cfg: Config, spool: Spool, stop: threading.Event, wake: threading.Event,
          readiness: intake.Readiness, heartbeat: Heartbeat | None = None) -> None:
    """Rounds until stopped; each round starts by finishing what a crash left (`run_once`)."""
    poll = cfg.intake.poll_seconds
    heartbeat = heartbeat or Heartbeat()

    def should_stop() -> bool:
        heartbeat.beat()
        return stop.is_set()

    while not stop.is_set():
        wake.clear()
        heartbeat.beat()
        try:
            run_once(cfg, spool, readiness, should_stop)
        except Exception:  # the service must outlive any one bad round; the flow is replayed
            LOG.exception("worker_round_failed")
            stop.wait(poll)
        wake.wait(poll)


def _readiness(cfg: Config) -> intake.Readiness:
    return intake.Readiness(cfg.intake.settle_seconds)


def _worker_process(config_path, stop_event) -> None:
    cfg = config_mod.load(config_path)
    log.configure(cfg.logging.format, cfg.logging.level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    parent = os.getppid()

    def _watch():  # stop on the parent's request, or when the parent died (kill -9): no orphans
        while not stop_event.wait(1.0) and os.getppid() == parent:
            pass
        stop.set()

    threading.Thread(target=_watch, daemon=True).start()
    try:
        _loop(cfg, prepare(cfg), stop, threading.Event(), _readiness(cfg))
    finally:
        pool.close_all()


def serve(cfg: Config) -> None:
    stop = threading.Event()
    wake = threading.Event()

    def _stop(signum, _frame):
        LOG.info("stopping", signal=signal.Signals(signum).name)
        stop.set()
        wake.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    spool = prepare(cfg)
    observer = Observer()
    observer.schedule(_Wake(wake), str(spool.root / "partners"), recursive=True)
    observer.start()
    readiness = _readiness(cfg)
    sftp = _start_sftp(cfg, wake, readiness)
    extra = []
    heartbeat = Heartbeat()
    web = _start_web(cfg, wake, sftp, heartbeat, extra)
    mp_stop = None
    processes = cfg.workers.processes
    if processes > 1:
        ctx = multiprocessing.get_context("spawn")
        mp_stop = ctx.Event()
        for _ in range(processes - 1):
            proc = ctx.Process(target=_worker_process, args=(str(cfg.path) if cfg.path else None, mp_stop))
            proc.start()
            extra.append(proc)
    LOG.info("serving", spool=str(spool.root), database=cfg.database_url.split("@")[-1], workers=processes,
             sftp=f"{cfg.sftp.host}:{sftp.port}" if sftp else None,
             host_key=getattr(sftp, "fingerprint", None),
             web=f"http://{cfg.web.host}:{web.port}/" if web else None)
    try:
        _loop(cfg, spool, stop, wake, readiness, heartbeat)
    finally:
        observer.stop()
        if web:
            web.stop()
        if sftp:
            sftp.stop()
        if mp_stop is not None:
            mp_stop.set()
        for proc in extra:
            proc.join(timeout=30)
        observer.join(timeout=5)
        db.dispose_all()
        LOG.info("stopped")


STALE_SECONDS = 600.0  # a worker loop silent for longer than this (and 10 polls) is reported dead


def _start_web(cfg: Config, wake: threading.Event, sftp, heartbeat: Heartbeat, processes: list):
    """Start the console and API when `[web] enabled` (default true). An uploaded flow is a
    Flow row already; the callback only wakes the loop. `/healthz` also checks the SFTP server
    and the workers (this loop's heartbeat, the worker processes alive); `/metrics` adds the SFTP
    sessions open."""
    if not cfg.web.enabled:
        return None
    from edi.web.server import WebThread

    def workers_check() -> str:
        limit = max(STALE_SECONDS, 10 * cfg.intake.poll_seconds)
        if heartbeat.age() > limit:
            raise RuntimeError(f"la boucle de travail n'a pas donné signe de vie depuis {heartbeat.age():.0f} s")
        dead = [p.pid for p in processes if not p.is_alive()]
        if dead:
            raise RuntimeError(f"processus de travail arrêté(s) : {', '.join(map(str, dead))}")
        return "ok"

    def sftp_check() -> str:
        if sftp is None:
            return "désactivé"
        if not sftp.listening():
            raise RuntimeError("le serveur SFTP n'écoute plus")
        return "ok"

    gauges = {"edi_sftp_sessions": ("Sessions SFTP ouvertes", lambda: len(sftp.sessions))} if sftp else {}
    return WebThread(cfg, checks={"sftp": sftp_check, "workers": workers_check}, gauges=gauges,
                     on_deposit=lambda _flow_id: wake.set()).start()


def _start_sftp(cfg: Config, wake: threading.Event, readiness: intake.Readiness):
    """Start the SFTP server when `[sftp] enabled` (default true).

    Its callbacks run in session threads, so they only hand work over: a completed upload is
    marked ready (no settle delay) and the loop woken; an upload refused for its size becomes a
    Flow row that the loop turns into an IRR_TAILLE report.
    """
    if not cfg.sftp.enabled:
        return None
    from edi.ingest.sftp.server import SftpService

    def uploaded(app, path):
        readiness.complete(path)
        wake.set()

    def oversize(app, name, size):
        intake.record_refused(cfg.database_url, app, name, size, source="sftp")
        wake.set()

    service = SftpService(cfg, on_upload=uploaded, on_oversize=oversize)
    service.start()
    return service
