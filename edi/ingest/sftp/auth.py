"""SFTP authentication: the server's host key, partners' keys and passwords, login throttling.

Public keys of the partner (table `partnerkey`, OpenSSH authorized_keys lines), or the optional
password (salted scrypt hash, `edi.partners`). Disabled and unknown partners are refused alike,
and so are RSA keys under 2048 bits (even one stored before that rule).
Failed attempts from one address are slowed down (`failed_login_delay` each) and, after
`max_failed_logins` within `failed_login_window` seconds, the address is locked out for
`lockout_seconds` (connections closed at once). A failed attempt is a bad password, a signed
request with a key the partner lacks, or a failed signature — not an unsigned key offer, which
an agent makes for each of its keys. Password checks in flight count against the limit, so
parallel connections cannot get more checks than it allows.
"""

from __future__ import annotations

import base64
import os
import stat
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import paramiko
import structlog
from paramiko.auth_handler import AuthHandler
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
    return partners_mod.fingerprint(key.asbytes())


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
    """Failed logins per address: each one is slowed, too many in a window lock the address out.

    A password check first takes a slot (`begin`): failures recorded plus checks in flight may
    not exceed `max_failures`, so forty parallel connections get five checks, not forty."""

    def __init__(self, max_failures: int, window: float, lockout: float, delay: float):
        self.max_failures, self.window, self.lockout, self.delay = max_failures, window, lockout, delay
        self._failures: dict[str, deque] = defaultdict(deque)
        self._in_flight: dict[str, int] = defaultdict(int)
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked(self, address: str) -> bool:
        with self._lock:
            return self._locked(address, time.monotonic())

    def _locked(self, address: str, now: float) -> bool:
        until = self._locked_until.get(address)
        if until is None:
            return False
        if now >= until:
            del self._locked_until[address]
            return False
        return True

    def begin(self, address: str) -> bool:
        """Reserve one check for `address`; False when it is locked out or has no attempt left.
        Every True must be followed by `failure(address, reserved=True)` or `release(address)`."""
        now = time.monotonic()
        with self._lock:
            if self._locked(address, now):
                return False
            q = self._failures[address]
            while q and now - q[0] > self.window:
                q.popleft()
            if self.max_failures > 0 and len(q) + self._in_flight[address] >= self.max_failures:
                return False
            self._in_flight[address] += 1
            return True

    def release(self, address: str) -> None:
        with self._lock:
            self._end(address)

    def _end(self, address: str) -> None:
        left = self._in_flight[address] - 1
        if left > 0:
            self._in_flight[address] = left
        else:
            self._in_flight.pop(address, None)

    def failure(self, address: str, reserved: bool = False) -> bool:
        """Record a failure (ending the check reserved by `begin`, if any); returns True when
        the address is now locked out."""
        now = time.monotonic()
        with self._lock:
            if reserved:
                self._end(address)
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


def key_b64(key: paramiko.PKey) -> str:
    return base64.b64encode(key.asbytes()).decode()


def partner_has_key(url: str, app: str, key: paramiko.PKey) -> bool:
    with db.session(url) as s:
        rows = s.exec(select(PartnerKey).where(PartnerKey.app == app, PartnerKey.key_b64 == key_b64(key)))
        return rows.first() is not None


def account_state(url: str, apps: set[str]) -> tuple[set[str], dict[str, set[str]]]:
    """Of these partners: the ones still enabled, and the keys each still has (base64)."""
    keys: dict[str, set[str]] = defaultdict(set)
    with db.session(url) as s:
        enabled = {p.app for p in s.exec(select(Partner).where(Partner.app.in_(apps), Partner.enabled))}
        for row in s.exec(select(PartnerKey).where(PartnerKey.app.in_(apps))):
            keys[row.app].add(row.key_b64)
    return enabled, keys


# --- SSH authentication ------------------------------------------------------------------------


class _AuthHandler(AuthHandler):
    """paramiko's server-side authentication, telling the `Authenticator` two things paramiko
    keeps to itself: whether a public-key request is signed (an unsigned one is only an offer:
    an agent offers several keys in turn), and when a signature failed verification."""

    def _parse_userauth_request(self, m):
        auth = self.transport.server_object
        pos = m.packet.tell()
        try:
            m.get_text(), m.get_text()
            auth.signed = m.get_text() == "publickey" and m.get_boolean()
        except Exception:  # malformed: paramiko's own parsing says so
            auth.signed = False
        m.packet.seek(pos)
        auth.key_granted = False
        super()._parse_userauth_request(m)

    def _send_auth_result(self, username, method, result):
        auth = self.transport.server_object
        if method == "publickey" and result == paramiko.AUTH_FAILED and auth.key_granted:
            auth.bad_signature(username)
        super()._send_auth_result(username, method, result)


