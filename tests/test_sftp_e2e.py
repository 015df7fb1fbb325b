"""The whole loop over SFTP with a real `edi serve` process (issue 4).

One `edi --config <tmp>/edi.toml serve` for the module, listening for SFTP on a free port, with
partners AAA and BBB (keys made by ssh-keygen, given as `[[partners]] keys`), the directory
imported with `edi directory import` from `edi gen` output. Clients are the OpenSSH `sftp`
program in batch mode (throwaway known_hosts holding the server's host key) and paramiko's
`SSHClient` (host key checked, unknown keys rejected). Each test uploads flows made by the
generator, waits (bounded) for their integration report in `/out`, downloads and checks it.
"""

from __future__ import annotations

import json
import re
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest

from edi import gen as generator
from edi.ingest.sftp.auth import key_fingerprint, load_host_key
from tests.helpers import RECEIVED_STATUS, PARTIAL_STATUS, REJECTED_STATUS, error_lines, flow_status, validate_report

BIN = Path(sys.executable).parent / "edi"
EDI = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "edi.cli"]
SFTP_BIN = shutil.which("sftp")
MAX_FLOW_BYTES = 100_000
REPORT_WAIT = 60.0  # seconds: generous for a loaded CI machine; a report normally takes < 2 s

_seeds = iter(range(100, 10_000))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def edi(root: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDI_")}
    res = subprocess.run([*EDI, "--config", str(root / "edi.toml"), *args], capture_output=True, text=True,
                         timeout=timeout, env=env, cwd=root)
    assert res.returncode == 0, res.stderr
    return res


class Server:
    """A running `edi serve` and what a client needs to reach it."""

    def __init__(self, root: Path, keys: dict[str, Path]):
        self.root, self.keys = root, keys
        self.port, self.web_port = free_port(), free_port()
        pub = {app: keys[app].with_suffix(".pub").read_text().strip() for app in ("AAA", "BBB")}
        patterns = ", ".join(f'"{k}" = {json.dumps(v)}' for k, v in generator.EJ_PATTERNS.items())
        (root / "edi.toml").write_text(
            f'[spool]\nroot = "{root / "spool"}"\n'
            f'[database]\nurl = "sqlite:///{root / "edi.db"}"\n'
            f"[limits]\nmax_flow_bytes = {MAX_FLOW_BYTES}\n"
            "[intake]\nsettle_seconds = 0.2\npoll_seconds = 0.2\n"
            "[validation]\nprocesses = 1\n"
            f'[sftp]\nhost = "127.0.0.1"\nport = {self.port}\nfailed_login_delay = 0\n'
            f"[web]\nport = {self.web_port}\n"
            '[logging]\nformat = "json"\n'
            f"[directory]\nej_patterns = {{ {patterns} }}\n"
            + "".join(f'[[partners]]\napp = "{app}"\nname = "Opérateur {app}"\nkeys = [{json.dumps(line)}]\n'
                      for app, line in pub.items()),
            encoding="utf-8",
        )
        self.log = root / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDI_")}
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen([*EDI, "--config", str(root / "edi.toml"), "serve"], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=fh, env=env, cwd=root)
        serving = self.wait_event("serving", 30)
        self.host_key = load_host_key(root / "spool" / "sftp_host_key")
        assert serving["host_key"] == key_fingerprint(self.host_key)
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}\n")

    def events(self) -> list[dict]:
        out = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_event(self, name: str, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = [e for e in self.events() if e.get("event") == name]
            if found:
                return found[0]
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.05)
        raise AssertionError(f"no {name} event within {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    # -- clients --

    def paramiko(self, app: str) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect("127.0.0.1", self.port, username=app, key_filename=str(self.keys[app]), timeout=10,
                       look_for_keys=False, allow_agent=False)
        return client, client.open_sftp()

    def openssh(self, app: str, commands: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            [SFTP_BIN, "-b", "-", "-i", str(self.keys[app]), "-P", str(self.port), "-F", "/dev/null",
             "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
             "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10", f"{app}@127.0.0.1"],
            input=commands, capture_output=True, text=True, timeout=timeout,
        )

    def flows_named(self, filename: str) -> list[tuple]:
        con = sqlite3.connect(f"file:{self.root / 'edi.db'}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute("SELECT id, state, source FROM flow WHERE filename = ?", (filename,)).fetchall()
        finally:
            con.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    keys = {}
    for app in ("AAA", "BBB"):
        keys[app] = root / f"id_{app.lower()}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", app, "-f", str(keys[app])], check=True)
    # the directory, from `edi gen` output, imported with `edi directory import`
    (root / "edi.toml").write_text(f'[spool]\nroot = "{root / "spool"}"\n[database]\nurl = "sqlite:///{root / "edi.db"}"\n')
    gen_dir = root / "gen0"
    edi(root, "gen", "--interface", "FSO1110A", "--invoices", "1", "--partner", "AAA", "--out", str(gen_dir))
    edi(root, "directory", "import", str(gen_dir / "structures.csv"), "--services", str(gen_dir / "services.csv"))
    srv = Server(root, keys)
    yield srv
    srv.stop()
    assert srv.proc.returncode == 0, srv.log.read_text()[-3000:]


