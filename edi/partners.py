"""Partners (connected operators): accounts, keys, passwords.

A partner is an application code (APP) with one SFTP account. Partners live in the database;
the `[[partners]]` entries of the configuration are loaded into it at start
(`load_from_config`), so a fresh install works from the configuration alone, while
`edi partners ...` changes persist without editing it.

Configuration keys read here:

- `[[partners]]` `app`, `name`, `interfaces` (design), plus optional `keys` (list of OpenSSH
  `authorized_keys` lines) and `key_files` (list of public-key files, relative to the project
  directory). Loading adds missing partners and keys, updates name and interfaces, and never
  re-enables a partner disabled in the database.

The retention of their reports in `out/` is `edi.reports.retention`.

Passwords are optional and stored only as a salted scrypt hash:
`scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import paramiko
import structlog
from sqlmodel import select

from edi import db
from edi.config import APP_PATTERN
from edi.db.models import Partner, PartnerKey
from edi.interfaces import INTERFACES as FLOW_INTERFACES

log = structlog.get_logger("edi.partners")

INTERFACES = tuple(FLOW_INTERFACES)  # design: "Flow file names"
SENDER, RECIPIENT = "sender", "recipient"
#: What a partner may send when its entry names no interface: a recipient only status flows.
DEFAULT_INTERFACES = {SENDER: (), RECIPIENT: tuple(c for c, i in FLOW_INTERFACES.items() if i.role == RECIPIENT)}
APP_RE = re.compile(APP_PATTERN)
RSA_MIN_BITS = 2048  # the floor of NIST SP 800-131A; a 767-bit key could be logged in with

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class PartnerError(ValueError):
    """A partner operation that cannot be done (unknown partner, bad key, bad code...)."""


@dataclass(frozen=True)
class KeyInfo:
    key_type: str
    fingerprint: str
    comment: str


@dataclass(frozen=True)
class PartnerInfo:
    app: str
    name: str
    interfaces: tuple[str, ...]  # empty = every interface
    enabled: bool
    has_password: bool
    created_at: datetime
    keys: tuple[KeyInfo, ...] = field(default=())
    role: str = SENDER
    sirets: tuple[str, ...] = ()


# --- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    key_type: str
    key_b64: str
    comment: str
    fingerprint: str


_KEY_TYPE_RE = re.compile(r"(?:^|\s)((?:ssh|ecdsa|sk)-[a-z0-9@.-]+)(?:\s|$)")


def fingerprint(blob: bytes) -> str:
    """SHA256 fingerprint of a public-key blob, as `ssh-keygen -l` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_key_line(line: str) -> PublicKey:
    """Parse one OpenSSH public key / `authorized_keys` line (`TYPE BASE64 [COMMENT]`).

    Lines with options (`from="..." ssh-ed25519 ...`) are refused rather than half-honoured:
    the server would not apply the restriction the operator wrote. RSA keys under 2048 bits
    are refused.
    """
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise PartnerError("clé publique illisible : attendu « TYPE BASE64 [COMMENTAIRE] »")
    key_type, key_b64 = parts[0], parts[1]
    if not _KEY_TYPE_RE.match(key_type) and _KEY_TYPE_RE.search(line):
        raise PartnerError(f"options authorized_keys non prises en charge ({key_type[:40]}…) : "
                           "donner la clé seule « TYPE BASE64 [COMMENTAIRE] »")
    comment = parts[2].strip() if len(parts) > 2 else ""
    try:
        blob = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise PartnerError("clé publique illisible : base64 invalide (options non prises en charge)")
    try:
        key = paramiko.PKey.from_type_string(key_type, blob)
    except Exception as exc:  # UnknownKeyType, SSHException, struct errors
        raise PartnerError(f"clé publique non reconnue ({key_type}) : {exc}") from None
    if key.get_name() != key_type and key_type not in type(key).identifiers():
        raise PartnerError("clé publique incohérente : type annoncé différent du contenu")
    if isinstance(key, paramiko.RSAKey) and key.get_bits() < RSA_MIN_BITS:
        raise PartnerError(f"clé RSA de {key.get_bits()} bits refusée : {RSA_MIN_BITS} bits au minimum")
    return PublicKey(key_type, key_b64, comment, fingerprint(blob))


