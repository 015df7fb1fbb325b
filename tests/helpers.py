"""Shared helpers for the pipeline suites: a real platform in a temporary folder, and its reports.

A `Platform` is a configuration file, a spool and a database (SQLite in the folder, or the URL
given — the `db_url` fixture of tests/conftest_pg.py gives PostgreSQL too), with the partners
loaded and the generator's directory imported. Flows go through the real path
(`edi.worker.ingest_paths`, or the CLI); reports are read from the partner's `out/` folder and
from the database, and every one is validated against AIFE's official CPPStatut schema.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import itertools
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from lxml import etree
from sqlalchemy import select
from sqlmodel import SQLModel
from stdnum import luhn
from structlog.testing import capture_logs

from edi import config as config_mod
from edi import db, gen
from edi.db.models import Flow
from edi.spool import Spool
from edi.queries import flow_detail, report_contents
from edi.reports.statut import load_schema
from edi.route.directory import import_directory
from edi.worker import ingest_paths, prepare

DEMO = "DEMO"
PARTNERS = ({"app": DEMO, "name": "Opérateur de démonstration", "interfaces": ["FSO1100A", "FSO1106A", "FSO1110A"]},)
REJECTED_STATUS, PARTIAL_STATUS, RECEIVED_STATUS = "93", "96", "90"

_ids = itertools.count(1)


def new_flow_id(prefix: str = "T") -> str:
    """A fresh 25-character FLOWID ([A-Z0-9]) for a hand-made flow."""
    return f"{prefix}{next(_ids):0>{25 - len(prefix)}d}"


def flow_name(interface: str = "FSO1110A", app: str = DEMO, ext: str = "xml", flow_id: str | None = None) -> str:
    return f"{interface}_{app}_{flow_id or new_flow_id()}.{ext}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def certificate_of(data: bytes) -> str:
    """A deposit certificate as Chorus Pro prints it: base64 of the SHA-256 of the bytes."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def siret(prefix13: str) -> str:
    """A SIRET with a valid Luhn key."""
    return prefix13 + luhn.calc_check_digit(prefix13)


# ------------------------------------------------------------------ configuration


def _toml(value) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON strings, numbers and arrays are TOML too


def write_config(
    folder: Path,
    *,
    db_url: str | None = None,
    partners=PARTNERS,
    limits: dict | None = None,
    ej_patterns: dict | None = None,
) -> Path:
    """An `edi.toml` in `folder`: spool and database there (or `db_url`), the given partners."""
    url = db_url or f"sqlite:///{folder / 'edi.db'}"
    lines = [
        "[spool]", f"root = {_toml(str(folder / 'spool'))}",
        "[database]", f"url = {_toml(url)}",
        "[intake]", "settle_seconds = 0",
        "[logging]", 'format = "json"',
    ]
    if limits:
        lines.append("[limits]")
        lines += [f"{key} = {value}" for key, value in limits.items()]
    patterns = gen.EJ_PATTERNS if ej_patterns is None else ej_patterns
    lines.append("[directory]")
    lines.append("ej_patterns = { " + ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in patterns.items()) + " }")
    for p in partners:
        lines += ["[[partners]]", f"app = {_toml(p['app'])}", f"name = {_toml(p.get('name', p['app']))}",
                  f"interfaces = {_toml(list(p.get('interfaces', [])))}"]
        lines += [f"{key} = {_toml(p[key])}" for key in ("role", "sirets") if key in p]
    path = folder / "edi.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------ directory


MOA_ONLY_SIRET = siret("2059001290001")  # a structure that only receives works invoices


def write_directory(folder: Path, extra_structures: list[dict] = ()) -> tuple[Path, Path]:
    """The generator's directory files, plus extra structures (column name -> value)."""
    structures, services = gen.write_directory(folder)
    if extra_structures:
        with structures.open("a", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, delimiter=";", lineterminator="\n")
            for extra in extra_structures:
                row = {c: "false" for c in gen.STRUCTURE_COLUMNS}
                row.update(TypeIdentifiant="1", RaisonSociale="STRUCTURE DE TEST", StructureActive="true",
                           Adresse="1 rue de la Paix", CodePostal="75001", Ville="Paris", CodePays="FR",
                           LibellePays="FRANCE", NumTelephone="", Courriel="", ComplementAdresse1="",
                           ComplementAdresse2="")
                row.update(extra)
                writer.writerow([row[c] for c in gen.STRUCTURE_COLUMNS])
    return structures, services


# ------------------------------------------------------------------ platform


