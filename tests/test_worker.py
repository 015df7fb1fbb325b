"""The worker loop survives a platform error on one flow: the others go on, the failing flow is
retried, then put on hold for ops after three attempts, and `edi flows retry` puts it back."""

from __future__ import annotations

import edi.pipeline
from edi import worker
from edi.db.models import ON_HOLD
from edi.lease import MAX_ATTEMPTS
from edi.ingest import intake
from tests.helpers import DEMO, generated, make_platform


def test_failing_flow_does_not_block_the_queue_and_goes_on_hold(tmp_path, monkeypatch):
    platform = make_platform(tmp_path)
    poison = generated(tmp_path / "a", "FSO1110A", 2, seed=1)
    good = generated(tmp_path / "b", "FSO1110A", 2, seed=2)
    platform.drop(poison.path.name, poison.path.read_bytes())
    platform.drop(good.path.name, good.path.read_bytes())

    real = edi.pipeline._commit

    def failing_commit(url, flow, outcome):
        if flow.filename == poison.path.name:
            raise RuntimeError("disque plein (simulé)")
        return real(url, flow, outcome)

    monkeypatch.setattr(edi.pipeline, "_commit", failing_commit)
    readiness = intake.Readiness(0)
    for _ in range(MAX_ATTEMPTS):
        worker.run_once(platform.cfg, platform.spool, readiness)

    flows = {f["filename"]: f for f in platform.cli_json("flows", "list", "--json")}
    assert flows[good.path.name]["state"] == "IN_INTEGRE"
    assert flows[poison.path.name]["state"] == ON_HOLD
    assert not [n for n in platform.out_files() if poison.flow_id in n]  # nothing sent for it

    # fixed: ops put it back in the queue; the next round integrates it
    monkeypatch.setattr(edi.pipeline, "_commit", real)
    result = platform.cli("flows", "retry", poison.flow_id)
    assert result.exit_code == 0, result.output
    worker.run_once(platform.cfg, platform.spool, readiness)
    assert platform.detail(poison.flow_id)["state"] == "IN_INTEGRE"
    assert f"CSO1110A_{DEMO}_{poison.flow_id}.xml" in platform.out_files()
    # retry refuses a flow that is not on hold
    assert platform.cli("flows", "retry", poison.flow_id).exit_code == 2