def make_flow(server: Server, app: str, interface: str = "FSO1110A", invoices: int = 2, cli: bool = False):
    """A flow from the generator (`edi gen` itself when `cli`)."""
    seed = next(_seeds)
    out = server.root / f"gen-{app}-{seed}"
    if cli:
        edi(server.root, "gen", "--interface", interface, "--invoices", str(invoices), "--partner", app,
            "--seed", str(seed), "--out", str(out))
        path = next(p for p in out.iterdir() if p.name.startswith(interface))
        return path, path.name.split("_", 2)[2].split(".")[0]
    flow = generator.generate(interface, invoices, out, seed=seed, partner=app)
    return flow.path, flow.flow_id


def report_name(interface: str, app: str, flow_id: str) -> str:
    return f"CSO{interface[3:]}_{app}_{flow_id}.xml"


def wait_listed(sftp: paramiko.SFTPClient, name: str, timeout: float = REPORT_WAIT) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if name in sftp.listdir("/out"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} not in /out after {timeout}s: {sftp.listdir('/out')}")


def check_report(content: bytes, flow_id: str, statuses=(RECEIVED_STATUS, PARTIAL_STATUS)):
    root = validate_report(content)
    assert root.tag == "CPPStatut"
    assert [e.text for e in root.iter("IdFlux")] == [flow_id]
    assert flow_status(root) in statuses
    return root


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.skipif(SFTP_BIN is None, reason="OpenSSH sftp client not installed")
def test_openssh_upload_report_download(server, tmp_path):
    path, flow_id = make_flow(server, "AAA", cli=True)
    name = report_name("FSO1110A", "AAA", flow_id)
    res = server.openssh("AAA", f"put {path} /in/{path.name}\n")
    assert res.returncode == 0, res.stderr
    got = tmp_path / name
    end = time.monotonic() + REPORT_WAIT
    while time.monotonic() < end:  # the sftp client itself polls /out
        res = server.openssh("AAA", "ls -1 /out\n")
        if name in res.stdout:
            break
        time.sleep(0.3)
    res = server.openssh("AAA", f"get /out/{name} {got}\n")
    assert res.returncode == 0, res.stderr
    check_report(got.read_bytes(), flow_id)
    assert [state for _, state, _ in server.flows_named(path.name)] == ["IN_INTEGRE"]


def test_paramiko_upload_report_download(server):
    path, flow_id = make_flow(server, "AAA", interface="FSO1100A", invoices=3)
    client, sftp = server.paramiko("AAA")
    try:
        # put() stats the file after the upload (confirm=True, as real clients do), although
        # intake takes a complete upload at once: the server still answers for it
        attrs = sftp.put(str(path), f"/in/{path.name}")
        assert attrs.st_size == path.stat().st_size
        name = report_name("FSO1100A", "AAA", flow_id)
        wait_listed(sftp, name)
        with sftp.open(f"/out/{name}") as fh:
            content = fh.read()
    finally:
        client.close()
    check_report(content, flow_id)
    assert len(server.flows_named(path.name)) == 1