def read_key_file(path: str | Path) -> list[PublicKey]:
    """Every key of a `.pub` or `authorized_keys` file (blank lines and comments skipped).

    A key's comment is free text that ssh-keygen writes in the user's locale: a file that is not
    UTF-8 is read as latin-1 (the type and base64 parts are ASCII either way)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PartnerError(f"fichier de clé illisible : {path} ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    keys = [parse_key_line(ln) for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not keys:
        raise PartnerError(f"aucune clé publique dans {path}")
    return keys


# --- passwords -------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            dklen=len(expected), maxmem=256 * 1024 * 1024,
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, expected)


# --- database operations ---------------------------------------------------------------------


def _check_app(app: str) -> str:
    if not APP_RE.match(app or ""):
        raise PartnerError(f"code application invalide : {app!r} (3 à 8 lettres majuscules ou chiffres)")
    return app


def _check_interfaces(interfaces) -> str:
    codes = [str(c).strip().upper() for c in (interfaces or ()) if str(c).strip()]
    unknown = [c for c in codes if c not in INTERFACES]
    if unknown:
        raise PartnerError(f"code interface inconnu : {', '.join(unknown)} (connus : {', '.join(INTERFACES)})")
    return ",".join(dict.fromkeys(codes))


def _get(s, app: str) -> Partner:
    partner = s.get(Partner, app)
    if partner is None:
        raise PartnerError(f"partenaire inconnu : {app}")
    return partner


def _add_keys(s, app: str, keys: list[PublicKey]) -> int:
    existing = {k.fingerprint for k in s.exec(select(PartnerKey).where(PartnerKey.app == app))}
    added = 0
    for key in keys:
        if key.fingerprint in existing:
            continue
        s.add(PartnerKey(app=app, key_type=key.key_type, key_b64=key.key_b64, comment=key.comment,
                         fingerprint=key.fingerprint))
        existing.add(key.fingerprint)
        added += 1
    return added


def add(url: str, app: str, name: str, key_file: str | Path | None = None, interfaces=()) -> PartnerInfo:
    """Create a partner (enabled) with the keys of `key_file`; no interface given = every one."""
    _check_app(app)
    codes = _check_interfaces(interfaces)
    keys = read_key_file(key_file) if key_file else []
    with db.session(url) as s:
        if s.get(Partner, app) is not None:
            raise PartnerError(f"partenaire déjà enregistré : {app}")
        s.add(Partner(app=app, name=name or app, interfaces=codes, enabled=True))
        s.flush()
        _add_keys(s, app, keys)
        s.commit()
    log.info("partner_added", partner=app, keys=len(keys), interfaces=codes or "*")
    return get(url, app)


def set_enabled(url: str, app: str, enabled: bool) -> None:
    with db.session(url) as s:
        partner = _get(s, app)
        partner.enabled = enabled
        s.add(partner)
        s.commit()
    log.info("partner_enabled" if enabled else "partner_disabled", partner=app)


def disable(url: str, app: str) -> None:
    """Refuse every login of the partner; the SFTP server ends its open sessions within
    `[sftp] housekeeping_interval` (so does withdrawing the key a session logged in with)."""
    set_enabled(url, app, False)


def enable(url: str, app: str) -> None:
    set_enabled(url, app, True)


def add_key(url: str, app: str, key: str | Path) -> int:
    """Allow the key(s) of a public-key file (or one key line); returns how many were new."""
    keys = _keys_from(key)
    with db.session(url) as s:
        _get(s, app)
        added = _add_keys(s, app, keys)
        s.commit()
    log.info("partner_key_added", partner=app, keys=added)
    return added


def remove_key(url: str, app: str, key: str | Path) -> int:
    """Withdraw the key(s) of a public-key file, a key line, or a `SHA256:` fingerprint."""
    if isinstance(key, str) and key.startswith("SHA256:"):
        prints = {key}
    else:
        prints = {k.fingerprint for k in _keys_from(key)}
    with db.session(url) as s:
        _get(s, app)
        rows = list(s.exec(select(PartnerKey).where(PartnerKey.app == app, PartnerKey.fingerprint.in_(prints))))
        if not rows:
            raise PartnerError(f"clé absente du partenaire {app}")
        for row in rows:
            s.delete(row)
        s.commit()
    log.info("partner_key_removed", partner=app, keys=len(rows))
    return len(rows)


def _keys_from(key: str | Path) -> list[PublicKey]:
    if isinstance(key, Path) or (isinstance(key, str) and Path(key).is_file()):
        return read_key_file(key)
    return [parse_key_line(str(key))]


def set_password(url: str, app: str, password: str | None) -> None:
    """Set (or with None, remove) the partner's optional password; only its hash is kept."""
    with db.session(url) as s:
        partner = _get(s, app)
        partner.password_hash = hash_password(password) if password else None
        s.add(partner)
        s.commit()
    log.info("partner_password_set" if password else "partner_password_cleared", partner=app)