class AuthTransport(paramiko.Transport):
    """Tells us when authentication really succeeded (for a public key, paramiko checks the
    signature only after `check_auth_publickey` has answered, which it also does for the
    client's unsigned probe), and uses `_AuthHandler`."""

    on_authenticated: Callable[[], None] | None = None

    def _parse_newkeys(self, m):
        if self.server_mode and self.auth_handler is None:
            self.auth_handler = _AuthHandler(self)
        return super()._parse_newkeys(m)

    def _auth_trigger(self):
        super()._auth_trigger()
        if self.on_authenticated is not None:
            self.on_authenticated()


class Authenticator(paramiko.ServerInterface):
    """Who may log in. Failed attempts counted against the address: bad passwords, signed
    requests with a key the partner does not have, and failed signatures; an unsigned key offer
    is not an attempt (an OpenSSH agent offers its keys one by one)."""

    def __init__(self, service: SftpService, sess: Session):
        self.service, self.sess = service, sess
        self.candidate: tuple[str, str, str | None] | None = None  # (partner, method, key) answered "yes"
        self.signed = False  # the current public-key request carries a signature
        self.key_granted = False  # ... and its key was accepted (a failure now is the signature)

    def get_allowed_auths(self, username):
        return "publickey,password"

    def check_auth_none(self, username):
        return paramiko.AUTH_FAILED

    def _refuse(self, username: str, method: str, reason: str, count: bool = True, reserved: bool = False) -> int:
        svc, sess = self.service, self.sess
        if not count and reserved:
            svc.throttle.release(sess.address)
        if count and svc.throttle.failure(sess.address, reserved=reserved):
            log.info("lockout", action="lockout", partner=username, address=sess.address, session=sess.id)
        action = "login_failed" if count else "login_refused"
        log.info(action, action=action, partner=username, address=sess.address, session=sess.id,
                 method=method, reason=reason)
        return paramiko.AUTH_FAILED

    def _precheck(self, username: str) -> tuple[Partner | None, str, bool]:
        """(partner, or None with the reason for refusing and whether that refusal is a failure)."""
        svc, sess = self.service, self.sess
        if svc.throttle.locked(sess.address):
            return None, "locked_out", False
        partner = find_partner(svc.url, username)
        if partner is None:
            return None, "unknown_partner", True
        if not partner.enabled:
            return None, "disabled", True
        if svc.sessions_of(username) >= svc.settings.max_sessions_per_partner > 0:
            return None, "too_many_sessions", False
        return partner, "", False

    def _granted(self, username: str, method: str, key: str | None = None) -> int:
        self.candidate = (username, method, key)
        return paramiko.AUTH_SUCCESSFUL

    def authenticated(self) -> None:
        username, method, key = self.candidate
        self.sess.app, self.sess.key_b64 = username, key
        self.sess.touch()
        self.service.throttle.success(self.sess.address)
        self.sess.log("login", method=method)

    def bad_signature(self, username: str) -> None:
        self._refuse(username, "publickey", "bad_signature")

    def check_auth_publickey(self, username, key):
        signed = self.signed
        partner, reason, failure = self._precheck(username)
        if partner is None:
            return self._refuse(username, "publickey", reason, count=failure and signed)
        if isinstance(key, paramiko.RSAKey) and key.get_bits() < partners_mod.RSA_MIN_BITS:
            return self._refuse(username, "publickey", "weak_key", count=signed)
        if not partner_has_key(self.service.url, username, key):
            return self._refuse(username, "publickey", "unknown_key", count=signed)
        # Called for the client's probe and again for the signed request; paramiko checks the
        # signature after we answer, and only a verified one reaches `authenticated`.
        self.key_granted = True
        return self._granted(username, "publickey", key_b64(key))

    def check_auth_password(self, username, password):
        svc, address = self.service, self.sess.address
        if not svc.throttle.begin(address):
            return self._refuse(username, "password", "locked_out", count=False)
        try:
            partner, reason, failure = self._precheck(username)
            if partner is None:
                return self._refuse(username, "password", reason, count=failure, reserved=True)
            ok = partners_mod.verify_password(password, partner.password_hash)
        except Exception:
            svc.throttle.release(address)
            raise
        if not ok:
            return self._refuse(username, "password", "bad_password", reserved=True)
        svc.throttle.release(address)
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
