"""SFTP drop box (issue 4): real OpenSSH `sftp` and paramiko clients against `SftpService`.

Every test starts its own server on a free port, with its spool and SQLite database in a tmp
dir. Callbacks stand for the pipeline: they record what the server handed over.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paramiko
import pytest
import structlog
from sqlmodel import select
from structlog.testing import capture_logs
from typer.testing import CliRunner

from edi import config as config_mod
from edi import db, partners
from edi.db.models import Report, ReportDownload, ReportPurge
from edi.ingest.sftp import server as sftp_mod
from edi.ingest.sftp.server import SftpService
from edi.reports import retention

# report files here are stand-in bytes: this suite tests their transport, not their content
pytestmark = pytest.mark.stand_in_reports
SFTP_BIN = shutil.which("sftp")
FLOW_A = "FSO1110A_AAA_" + "A" * 25 + ".xml"
FLOW_B = "FSO1110A_BBB_" + "B" * 25 + ".xml"


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Client key pairs made by ssh-keygen: A's, B's, and one nobody registered."""
    folder = tmp_path_factory.mktemp("keys")
    out = {}
    for who in ("a", "b", "stranger"):
        path = folder / f"id_{who}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", who, "-f", str(path)], check=True)
        out[who] = path
    return out


def make_cfg(tmp_path: Path, retention_days: float = 7, partners: list | None = None, **sftp) -> config_mod.Config:
    return config_mod.from_data({
        "spool": {"root": str(tmp_path / "spool")},
        "database": {"url": f"sqlite:///{tmp_path / 'edi.db'}"},
        "limits": {"max_flow_bytes": 64 * 1024},
        "sftp": {"host": "127.0.0.1", "port": 0, "host_key": str(tmp_path / "host_key"),
                 "failed_login_delay": 0, "housekeeping_interval": 0.05, **sftp},
        "reports": {"purge_interval": 0, "retention_days": retention_days},
        "partners": partners or [],
    })


class Recorder:
    def __init__(self):
        self.uploads: list[tuple[str, Path, bytes]] = []
        self.oversize: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()

    def on_upload(self, app, path):
        with self.lock:
            self.uploads.append((app, path, path.read_bytes()))

    def on_oversize(self, app, name, size):
        with self.lock:
            self.oversize.append((app, name, size))


@pytest.fixture
def start(tmp_path, keys):
    """Start a server with `[sftp]` settings, with partners AAA and BBB (one key each)."""
    services = []

    def _start(**settings):
        cfg = make_cfg(tmp_path, **settings)
        url = cfg.database_url
        partners.add(url, "AAA", "Opérateur A", keys["a"].with_suffix(".pub"))
        partners.add(url, "BBB", "Opérateur B", keys["b"].with_suffix(".pub"), ["FSO1110A"])
        rec = Recorder()
        service = SftpService(cfg, on_upload=rec.on_upload, on_oversize=rec.on_oversize).start()
        services.append(service)
        known = tmp_path / "known_hosts"
        hk = service.host_key
        known.write_text(f"[127.0.0.1]:{service.port} {hk.get_name()} {hk.get_base64()}\n")
        return type("Env", (), {"cfg": cfg, "url": url, "service": service, "rec": rec, "known": known,
                               "spool": cfg.spool_root / "partners", "tmp": tmp_path})

    yield _start
    for service in services:
        service.stop()
    db.dispose_all()


@pytest.fixture
def env(start):
    return start()


def connect(env, who: str, keys, app: str | None = None) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    transport = paramiko.Transport(("127.0.0.1", env.service.port))
    transport.start_client(timeout=5)
    assert transport.get_remote_server_key().asbytes() == env.service.host_key.asbytes()
    key = paramiko.Ed25519Key.from_private_key_file(str(keys[who]))
    transport.auth_publickey(app or who.upper() * 3, key)
    return transport, paramiko.SFTPClient.from_transport(transport)


def run_sftp(env, key: Path, app: str, commands: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SFTP_BIN, "-b", "-", "-i", str(key), "-P", str(env.service.port),
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={env.known}", "-o", "BatchMode=yes",
         "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5", "-F", "/dev/null", f"{app}@127.0.0.1"],
        input=commands, capture_output=True, text=True, timeout=timeout,
    )