def _info(partner: Partner, keys) -> PartnerInfo:
    return PartnerInfo(
        app=partner.app,
        name=partner.name,
        interfaces=tuple(c for c in partner.interfaces.split(",") if c),
        enabled=partner.enabled,
        has_password=bool(partner.password_hash),
        created_at=partner.created_at,
        keys=tuple(KeyInfo(k.key_type, k.fingerprint, k.comment) for k in keys),
        role=partner.role,
        sirets=tuple(s for s in partner.sirets.split(",") if s),
    )


def get(url: str, app: str) -> PartnerInfo:
    with db.session(url) as s:
        partner = _get(s, app)
        keys = list(s.exec(select(PartnerKey).where(PartnerKey.app == app).order_by(PartnerKey.id)))
        return _info(partner, keys)


def list_partners(url: str) -> list[PartnerInfo]:
    with db.session(url) as s:
        partners = list(s.exec(select(Partner).order_by(Partner.app)))
        keys: dict[str, list[PartnerKey]] = {}
        for k in s.exec(select(PartnerKey).order_by(PartnerKey.id)):
            keys.setdefault(k.app, []).append(k)
        return [_info(p, keys.get(p.app, [])) for p in partners]


def config_keys(cfg, entry) -> list[PublicKey]:
    """The keys of one `[[partners]]` entry; a bad one is a `PartnerError` naming the entry."""
    where = f"{cfg.path or 'configuration'} : [[partners]] {entry.app}"
    try:
        keys = [parse_key_line(line) for line in entry.keys]
        for key_file in entry.key_files:
            keys.extend(read_key_file(cfg.resolve(key_file)))
    except PartnerError as exc:
        raise PartnerError(f"{where} : {exc}") from None
    return keys


def check_config(cfg) -> None:
    """Parse every configured partner key, before anything is touched (a bad one: `PartnerError`)."""
    for entry in cfg.partners:
        config_keys(cfg, entry)


def load_from_config(cfg) -> list[str]:
    """Bring the `[[partners]]` of the configuration into the database; returns their codes."""
    apps = []
    with db.session(cfg.database_url) as s:
        for entry in cfg.partners:
            app = _check_app(entry.app)
            codes = _check_interfaces(entry.interfaces or DEFAULT_INTERFACES[entry.role])
            name = entry.name or app
            partner = s.get(Partner, app)
            if partner is None:
                partner = Partner(app=app, name=name, interfaces=codes, enabled=True)
                log.info("partner_loaded", partner=app, source="config", role=entry.role)
            else:
                partner.name, partner.interfaces = name, codes
            partner.role, partner.sirets = entry.role, ",".join(dict.fromkeys(entry.sirets))
            s.add(partner)
            s.flush()
            _add_keys(s, app, config_keys(cfg, entry))
            apps.append(app)
        s.commit()
    return apps
