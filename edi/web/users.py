"""Console users: roles, argon2id passwords, login throttling, API tokens.

Only hashes are kept: the password's argon2id hash (memory-hard, so a stolen table is slow to
attack) and the SHA-256 of the API token (a 256-bit random secret needs no slow hash). After
`MAX_FAILURES` consecutive failed logins an account is locked for a delay that doubles with every
further failure (capped), so guessing a password online takes years, not minutes.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from edi import db
from edi.db.models import ConsoleUser, Partner, utcnow

ROLES = ("ops", "sender", "recipient")
LOGIN_RE = re.compile(r"^[A-Za-z0-9._@-]{2,64}$")
MIN_PASSWORD = 10
MAX_FAILURES = 5
BASE_LOCK = timedelta(seconds=30)
MAX_LOCK = timedelta(minutes=15)
_hasher = PasswordHasher()  # argon2id, library defaults (64 MiB, 3 passes)
_DUMMY = _hasher.hash("edi-console-unknown-user")  # same work for an unknown login


class UserError(ValueError):
    """A refused user operation, with a French message for the CLI."""


@dataclass(frozen=True)
class User:
    """What a request knows about who is calling."""

    id: int
    login: str
    role: str
    partner: str | None

    @property
    def is_ops(self) -> bool:
        return self.role == "ops"


def _view(row: ConsoleUser) -> User:
    return User(id=row.id, login=row.login, role=row.role, partner=row.partner)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add(url: str, login: str, role: str, password: str, partner: str | None = None) -> User:
    if not LOGIN_RE.match(login or ""):
        raise UserError(f"identifiant invalide : {login!r} (2 à 64 lettres, chiffres, . _ @ -)")
    if role not in ROLES:
        raise UserError(f"rôle inconnu : {role} (ops, sender ou recipient)")
    if role == "ops" and partner:
        raise UserError("un utilisateur ops n'est rattaché à aucun partenaire (retirez --partner)")
    if role != "ops" and not partner:
        raise UserError(f"le rôle {role} exige --partner APP")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"mot de passe trop court ({MIN_PASSWORD} caractères au moins)")
    with db.session(url) as s:
        if partner and s.get(Partner, partner) is None:
            raise UserError(f"partenaire inconnu : {partner} (voir `edi partners list`)")
        if s.execute(select(ConsoleUser.id).where(ConsoleUser.login == login)).first():
            raise UserError(f"l'utilisateur {login} existe déjà")
        row = ConsoleUser(login=login, role=role, partner=partner or None, password_hash=_hasher.hash(password))
        s.add(row)
        s.commit()
        s.refresh(row)
        return _view(row)


def new_token(url: str, login: str) -> str:
    """Create (or replace) the user's API token; the token itself is shown once, never stored."""
    token = "edi_" + secrets.token_urlsafe(32)
    with db.session(url) as s:
        row = s.execute(select(ConsoleUser).where(ConsoleUser.login == login)).scalars().first()
        if row is None:
            raise UserError(f"utilisateur inconnu : {login} (voir `edi users list`)")
        row.token_hash = token_hash(token)
        s.commit()
    return token


def list_users(url: str) -> list[dict]:
    with db.session(url) as s:
        rows = s.execute(select(ConsoleUser).order_by(ConsoleUser.login)).scalars().all()
    return [dict(login=r.login, role=r.role, partner=r.partner, token=r.token_hash is not None,
                 last_login_at=r.last_login_at.isoformat() if r.last_login_at else None) for r in rows]


def by_token(url: str, token: str) -> User | None:
    if not token:
        return None
    with db.session(url) as s:
        row = s.execute(select(ConsoleUser).where(ConsoleUser.token_hash == token_hash(token))).scalars().first()
    return _view(row) if row else None


def by_id(url: str, user_id: int) -> User | None:
    with db.session(url) as s:
        row = s.get(ConsoleUser, user_id)
    return _view(row) if row else None


class Locked(Exception):
    """Too many failed logins: the account waits until `until`."""

    def __init__(self, until: datetime):
        super().__init__(until)
        self.until = until


def authenticate(url: str, login: str, password: str, now: datetime | None = None) -> User | None:
    """The user when the password is right; None otherwise; `Locked` while throttled (even with the
    right password, so that guessing gains nothing during the lock)."""
    now = now or utcnow()
    with db.session(url) as s:
        row = s.execute(select(ConsoleUser).where(ConsoleUser.login == login)).scalars().first()
        if row is None:
            _verify(_DUMMY, password)
            return None
        locked = _aware(row.locked_until)
        if locked and locked > now:
            raise Locked(locked)
        if not _verify(row.password_hash, password):
            row.failed_logins += 1
            if row.failed_logins >= MAX_FAILURES:
                delay = min(BASE_LOCK * 2 ** (row.failed_logins - MAX_FAILURES), MAX_LOCK)
                row.locked_until = now + delay
            s.commit()
            return None
        row.failed_logins, row.locked_until, row.last_login_at = 0, None, now
        if _hasher.check_needs_rehash(row.password_hash):
            row.password_hash = _hasher.hash(password)
        s.commit()
        return _view(row)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _aware(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; they are UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value