def wait_for(predicate, timeout: float = 5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def visible(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.is_dir() else []


# --- OpenSSH client --------------------------------------------------------------------------


@pytest.mark.skipif(SFTP_BIN is None, reason="OpenSSH sftp client not installed")
def test_openssh_upload_then_report_download(env, keys, tmp_path):
    """Upload a flow, the 'pipeline' writes its report into out/, the partner downloads it."""
    report_name = "CSO1110A_AAA_" + "A" * 25 + ".xml"
    report_bytes = b"<CPPStatut Version='V1_19'>rapport</CPPStatut>\n"

    def pipeline(app, path):
        env.rec.on_upload(app, path)
        (env.spool / app / "out" / report_name).write_bytes(report_bytes)
        with db.session(env.url) as s:
            s.add(Report(app=app, kind="integration", filename=report_name, content=report_bytes))
            s.commit()

    env.service.on_upload = pipeline
    payload = os.urandom(40_000)
    local = tmp_path / FLOW_A
    local.write_bytes(payload)
    got = tmp_path / "got.xml"
    res = run_sftp(env, keys["a"], "AAA", f"put {local} /in/{FLOW_A}\nls /out\nget /out/{report_name} {got}\n")
    assert res.returncode == 0, res.stderr
    assert [(a, p.name, c) for a, p, c in env.rec.uploads] == [("AAA", FLOW_A, payload)]
    assert env.rec.uploads[0][1] == env.spool / "AAA" / "in" / FLOW_A
    assert report_name in res.stdout
    assert got.read_bytes() == report_bytes
    with db.session(env.url) as s:
        rep = s.exec(select(Report).where(Report.filename == report_name)).one()
        dl = s.exec(select(ReportDownload)).all()
    assert rep.retrieved_at is not None
    assert [(d.app, d.filename, d.bytes, d.complete) for d in dl] == [("AAA", report_name, len(report_bytes), True)]
    assert dl[0].session and dl[0].address == "127.0.0.1"
    # /in is write-only, /out read-only
    res = run_sftp(env, keys["a"], "AAA", f"get /in/{FLOW_A} {tmp_path / 'x'}\n")
    assert res.returncode != 0
    res = run_sftp(env, keys["a"], "AAA", f"put {local} /out/new.xml\n")
    assert res.returncode != 0 and not (env.spool / "AAA" / "out" / "new.xml").exists()


@pytest.mark.skipif(SFTP_BIN is None, reason="OpenSSH sftp client not installed")
def test_openssh_refuses_wrong_key_and_disabled_partner(env, keys, tmp_path):
    local = tmp_path / FLOW_A
    local.write_bytes(b"<x/>")
    res = run_sftp(env, keys["stranger"], "AAA", f"put {local} /in/{FLOW_A}\n")
    assert res.returncode != 0 and "Permission denied" in res.stderr
    res = run_sftp(env, keys["b"], "AAA", f"put {local} /in/{FLOW_A}\n")  # B's key is not A's
    assert res.returncode != 0
    partners.disable(env.url, "AAA")
    res = run_sftp(env, keys["a"], "AAA", f"put {local} /in/{FLOW_A}\n")
    assert res.returncode != 0 and "Permission denied" in res.stderr
    assert env.rec.uploads == [] and visible(env.spool / "AAA" / "in") == []
    partners.enable(env.url, "AAA")
    assert run_sftp(env, keys["a"], "AAA", f"put {local} /in/{FLOW_A}\n").returncode == 0


@pytest.mark.skipif(SFTP_BIN is None, reason="OpenSSH sftp client not installed")
def test_openssh_temp_name_then_rename_is_handed_over_once(env, keys, tmp_path):
    local = tmp_path / "flow.xml"
    local.write_bytes(b"<flux/>" * 100)
    res = run_sftp(env, keys["a"], "AAA", f"put {local} /in/{FLOW_A}.filepart\nrename /in/{FLOW_A}.filepart /in/{FLOW_A}\n")
    assert res.returncode == 0, res.stderr
    assert [(a, p.name, c) for a, p, c in env.rec.uploads] == [("AAA", FLOW_A, local.read_bytes())]
    assert visible(env.spool / "AAA" / "in") == [FLOW_A]


# --- paramiko client -------------------------------------------------------------------------


def test_paramiko_upload_download_delete(env, keys):
    payload = os.urandom(50_000)
    (env.spool / "AAA" / "out").mkdir(parents=True, exist_ok=True)
    (env.spool / "AAA" / "out" / "R1.xml").write_bytes(b"report-1")
    t, c = connect(env, "a", keys)
    try:
        with c.open(f"/in/{FLOW_A}", "wb") as fh:
            fh.write(payload)
        assert sorted(c.listdir("/")) == ["in", "out"]
        assert c.listdir("/in") == [FLOW_A]
        assert c.normalize(".") == "/"
        with c.open("out/R1.xml", "rb") as fh:
            assert fh.read() == b"report-1"
        c.remove("/out/R1.xml")
        assert c.listdir("/out") == []
        with pytest.raises(IOError):
            c.remove(f"/in/{FLOW_A}")  # /in: upload, rename, list only
        with pytest.raises(IOError):
            c.open(f"/in/{FLOW_A}", "wb")  # never overwritten
    finally:
        t.close()
    assert [(a, p.name, data) for a, p, data in env.rec.uploads] == [("AAA", FLOW_A, payload)]
    assert (env.spool / "AAA" / "in" / FLOW_A).read_bytes() == payload


def test_paramiko_wrong_key_and_unknown_partner_refused(env, keys):
    for who, app in (("stranger", "AAA"), ("a", "BBB"), ("a", "ZZZ"), ("a", "../AAA")):
        with pytest.raises(paramiko.AuthenticationException):
            connect(env, who, keys, app)


def test_partner_cannot_reach_another_partner(env, keys):
    out_b = env.spool / "BBB" / "out"
    out_b.mkdir(parents=True, exist_ok=True)
    (out_b / "SECRET.xml").write_bytes(b"B only")
    t, c = connect(env, "a", keys)
    try:
        for path in ("/BBB", "/BBB/out", "../BBB/out", "/../BBB/out", "/in/../../BBB/out",
                     str(out_b), "/partners/BBB/out"):
            with pytest.raises(IOError):
                c.listdir(path)
        for path in ("/../BBB/out/SECRET.xml", "../../BBB/out/SECRET.xml", "/out/../../BBB/out/SECRET.xml",
                     str(out_b / "SECRET.xml"), "/out/..\\..\\BBB\\out\\SECRET.xml"):
            with pytest.raises(IOError):
                c.open(path, "rb").read()
        for path in ("/../BBB/in/X.xml", "/in/../../BBB/in/X.xml", str(env.spool / "BBB" / "in" / "X.xml")):
            with pytest.raises(IOError):
                with c.open(path, "wb") as fh:
                    fh.write(b"intrusion")
        with pytest.raises(IOError):
            c.rename("/out/../../BBB/out/SECRET.xml", "/in/stolen.xml")
        assert "SECRET.xml" not in c.listdir("/out")
    finally:
        t.close()
    assert visible(out_b) == ["SECRET.xml"] and (out_b / "SECRET.xml").read_bytes() == b"B only"
    assert visible(env.spool / "BBB" / "in") == [] and env.rec.uploads == []


def test_traversal_names_and_symlinks_refused(env, keys, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"host secret")
    out_a = env.spool / "AAA" / "out"
    in_a = env.spool / "AAA" / "in"
    out_a.mkdir(parents=True, exist_ok=True)
    in_a.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, out_a / "link.xml")  # planted on disk
    os.symlink(outside, in_a / "planted.xml")
    t, c = connect(env, "a", keys)
    try:
        assert c.listdir("/out") == []  # the link is not shown ...
        with pytest.raises(IOError):
            c.open("/out/link.xml", "rb").read()  # ... nor followed
        with pytest.raises(IOError):
            c.stat("/out/link.xml")
        with pytest.raises(IOError):
            with c.open("/in/planted.xml", "wb") as fh:  # never written through
                fh.write(b"overwrite")
        with pytest.raises(IOError):
            c.symlink("/etc/passwd", "/in/evil.xml")
        with pytest.raises(IOError):
            c.readlink("/out/link.xml")
        for bad in ("/in/bad\nname.xml", "/in/bad\x00.xml", "/in/.hidden.xml", "/in/a\\b.xml", "/in/..",
                    "/etc/passwd", "/in/sub/x.xml"):
            with pytest.raises(IOError):
                with c.open(bad, "wb") as fh:
                    fh.write(b"x")
        for op in (lambda: c.mkdir("/in/dir"), lambda: c.rmdir("/in"), lambda: c.chmod("/in", 0o777),
                   lambda: c.utime("/in", (0, 0)), lambda: c.rename("/in", "/out/in")):
            with pytest.raises(IOError):
                op()
    finally:
        t.close()
    assert outside.read_bytes() == b"host secret"
    assert sorted(os.listdir(in_a)) == ["planted.xml"] and env.rec.uploads == []

    # the whole out/ replaced by a link to B's folder: refused, not followed
    out_b = env.spool / "BBB" / "out"
    out_b.mkdir(parents=True, exist_ok=True)
    (out_b / "SECRET.xml").write_bytes(b"B only")
    shutil.rmtree(out_a)
    os.symlink(out_b, out_a)
    t, c = connect(env, "a", keys)
    try:
        with pytest.raises(IOError):
            c.listdir("/out")
        with pytest.raises(IOError):
            c.open("/out/SECRET.xml", "rb").read()
    finally:
        t.close()


def test_interrupted_upload_never_placed_and_cleaned_up(start, keys):
    env = start(partial_max_age=0.3)
    in_a = env.spool / "AAA" / "in"
    t, c = connect(env, "a", keys)
    fh = c.open(f"/in/{FLOW_A}", "wb")
    fh.write(b"<flux>" + b"x" * 20_000)
    fh.flush()
    assert wait_for(lambda: any(n.endswith(".part") for n in visible(in_a)))
    t.sock.shutdown(socket.SHUT_RDWR)  # connection dropped: no CLOSE ever sent
    t.sock.close()
    assert wait_for(lambda: not env.service.active_partials)
    assert FLOW_A not in visible(in_a)
    assert wait_for(lambda: visible(in_a) == [], timeout=5)  # the partial is gone after the delay
    assert env.rec.uploads == []


def test_partial_kept_until_delay(env, keys):
    """With a long delay the abandoned partial stays (hidden) until cleanup_partials runs."""
    in_a = env.spool / "AAA" / "in"
    t, c = connect(env, "a", keys)
    fh = c.open(f"/in/{FLOW_A}", "wb")
    fh.write(b"half")
    fh.flush()
    t.close()
    assert wait_for(lambda: not env.service.active_partials)
    time.sleep(0.2)
    names = visible(in_a)
    assert len(names) == 1 and names[0].startswith(".upload-") and names[0].endswith(".part")
    assert env.service.cleanup_partials(max_age=0) == [in_a / names[0]]
    assert visible(in_a) == [] and env.rec.uploads == []


def test_paramiko_temp_then_rename_processed_once(env, keys):
    t, c = connect(env, "a", keys)
    try:
        with c.open(f"/in/{FLOW_A}.tmp", "wb") as fh:
            fh.write(b"<flux/>")
        assert env.rec.uploads == []  # a temporary name is not handed over
        c.rename(f"/in/{FLOW_A}.tmp", f"/in/{FLOW_A}")
        with c.open("/in/other.part", "wb") as fh:
            fh.write(b"<flux/>")
        with pytest.raises(IOError):
            c.rename("/in/other.part", f"/in/{FLOW_A}")  # never overwrites
    finally:
        t.close()
    assert [(a, p.name) for a, p, _ in env.rec.uploads] == [("AAA", FLOW_A)]


def test_two_partners_upload_at_the_same_time(env, keys):
    files = {who: {f"FSO1110A_{who.upper() * 3}_{i:025d}.xml": os.urandom(30_000) for i in range(4)}
             for who in ("a", "b")}
    errors = []
    barrier = threading.Barrier(2)

    def upload(who):
        try:
            t, c = connect(env, who, keys)
            barrier.wait(timeout=5)
            for name, data in files[who].items():
                with c.open(f"/in/{name}", "wb") as fh:
                    fh.write(data)
            t.close()
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(w,)) for w in ("a", "b")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=20)
    assert errors == []
    got = {(a, p.name): data for a, p, data in env.rec.uploads}
    want = {(who.upper() * 3, n): d for who in files for n, d in files[who].items()}
    assert got == want
    for who in ("a", "b"):
        assert visible(env.spool / (who.upper() * 3) / "in") == sorted(files[who])


