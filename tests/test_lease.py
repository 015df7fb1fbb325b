"""A stale worker (issue 8, item 3), on SQLite and PostgreSQL.

Worker A (a real process) takes a flow under a 1-second lease, decides its invoices, then stalls
(test hook `EDI_TEST_STALL_AT`, released by the test) before delivering them (`decided`) or before
its commit (`delivered`); worker B takes the expired lease over and finishes the flow. When A
wakes up it must find out, before writing anything, that it lost the flow, and leave it alone: no
IntegrityError, no flow set back to RECU, no hold, no file of the recipients touched again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timezone

import pytest

from edi import worker
from edi.db.models import IN_PROGRESS, Flow, utcnow
from edi.ingest import intake
from edi.lease import release_failed
from edi.pipeline import process
from edi.reports.outbox import deliver_pending
from tests.helpers import DEMO, generated, make_platform

WORKER_A = (
    "import sys\n"
    "from edi import config, log, pipeline\n"
    "cfg = config.load(sys.argv[1])\n"
    "log.configure('json', 'info')\n"
    "flow = pipeline.process(cfg, int(sys.argv[2]))\n"
    "print('RESULT', flow.state if flow else None)\n"
)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _recipient_files(platform) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in platform.delivered()}


@pytest.mark.parametrize("point", ["decided", "delivered"])
def test_stale_worker_leaves_a_flow_finished_by_another_alone(tmp_path, db_url, point):
    lease = {"EDI_INTAKE_LEASE_SECONDS": "1"}
    platform = make_platform(tmp_path, db_url=db_url, environ=lease)
    flow = generated(tmp_path, "FSO1110A", 5, errors=0.2, seed=31)
    path = platform.drop(flow.path.name, flow.path.read_bytes())
    flow_id = intake.take(platform.url, platform.spool, path, DEMO, move=True, origin="spool").id

    gate = tmp_path / "stall-gate"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDI_")}
    env.update(lease, EDI_TEST_STALL_AT=point, EDI_TEST_STALL_GATE=str(gate))
    a = subprocess.Popen([sys.executable, "-c", WORKER_A, str(platform.config_path), str(flow_id)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: gate.exists() or a.poll() is not None, 120, f"worker A to stall at {point}")
        assert a.poll() is None, a.communicate()
        a_row = platform.flow(flow_id)
        assert a_row.state == IN_PROGRESS and a_row.owner.endswith(f":{a.pid}")
        lease_until = a_row.lease_until if a_row.lease_until.tzinfo else a_row.lease_until.replace(tzinfo=timezone.utc)
        _wait(lambda: utcnow() > lease_until, 5, "A's lease to run out")

        # B takes the expired lease over and finishes the flow (A is alive, only slow)
        done = process(platform.cfg, flow_id)
        assert done is not None and done.state == "IN_INTEGRE_PARTIEL"
        assert deliver_pending(platform.url, platform.spool, flow_id) == 2
        finished, delivered = platform.detail(flow_id), _recipient_files(platform)
    finally:
        gate.unlink(missing_ok=True)  # A goes on
        out, err = a.communicate(timeout=120)
    assert a.returncode == 0, err[-3000:]
    assert out.strip() == "RESULT None"
    assert '"event": "flow_lease_lost"' in err and "IntegrityError" not in err

    # A wrote nothing: the flow is as B left it
    after = platform.detail(flow_id)
    assert after["state"] == "IN_INTEGRE_PARTIEL" and after["last_error"] is None
    assert after["invoices"] == finished["invoices"] and len(after["invoices"]) == 5
    assert after["reports"] == finished["reports"] and len(platform.out_files()) == 2
    assert _recipient_files(platform) == delivered and len(delivered) >= 4
    row = platform.flow(flow_id)
    assert (row.owner, row.lease_until, row.attempts) == (None, None, 2)
    steps = [(t["step"], t["outcome"]) for t in after["trace"]]
    assert steps.count(("claimed", "ok")) == 2 and ("lease_lost", "ko") == steps[-1]
    assert not [s for s in steps if s[0] in ("failed", "held")]
    assert steps.count(("finished", "IN_INTEGRE_PARTIEL")) == 1

    # failure handling touches only a flow this worker holds; later rounds leave it alone
    assert release_failed(platform.url, flow_id, "RuntimeError: trop tard") is None
    for _ in range(3):
        worker.run_once(platform.cfg, platform.spool, intake.Readiness(0))
    assert platform.detail(flow_id) == after


def test_failure_of_a_flow_another_worker_holds_changes_nothing(tmp_path, db_url):
    platform = make_platform(tmp_path, db_url=db_url)
    flow = generated(tmp_path, "FSO1110A", 1, seed=32)
    path = platform.drop(flow.path.name, flow.path.read_bytes())
    flow_id = intake.take(platform.url, platform.spool, path, DEMO, move=True, origin="spool").id
    from edi import db

    with db.session(platform.url) as s:  # held by a live worker of another host
        row = s.get(Flow, flow_id)
        row.state, row.owner, row.attempts = IN_PROGRESS, "autre-hote:4242", 1
        row.lease_until = utcnow().replace(year=utcnow().year + 1)
        s.commit()
    assert release_failed(platform.url, flow_id, "RuntimeError: pas à moi") is None
    row = platform.flow(flow_id)
    assert (row.state, row.owner, row.attempts, row.last_error) == (IN_PROGRESS, "autre-hote:4242", 1, None)
    assert process(platform.cfg, flow_id) is None  # its lease is live: not taken
    assert platform.flow(flow_id).attempts == 1