@dataclass
class Platform:
    root: Path
    config_path: Path
    cfg: config_mod.Config
    logs: list[dict] = field(default_factory=list)
    new_deliveries: list[Path] = field(default_factory=list)  # files the last `ingest` delivered

    @property
    def url(self) -> str:
        return self.cfg.database_url

    @property
    def spool(self) -> Spool:
        return Spool(self.cfg.spool_root)

    def ingest(self, path: Path, partner: str | None = None) -> Flow:
        """`edi ingest PATH [--partner]` through the worker; the log entries are kept in `logs`."""
        before = set(self.delivered())
        with capture_logs() as captured:
            flows = ingest_paths(self.cfg, [Path(path)], partner)
        self.logs.extend(captured)
        self.new_deliveries = sorted(set(self.delivered()) - before)
        assert len(flows) == 1, flows
        return flows[0]

    def drop(self, name: str, data: bytes, app: str = DEMO) -> Path:
        """Put a file in the partner's `in/` folder (as an upload would), without ingesting it."""
        inbox = self.spool.inbox(app)
        inbox.mkdir(parents=True, exist_ok=True)
        path = inbox / name
        path.write_bytes(data)
        return path

    def file(self, name: str, data: bytes) -> Path:
        """Write a flow file outside the spool (like a user's file given to `edi ingest`)."""
        folder = self.root / "incoming"
        folder.mkdir(exist_ok=True)
        path = folder / name
        path.write_bytes(data)
        return path

    def flow(self, flow_id: int) -> Flow:
        with db.session(self.url) as s:
            return s.get(Flow, flow_id)

    def detail(self, ref) -> dict:
        return flow_detail(self.url, str(ref))

    def out_files(self, app: str = DEMO) -> dict[str, bytes]:
        out = self.spool.outbox(app)
        if not out.is_dir():
            return {}
        return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if not p.name.startswith(".")}

    def stored_reports(self, flow_id: int) -> list[dict]:
        """Reports of a flow as the database holds them (filename, content)."""
        return report_contents(self.url, flow_id)

    def report(self, flow: Flow, kind_prefix: str = "CSO") -> tuple[str, etree._Element]:
        """The flow's report whose name starts with `kind_prefix`, checked against the schema; when
        the sender is a known partner, also checked to be the very file in its `out/`."""
        found = [r for r in self.stored_reports(flow.id) if r["filename"].startswith(kind_prefix)]
        assert len(found) == 1, [r["filename"] for r in self.stored_reports(flow.id)]
        name, content = found[0]["filename"], found[0]["content"]
        files = self.out_files(flow.app)
        if self.spool.outbox(flow.app).is_dir():
            assert files.get(name) == content, f"{name} absent de out/ ou différent de la base"
        return name, validate_report(content)

    def delivered(self) -> list[Path]:
        base = self.spool.root / "recipients"
        return sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else []

    def cli(self, *args: str, env: dict | None = None):
        """Run `edi --config <this platform's file> ARGS` in process (typer's CliRunner)."""
        from typer.testing import CliRunner

        from edi.cli import app

        try:
            with capture_logs() as captured:
                result = CliRunner().invoke(app, ["--config", str(self.config_path), *args], env=env)
        finally:
            structlog.reset_defaults()  # the CLI points the logger at the runner's (closed) stderr
        self.logs.extend(captured)
        return result

    def cli_json(self, *args: str):
        result = self.cli(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def validate_all_reports(self) -> int:
        """Every report file of every partner folder is valid against the CPPStatut schema."""
        count = 0
        partners_dir = self.spool.root / "partners"
        for path in sorted(partners_dir.glob("*/out/*.xml")):
            validate_report(path.read_bytes())
            count += 1
        return count

    def database_text(self) -> str:
        """Every row of every table, as text: to look for what must never be stored."""
        chunks = []
        with db.session(self.url) as s:
            for table in SQLModel.metadata.sorted_tables:
                for row in s.execute(select(table)).all():
                    chunks.append(" ".join(
                        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row))
        return "\n".join(chunks)


def make_platform(
    tmp_path: Path,
    *,
    db_url: str | None = None,
    partners=PARTNERS,
    limits: dict | None = None,
    environ: dict | None = None,
    extra_structures: list[dict] = (),
    directory: bool = True,
) -> Platform:
    """A ready platform in `tmp_path`: config, spool folders, schema, partners, directory."""
    structlog.reset_defaults()  # whatever an earlier CLI test pointed the logger at
    db.dispose_all()
    root = tmp_path / "platform"
    root.mkdir(parents=True, exist_ok=True)
    config_path = write_config(root, db_url=db_url, partners=partners, limits=limits)
    cfg = config_mod.load(config_path, environ=dict(environ or {}))
    with capture_logs():
        prepare(cfg)
    if directory:
        structures, services = write_directory(root / "directory", list(extra_structures))
        import_directory(cfg.database_url, structures, services)
    return Platform(root, config_path, cfg)


# ------------------------------------------------------------------ reports


def validate_report(xml: bytes) -> etree._Element:
    """Parse a report and assert it is valid against the official CPPStatutPivot_V1_19.xsd."""
    root = etree.fromstring(xml)
    schema = load_schema()
    assert schema.validate(root), f"rapport invalide : {schema.error_log}"
    return root


def flow_status(root: etree._Element) -> str:
    return root.findtext("CPPFluxStatuts/CPPFluxStatutUnitaire/DonneesStatut/IdStatut")


def error_lines(root: etree._Element) -> list[dict]:
    """The `LigneErreurDetail` of an integration report, as dicts of their fields."""
    out = []
    for item in root.iterfind("CPPFluxStatuts/CPPFluxStatutUnitaire/DonneesStatut/Details/LigneErreurDetail"):
        out.append({child.tag: child.text or "" for child in item})
    return out


def status_lines(root: etree._Element) -> list[dict]:
    """The `CPPFactureStatutUnitaire` of a processing report, flattened."""
    out = []
    for unit in root.iterfind("CPPFactureStatuts/CPPFactureStatutUnitaire"):
        line = {f"Debiteur/{c.tag}": c.text or "" for c in unit.find("Debiteur")}
        line.update({c.tag: c.text or "" for c in unit.find("DonneesStatut")})
        out.append(line)
    return out


def assert_irrecevable(platform: Platform, flow: Flow, code: str, original: bytes) -> list[dict]:
    """The whole contract of an irrecevable flow; returns the report's error lines."""
    assert flow.state == "IN_REJETE", (flow.state, flow.error_code)
    assert flow.error_code == code
    assert flow.accepted_count == 0
    name, root = platform.report(flow, "CSO")
    assert name.startswith("CSO") and name.endswith(".xml")
    assert flow_status(root) == REJECTED_STATUS
    lines = error_lines(root)
    assert any(line["NatureErreur"] == code and line["CodeErreur"] == code for line in lines), lines
    assert not [r for r in platform.stored_reports(flow.id) if r["filename"].startswith("FEN")]
    archive = Path(flow.archive_path)
    assert archive.is_file() and sha256(archive.read_bytes()) == sha256(original) == flow.sha256
    assert platform.new_deliveries == []
    assert not [i for i in platform.detail(flow.id)["invoices"] if i["accepted"] or i["deposit_no"]]
    assert any(e.get("event") == "flow_irrecevable" and e.get("code") == code and e.get("flow") == flow.id
               for e in platform.logs), platform.logs
    platform.validate_all_reports()
    return lines


# ------------------------------------------------------------------ building flows


def tar_gz(members: list[tuple[tarfile.TarInfo | str, bytes]]) -> bytes:
    """A .tar.gz in memory; a member given by name is a regular file with those bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member, data in members:
            info = tarfile.TarInfo(member) if isinstance(member, str) else member
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}


def generated(tmp_path: Path, interface: str, invoices: int, **kwargs) -> gen.GeneratedFlow:
    """A generator flow in its own folder (the generator also writes the directory files there)."""
    folder = tmp_path / f"gen-{next(_ids)}"
    return gen.generate(interface, invoices, folder, **kwargs)


def cpp_tree(data: bytes) -> etree._Element:
    """Parse a (trusted, generated) CPP flow to edit it."""
    return etree.fromstring(data)


def cpp_bytes(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def cpp_units(root: etree._Element) -> list[etree._Element]:
    return root.findall("CPPFactures/CPPFactureMixteUnitaire")


def set_routing(unit: etree._Element, *, siret_: str | None = None, code: str | None = "",
                ej: str | None = "") -> None:
    """Change the routing data of one CPP invoice: `None` removes the field, "" leaves it."""
    debtor = unit.find("Debiteur")
    if siret_ is not None:
        debtor.find("Identifiant").text = siret_
    if code != "":
        for tag in ("CodeService", "NomService"):
            old = debtor.find(tag)
            if old is not None:
                debtor.remove(old)
        if code is not None:
            element = etree.Element("CodeService")
            element.text = code
            anchor = debtor.find("Nom") if debtor.find("Nom") is not None else debtor.find("Identifiant")
            anchor.addnext(element)
    if ej != "":
        data = unit.find("DonneesFacture")
        old = data.find("Engagement")
        if old is not None:
            data.remove(old)
        if ej is not None:
            engagement = etree.Element("Engagement")
            etree.SubElement(engagement, "NumeroEngagement").text = ej
            data.find("Lignes").addprevious(engagement)