def test_oversize_upload_refused_during_transfer(env, keys):
    limit = env.cfg.max_flow_bytes
    t, c = connect(env, "a", keys)
    try:
        with pytest.raises(IOError):
            with c.open(f"/in/{FLOW_A}", "wb") as fh:
                for _ in range(4):
                    fh.write(b"x" * (limit // 2))
                    fh.flush()
        with c.open(f"/in/{FLOW_B.replace('BBB', 'AAA')}", "wb") as fh:  # exactly the limit is fine
            fh.write(b"y" * limit)
    finally:
        t.close()
    assert len(env.rec.oversize) == 1
    app, name, size = env.rec.oversize[0]
    assert (app, name) == ("AAA", FLOW_A) and size > limit
    assert visible(env.spool / "AAA" / "in") == [FLOW_B.replace("BBB", "AAA")]
    assert [p.name for _, p, _ in env.rec.uploads] == [FLOW_B.replace("BBB", "AAA")]


# --- limits and audit ------------------------------------------------------------------------


def test_max_sessions_per_partner(start, keys):
    env = start(max_sessions_per_partner=1)
    t1, c1 = connect(env, "a", keys)
    with pytest.raises((paramiko.SSHException, EOFError)):
        t2, c2 = connect(env, "a", keys)
        t2.close()
    tb, cb = connect(env, "b", keys)  # another partner is not affected
    assert cb.listdir("/in") == []
    tb.close()
    t1.close()
    assert wait_for(lambda: env.service.sessions_of("AAA") == 0)
    t3, c3 = connect(env, "a", keys)
    assert c3.listdir("/in") == []
    t3.close()


def test_idle_session_closed(start, keys):
    env = start(idle_timeout=1.0)  # long enough for the first listdir on a loaded machine
    t, c = connect(env, "a", keys)
    assert c.listdir("/in") == []
    assert wait_for(lambda: not t.is_active(), timeout=10)
    with pytest.raises((OSError, EOFError, paramiko.SSHException)):
        c.listdir("/in")


def test_failed_logins_lock_the_address_out(start, keys):
    env = start(max_failed_logins=2, lockout_seconds=60)
    with capture_logs() as logs:
        for _ in range(2):
            with pytest.raises(paramiko.AuthenticationException):
                connect(env, "stranger", keys, "AAA")
        with pytest.raises((paramiko.SSHException, EOFError, OSError)):
            connect(env, "a", keys)  # right key, but the address is locked out
    actions = [e.get("action") for e in logs]
    assert actions.count("login_failed") == 2 and "lockout" in actions
    assert any(e.get("action") == "login_refused" and e.get("reason") == "locked_out" for e in logs)


def test_every_operation_is_logged(env, keys):
    with capture_logs() as logs:
        t, c = connect(env, "a", keys)
        with c.open(f"/in/{FLOW_A}", "wb") as fh:
            fh.write(b"12345")
        c.listdir("/in")
        with pytest.raises(IOError):
            c.open("/../BBB/out/x", "rb")
        t.close()
        assert wait_for(lambda: any(e.get("action") == "disconnect" for e in logs))
    by_action = {e["action"]: e for e in logs if "action" in e}
    for action in ("connect", "login", "upload_start", "upload", "list", "denied", "disconnect"):
        assert action in by_action, action
        assert by_action[action]["address"] == "127.0.0.1"
    assert by_action["login"]["partner"] == "AAA"
    assert by_action["upload"]["file"] == FLOW_A and by_action["upload"]["bytes"] == 5
    assert by_action["denied"]["reason"] == "dotdot"


def test_password_login_optional_and_hashed(env, keys):
    partners.set_password(env.url, "AAA", "s3cret-pass")
    stored = next(p for p in partners.list_partners(env.url) if p.app == "AAA")
    assert stored.has_password
    with db.session(env.url) as s:
        from edi.db.models import Partner
        h = s.get(Partner, "AAA").password_hash
    assert h.startswith("scrypt$") and "s3cret-pass" not in h
    for password, ok in (("wrong", False), ("s3cret-pass", True)):
        t = paramiko.Transport(("127.0.0.1", env.service.port))
        t.start_client(timeout=5)
        try:
            if ok:
                t.auth_password("AAA", password)
                assert paramiko.SFTPClient.from_transport(t).listdir("/") is not None
            else:
                with pytest.raises(paramiko.AuthenticationException):
                    t.auth_password("AAA", password)
        finally:
            t.close()
    with pytest.raises(paramiko.AuthenticationException):  # no password set for BBB
        t = paramiko.Transport(("127.0.0.1", env.service.port))
        t.start_client(timeout=5)
        try:
            t.auth_password("BBB", "")
        finally:
            t.close()


def test_host_key_generated_once_with_mode_0600(tmp_path):
    cfg = make_cfg(tmp_path)
    path = tmp_path / "host_key"
    fp1 = sftp_mod.host_key_fingerprint(cfg)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert sftp_mod.host_key_fingerprint(cfg) == fp1
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], capture_output=True, text=True, check=True)
    assert fp1 in out.stdout  # same fingerprint as OpenSSH prints
    db.dispose_all()


