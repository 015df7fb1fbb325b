"""Embedded SFTP server: the operators' deposit and retrieval area (reference §1.6).

One account per partner (user name = APP code). Each account sees its own
`<spool>/partners/<APP>/` as `/`, with `/in` (upload, rename, list) and `/out` (list, download,
delete). Nothing else exists for it: `..`, absolute paths elsewhere, symbolic links (never
followed, never created), names with control characters, `/` or `\\`, and names starting with `.`
are refused; mkdir, rmdir, setstat and symlink too.

Upload completion. Closing a file is not proof that it is complete (a dropped connection also
closes it). So every upload is written to a hidden partial file `in/.upload-<uuid>.part` (intake
ignores dot names) and renamed atomically to `in/<name>` only when the client sends CLOSE; the
partial of an upload cut by a dropped connection is left as it is and removed by the
housekeeping after `partial_max_age`. An existing name is never overwritten (upload or rename).
After a final placement under a name intake takes (not `*.part|*.tmp|*.filepart`), the server
calls `on_upload(app, path)`, so a client that uploads `x.tmp` and then renames it triggers
exactly one call, at the rename. A write past `[limits] max_flow_bytes` is refused at once, the
partial is deleted and `on_oversize(app, name, size)` is called (the pipeline turns it into an
IRR_TAILLE report). Callbacks run in the session's thread: they must return quickly.

Authentication: public keys of the partner (table `partnerkey`, OpenSSH authorized_keys lines),
or the optional password (salted scrypt hash, `edi.partners`). Disabled and unknown partners are
refused alike. Failed attempts from one address are slowed down (`failed_login_delay` each) and,
after `max_failed_logins` within `failed_login_window` seconds, the address is locked out for
`lockout_seconds` (connections closed at once).

Every login, refusal and file operation is a structlog line on logger `edi.sftp` with the keys
`partner`, `address`, `action`, `file`, `bytes` (and `session`, `reason`). A download from
`/out` is recorded as a `ReportDownload` row and, when the whole file was read, sets
`Report.retrieved_at` (first retrieval) of the report of that name.

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
    housekeeping_interval = 1.0    # seconds between timeout checks

    [reports]
    retention_days = 7             # files in out/ older than this are purged (edi.partners)
    purge_interval = 3600          # seconds between purges run by the server (0 = never)
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import posixpath
import socket
import stat
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import paramiko
import structlog
from paramiko.sftp import CMD_CLOSE, SFTP_BAD_MESSAGE
from sqlmodel import select

from edi import db
from edi import partners as partners_mod
from edi.db.models import Partner, PartnerKey, Report, ReportDownload, utcnow
from edi.spool import in_progress

log = structlog.get_logger("edi.sftp")

RECENT_SECONDS = 60.0  # how long a placed upload still answers stat() once intake took it

PARTIAL_PREFIX = ".upload-"
PARTIAL_SUFFIX = ".part"
AREAS = ("in", "out")

OK = paramiko.SFTP_OK
DENIED = paramiko.SFTP_PERMISSION_DENIED
NO_SUCH = paramiko.SFTP_NO_SUCH_FILE
FAILURE = paramiko.SFTP_FAILURE
UNSUPPORTED = paramiko.SFTP_OP_UNSUPPORTED

UploadCallback = Callable[[str, Path], None]
OversizeCallback = Callable[[str, str, int], None]


# --- host key ----------------------------------------------------------------------------------


def key_fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:...` exactly as OpenSSH prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def load_host_key(path: Path) -> paramiko.PKey:
    """Load the server's host key, generating an Ed25519 key (mode 0600) on first use."""
    if not path.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process generated it meanwhile
            pass
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            log.info("host_key_generated", action="host_key_generated", file=str(path))
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o600)
        log.warning("host_key_mode_fixed", action="host_key_mode_fixed", file=str(path))
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(str(path))
        except paramiko.SSHException:
            continue
    raise paramiko.SSHException(f"unreadable SFTP host key: {path}")


