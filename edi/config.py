"""Settings: every section and key of `config/edi.toml`, with its type, default, unit and doc.

The file is `--config FILE`, else `EDI_CONFIG`, else `config/edi.toml` (missing: defaults).
Every key `[section] key` can be overridden by the environment variable `EDI_<SECTION>_<KEY>`
(upper case), e.g. `EDI_DATABASE_URL`, `EDI_LIMITS_MAX_FLOW_BYTES`; the value is read as a TOML
literal (number, boolean, list, inline table) unless the key holds text, then taken as is.

Everything is checked once, at load, before anything is touched: a wrong type or value, an
unknown key (a typo) or a missing required key raises `ConfigError`, whose text is one line
naming the file (or the variable), the section, the key, what was expected and what was found:

    config/edi.toml: [limits] max_flow_bytes: expected a whole number of bytes, got "big"

Code reads typed attributes (`cfg.intake.lease_seconds`, `cfg.sftp.port`, ...), never raw
tables. Relative paths are resolved from the project directory (`Config.resolve`), so the
platform runs the same from any working directory. `config/edi.toml` documents every key with
its default (tests/test_config.py keeps the two in step).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, ValidationError
from pydantic.fields import FieldInfo

DEFAULT_CONFIG = Path("config/edi.toml")
ENV_PREFIX = "EDI_"
APP_PATTERN = r"^[A-Z0-9]{3,8}$"  # design: "Flow file names"


class ConfigError(ValueError):
    """The configuration cannot be used; the message is the one line to show."""


def key(default: Any, doc: str, *, expected: str, unit: str = "", **constraints) -> Any:
    """Declare a key: its default, one-line doc, unit, and how to say what a valid value is."""
    return Field(default, description=doc, json_schema_extra={"unit": unit, "expected": expected},
                 **constraints)


def seconds(default: float, doc: str, *, above_zero: bool = False) -> Any:
    """A duration key, in seconds (0 allowed unless `above_zero`)."""
    bound = {"gt": 0} if above_zero else {"ge": 0}
    return key(default, doc, expected="a number of seconds" + (" above 0" if above_zero else ""), unit="seconds",
               **bound)


def whole(default: int, doc: str, unit: str, *, minimum: int = 0) -> Any:
    """A count key: a whole number of `unit`, at least `minimum`."""
    return key(default, doc, expected=f"a whole number of {unit}" + (f", at least {minimum}" if minimum else ""),
               unit=unit, ge=minimum)


def required(doc: str, *, expected: str, unit: str = "", **constraints) -> Any:
    return Field(..., description=doc, json_schema_extra={"unit": unit, "expected": expected}, **constraints)


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(str(exc)) from None
    return value


Siret = Annotated[str, StringConstraints(pattern=r"^\d{14}$")]
Interface = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}\d{4}[A-Z]$")]
Regex = Annotated[str, AfterValidator(_regex)]
Severity = Literal["fatal", "warning", "off"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SpoolSettings(Section):
    root: str = key("spool", "partners' in/out folders, work area, archive, recipients' inboxes",
                    expected="a folder path", unit="path", min_length=1)


class DatabaseSettings(Section):
    url: str = key("sqlite:///spool/edi.db", "SQLite file by default; a postgresql:// URL for PostgreSQL",
                   expected="a database URL (sqlite:///FILE or postgresql://...)", pattern=r"^[a-z][a-z0-9+]*://")


class LimitsSettings(Section):
    max_flow_bytes: int = key(1_073_741_824, "a larger flow is irrecevable (IRR_TAILLE); 1 GB, the Chorus "
                              "Pro EDI limit", expected="a whole number of bytes", unit="bytes", ge=1)
    max_file_bytes: int = key(125_829_120, "largest XML file alone or inside a .tar.gz (IRR_TAILLE); 120 MB",
                              expected="a whole number of bytes", unit="bytes", ge=1)
    max_archive_members: int = whole(100_000, "entries of one .tar.gz, invoices and folders (IRR_EXTRAC)",
                                     "entries", minimum=1)
    max_invoice_elements: int = whole(500_000, "XML elements of one invoice or of the CPP envelope, counted while "
                                      "parsing (IRR_TAILLE)", "elements", minimum=1)


class DirectorySettings(Section):
    ej_patterns: dict[Siret, Regex] = key(
        {}, "SIRET -> regular expression a given engagement number (EJ) must match in full",
        expected="a table of SIRET (14 digits) = regular expression")


class IntakeSettings(Section):
    settle_seconds: float = seconds(2.0, "a dropped file is taken once its size and mtime are this old and "
                                         "unchanged")
    poll_seconds: float = seconds(1.0, "periodic scan of the inboxes (watcher events only wake it earlier)",
                                  above_zero=True)
    lease_seconds: float = seconds(600.0, "a flow held by a worker of another host is taken over after this "
                                          "(renewed every 1000 invoices)", above_zero=True)


class WorkersSettings(Section):
    processes: int = whole(1, "worker processes of `edi serve` (each takes flows safely)", "processes", minimum=1)


class ValidationSettings(Section):
    processes: int = key(0, "invoice-check pool (UBL/CII schematron); 0 = number of cores",
                         expected="a whole number of processes (0 = number of cores)", unit="processes", ge=0)
    schematron: bool = key(True, "EN 16931 schematron after the XSD", expected="true or false")
    engine: Literal["native", "saxon"] = key("native", "how the EN 16931 / BR-FR rules run: the native engine "
                                             "(generated from the official XSLT, same verdicts) or the XSLT "
                                             "on Saxon", expected='"native" or "saxon"')


class RulesSettings(Section):
    french: list[Interface] = key([], "interfaces on which the French reform rules (BR-FR, Flux 2) also run",
                                  expected='a list of interface codes, e.g. ["FSO1100A"]')
    severity: dict[str, Severity] = key({}, "per-rule severity override (flow checks and XSD excluded)",
                                        expected='"fatal", "warning" or "off"')


class LoggingSettings(Section):
    format: Literal["json", "console", "auto"] = key(
        "auto", "json | console | auto (console in a terminal, JSON lines otherwise)",
        expected='"json", "console" or "auto"')
    level: Literal["debug", "info", "warning", "error", "critical"] = key(
        "info", "lowest level logged", expected='"debug", "info", "warning", "error" or "critical"')


class SftpSettings(Section):
    enabled: bool = key(True, "`edi serve` runs the SFTP drop box", expected="true or false")
    host: str = key("127.0.0.1", "listening address", expected="an address", min_length=1)
    port: int = key(2222, "listening port (0 = any free port)", expected="a port number (0 to 65535)",
                    unit="port", ge=0, le=65535)
    host_key: str = key("spool/sftp_host_key", "Ed25519 host key, generated on first start (fingerprint: "
                        "edi partners list)", expected="a file path", unit="path", min_length=1)
    max_sessions_per_partner: int = whole(4, "concurrent SFTP sessions of one account (0 = no limit)", "sessions")
    idle_timeout: float = seconds(300.0, "seconds without a request before the connection is closed")
    login_timeout: float = seconds(30.0, "seconds to authenticate after connecting")
    failed_login_delay: float = seconds(1.0, "seconds added to every failed login")
    max_failed_logins: int = whole(5, "failures per address within the window ...", "failures", minimum=1)
    failed_login_window: float = seconds(300.0, "... (seconds) that lock the address out for ...")
    lockout_seconds: float = seconds(300.0, "... this many seconds")
    partial_max_age: float = seconds(3600.0, "seconds before an abandoned upload is deleted")
    housekeeping_interval: float = seconds(1.0, "seconds between timeout checks (and revocation: a disabled "
                                           "partner or a withdrawn key ends its open sessions)")
    max_handles_per_session: int = whole(64, "files and folders one session may hold open (0 = no limit)",
                                         "handles")
    oversize_report_interval: float = seconds(60.0, "seconds: at most one IRR_TAILLE report per partner meanwhile")


class WebSettings(Section):
    """The console and HTTP API (edi/web/), served by `edi serve` and by `edi web` alone."""

    enabled: bool = key(True, "`edi serve` also serves the console and API", expected="true or false")
    host: str = key("127.0.0.1", "listening address", expected="an address", min_length=1)
    port: int = key(8080, "listening port (0 = any free port)", expected="a port number (0 to 65535)",
                    unit="port", ge=0, le=65535)
    secret: str = key("", "cookie signing key; empty = a random key kept in spool/web-secret.key",
                      expected="a string")
    cookie_secure: bool = key(True, "session cookies only over HTTPS (browsers also accept them on localhost)",
                              expected="true or false")
    session_hours: float = key(8.0, "a console session lasts this long", expected="a number of hours above 0",
                               unit="hours", gt=0)


class ReportsSettings(Section):
    retention_days: float = key(7.0, "files in out/ older than this are purged, and the purge recorded "
                                "(Chorus Pro: 7 days)", expected="a number of days", unit="days", ge=0)
    purge_interval: float = seconds(3600.0, "seconds between purges run by the SFTP server (0 = never)")
    push_max_attempts: int = whole(8, "failed pushes before giving up (then: edi reports resend REF)", "attempts",
                                   minimum=1)
    push_backoff_seconds: float = seconds(30.0, "wait after the first failed push, doubled each time ...")
    push_backoff_max_seconds: float = seconds(3600.0, "... up to this")
    push_lease_seconds: float = seconds(300.0, "a push whose worker died is taken over after this",
                                        above_zero=True)


class PushSettings(Section):
    """A partner's own SFTP folder its reports are also pushed to (edi/reports/push.py)."""

    host: str = required("server address", expected="a host name or address", min_length=1)
    port: int = key(22, "server port", expected="a port number (1 to 65535)", unit="port", ge=1, le=65535)
    user: str = required("login", expected="a user name", min_length=1)
    path: str = key("/", "remote folder", expected="a remote folder path")
    key_file: str = required("private key of the login", expected="a file path", unit="path", min_length=1)
    known_hosts: str = required("known_hosts file holding the server's key (never accepted blindly)",
                                expected="a file path", unit="path", min_length=1)
    timeout: float = seconds(10.0, "connection and operation timeout", above_zero=True)