# --- partners: DB, retention, CLI -------------------------------------------------------------


def test_purge_reports_older_than_retention(tmp_path):
    cfg = make_cfg(tmp_path)
    out = cfg.spool_root / "partners" / "AAA" / "out"
    out.mkdir(parents=True)
    now = datetime(2026, 3, 20, 12, 0, tzinfo=timezone.utc)
    old, fresh = out / "OLD.xml", out / "NEW.xml"
    old.write_bytes(b"old")
    fresh.write_bytes(b"new")
    os.utime(old, ((now - timedelta(days=8)).timestamp(),) * 2)
    os.utime(fresh, ((now - timedelta(days=6)).timestamp(),) * 2)
    os.symlink(tmp_path, out / "LINK")
    assert retention.purge_reports(cfg, now=now) == [old]
    assert sorted(os.listdir(out)) == ["LINK", "NEW.xml"]
    with db.session(cfg.database_url) as s:
        rows = s.exec(select(ReportPurge)).all()
    assert [(r.app, r.filename, r.size) for r in rows] == [("AAA", "OLD.xml", 3)]
    cfg = make_cfg(tmp_path, retention_days=5)
    assert retention.purge_reports(cfg, now=now) == [fresh]
    db.dispose_all()


def test_partner_keys_and_config_loading(tmp_path, keys):
    pub_a = keys["a"].with_suffix(".pub").read_text().strip()
    cfg = make_cfg(tmp_path, partners=[{"app": "DEMO", "name": "Démo", "interfaces": ["FSO1110A"], "keys": [pub_a]}])
    url = cfg.database_url
    assert partners.load_from_config(cfg) == ["DEMO"]
    partners.disable(url, "DEMO")
    partners.load_from_config(cfg)  # idempotent, and does not re-enable
    (info,) = partners.list_partners(url)
    assert (info.app, info.name, info.interfaces, info.enabled, len(info.keys)) == ("DEMO", "Démo", ("FSO1110A",), False, 1)
    assert partners.add_key(url, "DEMO", keys["b"].with_suffix(".pub")) == 1
    assert partners.add_key(url, "DEMO", keys["b"].with_suffix(".pub")) == 0
    assert partners.remove_key(url, "DEMO", keys["a"].with_suffix(".pub")) == 1
    assert [k.comment for k in partners.get(url, "DEMO").keys] == ["b"]
    for bad in (lambda: partners.add(url, "demo", "x"), lambda: partners.add(url, "NEW", "x", interfaces=["FOO"]),
                lambda: partners.add(url, "DEMO", "x"), lambda: partners.disable(url, "NOPE"),
                lambda: partners.add_key(url, "DEMO", "ssh-ed25519 !!!notbase64")):
        with pytest.raises(partners.PartnerError):
            bad()
    db.dispose_all()