def host_key_fingerprint(cfg) -> str:
    """Fingerprint of the configured host key (generated if it does not exist yet)."""
    return key_fingerprint(load_host_key(cfg.resolve(cfg.sftp.host_key)))


# --- login throttling --------------------------------------------------------------------------


class LoginThrottle:
    """Failed logins per address: each one is slowed, too many in a window lock the address out."""

    def __init__(self, max_failures: int, window: float, lockout: float, delay: float):
        self.max_failures, self.window, self.lockout, self.delay = max_failures, window, lockout, delay
        self._failures: dict[str, deque] = defaultdict(deque)
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked(self, address: str) -> bool:
        with self._lock:
            until = self._locked_until.get(address)
            if until is None:
                return False
            if time.monotonic() >= until:
                del self._locked_until[address]
                return False
            return True

    def failure(self, address: str) -> bool:
        """Record a failure; returns True when the address is now locked out."""
        now = time.monotonic()
        with self._lock:
            q = self._failures[address]
            q.append(now)
            while q and now - q[0] > self.window:
                q.popleft()
            locked = self.max_failures > 0 and len(q) >= self.max_failures
            if locked:
                self._locked_until[address] = now + self.lockout
                q.clear()
        if self.delay > 0:
            time.sleep(self.delay)
        return locked

    def success(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)


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
    # files this session placed in /in: name -> (attributes, monotonic time). Intake takes a
    # complete upload at once, but clients (paramiko's put, WinSCP...) stat the file right after
    # closing it to confirm its size; they get its attributes for RECENT_SECONDS.
    recent: dict = field(default_factory=dict)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def log(self, action: str, **kw) -> None:
        kw.setdefault("partner", self.app)
        log.info(action, action=action, address=self.address, session=self.id, **kw)


