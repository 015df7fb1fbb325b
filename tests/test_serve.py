"""`edi serve` as a real process: intake readiness, SIGTERM, crash and resume, several workers.

Each test runs `edi --config <tmp>/edi.toml serve` in a subprocess with JSON logs to a file, its
own spool and SQLite database, and looks only at what the platform leaves behind: the spool
folders, the database rows (read with the stdlib sqlite3 module) and the log events.

Crash points: `EDI_TEST_CRASH_AT=<point>` (edi.ingest.intake.crash_point) makes the process die
with `os._exit(137)` right there, as `kill -9` would — `claimed` (file in work/, no row yet),
`recorded` (row committed, file not yet archived), `decided` (every invoice decided, nothing
delivered; tests/test_lease.py stalls a worker there), `delivered` (accepted invoices moved into the
recipients' folders, nothing committed), `committed` (flow outcome committed, reports not yet
written). "During processing" is a real SIGKILL sent once the flow's staging folder fills.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edi import db
from edi import gen as generator
from edi.route.directory import import_directory

BIN = Path(sys.executable).parent / "edi"
EDI = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "edi.cli"]
SETTLE = 1.0
POLL = 0.2


# ------------------------------------------------------------------ harness


class Site:
    """One platform instance on disk: configuration, spool, database, logs."""

    def __init__(self, root: Path):
        self.root = root
        self.spool = root / "spool"
        self.db_path = root / "edi.db"
        self.config = root / "edi.toml"
        self.config.write_text(
            f'[spool]\nroot = "{self.spool}"\n'
            f'[database]\nurl = "sqlite:///{self.db_path}"\n'
            '[directory]\nej_patterns = { "11000201100044" = "^14\\\\d{8}$" }\n'
            f"[intake]\nsettle_seconds = {SETTLE}\npoll_seconds = {POLL}\nlease_seconds = 60\n"
            "[sftp]\nenabled = false\n[web]\nenabled = false\n"
            '[logging]\nformat = "json"\nlevel = "info"\n'
            '[[partners]]\napp = "DEMO"\ninterfaces = ["FSO1100A", "FSO1106A", "FSO1110A"]\n'
        )
        structures, services = generator.write_directory(root / "directory")
        url = f"sqlite:///{self.db_path}"
        import_directory(url, structures, services)
        db.dispose_all()
        self.runs: list[Serve] = []

    @property
    def inbox(self) -> Path:
        return self.spool / "partners" / "DEMO" / "in"

    @property
    def outbox(self) -> Path:
        return self.spool / "partners" / "DEMO" / "out"

    def serve(self, **env) -> Serve:
        run = Serve(self, len(self.runs), env)
        self.runs.append(run)
        run.wait_event("serving", timeout=20)
        return run

    def drop(self, flow: Path, name: str | None = None) -> Path:
        """Put a flow into the inbox atomically (copy under a dot-name, then rename)."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        target = self.inbox / (name or flow.name)
        tmp = self.inbox / f".{target.name}.copy"
        shutil.copyfile(flow, tmp)
        os.rename(tmp, target)
        return target

    def query(self, sql: str, *args) -> list[tuple]:
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def events(self, name: str | None = None) -> list[dict]:
        out = []
        for run in self.runs:
            out += [e for e in run.events() if name is None or e.get("event") == name]
        return out

    def reports(self, prefix: str) -> list[str]:
        return sorted(p.name for p in self.outbox.iterdir() if p.name.startswith(prefix)) if self.outbox.is_dir() else []

    def stop_all(self) -> None:
        for run in self.runs:
            run.stop()


