"""The trace (issue 7, point 4): every step of a flow is a row, read back by `edi flows show`.

Flows go through the real pipeline (`edi ingest` path, real files, real database on SQLite and
PostgreSQL); the tests assert the sequence of steps of an accepted, a partial, an irrecevable and
a failed flow (a platform failure injected inside the outcome transaction), and that a replay
after the failure does not write the invoice steps twice.
"""

from __future__ import annotations

from edi import worker
from edi.db.models import ON_HOLD
from edi.ingest import intake
from edi.lease import MAX_ATTEMPTS
from edi.reports import statut
from tests.helpers import DEMO, flow_name, generated, make_platform

INTAKE = ["received", "archived", "claimed"]
WRITTEN_TWO = ["reported", "reported"]


def _trace(platform, flow_id) -> list[dict]:
    return platform.cli_json("flows", "show", str(flow_id))["trace"]


def _steps(trace) -> list[str]:
    return [t["step"] for t in trace]


def test_accepted_flow_trace(tmp_path, db_url):
    platform = make_platform(tmp_path, db_url=db_url)
    flow = generated(tmp_path, "FSO1110A", 3, seed=11)
    done = platform.ingest(flow.path)
    trace = _trace(platform, done.id)

    assert _steps(trace) == INTAKE + ["checked", "invoice", "invoice", "invoice", "split", "delivered",
                                      *WRITTEN_TWO, "finished", "written", "written"]
    assert all(t["outcome"] == "ok" for t in trace if t["step"] != "finished")
    assert trace[-3]["outcome"] == "IN_INTEGRE" and trace[-3]["detail"] == "3/3 facture(s) acceptée(s)"
    invoices = [t for t in trace if t["step"] == "invoice"]
    detail = platform.detail(done.id)
    assert [t["invoice_seq"] for t in invoices] == [1, 2, 3]
    for step, invoice in zip(invoices, detail["invoices"]):
        assert invoice["number"] in step["detail"] and invoice["deposit_no"] in step["detail"]
    assert trace[0]["detail"].startswith("cli, ") and detail["sha256"] in trace[0]["detail"]
    assert trace[1]["detail"] == detail["archive_path"]
    assert trace[2]["detail"].startswith(f"tentative 1/{MAX_ATTEMPTS} par ")
    assert [t["detail"] for t in trace if t["step"] == "written"] == [
        f"partners/{DEMO}/out/{name}" for name in sorted(platform.out_files())]
    assert detail["attempts"] == 1 and detail["last_error"] is None

    shown = platform.cli("flows", "show", str(done.id))
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.split("Étapes", 1)[1].strip().splitlines()
    assert [line.split()[2] for line in lines[:len(trace)]] == _steps(trace)
    assert "finished   IN_INTEGRE" in shown.stdout


def test_partial_flow_trace_names_the_rejected_invoices(tmp_path, db_url):
    platform = make_platform(tmp_path, db_url=db_url)
    flow = generated(tmp_path, "FSO1110A", 6, errors=0.5, seed=12)
    done = platform.ingest(flow.path)
    assert done.state == "IN_INTEGRE_PARTIEL"
    trace = _trace(platform, done.id)

    assert _steps(trace) == INTAKE + ["checked"] + ["invoice"] * 6 + ["split", "delivered", *WRITTEN_TWO,
                                                                      "finished", "written", "written"]
    detail = platform.detail(done.id)
    for step, invoice in zip([t for t in trace if t["step"] == "invoice"], detail["invoices"]):
        fatal = [f["code"] for f in invoice["findings"] if f["severity"] != "warning"]
        if invoice["accepted"]:
            assert step["outcome"] == "ok" and not fatal
        else:
            assert step["outcome"] == "ko" and fatal
            assert step["detail"] == f"n° {invoice['number']} rejetée : " + ", ".join(dict.fromkeys(fatal))
    assert [t["outcome"] for t in trace if t["step"] == "invoice"].count("ko") == 3
    assert trace[-3]["outcome"] == "IN_INTEGRE_PARTIEL"
    assert next(t for t in trace if t["step"] == "delivered")["detail"].startswith("3 facture(s)")