class _Denied(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def valid_name(name: str) -> bool:
    """A file name a partner may use: no separator, no control character, no leading dot."""
    return (
        0 < len(name) <= 255
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and not any(ord(c) < 32 or ord(c) == 127 for c in name)
    )


def virtual_parts(path: str) -> list[str]:
    """Split a client path (absolute or relative to `/`) into components; `..` is refused."""
    if any(ord(c) < 32 or ord(c) == 127 for c in path) or "\\" in path:
        raise _Denied(DENIED, "control_or_backslash")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _Denied(DENIED, "dotdot")
    return parts


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
        self.purge_interval = cfg.reports.purge_interval
        s = self.settings
        self.throttle = LoginThrottle(
            s.max_failed_logins, s.failed_login_window, s.lockout_seconds, s.failed_login_delay,
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
        transport = _Transport(conn)
        transport.auth_timeout = self.settings.login_timeout
        sess.transport = transport
        transport.add_server_key(self._host_key())
        transport.set_subsystem_handler("sftp", _SFTPServer, service=self, session=sess)
        with self._lock:
            self.sessions[sess.id] = sess
        sess.log("connect")
        auth = _Auth(self, sess)
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
            self._close_idle(now)
            if now >= next_cleanup:
                self.cleanup_partials()
                next_cleanup = now + min(60.0, max(interval, partial_age / 4))
            if now >= next_purge:
                try:
                    partners_mod.purge_reports(self.cfg)
                except Exception:
                    log.exception("purge_failed", action="purge_failed")
                next_purge = now + self.purge_interval

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

    # -- accounts --

    def partner(self, app: str) -> Partner | None:
        if not partners_mod.APP_RE.match(app or ""):
            return None
        with db.session(self.url) as s:
            return s.get(Partner, app)

    def partner_has_key(self, app: str, key: paramiko.PKey) -> bool:
        blob64 = base64.b64encode(key.asbytes()).decode()
        with db.session(self.url) as s:
            rows = s.exec(select(PartnerKey).where(PartnerKey.app == app, PartnerKey.key_b64 == blob64))
            return rows.first() is not None

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

    def partner_root(self, app: str) -> Path:
        """`partners/<APP>/` with its `in/` and `out/`, refusing any symbolic link on the way."""
        root = self.partners_root / app
        for folder in (root, root / "in", root / "out"):
            try:
                st = os.lstat(folder)
            except FileNotFoundError:
                os.mkdir(folder, 0o750)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise _Denied(DENIED, "symlink_or_not_a_folder")
        return root

    def app_lock(self, app: str) -> threading.Lock:
        with self._lock:
            return self._app_locks[app]

    def record_download(self, sess: Session, name: str, nbytes: int, complete: bool) -> None:
        now = utcnow()
        with db.session(self.url) as s:
            s.add(ReportDownload(app=sess.app, filename=name, session=sess.id, address=sess.address,
                                 bytes=nbytes, complete=complete, at=now))
            if complete:
                report = s.exec(select(Report).where(Report.filename == name, Report.app == sess.app)).first()
                if report is not None and report.retrieved_at is None:
                    report.retrieved_at = now
                    s.add(report)
            s.commit()

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


# --- SSH authentication -----------------------------------------------------------------------


class _Transport(paramiko.Transport):
    """Tells us when authentication really succeeded (for a public key, paramiko checks the
    signature only after `check_auth_publickey` has answered, which it also does for the
    client's unsigned probe)."""

    on_authenticated: Callable[[], None] | None = None

    def _auth_trigger(self):
        super()._auth_trigger()
        if self.on_authenticated is not None:
            self.on_authenticated()


class _Auth(paramiko.ServerInterface):
    def __init__(self, service: SftpService, sess: Session):
        self.service, self.sess = service, sess
        self.candidate: tuple[str, str] | None = None  # (partner, method) answered "yes"

    def get_allowed_auths(self, username):
        return "publickey,password"

    def check_auth_none(self, username):
        return paramiko.AUTH_FAILED

    def _refuse(self, username: str, method: str, reason: str, count: bool = True) -> int:
        svc, sess = self.service, self.sess
        if count and svc.throttle.failure(sess.address):
            log.info("lockout", action="lockout", partner=username, address=sess.address, session=sess.id)
        action = "login_failed" if count else "login_refused"
        log.info(action, action=action, partner=username, address=sess.address, session=sess.id,
                 method=method, reason=reason)
        return paramiko.AUTH_FAILED

    def _precheck(self, username: str, method: str) -> tuple[Partner | None, int | None]:
        svc, sess = self.service, self.sess
        if svc.throttle.locked(sess.address):
            return None, self._refuse(username, method, "locked_out", count=False)
        partner = svc.partner(username)
        if partner is None:
            return None, self._refuse(username, method, "unknown_partner")
        if not partner.enabled:
            return None, self._refuse(username, method, "disabled")
        if svc.sessions_of(username) >= svc.settings.max_sessions_per_partner > 0:
            return None, self._refuse(username, method, "too_many_sessions", count=False)
        return partner, None

    def _granted(self, username: str, method: str) -> int:
        self.candidate = (username, method)
        return paramiko.AUTH_SUCCESSFUL

    def authenticated(self) -> None:
        username, method = self.candidate
        self.sess.app = username
        self.sess.touch()
        self.service.throttle.success(self.sess.address)
        self.sess.log("login", method=method)

    def check_auth_publickey(self, username, key):
        partner, refused = self._precheck(username, "publickey")
        if partner is None:
            return refused
        if not self.service.partner_has_key(username, key):
            return self._refuse(username, "publickey", "unknown_key")
        # Called for the client's probe and again for the signed request; paramiko checks the
        # signature after we answer, and only a verified one reaches `authenticated`.
        return self._granted(username, "publickey")

    def check_auth_password(self, username, password):
        partner, refused = self._precheck(username, "password")
        if partner is None:
            return refused
        if not partners_mod.verify_password(password, partner.password_hash):
            return self._refuse(username, "password", "bad_password")
        return self._granted(username, "password")

    def check_channel_request(self, kind, chanid):
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_subsystem_request(self, channel, name):
        sess = self.sess
        if name != "sftp" or sess.app is None:
            sess.log("refused", reason=f"subsystem {name}")
            return False
        if not self.service.open_channel(sess):
            sess.log("login_refused", reason="too_many_sessions")
            return False
        return super().check_channel_subsystem_request(channel, name)


# --- SFTP subsystem ---------------------------------------------------------------------------


class _SFTPServer(paramiko.SFTPServer):
    """Adds what paramiko's server lacks: activity tracking, a CLOSE whose result reaches the
    client, and the difference between a client CLOSE and a dropped connection."""

    def __init__(self, channel, name, server, sftp_si=None, *, service: SftpService, session: Session):
        self.session = session
        super().__init__(channel, name, server, _Interface, service=service, session=session)

    def _process(self, t, request_number, msg):
        self.session.touch()
        if t != CMD_CLOSE:
            return super()._process(t, request_number, msg)
        handle = msg.get_binary()
        if handle in self.folder_table:
            del self.folder_table[handle]
            self._send_status(request_number, OK)
        elif handle in self.file_table:
            result = self.file_table.pop(handle).close()
            self._send_status(request_number, OK if result is None else result)
        else:
            self._send_status(request_number, SFTP_BAD_MESSAGE, "Invalid handle")

    def finish_subsystem(self):
        # Files still open here were never closed by the client: incomplete, never placed.
        for handle in self.file_table.values():
            if isinstance(handle, _UploadHandle):
                handle.abort()
        try:
            super().finish_subsystem()
        finally:
            self.server.service.close_channel(self.session)


class _Interface(paramiko.SFTPServerInterface):
    def __init__(self, server, *, service: SftpService, session: Session):
        super().__init__(server)
        self.service, self.sess = service, session
        self.root: Path | None = None

    def session_started(self):
        try:
            self.root = self.service.partner_root(self.sess.app)
        except _Denied as exc:  # partners/<APP> replaced by a link: serve nothing
            self.sess.log("denied", op="session", file=f"partners/{self.sess.app}", reason=exc.reason)
            return
        self.sess.log("sftp_start")

    # -- path mapping --

    def _deny(self, op: str, path: str, exc: _Denied) -> int:
        self.sess.log("denied", op=op, file=path, reason=exc.reason)
        return exc.code

    def _resolve(self, path: str) -> tuple[str | None, str | None]:
        """(area, name): (None, None) for `/`, (area, None) for `/in` or `/out`."""
        parts = virtual_parts(path)
        if self.root is None:
            raise _Denied(DENIED, "no_account_folder")
        if not parts:
            return None, None
        if parts[0] not in AREAS or len(parts) > 2:
            raise _Denied(NO_SUCH, "outside")
        if len(parts) == 1:
            return parts[0], None
        if not valid_name(parts[1]):
            raise _Denied(DENIED, "bad_name")
        return parts[0], parts[1]

    def _folder(self, area: str) -> Path:
        folder = self.root / area
        st = os.lstat(folder)
        if not stat.S_ISDIR(st.st_mode):
            raise _Denied(DENIED, "symlink_or_not_a_folder")
        return folder

    def _file(self, area: str, name: str) -> tuple[Path, os.stat_result]:
        """An existing regular file (never a link) of the area."""
        path = self._folder(area) / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise _Denied(NO_SUCH, "no_such_file") from None
        if not stat.S_ISREG(st.st_mode):
            raise _Denied(NO_SUCH, "not_a_regular_file")
        return path, st

    @staticmethod
    def _dir_attr(name: str, st: os.stat_result | None = None) -> paramiko.SFTPAttributes:
        attr = paramiko.SFTPAttributes.from_stat(st) if st else paramiko.SFTPAttributes()
        attr.filename = name
        attr.st_mode = stat.S_IFDIR | 0o755
        return attr

    # -- reading the tree --

    def canonicalize(self, path):
        # Purely lexical, clamped at `/` (as a chrooted sshd does); touches nothing on disk.
        return posixpath.normpath("/" + (path or "")).replace("//", "/")

    def list_folder(self, path):
        try:
            area, name = self._resolve(path)
            if name is not None:
                raise _Denied(NO_SUCH, "not_a_folder")
            if area is None:
                out = [self._dir_attr(a, os.lstat(self._folder(a))) for a in AREAS]
            else:
                out = []
                for entry in os.scandir(self._folder(area)):
                    if not valid_name(entry.name):
                        continue  # partial uploads and anything hidden
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        out.append(paramiko.SFTPAttributes.from_stat(st, entry.name))
            self.sess.log("list", file=path, count=len(out))
            return out
        except _Denied as exc:
            return self._deny("list", path, exc)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def stat(self, path):
        try:
            area, name = self._resolve(path)
            if area is None:
                return self._dir_attr("/", os.lstat(self.root))
            if name is None:
                return self._dir_attr(area, os.lstat(self._folder(area)))
            try:
                _, st = self._file(area, name)
            except (_Denied, FileNotFoundError):
                if area == "in" and (recent := self.sess.recent.get(name)) and time.monotonic() - recent[1] < RECENT_SECONDS:
                    return recent[0]
                raise
            return paramiko.SFTPAttributes.from_stat(st, name)
        except _Denied as exc:
            if exc.code != NO_SUCH:
                return self._deny("stat", path, exc)
            return exc.code
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    lstat = stat

    # -- files --

    def open(self, path, flags, attr):
        try:
            area, name = self._resolve(path)
            if name is None:
                raise _Denied(DENIED, "not_a_file")
            writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
            if area == "out":
                if writing:
                    raise _Denied(DENIED, "out_is_read_only")
                return self._open_download(name)
            if not writing:
                raise _Denied(DENIED, "in_is_write_only")
            if flags & os.O_APPEND:
                raise _Denied(DENIED, "append_not_supported")
            return self._open_upload(name)
        except _Denied as exc:
            return self._deny("open", path, exc)
        except OSError as exc:
            self.sess.log("denied", op="open", file=path, reason=exc.strerror)
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def _open_download(self, name: str):
        path, _ = self._file("out", name)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise _Denied(NO_SUCH, "not_a_regular_file")
        self.sess.log("download_start", file=name, bytes=st.st_size)
        return _DownloadHandle(self, name, fd, st.st_size)

    def _open_upload(self, name: str):
        folder = self._folder("in")
        if os.path.lexists(folder / name):
            raise _Denied(FAILURE, "exists")
        partial = folder / f"{PARTIAL_PREFIX}{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o640)
        with self.service._lock:
            self.service.active_partials.add(str(partial))
        self.sess.log("upload_start", file=name)
        return _UploadHandle(self, name, fd, partial)

    def remove(self, path):
        try:
            area, name = self._resolve(path)
            if area != "out" or name is None:
                raise _Denied(DENIED, "remove_only_in_out")
            file, st = self._file("out", name)
            os.unlink(file)
            self.sess.log("delete", file=name, bytes=st.st_size)
            return OK
        except _Denied as exc:
            return self._deny("remove", path, exc)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def rename(self, oldpath, newpath):
        try:
            area_a, old = self._resolve(oldpath)
            area_b, new = self._resolve(newpath)
            if area_a != "in" or area_b != "in" or old is None or new is None:
                raise _Denied(DENIED, "rename_only_in_in")
            src, st = self._file("in", old)
            dst = src.parent / new
            with self.service.app_lock(self.sess.app):
                if os.path.lexists(dst):
                    raise _Denied(FAILURE, "exists")
                os.rename(src, dst)
            self.sess.log("rename", file=new, previous=old, bytes=st.st_size)
        except _Denied as exc:
            return self._deny("rename", f"{oldpath} -> {newpath}", exc)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        self.service.placed(self.sess, dst)
        return OK

    posix_rename = rename  # never overwrites either

    def _refused(self, op: str, path: str) -> int:
        self.sess.log("denied", op=op, file=path, reason="not_allowed")
        return DENIED

    def mkdir(self, path, attr):
        return self._refused("mkdir", path)

    def rmdir(self, path):
        return self._refused("rmdir", path)

    def chattr(self, path, attr):
        return self._refused("setstat", path)

    def symlink(self, target_path, path):
        return self._refused("symlink", path)

    def readlink(self, path):
        return self._refused("readlink", path)


class _FileHandle(paramiko.SFTPHandle):
    """What a download and an upload handle share: fstat of the open file, no chattr."""

    name: str
    fd: int

    def stat(self):
        try:
            return paramiko.SFTPAttributes.from_stat(os.fstat(self.fd), self.name)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def chattr(self, attr):
        return DENIED


class _DownloadHandle(_FileHandle):
    def __init__(self, iface: _Interface, name: str, fd: int, size: int):
        super().__init__()
        self.iface, self.name, self.fd, self.size = iface, name, fd, size
        self.sent = 0
        self.closed = False

    def read(self, offset, length):
        try:
            data = os.pread(self.fd, length, offset)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        self.sent += len(data)
        return data

    def write(self, offset, data):
        return DENIED

    def close(self):
        if self.closed:
            return OK
        self.closed = True
        os.close(self.fd)
        sess = self.iface.sess
        complete = self.sent >= self.size
        sess.log("download", file=self.name, bytes=self.sent, complete=complete)
        if self.sent or complete:
            try:
                self.iface.service.record_download(sess, self.name, self.sent, complete)
            except Exception:
                log.exception("download_record_failed", action="download_record_failed", partner=sess.app,
                              file=self.name)
        return OK


class _UploadHandle(_FileHandle):
    """Writes go to the hidden partial; only a client CLOSE places the file under its name."""

    def __init__(self, iface: _Interface, name: str, fd: int, partial: Path):
        super().__init__()
        self.iface, self.name, self.fd, self.partial = iface, name, fd, partial
        self.size = 0
        self.failed = False
        self.done = False

    def write(self, offset, data):
        if self.failed or self.done:
            return FAILURE
        end = offset + len(data)
        limit = self.iface.service.max_bytes
        if end > limit:
            self._oversize(end)
            return FAILURE
        try:
            os.pwrite(self.fd, data, offset)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        self.size = max(self.size, end)
        return OK

    def read(self, offset, length):
        return DENIED

    def _release(self, keep_partial: bool) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not keep_partial:
            try:
                os.unlink(self.partial)
            except FileNotFoundError:
                pass
        with self.iface.service._lock:
            self.iface.service.active_partials.discard(str(self.partial))

    def _oversize(self, size: int) -> None:
        self.failed = True
        self._release(keep_partial=False)
        sess = self.iface.sess
        sess.log("upload_refused", file=self.name, bytes=size, reason="oversize",
                 limit=self.iface.service.max_bytes)
        callback = self.iface.service.on_oversize
        if callback is not None:
            try:
                callback(sess.app, self.name, size)
            except Exception:
                log.exception("on_oversize_failed", action="on_oversize_failed", partner=sess.app, file=self.name)

    def abort(self) -> None:
        """The connection ended without CLOSE: keep the partial for the delayed cleanup."""
        if self.done or self.failed:
            return
        self.failed = True
        self._release(keep_partial=True)
        self.iface.sess.log("upload_aborted", file=self.name, bytes=self.size, partial=self.partial.name)

    def close(self):
        if self.done:
            return OK
        if self.failed:
            self.done = True
            return FAILURE
        self.done = True
        sess, service = self.iface.sess, self.iface.service
        try:
            os.fsync(self.fd)
        except OSError:
            pass
        dst = self.partial.parent / self.name
        with service.app_lock(sess.app):
            if os.path.lexists(dst):
                self._release(keep_partial=False)
                sess.log("upload_refused", file=self.name, bytes=self.size, reason="exists")
                return FAILURE
            os.rename(self.partial, dst)
        self._release(keep_partial=True)
        sess.log("upload", file=self.name, bytes=self.size)
        service.placed(sess, dst)
        return OK


__all__ = ["SftpService", "load_host_key", "host_key_fingerprint",
           "key_fingerprint", "LoginThrottle", "valid_name"]