class Serve:
    def __init__(self, site: Site, n: int, env: dict):
        self.log = site.root / f"serve-{n}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("EDI_")}
        environ.update({k: str(v) for k, v in env.items()})
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen([*EDI, "--config", str(site.config), "serve"], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=fh, env=environ, cwd=site.root)

    def events(self) -> list[dict]:
        out = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "_raw", "line": line})
        return out

    def wait_event(self, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if event.get("event") == name:
                    return event
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {name!r} event within {timeout}s (rc={self.proc.poll()}):\n{self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        """SIGTERM; returns the exit code (kills and fails if it does not stop within 30 s: a
        service stops after the flow in hand, which takes a few seconds on a loaded 2-core box)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("edi serve did not stop within 30 s of SIGTERM") from None
        return self.proc.returncode


def wait_until(predicate, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    for run in s.runs:  # never leave a service behind, whatever happened
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


# ------------------------------------------------------------------ 1. intake readiness


def test_serve_takes_complete_flows_only(site, tmp_path):
    gen_dir = tmp_path / "gen"
    renamed_part = generator.generate("FSO1110A", 3, gen_dir, seed=11).path
    renamed_dot = generator.generate("FSO1100A", 2, gen_dir, seed=12).path
    growing = generator.generate("FSO1110A", 150, gen_dir, seed=13).path
    run = site.serve()

    # Temporary names are never taken, however long they stay.
    site.drop(renamed_part, renamed_part.name + ".part")
    site.drop(renamed_dot, "." + renamed_dot.name)
    time.sleep(SETTLE + 4 * POLL + 1.0)
    assert sorted(p.name for p in site.inbox.iterdir()) == sorted(
        [renamed_part.name + ".part", "." + renamed_dot.name])
    assert site.query("SELECT count(*) FROM flow") == [(0,)]
    assert _files(site.spool / "work") == []

    # Renamed to their final names: taken and reported.
    os.rename(site.inbox / (renamed_part.name + ".part"), site.inbox / renamed_part.name)
    os.rename(site.inbox / ("." + renamed_dot.name), site.inbox / renamed_dot.name)
    wait_until(lambda: len(site.reports("CSO")) == 2, 30, "the two integration reports")

    # A file written in chunks, with pauses shorter than the settle time, is left alone until complete.
    data = growing.read_bytes()
    target = site.inbox / growing.name
    chunks = 6
    step = len(data) // chunks + 1
    with target.open("wb") as fh:
        for i in range(chunks):
            fh.write(data[i * step:(i + 1) * step])
            fh.flush()
            time.sleep(SETTLE * 0.4)
            assert target.exists(), f"taken after chunk {i + 1}/{chunks}, before it was complete"
    wait_until(lambda: len(site.reports("CSO")) == 3, 30, "the growing flow's report")

    assert run.stop() == 0
    rows = site.query("SELECT filename, size, sha256, state, invoice_count FROM flow ORDER BY id")
    by_name = {r[0]: r for r in rows}
    assert sorted(by_name) == sorted([renamed_part.name, renamed_dot.name, growing.name])
    assert by_name[growing.name][1:] == (len(data), hashlib.sha256(data).hexdigest(), "IN_INTEGRE", 150)
    assert by_name[renamed_part.name][3:] == ("IN_INTEGRE", 3)
    assert by_name[renamed_dot.name][3:] == ("IN_INTEGRE", 2)
    assert len(site.events("flow_received")) == 3
    assert list(site.inbox.iterdir()) == []


# ------------------------------------------------------------------ 2. SIGTERM


def test_sigterm_stops_cleanly(site):
    run = site.serve()
    started = time.monotonic()
    assert run.stop() == 0
    assert time.monotonic() - started < 5
    names = [e.get("event") for e in run.events()]
    assert names[-1] == "stopped", names
    assert "stopping" in names
    assert not any(e.get("level") in ("error", "critical") for e in run.events())


# ------------------------------------------------------------------ 3. crash and resume

N_BIG = 3000


@pytest.fixture(scope="module")
def big_flow(tmp_path_factory):
    """A CPP bulk flow big enough that processing takes a visible while, 10 % bad invoices."""
    return generator.generate("FSO1110A", N_BIG, tmp_path_factory.mktemp("big"), errors=0.1, seed=7)


def _flow_row(site: Site):
    rows = site.query("SELECT id, state FROM flow")
    return rows[0] if rows else None


def _crash_state(site: Site, point: str, name: str) -> None:
    """What the spool and database look like at the moment of each crash point."""
    work = [p for p in (site.spool / "work").iterdir() if p.is_file()]
    archive = _files(site.spool / "archive")
    if point == "claimed":
        assert [p.name.rsplit("__", 1)[-1] for p in work] == [name]
        assert site.query("SELECT count(*) FROM flow") == [(0,)] and archive == []
    elif point == "recorded":
        assert [p.name.rsplit("__", 1)[-1] for p in work] == [name]
        assert [r[1] for r in site.query("SELECT id, state FROM flow")] == ["RECU"] and archive == []
    elif point == "processing":
        assert work == [] and len(archive) == 1
        assert [r[1] for r in site.query("SELECT id, state FROM flow")] == ["EN_COURS"]
        assert site.query("SELECT count(*) FROM invoice") == [(0,)]
        assert site.reports("") == []
    elif point == "delivered":
        # the files are with the recipients, but the database knows nothing of them yet
        assert [r[1] for r in site.query("SELECT id, state FROM flow")] == ["EN_COURS"]
        assert site.query("SELECT count(*) FROM invoice") == [(0,)] and site.reports("") == []
        assert len([p for p in _files(site.spool / "recipients") if "_PJ" not in p.name]) > 0
    elif point == "committed":
        assert [r[1] for r in site.query("SELECT id, state FROM flow")] == ["IN_INTEGRE_PARTIEL"]
        assert site.query("SELECT count(*) FROM report WHERE written_at IS NULL") == [(2,)]
        assert site.reports("") == []


@pytest.mark.parametrize("point", ["claimed", "recorded", "processing", "delivered", "committed"])
def test_crash_and_resume(site, big_flow, point):
    name = big_flow.path.name
    if point == "processing":
        run = site.serve()
        site.drop(big_flow.path)
        staging = site.spool / "work" / "flow-1"
        wait_until(lambda: staging.is_dir() and len(os.listdir(staging)) >= 200, 60, "staging to fill", 0.01)
        run.proc.send_signal(signal.SIGKILL)
        assert run.proc.wait(timeout=10) == -signal.SIGKILL
    else:
        run = site.serve(EDI_TEST_CRASH_AT=point)
        site.drop(big_flow.path)
        assert run.proc.wait(timeout=60) == 137, run.log.read_text()[-3000:]
    _crash_state(site, point, name)

    # Restart: everything left is finished, nothing twice.
    resumed = site.serve()
    wait_until(lambda: site.query("SELECT count(*) FROM report WHERE written_at IS NOT NULL") == [(2,)]
               and site.query("SELECT state FROM flow") == [("IN_INTEGRE_PARTIEL",)], 90, "the resumed flow's reports")
    assert resumed.stop() == 0
    _check_outcome(site, big_flow)


def _check_outcome(site: Site, flow: generator.GeneratedFlow) -> None:
    good = sorted(i.number for i in flow.invoices if not i.error)
    rows = site.query("SELECT id, filename, state, invoice_count, accepted_count, sha256, archive_path FROM flow")
    assert len(rows) == 1, rows
    flow_id, filename, state, count, accepted, sha, archive_path = rows[0]
    assert (filename, state, count, accepted) == (flow.path.name, "IN_INTEGRE_PARTIEL", len(flow.invoices), len(good))

    # every invoice once, in order; the accepted ones are exactly the good ones
    invoices = site.query("SELECT seq, number, accepted, deposit_no, certificate FROM invoice WHERE flow_id = ?", flow_id)
    assert sorted(r[0] for r in invoices) == list(range(1, len(flow.invoices) + 1))
    assert sorted(r[1] for r in invoices) == sorted(i.number for i in flow.invoices)
    assert sorted(r[1] for r in invoices if r[2]) == good
    deposits = [r[3] for r in invoices if r[2]]
    assert len(set(deposits)) == len(deposits) == len(good)
    assert site.query("SELECT count(*) FROM statusevent") == [(2 * len(good),)]

    # recipient files: one per accepted invoice, bytes matching its certificate, no leftovers
    delivered = [p for p in _files(site.spool / "recipients") if "_PJ" not in p.name]
    assert sorted(p.name for p in delivered) == sorted(d + ".xml" for d in deposits)
    certificates = {r[3]: r[4] for r in invoices if r[2]}
    for path in delivered:
        digest = base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()
        assert digest == certificates[path.name[:-4]]
    assert not any(p.name.startswith(".") for p in _files(site.spool / "recipients"))

    # exactly one integration and one processing report, each written once
    assert site.reports("CSO") == ["CSO1110A_DEMO_" + flow.flow_id + ".xml"]
    assert len(site.reports("FEN")) == 1
    assert len(site.reports("")) == 2
    assert site.query("SELECT kind, count(*) FROM report GROUP BY kind ORDER BY kind") == [
        ("integration", 1), ("processing", 1)]
    assert len(site.events("report_written")) == 2

    # the original, archived unmodified; nothing left in work/ or in/
    archived = _files(site.spool / "archive")
    assert [str(p) for p in archived] == [archive_path]
    assert archived[0].read_bytes() == flow.path.read_bytes() and sha == _sha(flow.path)
    assert list((site.spool / "work").iterdir()) == []
    assert list(site.inbox.iterdir()) == []


# ------------------------------------------------------------------ 4. several workers


def test_two_services_process_each_flow_once(site, tmp_path):
    gen_dir = tmp_path / "gen"
    flows = [generator.generate("FSO1110A", n, gen_dir / str(seed), errors=0.1, seed=seed)
             for seed, n in ((21, 400), (22, 40), (23, 250), (24, 10), (25, 300), (26, 120))]
    flows.append(generator.generate("FSO1100A", 30, gen_dir / "27", errors=0.1, seed=27))
    runs = [site.serve(EDI_WORKERS_PROCESSES=2), site.serve()]
    # all at once: staged next to the inbox, then renamed in
    staged = site.inbox.parent / "staged"
    staged.mkdir()
    for flow in flows:
        shutil.copyfile(flow.path, staged / flow.path.name)
    for flow in flows:
        os.rename(staged / flow.path.name, site.inbox / flow.path.name)

    wait_until(lambda: site.query("SELECT count(*) FROM report WHERE written_at IS NOT NULL") == [(2 * len(flows),)]
               and all(s in ("IN_INTEGRE", "IN_INTEGRE_PARTIEL") for (s,) in site.query("SELECT state FROM flow")),
               60, "every flow's reports")
    assert [run.stop() for run in runs] == [0, 0]
    assert not [e for e in site.events() if e.get("level") in ("error", "critical") or e.get("event") == "_raw"]

    rows = site.query("SELECT id, filename, invoice_count, accepted_count FROM flow ORDER BY filename")
    assert [r[1] for r in rows] == sorted(f.path.name for f in flows)
    expected = {f.path.name: (len(f.invoices), len(f.invoices) - len(f.errors)) for f in flows}
    assert {r[1]: (r[2], r[3]) for r in rows} == expected
    done = [e["flow"] for e in site.events("flow_done")]
    assert sorted(done) == sorted(r[0] for r in rows), "a flow was processed twice (or not at all)"

    deposits = [d for (d,) in site.query("SELECT deposit_no FROM invoice WHERE accepted")]
    assert len(deposits) == len(set(deposits)) == sum(a for _, a in expected.values())
    delivered = [p.name for p in _files(site.spool / "recipients") if "_PJ" not in p.name]
    assert sorted(delivered) == sorted(d + ".xml" for d in deposits)
    assert len(site.reports("CSO")) == len(flows) and len(site.reports("FEN")) == len(flows)
    assert len(site.reports("")) == 2 * len(flows)
    assert len(_files(site.spool / "archive")) == len(flows)
    assert list(site.inbox.iterdir()) == [] and list((site.spool / "work").iterdir()) == []


# ------------------------------------------------------------------ 5. a flow that kills its worker


def test_flow_killing_its_worker_three_times_is_held_not_replayed_for_ever(site, tmp_path):
    """Attempts are counted when a worker takes the flow, so a worker killed in the middle
    (kill -9, the kernel out of memory) counts: after three, the flow waits for ops."""
    flow = generator.generate("FSO1110A", 20, tmp_path / "gen", errors=0.1, seed=41)
    site.drop(flow.path)
    for attempt in (1, 2, 3):
        run = site.serve(EDI_TEST_CRASH_AT="delivered")
        assert run.proc.wait(timeout=60) == 137, run.log.read_text()[-3000:]
        assert site.query("SELECT state, attempts FROM flow") == [("EN_COURS", attempt)]

    held = site.serve()
    wait_until(lambda: site.query("SELECT state FROM flow") == [("IN_ATTENTE_RETRAITEMENT",)], 30, "the flow on hold")
    time.sleep(3 * POLL)  # a few more rounds: still held, nothing sent
    assert site.query("SELECT state, attempts, owner FROM flow") == [("IN_ATTENTE_RETRAITEMENT", 3, None)]
    assert site.query("SELECT count(*) FROM invoice") == [(0,)] and site.reports("") == []
    assert [e["attempts"] for e in site.events("flow_held")] == [3]

    retried = subprocess.run([*EDI, "--config", str(site.config), "flows", "retry", flow.flow_id],
                             capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in os.environ.items() if not k.startswith("EDI_")})
    assert retried.returncode == 0, retried.stderr
    wait_until(lambda: site.query("SELECT count(*) FROM report WHERE written_at IS NOT NULL") == [(2,)]
               and site.query("SELECT state FROM flow") == [("IN_INTEGRE_PARTIEL",)], 60, "the retried flow's reports")
    assert held.stop() == 0
    _check_outcome(site, flow)
    steps = [s for (s,) in site.query("SELECT step FROM flowstep ORDER BY at, id")]
    assert steps[:8] == ["received", "archived", "claimed", "claimed", "claimed", "held", "retried", "claimed"]
    assert steps.count("finished") == 1 and steps.count("invoice") == 20
