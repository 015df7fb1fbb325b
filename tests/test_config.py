"""Typed settings (issue 7, point 1): every key declared once, checked once, before anything.

A bad value, an unknown key, a missing required key or a bad `EDI_*` override stops every
command with exit code 2 and one line naming the file, the section, the key, what was expected
and what was found — and nothing is touched: no database, no Flow row, no archive.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from sqlmodel import func, select

from edi import config as config_mod
from edi import db
from edi.db.models import Flow
from tests.helpers import flow_name, make_platform

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "edi.toml"
EDI = Path(sys.executable).parent / "edi"  # the console script pyproject declares

#: keys the shipped file sets to a sample value on purpose (marked "sample" there)
SAMPLES = {("directory", "ej_patterns")}


# ------------------------------------------------------------------ the shipped file


def _blocks(text: str) -> dict[str, str]:
    """The text under each `[section]` / `[[section]]` header (comments included)."""
    out, name = {}, ""
    for line in text.splitlines():
        header = re.match(r"^\[\[?([a-z.]+)\]\]?", line)
        if header:
            name = header.group(1)
        out[name] = out.get(name, "") + line + "\n"
    return out


def test_shipped_file_sets_only_declared_defaults():
    data = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    defaults = config_mod.Config()
    for section, values in data.items():
        if section == "partners":
            continue  # a sample partner
        for key, value in values.items():
            if (section, key) in SAMPLES:
                continue
            declared = getattr(getattr(defaults, section), key)
            assert value == declared and type(value) is type(declared), (
                f"config/edi.toml: [{section}] {key} = {value!r}, but edi/config.py declares {declared!r}")
    assert config_mod.load(SHIPPED, environ={}).intake.lease_seconds == 600.0


def test_every_declared_key_is_documented_in_the_shipped_file():
    blocks = _blocks(SHIPPED.read_text(encoding="utf-8"))
    declared = {name: model for name, model in config_mod.SECTIONS.items()}
    declared["partners"] = config_mod.PartnerSettings
    for section, model in declared.items():
        for key in model.model_fields:
            shown = blocks.get(section, "") + blocks.get(f"{section}.{key}", "")  # or as its own [table]
            assert re.search(rf"^(#?\s*{key} = |\[{section}\.{key}\])", shown, re.M), (
                f"[{section}] {key} is not shown in config/edi.toml")
    for key in config_mod.PushSettings.model_fields:  # inside the commented push = { ... }
        assert re.search(rf"\b{key} = ", blocks["partners"]), f"push.{key} is not shown in config/edi.toml"


def test_commented_values_are_the_declared_defaults():
    """`# key = value` lines (keys one may uncomment) show the real defaults, in every section."""
    blocks = _blocks(SHIPPED.read_text(encoding="utf-8"))
    defaults = {name: model() for name, model in config_mod.SECTIONS.items()}
    checked = 0
    for section, text in blocks.items():
        for line in text.splitlines():
            m = re.match(r"^#\s*([a-z_]+) = (.*?)(\s+#.*)?$", line)
            if not m or section not in ("partners", *defaults):
                continue
            try:
                value = tomllib.loads(f"v = {m.group(2)}")["v"]
            except tomllib.TOMLDecodeError:
                continue  # the multi-line push = { ... } example
            key = m.group(1)
            if section == "partners":
                model = config_mod.PartnerSettings if key in config_mod.PartnerSettings.model_fields \
                    else config_mod.PushSettings
                declared = model.model_fields[key].default
            else:
                declared = getattr(defaults[section], key)
            assert value == declared and type(value) is type(declared), (
                f"config/edi.toml: [{section}] # {key} = {value!r}, but edi/config.py declares {declared!r}")
            checked += 1
    assert checked >= 25  # sftp, reports, partners and push keys


def test_every_key_has_a_doc_and_an_expectation():
    models = [*config_mod.SECTIONS.values(), config_mod.PartnerSettings, config_mod.PushSettings]
    for model in models:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}: no doc"
            assert field.json_schema_extra["expected"], f"{model.__name__}.{name}: no expectation"


# ------------------------------------------------------------------ overrides


def test_environment_overrides_are_typed_like_the_file():
    cfg = config_mod.load(SHIPPED, environ={
        "EDI_LIMITS_MAX_FLOW_BYTES": "100", "EDI_SPOOL_ROOT": "2024", "EDI_LOGGING_FORMAT": "json",
        "EDI_VALIDATION_SCHEMATRON": "false", "EDI_RULES_SEVERITY": '{ "PLT-13" = "fatal" }',
        "EDI_TEST_CRASH_AT": "nowhere",  # not a setting: left alone
    })
    assert cfg.limits.max_flow_bytes == 100 and cfg.spool.root == "2024" and cfg.logging.format == "json"
    assert cfg.validation.schematron is False and cfg.rules.severity == {"PLT-13": "fatal"}


def test_missing_file_named_on_the_command_line(tmp_path):
    with pytest.raises(config_mod.ConfigError, match=r"nope\.toml: configuration file not found"):
        config_mod.load(tmp_path / "nope.toml", environ={})


def test_broken_toml_is_one_line(tmp_path):
    path = tmp_path / "edi.toml"
    path.write_text("[limits\n", encoding="utf-8")
    with pytest.raises(config_mod.ConfigError, match=r"edi\.toml: not valid TOML: .*line 1") as info:
        config_mod.load(path, environ={})
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ refused through the CLI, nothing touched


def _insert(after: str, text: str):
    return lambda toml: toml.replace(after, after + "\n" + text, 1)


def _append(text: str):
    return lambda toml: toml + "\n" + text + "\n"


BAD = {
    "max_flow_bytes": (_append('[limits]\nmax_flow_bytes = "big"'), {},
                       '[limits] max_flow_bytes: expected a whole number of bytes, got "big"'),
    "lease_seconds": (_insert("settle_seconds = 0", 'lease_seconds = "ten"'), {},
                      '[intake] lease_seconds: expected a number of seconds above 0, got "ten"'),
    "partner_without_app": (_append('[[partners]]\nname = "Sans code"'), {},
                            "[[partners]] #2 app: expected an application code (3 to 8 upper-case letters "
                            "or digits), got nothing (this key is required)"),
    "severity_value": (_append('[rules.severity]\n"BR-CO-15" = "loud"'), {},
                       '[rules.severity] BR-CO-15: expected "fatal", "warning" or "off", got "loud"'),
    "unknown_key": (lambda toml: toml.replace("settle_seconds = 0", "settle_second = 0"), {},
                    "[intake] settle_second: unknown key (did you mean settle_seconds?), expected one of: "
                    "settle_seconds, poll_seconds, lease_seconds"),
    "env_override": (lambda toml: toml, {"EDI_LIMITS_MAX_FILE_BYTES": "huge"},
                     '(environment variable EDI_LIMITS_MAX_FILE_BYTES): [limits] max_file_bytes: expected a '
                     'whole number of bytes, got "huge"'),
}


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _flow_rows(platform) -> int:
    with db.session(platform.url) as s:
        return s.exec(select(func.count()).select_from(Flow)).one()


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_configuration_stops_ingest_before_anything(tmp_path, case):
    transform, env, expected = BAD[case]
    platform = make_platform(tmp_path, directory=False)
    flow = platform.root / "drop" / flow_name("FSO1110A")
    flow.parent.mkdir()
    flow.write_bytes(b"<CPPFactureMixte/>")
    good = platform.config_path.read_text(encoding="utf-8")
    platform.config_path.write_text(transform(good), encoding="utf-8")
    before = _snapshot(platform.root)

    result = platform.cli("ingest", str(flow), env=env)

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == f"{platform.config_path}{' ' if env else ': '}{expected}\n"
    after = _snapshot(platform.root)
    assert after == before  # no archive, nothing moved or written, database file unchanged
    assert _flow_rows(platform) == 0

    result = platform.cli("config", "show", env=env)  # every command refuses it the same way
    assert (result.exit_code, result.stderr.count("\n")) == (2, 1) and expected in result.stderr
    db.dispose_all()


def _project(tmp_path: Path, extra: str = "") -> tuple[Path, Path]:
    """A fresh project: config/edi.toml with relative paths (spool/, spool/edi.db) and a flow."""
    (tmp_path / "config").mkdir()
    config = tmp_path / "config" / "edi.toml"
    config.write_text('[[partners]]\napp = "DEMO"\n' + extra, encoding="utf-8")
    flow = tmp_path / flow_name("FSO1110A")
    flow.write_bytes(b"<CPPFactureMixte/>")
    return config, flow


def _run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EDI_")}
    return subprocess.run([str(EDI), *args], cwd=cwd, capture_output=True, text=True, encoding="utf-8",
                          env={**environ, **(env or {})}, timeout=120)


def test_fresh_project_with_a_bad_configuration_gets_no_database(tmp_path):
    config, flow = _project(tmp_path, '[limits]\nmax_flow_bytes = "big"\n')
    done = _run("ingest", str(flow), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == 'config/edi.toml: [limits] max_flow_bytes: expected a whole number of bytes, got "big"\n'
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == sorted([
        "config", "config/edi.toml", flow.name])  # no spool/, no edi.db, the flow where it was


def test_fresh_project_with_a_good_configuration_does_get_one(tmp_path):
    """The same run with a sound file writes the database and archives the flow (the test above
    would see it)."""
    config, flow = _project(tmp_path)
    done = _run("ingest", str(flow), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "spool" / "edi.db").is_file()
    (archived,) = (tmp_path / "spool" / "archive").rglob("*.xml")
    assert archived.name.endswith(flow.name) and archived.read_bytes() == flow.read_bytes()
    db.dispose_all()


def test_config_show_json_gives_typed_values(tmp_path):
    config, _ = _project(tmp_path, '[intake]\nlease_seconds = 30\n')
    done = _run("config", "show", "--json", cwd=tmp_path, env={"EDI_LIMITS_MAX_FLOW_BYTES": "100"})
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["intake"]["lease_seconds"] == 30.0 and shown["limits"]["max_flow_bytes"] == 100
    assert shown["reports"]["retention_days"] == 7.0 and shown["sftp"]["port"] == 2222
    assert shown["partners"][0]["app"] == "DEMO" and shown["partners"][0]["role"] == "sender"
    assert shown["_resolved"]["database_url"] == f"sqlite:///{tmp_path / 'spool' / 'edi.db'}"
    text = _run("config", "show", cwd=tmp_path)
    assert text.returncode == 0 and "  lease_seconds = 30.0" in text.stdout and "[validation]" in text.stdout