@pytest.fixture
def quiet_logs():
    """Log lines captured, so that they stay out of the command output."""
    with capture_logs() as logs:
        yield logs


def test_cli_partners(tmp_path, keys, quiet_logs):
    from edi.cli.partners import app

    cfg = make_cfg(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["add", "ACME", "--name", "Acme", "--key", str(keys["a"].with_suffix(".pub")),
                              "--interface", "FSO1100A", "--interface", "FSO1106A"], obj=cfg)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["add", "ALL1", "--name", "Toutes", "--key", str(keys["b"].with_suffix(".pub"))], obj=cfg)
    assert res.exit_code == 0, res.output
    assert runner.invoke(app, ["key", "add", "ACME", str(keys["b"].with_suffix(".pub"))], obj=cfg).exit_code == 0
    assert runner.invoke(app, ["key", "remove", "ACME", str(keys["a"].with_suffix(".pub"))], obj=cfg).exit_code == 0
    assert runner.invoke(app, ["disable", "ALL1"], obj=cfg).exit_code == 0
    res = runner.invoke(app, ["list", "--json"], obj=cfg)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["sftp_host_key"] == sftp_mod.host_key_fingerprint(cfg)
    by_app = {p["app"]: p for p in data["partners"]}
    assert by_app["ACME"]["interfaces"] == ["FSO1100A", "FSO1106A"]
    assert [k["comment"] for k in by_app["ACME"]["keys"]] == ["b"]
    assert by_app["ALL1"]["interfaces"] == list(partners.INTERFACES) and by_app["ALL1"]["enabled"] is False
    res = runner.invoke(app, ["list"], obj=cfg)
    assert res.exit_code == 0 and "ACME" in res.output and data["sftp_host_key"] in res.output
    res = runner.invoke(app, ["disable", "NOPE"], obj=cfg)
    assert res.exit_code == 2 and "inconnu" in res.output
    db.dispose_all()