class PartnerSettings(Section):
    """One `[[partners]]` entry: an operator (sender) or a recipient's EDI system."""

    app: str = required("application code: in the flow file name and the SFTP account",
                        expected="an application code (3 to 8 upper-case letters or digits)", pattern=APP_PATTERN)
    name: str = key("", "shown in reports and the CLI (default: the code)", expected="a name")
    interfaces: list[Interface] = key([], "interface codes this partner may send (none = all)",
                                      expected='a list of interface codes, e.g. ["FSO1100A"]')
    keys: list[str] = key([], "authorized_keys lines of the SFTP account", expected="a list of public-key lines")
    key_files: list[str] = key([], "public-key files of the SFTP account, relative to the project folder",
                               expected="a list of file paths")
    push: PushSettings | None = key(None, "reports are also pushed to this SFTP folder",
                                    expected="an inline table { host, user, key_file, known_hosts, ... }")
    role: Literal["sender", "recipient"] = key("sender", "sender: deposits invoices; recipient: receives them "
                                               "for its SIRETs and sends statuses", expected='"sender" or "recipient"')
    sirets: list[Siret] = key([], "structures a recipient partner receives for and answers for",
                              expected="a list of SIRET numbers (14 digits)")


class Config(BaseModel):
    """The platform's settings, one attribute per section."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    spool: SpoolSettings = SpoolSettings()
    database: DatabaseSettings = DatabaseSettings()
    limits: LimitsSettings = LimitsSettings()
    directory: DirectorySettings = DirectorySettings()
    intake: IntakeSettings = IntakeSettings()
    workers: WorkersSettings = WorkersSettings()
    validation: ValidationSettings = ValidationSettings()
    rules: RulesSettings = RulesSettings()
    logging: LoggingSettings = LoggingSettings()
    sftp: SftpSettings = SftpSettings()
    reports: ReportsSettings = ReportsSettings()
    web: WebSettings = WebSettings()
    partners: list[PartnerSettings] = key([], "operators and recipients ([[partners]] entries)",
                                          expected="a list of [[partners]] tables")
    _path: Path | None = PrivateAttr(None)
    _source: str = PrivateAttr("")

    @property
    def path(self) -> Path | None:
        """The configuration file read (absolute), None when only defaults are used."""
        return self._path

    @property
    def source(self) -> str:
        """The file as the user named it: what messages about this configuration start with."""
        return self._source

    @property
    def base_dir(self) -> Path:
        return self.path.parent.parent if self.path and self.path.parent.name == "config" else (
            self.path.parent if self.path else Path.cwd()
        )

    def resolve(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def spool_root(self) -> Path:
        return self.resolve(self.spool.root)

    @property
    def database_url(self) -> str:
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            url = prefix + str(self.resolve(url[len(prefix):]))
        return url

    @property
    def max_flow_bytes(self) -> int:
        return self.limits.max_flow_bytes

    @property
    def ej_patterns(self) -> dict[str, str]:
        return dict(self.directory.ej_patterns)

    def refuse(self, section: str, key: str, text: str) -> ConfigError:
        """A refusal found after loading (e.g. by the rule catalogue), worded like the others:
        `text` says what was expected and what was found."""
        return ConfigError(f"{self.source or '(defaults)'}: [{section}] {_key_text(key)}: {text}")


SECTIONS: dict[str, type[Section]] = {
    name: f.annotation for name, f in Config.model_fields.items() if name != "partners"
}


# --------------------------------------------------------------------------- loading


def load(path: str | Path | None = None, environ=None) -> Config:
    """Read and check the configuration file (if any) over the defaults, then the environment."""
    environ = os.environ if environ is None else environ
    chosen = path or environ.get("EDI_CONFIG")
    cfg_path = Path(chosen) if chosen else DEFAULT_CONFIG
    source = str(cfg_path)
    data: dict = {}
    if cfg_path.is_file():
        try:
            with cfg_path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot be read: {exc.strerror}") from None
    elif chosen:
        raise ConfigError(f"{source}: configuration file not found")
    from_env = _apply_env(data, environ, source)
    return _validate(data, source, from_env, cfg_path.resolve() if cfg_path.is_file() else None)


def from_data(data: dict, path: Path | None = None) -> Config:
    """Settings from tables already in memory (tests, tools), checked like a file."""
    return _validate(data, str(path) if path else "(settings)", {}, path)


def of_context(ctx, loader=None) -> Config:
    """The configuration of a CLI invocation: the root command loads it into `ctx.obj`; a
    sub-app run on its own (tests) loads the default one with `loader` (default: `load`)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Config):
        root.obj = (loader or load)()
    return root.obj


