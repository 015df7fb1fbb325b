"""Embedded SFTP server: the operators' deposit and retrieval area (reference §1.6).

One account per partner (user name = APP code); what it sees is `files`, how it logs in is
`auth`. This module is the listener, the SSH transports and their sessions, and the
housekeeping thread (login and idle timeouts, abandoned partials, report retention).

After a final placement under a name intake takes (not `*.part|*.tmp|*.filepart`), the server
calls `on_upload(app, path)`, so a client that uploads `x.tmp` and then renames it triggers
exactly one call, at the rename. A write past `[limits] max_flow_bytes` is refused at once, the
partial is deleted and `on_oversize(app, name, size)` is called (the pipeline turns it into an
IRR_TAILLE report). Callbacks run in the session's thread: they must return quickly.

Every login, refusal and file operation is a structlog line on logger `edi.sftp` with the keys
`partner`, `address`, `action`, `file`, `bytes` (and `session`, `reason`). A download from
`/out` is recorded (`edi.reports.downloads`).

Configuration (`[sftp]`, defaults here; relative paths from the project directory):

    host = "127.0.0.1"             # listening address
    port = 2222                    # 0 = any free port (tests); the real one is `.port`
    host_key = "spool/sftp_host_key"   # Ed25519, generated on first start, mode 0600
    max_sessions_per_partner = 4   # concurrent SFTP sessions of one account
    idle_timeout = 300             # seconds without a request before the connection is closed
    login_timeout = 30             # seconds to authenticate after connecting
    failed_login_delay = 1.0       # seconds added to every failed authentication attempt
    max_failed_logins = 5          # failed attempts per address within the window ...
    failed_login_window = 300      # ... (seconds) that trigger a lockout of ...
    lockout_seconds = 300          # ... this many seconds
    partial_max_age = 3600         # seconds after which an abandoned upload (and a client
                                   # temporary *.part/*.tmp/*.filepart never renamed) is deleted
    housekeeping_interval = 1.0    # seconds between timeout checks (and revocation checks:
                                   # a disabled partner or a withdrawn key ends its sessions)
    max_handles_per_session = 64   # files and folders one session may hold open (0 = no limit)
    oversize_report_interval = 60  # seconds: at most one IRR_TAILLE report per partner in this
                                   # time; further oversize uploads are refused and only logged

    [reports]
    retention_days = 7             # files in out/ older than this are purged (edi.reports.retention)
    purge_interval = 3600          # seconds between purges run by the server (0 = never)
"""

from __future__ import annotations

import itertools
import os
import socket
import stat
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import paramiko
import structlog

from edi.ingest.sftp.auth import (
    Authenticator, AuthTransport, LoginThrottle, account_state, key_fingerprint, load_host_key,
)
from edi.ingest.sftp.files import SFTPSubsystem
from edi.reports import retention
from edi.spool import in_progress

log = structlog.get_logger("edi.sftp")


UploadCallback = Callable[[str, Path], None]
OversizeCallback = Callable[[str, str, int], None]


def host_key_fingerprint(cfg) -> str:
    """Fingerprint of the configured host key (generated if it does not exist yet)."""
    return key_fingerprint(load_host_key(cfg.resolve(cfg.sftp.host_key)))


# --- sessions ----------------------------------------------------------------------------------


_session_ids = itertools.count(1)


@dataclass
class Session:
    """One SSH connection: who, from where, and when it last did something."""

    address: str
    transport: paramiko.Transport | None = None
    id: str = field(default_factory=lambda: f"{os.getpid():x}-{next(_session_ids):x}-{uuid.uuid4().hex[:6]}")
    app: str | None = None
    started: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.monotonic)
    channels: int = 0  # open SFTP subsystems
    key_b64: str | None = None  # the public key it logged in with (None: password)
    # files this session placed in /in: name -> (attributes, monotonic time). Intake takes a
    # complete upload at once, but clients (paramiko's put, WinSCP...) stat the file right after
    # closing it to confirm its size; they get its attributes for RECENT_SECONDS.
    recent: dict = field(default_factory=dict)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def log(self, action: str, **kw) -> None:
        kw.setdefault("partner", self.app)
        log.info(action, action=action, address=self.address, session=self.id, **kw)