# --- hardening (issue 8, items 4-11) ----------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_long_multibyte_name_refused_at_open(env, keys):
    """255 characters but 505 bytes: refused at open (not told success, then lost at rename)."""
    name = "é" * 250 + "00000"
    t, c = connect(env, "a", keys)
    try:
        c.listdir("/in")
        before = open_fds()
        with capture_logs() as logs:
            for _ in range(20):
                with pytest.raises(IOError):
                    with c.open(f"/in/{name}", "wb") as fh:
                        fh.write(b"<flux/>")
        assert open_fds() <= before  # no descriptor left behind
        assert any(e.get("action") == "denied" and e.get("reason") == "name_too_long" for e in logs)
        fits = "é" * 100 + ".xml"  # 204 bytes: fine, and so is its hidden partial
        with c.open(f"/in/{fits}", "wb") as fh:
            fh.write(b"<flux/>")
    finally:
        t.close()
    assert visible(env.spool / "AAA" / "in") == [fits]
    assert [p.name for _, p, _ in env.rec.uploads] == [fits]


@pytest.mark.skipif(SFTP_BIN is None, reason="OpenSSH sftp client not installed")
def test_failed_final_rename_is_an_error_and_leaves_nothing(env, keys, monkeypatch, tmp_path):
    real_rename = os.rename

    def failing_rename(src, dst, *a, **kw):
        if str(src).endswith(".part"):
            raise OSError(36, "File name too long")
        return real_rename(src, dst, *a, **kw)

    monkeypatch.setattr(os, "rename", failing_rename)
    local = tmp_path / FLOW_A
    local.write_bytes(b"<flux/>")
    before = open_fds()
    with capture_logs() as logs:
        # OpenSSH reports a failed CLOSE (paramiko's client ignores it)
        res = run_sftp(env, keys["a"], "AAA", f"put {local} /in/{FLOW_A}\n")
    assert res.returncode != 0 and "close" in res.stderr.lower(), res.stderr
    assert wait_for(lambda: open_fds() <= before)
    assert any(e.get("action") == "upload_failed" for e in logs)
    assert visible(env.spool / "AAA" / "in") == [] and env.rec.uploads == [] and not env.service.active_partials


def test_housekeeping_survives_any_exception(start, keys):
    """EMFILE in the cleanup once killed the thread: no more idle/login timeouts, no cleanup."""
    env = start(idle_timeout=1.0, partial_max_age=0.3)
    real_cleanup = env.service.cleanup_partials
    calls = []

    def flaky_cleanup(*a):
        calls.append(1)
        if len(calls) <= 3:
            raise OSError(24, "Too many open files")
        return real_cleanup(*a)

    env.service.cleanup_partials = flaky_cleanup
    in_a = env.spool / "AAA" / "in"
    with capture_logs() as logs:
        t, c = connect(env, "a", keys)
        fh = c.open(f"/in/{FLOW_A}", "wb")
        fh.write(b"half")
        fh.flush()
        t.sock.shutdown(socket.SHUT_RDWR)  # dropped: the partial stays for the cleanup
        t.close()
        t2, c2 = connect(env, "a", keys)
        assert c2.listdir("/in") == []
        assert wait_for(lambda: not t2.is_active(), timeout=15)  # the idle timeout still runs
        assert wait_for(lambda: visible(in_a) == [], timeout=15)  # and so does the cleanup, later
    assert len(calls) > 3
    assert any(e.get("action") == "housekeeping_failed" and e.get("step") == "cleanup" for e in logs)


def test_open_handles_per_session_limited(start, keys):
    env = start(max_handles_per_session=3)
    out_a = env.spool / "AAA" / "out"
    out_a.mkdir(parents=True, exist_ok=True)
    for i in range(5):
        (out_a / f"R{i}.xml").write_bytes(b"report")
    t, c = connect(env, "a", keys)
    try:
        handles = [c.open(f"/out/R{i}.xml", "rb") for i in range(3)]
        with pytest.raises(IOError, match="too many open handles"):
            c.open("/out/R3.xml", "rb")
        with pytest.raises(IOError):
            c.listdir("/out")  # a folder handle counts too
        with pytest.raises(IOError):
            c.open(f"/in/{FLOW_A}", "wb")
        handles.pop().close()
        assert c.open("/out/R3.xml", "rb").read() == b"report"
        tb, cb = connect(env, "b", keys)  # another session is not affected
        assert cb.listdir("/in") == []
        tb.close()
    finally:
        t.close()