def _validate(data: dict, source: str, from_env: dict[tuple[str, str], str], path: Path | None) -> Config:
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_message(exc.errors()[0], data, source, from_env)) from None
    apps = [p.app for p in cfg.partners]
    for n, app in enumerate(apps):
        if app in apps[:n]:
            raise ConfigError(f"{source}: [[partners]] #{n + 1} app: expected a code no other entry uses, "
                              f"got {_shown(app)}")
    cfg._path, cfg._source = path, source
    return cfg


def _apply_env(data: dict, environ, source: str) -> dict[tuple[str, str], str]:
    """Put the `EDI_<SECTION>_<KEY>` overrides into `data`; returns which variable set what."""
    origin = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == "EDI_CONFIG":
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            continue  # not a setting (EDI_TEST_..., EDI_PG_BIN)
        key_name = rest[len(section) + 1:]
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}]: expected a table, got {_shown(table)}")
        field = SECTIONS[section].model_fields.get(key_name)
        table[key_name] = _env_value(raw, field)
        origin[(section, key_name)] = name
    return origin


def _env_value(raw: str, field: FieldInfo | None) -> Any:
    """A variable's text as the key's type: TOML literal, or the text itself for text keys."""
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    if field is not None and _holds_text(field.annotation) and not isinstance(value, str):
        return raw
    return value