def test_irrecevable_flow_trace(tmp_path):
    platform = make_platform(tmp_path)
    flow = generated(tmp_path, "FSO1110A", 2, seed=13)
    platform.ingest(flow.path)

    # refused before the split: its FLOWID was already received
    again = platform.ingest(platform.file(flow.path.name, flow.path.read_bytes()))
    trace = _trace(platform, again.id)
    assert _steps(trace) == INTAKE + ["checked", "reported", "finished", "written"]
    checked = trace[3]
    assert checked["outcome"] == "ko" and checked["detail"].startswith("IRR_UNCITE : ")
    assert trace[-2]["outcome"] == "IN_REJETE"
    assert f"(statut {statut.FLOW_REJECTED})" in trace[4]["detail"]

    # refused while splitting: not well-formed
    broken = platform.ingest(platform.file(flow_name("FSO1110A"), b"<CPPFactureMixte><Enveloppe>"))
    trace = _trace(platform, broken.id)
    assert _steps(trace) == INTAKE + ["checked", "split", "reported", "finished", "written"]
    assert trace[3]["outcome"] == "ok"
    assert trace[4]["outcome"] == "ko" and trace[4]["detail"].startswith("IRR_SYNTAX : ")


def test_failed_flow_keeps_the_error_text_and_replay_writes_each_step_once(tmp_path, db_url, monkeypatch):
    platform = make_platform(tmp_path, db_url=db_url)
    flow = generated(tmp_path, "FSO1110A", 4, errors=0.25, seed=14)
    platform.drop(flow.path.name, flow.path.read_bytes())

    def disk_full(*args, **kwargs):  # inside the outcome transaction, after the invoices are inserted
        raise OSError(28, "No space left on device")

    real = statut.write_processing_report
    monkeypatch.setattr(statut, "write_processing_report", disk_full)
    readiness = intake.Readiness(0)
    worker.run_once(platform.cfg, platform.spool, readiness)

    detail = platform.detail(flow.flow_id)
    assert detail["state"] == "RECU" and detail["attempts"] == 1
    assert detail["last_error"] == "OSError: [Errno 28] No space left on device"
    trace = detail["trace"]
    assert _steps(trace) == INTAKE + ["failed"]
    assert (trace[-1]["outcome"], trace[-1]["detail"]) == ("error", detail["last_error"])
    assert detail["invoices"] == [] and platform.out_files() == {}
    shown = platform.cli("flows", "show", flow.flow_id)
    assert "dernière erreur : OSError: [Errno 28] No space left on device" in shown.stdout

    # fixed: the next round replays it from the archive; the steps of the outcome appear once
    monkeypatch.setattr(statut, "write_processing_report", real)
    worker.run_once(platform.cfg, platform.spool, readiness)
    trace = _trace(platform, flow.flow_id)
    assert _steps(trace) == INTAKE + ["failed", "claimed", "checked"] + ["invoice"] * 4 + [
        "split", "delivered", *WRITTEN_TWO, "finished", "written", "written"]
    assert trace[4]["detail"].startswith(f"tentative 2/{MAX_ATTEMPTS} ")
    assert trace[-3]["outcome"] == "IN_INTEGRE_PARTIEL"
    assert [t["invoice_seq"] for t in trace if t["step"] == "invoice"] == [1, 2, 3, 4]


def test_held_and_retried_flow_trace(tmp_path, monkeypatch):
    platform = make_platform(tmp_path)
    flow = generated(tmp_path, "FSO1110A", 2, seed=15)
    platform.drop(flow.path.name, flow.path.read_bytes())
    monkeypatch.setattr(statut, "write_processing_report", lambda *a, **k: 1 / 0)
    readiness = intake.Readiness(0)
    for _ in range(MAX_ATTEMPTS):
        worker.run_once(platform.cfg, platform.spool, readiness)
    detail = platform.detail(flow.flow_id)
    assert detail["state"] == ON_HOLD and detail["last_error"] == "ZeroDivisionError: division by zero"
    assert _steps(detail["trace"]) == INTAKE + ["failed", "claimed", "failed", "claimed", "failed", "held"]
    assert detail["trace"][-1]["outcome"] == ON_HOLD

    assert platform.cli("flows", "retry", flow.flow_id).exit_code == 0
    monkeypatch.undo()
    worker.run_once(platform.cfg, platform.spool, readiness)
    trace = _trace(platform, flow.flow_id)
    assert _steps(trace)[9:12] == ["retried", "claimed", "checked"]
    assert trace[10]["detail"].startswith(f"tentative 1/{MAX_ATTEMPTS} ")
    assert trace[-3]["outcome"] == "IN_INTEGRE"


def test_refused_on_arrival_is_traced(tmp_path):
    platform = make_platform(tmp_path)
    refused = intake.record_refused(platform.url, DEMO, flow_name("FSO1110A"), 5 << 30, source="sftp")
    worker.run_once(platform.cfg, platform.spool, intake.Readiness(0))
    trace = _trace(platform, refused.id)
    assert _steps(trace) == ["received", "claimed", "checked", "reported", "finished", "written"]
    assert trace[0]["outcome"] == "ko" and trace[0]["detail"].startswith("sftp, ")
    assert trace[2]["outcome"] == "ko" and trace[2]["detail"].startswith("IRR_TAILLE : ")
