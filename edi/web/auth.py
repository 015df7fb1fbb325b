"""Who is calling: signed session cookies, CSRF tokens, API tokens, login throttling per address.

The session cookie holds only the user id and the session's CSRF token, signed with the console's
secret (itsdangerous) and limited in age; it is HttpOnly, SameSite=Lax and Secure (unless
`[web] cookie_secure = false` for plain-HTTP tests). Every form carries the CSRF token and every
POST checks it; the login form, before any session exists, uses a signed token cookie of its own.
API clients send `Authorization: Bearer <token>` (`edi users token LOGIN`).
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from edi.web import users
from edi.web.users import User

SESSION_COOKIE = "edi_session"
LOGIN_COOKIE = "edi_login"


class LoginRequired(Exception):
    """A page asked without a session: the browser is sent to the login page."""


def load_secret(explicit: str, spool_root: Path) -> str:
    """`[web] secret`, else a random one kept in the spool (0600), shared by every process."""
    if explicit:
        return explicit
    path = spool_root / "web-secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)  # the first process to start wins; the others read its secret
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip()


@dataclass
class AddressThrottle:
    """Failed logins per client address in a sliding window (guessing across many logins)."""

    limit: int = 20
    window: float = 300.0
    _failures: dict[str, deque] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def blocked(self, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            seen = self._failures.get(address)
            while seen and now - seen[0] > self.window:
                seen.popleft()
            return bool(seen) and len(seen) >= self.limit

    def failed(self, address: str, now: float | None = None) -> None:
        with self._lock:
            self._failures.setdefault(address, deque()).append(time.monotonic() if now is None else now)


class Sessions:
    def __init__(self, secret: str, max_age: int, secure: bool):
        self._signer = URLSafeTimedSerializer(secret, salt="edi-console")
        self.max_age = max_age
        self.secure = secure

    def _cookie(self, response, name: str, value: str) -> None:
        response.set_cookie(name, value, max_age=self.max_age, httponly=True, samesite="lax", secure=self.secure,
                            path="/")

    def _read(self, request: Request, name: str) -> dict | None:
        raw = request.cookies.get(name)
        if not raw:
            return None
        try:
            data = self._signer.loads(raw, max_age=self.max_age)
        except BadSignature:
            return None
        return data if isinstance(data, dict) else None

    # a logged-in session
    def start(self, response, user: User) -> None:
        self._cookie(response, SESSION_COOKIE, self._signer.dumps({"u": user.id, "c": secrets.token_urlsafe(24)}))
        response.delete_cookie(LOGIN_COOKIE, path="/")

    def end(self, response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/")

    def current(self, request: Request) -> tuple[int, str] | None:
        data = self._read(request, SESSION_COOKIE)
        return (data["u"], data["c"]) if data and "u" in data and "c" in data else None

    # the login form's token, before any session
    def login_token(self, request: Request) -> str:
        data = self._read(request, LOGIN_COOKIE)
        return data["c"] if data and "c" in data else secrets.token_urlsafe(24)

    def keep_login_token(self, response, token: str) -> None:
        self._cookie(response, LOGIN_COOKIE, self._signer.dumps({"c": token}))

    def login_token_ok(self, request: Request, submitted: str) -> bool:
        data = self._read(request, LOGIN_COOKIE)
        return bool(data) and bool(submitted) and hmac.compare_digest(str(data.get("c", "")), submitted)


def session_user(request: Request) -> tuple[User, str] | None:
    """The user of the session cookie and the session's CSRF token."""
    web = request.app.state.web
    found = web.sessions.current(request)
    if found is None:
        return None
    user = users.by_id(web.url, found[0])
    return (user, found[1]) if user else None


def page_user(request: Request) -> User:
    """Dependency of every console page."""
    found = session_user(request)
    if found is None:
        raise LoginRequired()
    request.state.user, request.state.csrf = found
    return found[0]


def check_csrf(request: Request, submitted: str) -> None:
    expected = getattr(request.state, "csrf", "")
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        raise HTTPException(403, "Jeton CSRF absent ou invalide : rechargez la page puis recommencez.")


def api_user(request: Request) -> User:
    """Dependency of every `/api/v1` call: a bearer token, or a console session (with the CSRF
    token in `X-CSRF-Token` for anything but GET)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        user = users.by_token(request.app.state.web.url, header[7:].strip())
        if user is None:
            raise HTTPException(401, "Jeton d'API invalide", headers={"WWW-Authenticate": "Bearer"})
        return user
    found = session_user(request)
    if found is None:
        raise HTTPException(401, "Authentification requise (Authorization: Bearer <jeton>)",
                            headers={"WWW-Authenticate": "Bearer"})
    if request.method not in ("GET", "HEAD"):
        request.state.csrf = found[1]
        check_csrf(request, request.headers.get("x-csrf-token", ""))
    return found[0]
