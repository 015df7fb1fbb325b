"""Configuration: `config/edi.toml` (or `--config FILE` / `EDI_CONFIG`), overridable per key.

Every scalar key `[section] key` can be overridden by the environment variable
`EDI_<SECTION>_<KEY>` (upper case), e.g. `EDI_DATABASE_URL`, `EDI_LIMITS_MAX_FLOW_BYTES`.
Values from the environment are parsed as TOML literals when they can be (numbers, booleans,
inline tables), otherwise taken as strings. Relative paths are resolved from the directory
of the configuration file, so the platform runs the same from any working directory.
"""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG = Path("config/edi.toml")

DEFAULTS: dict = {
    "spool": {"root": "spool"},
    "database": {"url": "sqlite:///spool/edi.db"},
    "limits": {
        "max_flow_bytes": 1_073_741_824,  # 1 GB, the Chorus Pro EDI flow limit (reference §1.5)
        "max_file_bytes": 125_829_120,  # 120 MB per file inside a tar.gz (reference §1.5)
    },
    "directory": {"ej_patterns": {}},
    "intake": {"settle_seconds": 2.0, "poll_seconds": 1.0, "lease_seconds": 60},
    "workers": {"processes": 1},
    # invoice checks: pool size (0 = number of cores) and whether the EN 16931 schematron runs
    "validation": {"processes": 0, "schematron": True},
    # interfaces on which the French reform rules (BR-FR, Flux 2) also run; per-rule severity
    "rules": {"french": [], "severity": {}},
    "logging": {"format": "auto", "level": "info"},
    # embedded SFTP server (all keys: edi/ingest/sftp/server.py) and report retention in out/
    "sftp": {"enabled": True},
    "reports": {"retention_days": 7},
    "partners": [],
}


@dataclass
class Config:
    path: Path | None
    data: dict = field(default_factory=dict)

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
        return self.resolve(self.data["spool"]["root"])

    @property
    def database_url(self) -> str:
        url = self.data["database"]["url"]
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            url = prefix + str(self.resolve(url[len(prefix):]))
        return url

    @property
    def max_flow_bytes(self) -> int:
        return int(self.data["limits"]["max_flow_bytes"])

    @property
    def ej_patterns(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.data["directory"].get("ej_patterns") or {}).items()}


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_env_value(raw: str):
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict, environ) -> dict:
    for name, raw in environ.items():
        if not name.startswith("EDI_") or name == "EDI_CONFIG":
            continue
        rest = name[4:].lower()
        for section, values in data.items():
            if isinstance(values, dict) and rest.startswith(section + "_"):
                key = rest[len(section) + 1:]
                values[key] = _parse_env_value(raw)
                break
    return data


def load(path: str | Path | None = None, environ=None) -> Config:
    """Read the configuration file (if it exists) over the defaults, then the environment."""
    environ = os.environ if environ is None else environ
    chosen = path or environ.get("EDI_CONFIG")
    cfg_path = Path(chosen) if chosen else DEFAULT_CONFIG
    data = copy.deepcopy(DEFAULTS)
    if cfg_path.exists():
        with cfg_path.open("rb") as fh:
            data = _merge(data, tomllib.load(fh))
    elif chosen:
        raise FileNotFoundError(f"configuration file not found: {cfg_path}")
    data = _apply_env(data, environ)
    return Config(path=cfg_path.resolve() if cfg_path.exists() else None, data=data)


def of_context(ctx) -> Config:
    """The configuration of a CLI invocation: the root command loads it into `ctx.obj`; a
    sub-app run on its own (tests) loads the default one."""
    root = ctx.find_root()
    if not isinstance(root.obj, Config):
        root.obj = load()
    return root.obj
