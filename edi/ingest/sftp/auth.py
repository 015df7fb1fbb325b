"""SFTP authentication: the server's host key, partners' keys and passwords, login throttling.

Public keys of the partner (table `partnerkey`, OpenSSH authorized_keys lines), or the optional
password (salted scrypt hash, `edi.partners`). Disabled and unknown partners are refused alike.
Failed attempts from one address are slowed down (`failed_login_delay` each) and, after
`max_failed_logins` within `failed_login_window` seconds, the address is locked out for
`lockout_seconds` (connections closed at once).
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import paramiko
import structlog
from sqlmodel import select

from edi import db
from edi import partners as partners_mod
from edi.db.models import Partner, PartnerKey

if TYPE_CHECKING:
    from edi.ingest.sftp.server import Session, SftpService

log = structlog.get_logger("edi.sftp")


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


# --- accounts ----------------------------------------------------------------------------------


def find_partner(url: str, app: str) -> Partner | None:
    if not partners_mod.APP_RE.match(app or ""):
        return None
    with db.session(url) as s:
        return s.get(Partner, app)


def partner_has_key(url: str, app: str, key: paramiko.PKey) -> bool:
    blob64 = base64.b64encode(key.asbytes()).decode()
    with db.session(url) as s:
        rows = s.exec(select(PartnerKey).where(PartnerKey.app == app, PartnerKey.key_b64 == blob64))
        return rows.first() is not None


# --- SSH authentication ------------------------------------------------------------------------


class AuthTransport(paramiko.Transport):
    """Tells us when authentication really succeeded (for a public key, paramiko checks the
    signature only after `check_auth_publickey` has answered, which it also does for the
    client's unsigned probe)."""

    on_authenticated: Callable[[], None] | None = None

    def _auth_trigger(self):
        super()._auth_trigger()
        if self.on_authenticated is not None:
            self.on_authenticated()


class Authenticator(paramiko.ServerInterface):
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
        partner = find_partner(svc.url, username)
        if partner is None:
            return None, self._refuse(username, method, "unknown_partner")
        if not partner.enabled:
            return None, self._refuse(username, method, "disabled")
        if svc.sessions_of(username) >= int(svc.settings["max_sessions_per_partner"]) > 0:
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
        if not partner_has_key(self.service.url, username, key):
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