class SftpService:
    """The SFTP server of `edi serve`. `start()` binds and returns; `stop()` ends every session."""

    def __init__(self, cfg, on_upload: UploadCallback | None = None, on_oversize: OversizeCallback | None = None):
        self.cfg = cfg
        self.settings = cfg.sftp
        self.on_upload = on_upload
        self.on_oversize = on_oversize
        self.url = cfg.database_url
        self.partners_root = cfg.spool_root / "partners"
        self.max_bytes = cfg.max_flow_bytes
        self.max_handles = self.settings.max_handles_per_session
        self._oversize_reported: dict[str, float] = {}
        self.purge_interval = cfg.reports.purge_interval
        s = self.settings
        self.throttle = LoginThrottle(
            s.max_failed_logins, s.failed_login_window,
            s.lockout_seconds, s.failed_login_delay,
        )
        self.host_key: paramiko.PKey | None = None
        self.port: int | None = None
        self.sessions: dict[str, Session] = {}
        self.active_partials: set[str] = set()
        self._lock = threading.RLock()
        self._app_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle --

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self._host_key())

    def _host_key(self) -> paramiko.PKey:
        if self.host_key is None:
            self.host_key = load_host_key(self.cfg.resolve(self.settings.host_key))
        return self.host_key

    def start(self) -> "SftpService":
        self._host_key()
        self.partners_root.mkdir(parents=True, exist_ok=True)
        host, port = self.settings.host, self.settings.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
        sock.settimeout(0.2)
        self._sock, self.port = sock, sock.getsockname()[1]
        self._stop.clear()
        for target, name in ((self._accept_loop, "sftp-accept"), (self._housekeeping, "sftp-housekeeping")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("sftp_listening", action="listen", address=f"{host}:{self.port}", fingerprint=self.fingerprint)
        return self

    def listening(self) -> bool:
        """Its socket is open and its accept and housekeeping threads run (for `/healthz`)."""
        return self._sock is not None and bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with self._lock:
            sessions = list(self.sessions.values())
        for sess in sessions:
            if sess.transport is not None:
                sess.transport.close()
        for sess in sessions:
            if sess.transport is not None:
                sess.transport.join(timeout=5)
        log.info("sftp_stopped", action="stop")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.05)
                continue
            address = peer[0]
            if self.throttle.locked(address):
                log.info("login_refused", action="login_refused", address=address, reason="locked_out",
                         partner=None)
                conn.close()
                continue
            try:
                self._serve(conn, address)
            except Exception:  # a broken handshake must not stop the server
                log.exception("connection_error", action="connection_error", address=address)
                conn.close()

    def _serve(self, conn: socket.socket, address: str) -> None:
        conn.settimeout(None)
        sess = Session(address=address)
        transport = AuthTransport(conn)
        transport.auth_timeout = self.settings.login_timeout
        sess.transport = transport
        transport.add_server_key(self._host_key())
        transport.set_subsystem_handler("sftp", SFTPSubsystem, service=self, session=sess)
        with self._lock:
            self.sessions[sess.id] = sess
        sess.log("connect")
        auth = Authenticator(self, sess)
        transport.on_authenticated = auth.authenticated
        transport.start_server(event=threading.Event(), server=auth)
        threading.Thread(target=self._reap, args=(sess,), name=f"sftp-reap-{sess.id}", daemon=True).start()

    def _reap(self, sess: Session) -> None:
        sess.transport.join()
        with self._lock:
            self.sessions.pop(sess.id, None)
        sess.log("disconnect", duration=round(time.monotonic() - sess.started, 3))

    # -- housekeeping: timeouts, abandoned partials, report retention --

    def _housekeeping(self) -> None:
        interval = max(0.05, self.settings.housekeeping_interval)
        partial_age = self.settings.partial_max_age
        next_cleanup = 0.0
        next_purge = time.monotonic() if self.purge_interval > 0 else float("inf")
        while not self._stop.wait(interval):
            now = time.monotonic()
            self._step("timeouts", self._close_idle, now)
            self._step("revocation", self._close_revoked)
            if now >= next_cleanup:
                self._step("cleanup", self.cleanup_partials)
                next_cleanup = now + min(60.0, max(interval, partial_age / 4))
            if now >= next_purge:
                self._step("purge", retention.purge_reports, self.cfg)
                next_purge = now + self.purge_interval

    @staticmethod
    def _step(name: str, fn, *args) -> None:
        """One housekeeping step: whatever it raises (EMFILE, a database outage...) is logged,
        and the thread goes on — without it, timeouts and cleanup would stop for good."""
        try:
            fn(*args)
        except Exception:
            log.exception("housekeeping_failed", action="housekeeping_failed", step=name)

    def _close_revoked(self) -> None:
        """End the sessions of partners disabled (or removed) and those whose key was withdrawn."""
        with self._lock:
            live = [s for s in self.sessions.values()
                    if s.app is not None and s.transport is not None and s.transport.is_active()]
        if not live:
            return
        enabled, keys = account_state(self.url, {s.app for s in live})
        for sess in live:
            if sess.app not in enabled:
                sess.log("session_revoked", reason="partner_disabled")
                sess.transport.close()
            elif sess.key_b64 is not None and sess.key_b64 not in keys.get(sess.app, ()):
                sess.log("session_revoked", reason="key_removed")
                sess.transport.close()

    def oversize_report_due(self, app: str) -> bool:
        """At most one IRR_TAILLE report per partner per `oversize_report_interval`: a partner
        (or an attacker with its key) cannot fill the database with refusals."""
        interval = self.settings.oversize_report_interval
        now = time.monotonic()
        with self._lock:
            last = self._oversize_reported.get(app)
            if last is not None and now - last < interval:
                return False
            self._oversize_reported[app] = now
            return True

    def _close_idle(self, now: float) -> None:
        idle = self.settings.idle_timeout
        login = self.settings.login_timeout
        with self._lock:
            sessions = list(self.sessions.values())
        for sess in sessions:
            t = sess.transport
            if t is None or not t.is_active():
                continue
            if sess.app is None and now - sess.started > login:
                sess.log("login_timeout")
                t.close()
            elif sess.app is not None and now - sess.last_activity > idle:
                sess.log("idle_timeout")
                t.close()

    def cleanup_partials(self, max_age: float | None = None) -> list[Path]:
        """Delete abandoned uploads: partials no session writes to, and client temporaries
        (`*.part`, `*.tmp`, `*.filepart`) never renamed, older than `partial_max_age`."""
        max_age = self.settings.partial_max_age if max_age is None else max_age
        limit = time.time() - max_age
        removed = []
        if not self.partners_root.is_dir():
            return removed
        with self._lock:
            active = set(self.active_partials)
        for partner_dir in self.partners_root.iterdir():
            inbox = partner_dir / "in"
            if partner_dir.is_symlink() or inbox.is_symlink() or not inbox.is_dir():
                continue
            for entry in os.scandir(inbox):
                if not in_progress(entry.name) or entry.path in active:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                    if not stat.S_ISREG(st.st_mode) or st.st_mtime > limit:
                        continue
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                removed.append(Path(entry.path))
                log.info("partial_removed", action="partial_removed", partner=partner_dir.name,
                         address=None, file=entry.name, bytes=st.st_size)
        return removed

    def open_channel(self, sess: Session) -> bool:
        """Count an SFTP session of the partner, unless it already has the maximum open."""
        limit = self.settings.max_sessions_per_partner
        with self._lock:
            open_now = sum(s.channels for s in self.sessions.values() if s.app == sess.app)
            if limit > 0 and open_now >= limit:
                return False
            sess.channels += 1
            return True

    def close_channel(self, sess: Session) -> None:
        with self._lock:
            sess.channels = max(0, sess.channels - 1)

    def sessions_of(self, app: str) -> int:
        with self._lock:
            return sum(s.channels for s in self.sessions.values() if s.app == app)

    def app_lock(self, app: str) -> threading.Lock:
        with self._lock:
            return self._app_locks[app]

    def placed(self, sess: Session, path: Path) -> None:
        """A complete file now lies under its final name in `in/`: tell intake."""
        try:
            sess.recent[path.name] = (paramiko.SFTPAttributes.from_stat(path.stat(), path.name), time.monotonic())
        except OSError:
            pass
        if in_progress(path.name) or self.on_upload is None:
            return
        try:
            self.on_upload(sess.app, path)
        except Exception:
            log.exception("on_upload_failed", action="on_upload_failed", partner=sess.app, file=path.name)
