"""Push delivery of reports (issue 4, point 6) to a second, real SFTP server.

The destination is another `SftpService` (the project's own server, on its own spool and
database) where the platform logs in as partner `DEST` with a key made by ssh-keygen and uploads
into `/in`. Reports are real `Report` rows written to `out/` by the outbox, then pushed by
`edi.reports.push` — from `push_pending`, the worker loop (`run_once`) or `edi reports resend`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from datetime import timezone
from pathlib import Path

import pytest
import structlog
from sqlmodel import select
from structlog.testing import capture_logs
from typer.testing import CliRunner

from edi import config as config_mod
from edi import db, partners
from edi.db.models import Report, ReportPush
from edi.ingest import intake
from edi.ingest.sftp.auth import load_host_key
from edi.ingest.sftp.server import SftpService
from edi.spool import Spool
from edi.reports import push
from edi.reports.outbox import deliver_pending
from edi.worker import prepare, run_once

# report files here are stand-in bytes: this suite tests their transport, not their content
pytestmark = pytest.mark.stand_in_reports
REPORT = "CSO1110A_AAA_" + "R" * 25 + ".xml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def client_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("pushkey") / "id_push"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edi-push", "-f", str(path)], check=True)
    return path


class Destination:
    """The partner's own SFTP server: account DEST, files arrive in its spool's DEST/in."""

    def __init__(self, root: Path, key: Path, port: int):
        self.root, self.port = root, port
        self.cfg = config_mod.from_data({
            "spool": {"root": str(root / "spool")},
            "database": {"url": f"sqlite:///{root / 'dest.db'}"},
            "sftp": {"host": "127.0.0.1", "port": port, "host_key": str(root / "host_key"),
                     "failed_login_delay": 0, "housekeeping_interval": 0.05},
            "reports": {"purge_interval": 0},
        })
        self.host_key = load_host_key(root / "host_key")
        partners.add(self.cfg.database_url, "DEST", "Destinataire", key.with_suffix(".pub"))
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{port} {self.host_key.get_name()} {self.host_key.get_base64()}\n")
        self.uploads: list[tuple[str, str, bytes]] = []
        self.lock = threading.Lock()
        self.service: SftpService | None = None

    def _uploaded(self, app, path):
        with self.lock:
            self.uploads.append((app, path.name, path.read_bytes()))

    def start(self) -> None:
        self.service = SftpService(self.cfg, on_upload=self._uploaded).start()

    def stop(self) -> None:
        if self.service:
            self.service.stop()
            self.service = None

    @property
    def inbox(self) -> Path:
        return self.root / "spool" / "partners" / "DEST" / "in"


@pytest.fixture
def site(tmp_path, client_key):
    """A platform with partner AAA (push to the destination) and BBB (no push), and the
    destination — not started: each test decides when it is up."""
    dest_root = tmp_path / "dest"
    dest_root.mkdir()
    dest = Destination(dest_root, client_key, free_port())
    made = []

    def _make(max_attempts: int = 5, backoff: float = 0.2, known_hosts: Path | None = None, url: str | None = None):
        root = tmp_path / "platform"
        root.mkdir(exist_ok=True)
        cfg_path = root / "edi.toml"
        cfg_path.write_text(
            f'[spool]\nroot = "{root / "spool"}"\n'
            f'[database]\nurl = "{url or "sqlite:///" + str(root / "edi.db")}"\n'
            f"[reports]\npush_max_attempts = {max_attempts}\npush_backoff_seconds = {backoff}\n"
            "push_backoff_max_seconds = 60\n"
            '[logging]\nformat = "json"\n'
            '[[partners]]\napp = "AAA"\nname = "Opérateur A"\n'
            f'push = {{ host = "127.0.0.1", port = {dest.port}, user = "DEST", key_file = "{client_key}", '
            f'known_hosts = "{known_hosts or dest.known_hosts}", path = "/in", timeout = 3 }}\n'
            '[[partners]]\napp = "BBB"\nname = "Opérateur B"\n',
            encoding="utf-8",
        )
        cfg = config_mod.load(cfg_path, environ={})
        prepare(cfg)
        made.append(cfg)
        return type("Site", (), {"cfg": cfg, "path": cfg_path, "url": cfg.database_url, "dest": dest,
                                 "spool": Spool(cfg.spool_root)})

    yield _make
    dest.stop()
    db.dispose_all()


def add_report(site, app: str = "AAA", name: str = REPORT, content: bytes | None = None) -> Report:
    """A report as the pipeline leaves it: a row, then written to out/ by the outbox."""
    content = content or f"<CPPStatut Version='V1_19'><IdFlux>{name}</IdFlux></CPPStatut>\n".encode()
    with db.session(site.url) as s:
        report = Report(app=app, kind="integration", filename=name, content=content)
        s.add(report)
        s.commit()
        s.refresh(report)
    deliver_pending(site.url, site.spool)
    assert (site.spool.outbox(app) / name).read_bytes() == content
    return report


def push_row(site, report_id: int) -> ReportPush:
    with db.session(site.url) as s:
        return s.exec(select(ReportPush).where(ReportPush.report_id == report_id)).one()


def history(row) -> list[dict]:
    return [json.loads(line) for line in row.history.splitlines()]


def cli(site, *args):
    from edi.cli import app

    try:
        with capture_logs():
            return CliRunner().invoke(app, ["--config", str(site.path), *args])
    finally:
        structlog.reset_defaults()


def wait_until_due(row, margin: float = 0.05) -> None:
    due = row.next_at.replace(tzinfo=timezone.utc) if row.next_at.tzinfo is None else row.next_at
    time.sleep(max(0.0, due.timestamp() - time.time()) + margin)


# --- tests -----------------------------------------------------------------------------------


def test_retry_with_backoff_until_destination_is_up_then_delivered_once(site):
    # backoff of 1 s: long enough that "not due yet" holds on a loaded CI machine
    s = site(max_attempts=5, backoff=1.0)
    report = add_report(s)
    with capture_logs() as logs:
        assert push.push_pending(s.cfg) == 0  # destination down: connection refused
    row = push_row(s, report.id)
    assert (row.state, row.attempts) == (push.RETRY, 1) and row.last_error
    assert push.push_pending(s.cfg) == 0  # not due yet: no new attempt
    assert push_row(s, report.id).attempts == 1
    wait_until_due(row)
    assert push.push_pending(s.cfg) == 0
    row2 = push_row(s, report.id)
    assert (row2.state, row2.attempts) == (push.RETRY, 2)
    first, second = history(row2)
    assert not first["ok"] and not second["ok"] and first["error"]
    # exponential: the second wait is twice the first (1 s, then 2 s)
    waited = row2.next_at.timestamp() - row.next_at.timestamp()
    assert waited >= 2.0
    s.dest.start()
    wait_until_due(row2)
    with capture_logs() as logs2:
        assert push.push_pending(s.cfg) == 1
    row3 = push_row(s, report.id)
    assert (row3.state, row3.attempts, row3.last_error) == (push.PUSHED, 3, None) and row3.pushed_at
    assert [h["ok"] for h in history(row3)] == [False, False, True]
    content = (s.spool.outbox("AAA") / REPORT).read_bytes()
    assert s.dest.uploads == [("DEST", REPORT, content)]
    assert sorted(p.name for p in s.dest.inbox.iterdir()) == [REPORT]  # no temporary left
    assert push.push_pending(s.cfg) == 0  # delivered: never again
    assert len(s.dest.uploads) == 1
    failed = [e for e in logs if e["event"] == "report_push_failed"]
    assert failed and failed[0]["file"] == REPORT and failed[0]["attempt"] == 1 and failed[0]["retry_in"] == 1.0
    assert [e["attempt"] for e in logs2 if e["event"] == "report_pushed"] == [3]


def test_gives_up_then_list_failed_and_resend(site, db_url):
    """Also on PostgreSQL: the claim, the backoff times and the listing are plain SQL."""
    s = site(max_attempts=2, backoff=0.05, url=db_url)
    pushed = add_report(s)
    other = add_report(s, app="BBB", name="CSO1110A_BBB_" + "B" * 25 + ".xml")
    for _ in range(2):
        push.push_pending(s.cfg)
        time.sleep(0.12)
    assert push.push_pending(s.cfg) == 0
    row = push_row(s, pushed.id)
    assert (row.state, row.attempts, row.next_at) == (push.FAILED, 2, None)
    result = cli(s, "reports", "list", "--failed", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [(r["file"], r["partner"], r["push"]["state"], r["push"]["attempts"]) for r in listed] == \
        [(REPORT, "AAA", push.FAILED, 2)]
    assert listed[0]["written"] and listed[0]["retrieved"] is None and listed[0]["push"]["last_error"]
    everything = json.loads(cli(s, "reports", "list", "--json").stdout)
    assert {r["file"]: r["push"] is None for r in everything} == {REPORT: False, other.filename: True}
    text = cli(s, "reports", "list", "--failed")
    assert REPORT in text.stdout and "échec définitif" in text.stdout and other.filename not in text.stdout
    # still down: resend fails visibly, with a new budget
    result = cli(s, "reports", "resend", REPORT)
    assert result.exit_code == 1 and "échec" in result.output
    assert (push_row(s, pushed.id).state, push_row(s, pushed.id).attempts) == (push.RETRY, 1)
    s.dest.start()
    result = cli(s, "reports", "resend", str(pushed.id))
    assert result.exit_code == 0, result.output
    assert "envoyé" in result.stdout
    assert [(a, n) for a, n, _ in s.dest.uploads] == [("DEST", REPORT)]
    assert json.loads(cli(s, "reports", "list", "--failed", "--json").stdout) == []
    events = [h.get("event") or h["ok"] for h in history(push_row(s, pushed.id))]
    assert events == [False, False, "resend", False, "resend", True]
    # a partner without push: resend puts a deleted file back into out/
    (s.spool.outbox("BBB") / other.filename).unlink()
    result = cli(s, "reports", "resend", other.filename)
    assert result.exit_code == 0 and "de nouveau disponible" in result.stdout
    assert (s.spool.outbox("BBB") / other.filename).read_bytes() == other.content
    assert cli(s, "reports", "resend", "NOPE.xml").exit_code == 2


def test_worker_round_pushes_written_reports(site):
    s = site()
    s.dest.start()
    with db.session(s.url) as sess:
        sess.add(Report(app="AAA", kind="integration", filename=REPORT, content=b"<CPPStatut/>"))
        sess.commit()
    run_once(s.cfg, s.spool, intake.Readiness(0))  # writes out/, then pushes
    assert (s.spool.outbox("AAA") / REPORT).is_file()
    assert s.dest.uploads == [("DEST", REPORT, b"<CPPStatut/>")]
    run_once(s.cfg, s.spool, intake.Readiness(0))
    assert len(s.dest.uploads) == 1


def test_already_present_counts_once_and_a_different_file_is_not_overwritten(site):
    s = site(max_attempts=3)
    s.dest.start()
    same = add_report(s, content=b"<a/>")
    s.dest.inbox.mkdir(parents=True, exist_ok=True)
    (s.dest.inbox / REPORT).write_bytes(b"<a/>")  # delivered before, its answer lost
    assert push.push_pending(s.cfg) == 1
    assert history(push_row(s, same.id))[-1]["result"] == "already_present" and s.dest.uploads == []
    name = "FEN1200A_AAA_" + "X" * 25 + ".xml"
    clash = add_report(s, name=name, content=b"<new>longer</new>")
    (s.dest.inbox / name).write_bytes(b"<old/>")
    assert push.push_pending(s.cfg) == 0
    row = push_row(s, clash.id)
    assert row.state == push.RETRY and "existe déjà" in row.last_error
    assert (s.dest.inbox / name).read_bytes() == b"<old/>"


def test_unknown_host_key_is_refused(site, tmp_path):
    other = load_host_key(tmp_path / "other_key")
    wrong = tmp_path / "wrong_known_hosts"
    s = site(known_hosts=wrong)
    wrong.write_text(f"[127.0.0.1]:{s.dest.port} {other.get_name()} {other.get_base64()}\n")
    s.dest.start()
    report = add_report(s)
    assert push.push_pending(s.cfg) == 0
    row = push_row(s, report.id)
    assert row.state == push.RETRY and "key" in row.last_error.lower()
    assert s.dest.uploads == [] and not (s.dest.inbox.is_dir() and any(s.dest.inbox.iterdir()))


def test_destination_config_is_checked():
    """An incomplete `push` table is refused when the configuration is loaded, naming the key."""
    with pytest.raises(config_mod.ConfigError, match=r'\[\[partners\]\] #1 \(app = "AAA"\) push\.user: expected'):
        config_mod.from_data({"partners": [{"app": "AAA", "push": {"host": "h"}}]})
    cfg = config_mod.from_data({"partners": [
        {"app": "AAA", "push": {"host": "h", "user": "u", "key_file": "k", "known_hosts": "kh", "path": "in/"}},
        {"app": "BBB"}]})
    (dest,) = push.destinations(cfg).values()
    assert (dest.app, dest.port, dest.path, dest.timeout, dest.label) == ("AAA", 22, "/in", 10.0, "u@h:22/in")
    assert [push.backoff(n, 30, 100) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]