def test_oversize_upload_gets_irr_taille(server):
    flow_id = generator.flow_id_for("FSO1110A", "AAA", next(_seeds))
    filename = f"FSO1110A_AAA_{flow_id}.xml"
    client, sftp = server.paramiko("AAA")
    try:
        with pytest.raises(IOError):
            with sftp.open(f"/in/{filename}", "wb") as fh:
                for _ in range(MAX_FLOW_BYTES // 10_000 + 2):
                    fh.write(b"<x>" + b"0" * 9_993 + b"</x>")
        name = report_name("FSO1110A", "AAA", flow_id)
        wait_listed(sftp, name)
        with sftp.open(f"/out/{name}") as fh:
            root = check_report(fh.read(), flow_id, statuses=(REJECTED_STATUS,))
        assert filename not in sftp.listdir("/in")
    finally:
        client.close()
    assert any(line["NatureErreur"] == "IRR_TAILLE" for line in error_lines(root)), error_lines(root)
    assert [state for _, state, _ in server.flows_named(filename)] == ["IN_REJETE"]


@pytest.mark.skipif(SFTP_BIN is None, reason="OpenSSH sftp client not installed")
def test_temporary_name_then_rename_is_processed_once(server):
    path, flow_id = make_flow(server, "AAA")
    res = server.openssh("AAA", f"put {path} /in/{path.name}.filepart\nrename /in/{path.name}.filepart /in/{path.name}\n")
    assert res.returncode == 0, res.stderr
    client, sftp = server.paramiko("AAA")
    try:
        name = report_name("FSO1110A", "AAA", flow_id)
        wait_listed(sftp, name)
        time.sleep(1.0)  # five poll periods: a second intake would have shown by now
        same_flow = [n for n in sftp.listdir("/out") if flow_id in n and n.startswith("CSO")]
        with sftp.open(f"/out/{name}") as fh:
            check_report(fh.read(), flow_id)
    finally:
        client.close()
    assert same_flow == [name]  # no IRR_UNCITE twin (`..._<id>.xml`)
    assert len(server.flows_named(path.name)) == 1
    assert server.flows_named(path.name + ".filepart") == []


def test_two_partners_at_once_each_get_only_their_reports(server):
    flows = {app: [make_flow(server, app) for _ in range(2)] for app in ("AAA", "BBB")}
    results: dict[str, object] = {}
    barrier = threading.Barrier(2, timeout=30)

    def operator(app: str) -> None:
        try:
            client, sftp = server.paramiko(app)
            try:
                barrier.wait()
                for path, _ in flows[app]:
                    sftp.put(str(path), f"/in/{path.name}")
                contents = {}
                for _, flow_id in flows[app]:
                    name = report_name("FSO1110A", app, flow_id)
                    wait_listed(sftp, name)
                    with sftp.open(f"/out/{name}") as fh:
                        contents[flow_id] = fh.read()
                results[app] = (sftp.listdir("/out"), contents)
            finally:
                client.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            results[app] = exc

    threads = [threading.Thread(target=operator, args=(app,)) for app in flows]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=REPORT_WAIT + 30)
    for app, other in (("AAA", "BBB"), ("BBB", "AAA")):
        assert not isinstance(results.get(app), BaseException), results.get(app)
        listing, contents = results[app]
        assert listing and all(f"_{app}_" in n for n in listing), listing
        assert not any(f"_{other}_" in n for n in listing)
        for flow_id, content in contents.items():
            check_report(content, flow_id)
        assert sorted(contents) == sorted(fid for _, fid in flows[app])


def test_serve_also_serves_the_console_health(server):
    """`edi serve` starts the console ([web]) beside SFTP: `/healthz` answers from the running
    service, SFTP included, and `/metrics` counts what it processed."""
    import urllib.request

    serving = server.wait_event("serving", 30)
    assert serving["web"] == f"http://127.0.0.1:{server.web_port}/"
    with urllib.request.urlopen(f"http://127.0.0.1:{server.web_port}/healthz", timeout=10) as res:
        health = json.loads(res.read())
    assert res.status == 200 and health["checks"]["sftp"] == "ok", health
    assert health["checks"]["workers"] == "ok", health  # the loop's heartbeat
    path, flow_id = make_flow(server, "AAA", invoices=2)
    client, sftp = server.paramiko("AAA")
    try:
        sftp.put(str(path), f"/in/{path.name}")
        wait_listed(sftp, report_name("FSO1110A", "AAA", flow_id))
    finally:
        client.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{server.web_port}/metrics", timeout=10) as res:
        metrics = res.read().decode()
    assert 'edi_flows_total{state="IN_INTEGRE"}' in metrics, metrics[:2000]
    assert re.search(r"^edi_sftp_sessions \d", metrics, re.M), metrics[-2000:]
    assert 'edi_stage_seconds_count{stage="total"}' in metrics