@pytest.mark.parametrize("failure", ["short_write", "disk_full"])
def test_failed_write_fails_the_upload(env, keys, monkeypatch, failure):
    """Disk full or a short write: error to the client, partial removed, nothing handed over,
    and the same name (so the FLOWID) can be uploaded again."""
    real_pwrite = os.pwrite
    state = {"writes": 0}

    def pwrite(fd, data, offset):
        state["writes"] += 1
        if state["writes"] == 1:
            return real_pwrite(fd, data, offset)
        if failure == "disk_full":
            raise OSError(28, "No space left on device")
        return real_pwrite(fd, bytes(data)[: len(data) // 2], offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    t, c = connect(env, "a", keys)
    try:
        with capture_logs() as logs:
            with pytest.raises(IOError):
                with c.open(f"/in/{FLOW_A}", "wb") as fh:
                    for _ in range(4):
                        fh.write(b"x" * 10_000)
                        fh.flush()
        assert visible(env.spool / "AAA" / "in") == [] and env.rec.uploads == []
        assert not env.service.active_partials
        assert any(e.get("action") == "upload_failed" for e in logs)
        monkeypatch.setattr(os, "pwrite", real_pwrite)
        with c.open(f"/in/{FLOW_A}", "wb") as fh:
            fh.write(b"<flux/>")
    finally:
        t.close()
    assert [(p.name, data) for _, p, data in env.rec.uploads] == [(FLOW_A, b"<flux/>")]


@pytest.mark.skipif(SFTP_BIN is None, reason="OpenSSH sftp client not installed")
def test_key_offers_do_not_count_as_failed_logins(start, keys, tmp_path):
    """An agent offering 5 unknown keys before the right one logs in (offers are not attempts)."""
    env = start(max_failed_logins=5, lockout_seconds=60)
    others = []
    for i in range(5):
        path = tmp_path / f"id_other{i}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        others.append(path)
    identities = [arg for path in [*others, keys["a"]] for arg in ("-i", str(path))]
    res = subprocess.run(
        [SFTP_BIN, "-b", "-", *identities, "-P", str(env.service.port),
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={env.known}", "-o", "BatchMode=yes",
         "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5", "-F", "/dev/null", "AAA@127.0.0.1"],
        input="ls /in\n", capture_output=True, text=True, timeout=30,
        env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"},
    )
    assert res.returncode == 0, res.stderr
    assert not env.service.throttle.locked("127.0.0.1")


def assert_key_refused(env, app: str, key: paramiko.PKey) -> None:
    t = paramiko.Transport(("127.0.0.1", env.service.port))
    t.start_client(timeout=5)
    try:
        with pytest.raises(paramiko.AuthenticationException):
            t.auth_publickey(app, key)
    finally:
        t.close()


def test_failed_signatures_count(start, keys):
    """A request signed with another key than the one it names is a failed attempt."""
    env = start(max_failed_logins=2, lockout_seconds=60)
    real = paramiko.Ed25519Key.from_private_key_file(str(keys["a"]))
    for _ in range(2):
        forged = paramiko.Ed25519Key.from_private_key_file(str(keys["stranger"]))
        forged.asbytes = real.asbytes  # claims A's key, signs with the stranger's
        assert_key_refused(env, "AAA", forged)
    assert env.service.throttle.locked("127.0.0.1")


def test_password_throttling_holds_in_parallel(start, keys, monkeypatch):
    env = start(max_failed_logins=5, lockout_seconds=60)
    partners.set_password(env.url, "AAA", "s3cret-pass")
    checked = []
    real_verify = partners.verify_password

    def counting_verify(password, stored):
        checked.append(password)
        return real_verify(password, stored)

    monkeypatch.setattr(partners, "verify_password", counting_verify)
    barrier = threading.Barrier(40, timeout=60)
    outcomes = []

    def attempt():
        t = paramiko.Transport(("127.0.0.1", env.service.port))
        try:
            t.start_client(timeout=30)
            barrier.wait()
            t.auth_password("AAA", "wrong")
            outcomes.append("in")
        except Exception as exc:  # refused, locked out, or closed: all fine here
            outcomes.append(type(exc).__name__)
        finally:
            t.close()

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert len(outcomes) == 40 and "in" not in outcomes
    assert len(checked) <= 5


def test_oversize_refusals_rate_limited_and_sparse_writes_refused(env, keys):
    limit = env.cfg.max_flow_bytes
    t, c = connect(env, "a", keys)
    try:
        for i in range(5):  # one byte far past the limit: refused, no report at all
            with pytest.raises(IOError):
                with c.open(f"/in/FSO1110A_AAA_{i:025d}.xml", "wb") as fh:
                    fh.seek(50 * 2**30)
                    fh.write(b"x")
        assert env.rec.oversize == []
        for i in range(3):  # real oversize uploads: one report per partner and interval
            with pytest.raises(IOError):
                with c.open(f"/in/FSO1110A_AAA_{i + 10:025d}.xml", "wb") as fh:
                    fh.write(b"x" * (limit + 1))
    finally:
        t.close()
    assert len(env.rec.oversize) == 1
    assert visible(env.spool / "AAA" / "in") == [] and env.rec.uploads == []


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rsa")
    out = {}
    for bits in (1024, 2048):
        path = folder / f"id_rsa{bits}"
        subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", str(bits), "-N", "", "-f", str(path)], check=True)
        out[bits] = path
    return out


def test_small_rsa_keys_refused(tmp_path, rsa_keys, quiet_logs):
    from edi.cli.partners import app

    cfg = make_cfg(tmp_path)
    runner = CliRunner()
    weak, strong = rsa_keys[1024].with_suffix(".pub"), rsa_keys[2048].with_suffix(".pub")
    res = runner.invoke(app, ["add", "WEAK", "--name", "x", "--key", str(weak)], obj=cfg)
    assert res.exit_code == 2 and "1024 bits refusée" in res.output and "Traceback" not in res.output
    assert runner.invoke(app, ["add", "ACME", "--name", "x", "--key", str(strong)], obj=cfg).exit_code == 0
    res = runner.invoke(app, ["key", "add", "ACME", str(weak)], obj=cfg)
    assert res.exit_code == 2 and "2048 bits au minimum" in res.output
    cfg = make_cfg(tmp_path, partners=[{"app": "CONF", "name": "x", "keys": [weak.read_text().strip()]}])
    with pytest.raises(partners.PartnerError, match="CONF.*1024 bits"):
        partners.load_from_config(cfg)
    db.dispose_all()


def test_small_rsa_key_already_stored_cannot_log_in(env, rsa_keys):
    """A key stored before the check existed is refused at login too."""
    from edi.db.models import PartnerKey

    weak = paramiko.RSAKey.from_private_key_file(str(rsa_keys[1024]))
    with db.session(env.url) as s:
        s.add(PartnerKey(app="AAA", key_type="ssh-rsa", key_b64=weak.get_base64(), comment="old",
                         fingerprint="SHA256:old"))
        s.commit()
    assert_key_refused(env, "AAA", weak)


def test_disable_and_key_removal_end_live_sessions(env, keys):
    t, c = connect(env, "a", keys)
    assert c.listdir("/in") == []
    partners.disable(env.url, "AAA")
    assert wait_for(lambda: not t.is_active(), timeout=10)
    with pytest.raises((OSError, EOFError, paramiko.SSHException)):
        c.listdir("/in")
    partners.enable(env.url, "AAA")
    t, c = connect(env, "a", keys)
    tb, cb = connect(env, "b", keys)
    assert c.listdir("/in") == []
    partners.remove_key(env.url, "AAA", keys["a"].with_suffix(".pub"))
    assert wait_for(lambda: not t.is_active(), timeout=10)
    assert tb.is_active() and cb.listdir("/in") == []  # other partners are not affected
    tb.close()


def test_report_retrieved_only_when_every_byte_was_read(env, keys):
    name = "CSO1110A_AAA_" + "A" * 25 + ".xml"
    content = os.urandom(100_000)
    (env.spool / "AAA" / "out").mkdir(parents=True, exist_ok=True)
    (env.spool / "AAA" / "out" / name).write_bytes(content)
    with db.session(env.url) as s:
        s.add(Report(app="AAA", kind="integration", filename=name, content=content))
        s.commit()

    def retrieved():
        with db.session(env.url) as s:
            return s.exec(select(Report).where(Report.filename == name)).one().retrieved_at

    t, c = connect(env, "a", keys)
    try:
        fh = c.open(f"/out/{name}", "rb")
        for _ in range(100):
            fh.seek(0)
            assert fh.read(1000) == content[:1000]
        fh.close()
        assert retrieved() is None
        with c.open(f"/out/{name}", "rb") as fh:  # read back to front: every byte once
            for offset in range(len(content) - 10_000, -1, -10_000):
                fh.seek(offset)
                assert fh.read(10_000) == content[offset:offset + 10_000]
    finally:
        t.close()
    assert wait_for(lambda: retrieved() is not None)
    with db.session(env.url) as s:
        rows = s.exec(select(ReportDownload).order_by(ReportDownload.id)).all()
    assert [r.complete for r in rows] == [False, True] and rows[1].bytes == len(content)


def test_config_key_with_options_and_latin1_comment(tmp_path, keys, quiet_logs):
    """One-line errors, never tracebacks: options are refused (the server would not enforce
    them); a latin-1 comment is accepted as what it is, a label."""
    from edi.cli import app as edi_app

    pub = keys["a"].with_suffix(".pub").read_text().split()
    config = tmp_path / "edi.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/t.db"\n[spool]\nroot = "{tmp_path}/spool"\n'
        f'[sftp]\nhost_key = "{tmp_path}/host_key"\n'
        f'[[partners]]\napp = "OPT"\nname = "x"\nkeys = [\'from="1.2.3.4" {pub[0]} {pub[1]}\']\n'
    )
    runner = CliRunner()
    try:
        for args in (["init"], ["partners", "list"]):
            res = runner.invoke(edi_app, ["--config", str(config), *args])
            assert res.exit_code == 2, res.output
            assert "options authorized_keys non prises en charge" in res.output and "OPT" in res.output
            assert res.exception is None or isinstance(res.exception, SystemExit)
        latin = tmp_path / "latin.pub"
        latin.write_bytes(f"{pub[0]} {pub[1]} opérateur@société".encode("latin-1"))
        config.write_text(config.read_text().split("[[partners]]")[0])
        res = runner.invoke(edi_app, ["--config", str(config), "partners", "add", "LAT", "--name", "x", "--key", str(latin)])
        assert res.exit_code == 0, res.output
        assert [k.comment for k in partners.get(f"sqlite:///{tmp_path}/t.db", "LAT").keys] == ["opérateur@société"]
    finally:
        structlog.reset_defaults()  # the CLI pointed the logger at the runner's (closed) stderr
    db.dispose_all()