def _holds_text(annotation) -> bool:
    """A key whose value is text (str, or a choice of strings): its variable is taken as is."""
    if get_origin(annotation) is Literal:
        return all(isinstance(a, str) for a in get_args(annotation))
    return annotation is str


# --------------------------------------------------------------------------- messages


def _shown(value: Any) -> str:
    """A found value as TOML would write it (strings quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False, default=str)


def _message(error: dict, data: dict, source: str, from_env: dict[tuple[str, str], str]) -> str:
    """The one line for pydantic's first error: where (file, section, key), expected, found."""
    loc = [part for part in error["loc"] if part != "[key]"]
    parent: type[BaseModel] | None = Config  # the model owning the next key (None: free keys)
    field: FieldInfo | None = None
    where, key_path = "", []
    if loc and loc[0] == "partners":
        where, field, parent, loc = "[[partners]]", Config.model_fields["partners"], None, loc[1:]
        if loc and isinstance(loc[0], int):
            entry = (data.get("partners") or [])[loc[0]]
            app = entry.get("app") if isinstance(entry, dict) else None
            where = f"[[partners]] #{loc[0] + 1}" + (f" (app = {_shown(app)})" if isinstance(app, str) and app else "")
            parent, loc = PartnerSettings, loc[1:]
    elif loc and loc[0] in SECTIONS:
        where, field, parent, loc = f"[{loc[0]}]", Config.model_fields[loc[0]], SECTIONS[loc[0]], loc[1:]
    elif loc:
        where, loc = f"[{loc[0]}]", []  # an unknown section
    for part in loc:
        if isinstance(part, int):
            continue  # a position in a list: the key is what the user looks for
        key_path.append(str(part))
        if parent is None:
            continue
        owner, field = parent, parent.model_fields.get(str(part))
        if field is None:
            parent = owner  # unknown key: its siblings are the choices
            break
        parent = _model_of(field)
        if parent is None and get_origin(field.annotation) is dict and where.startswith("[") and "]" in where \
                and not where.startswith("[["):
            where, key_path = f"{where[:-1]}.{part}]", []  # [rules.severity] "X" = ..., as TOML writes it
    what = ".".join(_key_text(k) for k in key_path)
    if (env := from_env.get(tuple(error["loc"][:2]))) is not None:
        source = f"{source} (environment variable {env})"
    head = f"{source}: {where}" + (f" {what}" if what else "")
    kind = error["type"]
    if kind == "extra_forbidden":
        owner = parent or Config
        choices = list(owner.model_fields)
        close = difflib.get_close_matches(str(error["loc"][-1]), choices, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        noun = "section" if owner is Config else "key"
        return f"{head}: unknown {noun}{hint}, expected one of: {', '.join(choices)}"
    if kind in ("model_type", "model_attributes_type", "dict_type") and not key_path:
        return f"{head}: expected a table, got {_shown(error['input'])}"
    expected = _expected(field) if field is not None else error["msg"]
    if kind == "missing":
        return f"{head}: expected {expected}, got nothing (this key is required)"
    return f"{head}: expected {expected}, got {_shown(error['input'])}"


def _key_text(part: str) -> str:
    return part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else _shown(part)


def _model_of(field: FieldInfo | None) -> type[BaseModel] | None:
    if field is None:
        return None
    for candidate in (field.annotation, *get_args(field.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _expected(field: FieldInfo) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("expected") or field.description or "a valid value")
