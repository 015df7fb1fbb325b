"""`edi reprocess` through the real CLI on real processed flows (issue 10, point 6): a flow whose
invoices were rejected for an unknown recipient is reprocessed after the directory import that
fixes it; deposited invoices are never deposited twice, a dry run writes nothing, a second run
changes nothing. On SQLite and PostgreSQL (`db_url`)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from edi import db
from edi.db.models import FlowStep, Invoice, Report, StatusEvent
from tests.helpers import (
    DEMO, cpp_bytes, flow_status, cpp_tree, cpp_units, generated, make_platform, set_routing, status_lines, validate_report,
    write_directory,
)

DAY = date(2026, 3, 2)
UNKNOWN = "21750123800026"  # a valid SIRET the sample directory does not have


def snapshot(platform) -> dict:
    """Everything a reprocess may change: rows, report files, delivered files."""
    with db.session(platform.url) as s:
        invoices = [(i.seq, i.accepted, i.deposit_no, i.status, i.path)
                    for i in s.execute(select(Invoice).order_by(Invoice.id)).scalars()]
        counts = {t.__name__: s.execute(select(func.count()).select_from(t)).scalar_one()
                  for t in (Invoice, StatusEvent, Report, FlowStep)}
    return dict(invoices=invoices, counts=counts, out=sorted(platform.out_files()), delivered=platform.delivered())


def rejected_flow(tmp_path, db_url):
    """A 4-invoice CPP flow whose invoices 2 and 4 go to a structure missing from the directory."""
    platform = make_platform(tmp_path, db_url=db_url)
    made = generated(tmp_path, "FSO1110A", 4, seed=11, reference_date=DAY)
    root = cpp_tree(made.path.read_bytes())
    for unit in cpp_units(root)[1::2]:
        set_routing(unit, siret_=UNKNOWN, code=None, ej=None)
    flow = platform.ingest(platform.file(made.path.name, cpp_bytes(root)))
    assert (flow.state, flow.accepted_count) == ("IN_INTEGRE_PARTIEL", 2)
    return platform, flow


def fix_directory(platform) -> None:
    structures, services = write_directory(platform.root / "directory2", [{"Identifiant": UNKNOWN}])
    result = platform.cli("directory", "import", str(structures), "--services", str(services))
    assert result.exit_code == 0, result.output


def test_reprocess_after_directory_fix(tmp_path, db_url):
    platform, flow = rejected_flow(tmp_path, db_url)
    first = snapshot(platform)
    deposited_before = {seq: no for seq, accepted, no, *_ in first["invoices"] if accepted}
    assert sorted(deposited_before) == [1, 3]

    # before the fix: nothing would change
    dry = platform.cli_json("reprocess", str(flow.id), "--dry-run", "--by", "alice")
    assert dry["flows"][0]["changes"] == [] and snapshot(platform) == first

    fix_directory(platform)
    result = platform.cli("reprocess", str(flow.id), "--dry-run", "--by", "alice")
    assert result.exit_code == 0, result.output
    assert "rejetée → acceptée" in result.stdout and "essai à blanc" in result.stdout
    assert f"EDI{flow.id:010d}{2:012d}" in result.stdout
    assert snapshot(platform) == first  # a dry run writes nothing: rows, trace, reports, files

    result = platform.cli("reprocess", str(flow.id), "--by", "alice")
    assert result.exit_code == 0, result.output
    after = snapshot(platform)
    by_seq = {seq: (accepted, no, status) for seq, accepted, no, status, _ in after["invoices"]}
    assert all(by_seq[seq][0] and by_seq[seq][2] == "03" for seq in (1, 2, 3, 4))
    assert by_seq[2][1] == f"EDI{flow.id:010d}{2:012d}" and by_seq[4][1] == f"EDI{flow.id:010d}{4:012d}"
    assert {seq: by_seq[seq][1] for seq in (1, 3)} == deposited_before  # untouched
    assert platform.flow(flow.id).state == "IN_INTEGRE" and platform.flow(flow.id).accepted_count == 4
    # only the two new deposits: two invoice files more, 01 and 03 for each of them
    assert after["counts"]["StatusEvent"] == first["counts"]["StatusEvent"] + 4
    added = set(after["delivered"]) - set(first["delivered"])
    assert set(first["delivered"]) <= set(after["delivered"]) and all(p.parent.parent.name == UNKNOWN for p in added)
    assert sorted(p.name for p in added if p.suffix == ".xml") == [f"{by_seq[2][1]}.xml", f"{by_seq[4][1]}.xml"]

    # new reports next to the old ones, never over them
    new = sorted(set(after["out"]) - set(first["out"]))
    assert len(new) == 2 and set(first["out"]) <= set(after["out"])
    cso = next(n for n in new if n.startswith("CSO"))
    fen = next(n for n in new if n.startswith("FEN1200A"))
    assert cso.endswith(f"_{flow.id}.xml")
    out = platform.out_files(DEMO)
    assert flow_status(validate_report(out[cso])) == "90"  # the flow's status now: all accepted
    lines = status_lines(validate_report(out[fen]))
    assert sorted((line["IdStatut"], line["ComplementStatut"]) for line in lines) == sorted(
        (code, by_seq[seq][1]) for seq in (2, 4) for code in ("01", "03"))

    trace = platform.detail(flow.id)["trace"]
    (step,) = [t for t in trace if t["step"] == "reprocessed"]
    assert "par alice" in step["detail"] and "2 rejetée → acceptée" in step["detail"]

    # idempotent: a second run finds nothing to change and writes no report
    again = platform.cli_json("reprocess", str(flow.id), "--by", "bob")
    assert again["flows"][0]["changes"] == [] and again["flows"][0]["reports"] == []
    final = snapshot(platform)
    assert final["invoices"] == after["invoices"] and final["out"] == after["out"]
    assert final["delivered"] == after["delivered"]
    assert final["counts"]["FlowStep"] == after["counts"]["FlowStep"] + 1  # the run itself is traced
    assert "par bob : aucun changement" in platform.detail(flow.id)["trace"][-1]["detail"]


def test_deposited_invoice_rejected_today_is_kept(tmp_path, db_url):
    """A directory that lost a recipient: the dry run says the deposited invoices would be
    rejected today; the real run keeps them deposited and writes nothing but its trace."""
    platform = make_platform(tmp_path, db_url=db_url)
    made = generated(tmp_path, "FSO1110A", 2, seed=12, reference_date=DAY)
    root = cpp_tree(made.path.read_bytes())
    for unit in cpp_units(root):
        set_routing(unit, siret_=UNKNOWN, code=None, ej=None)
    fix_directory(platform)
    flow = platform.ingest(platform.file(made.path.name, cpp_bytes(root)))
    assert flow.accepted_count == 2
    structures, services = write_directory(platform.root / "directory3")  # without UNKNOWN again
    assert platform.cli("directory", "import", str(structures), "--services", str(services)).exit_code == 0
    before = snapshot(platform)

    dry = platform.cli_json("reprocess", str(flow.id), "--dry-run")
    kinds = [(c["kind"], c["applied"]) for c in dry["flows"][0]["changes"]]
    assert kinds == [("acceptée → rejetée", False)] * 2
    assert "ROUT" in dry["flows"][0]["changes"][0]["detail"]
    done = platform.cli_json("reprocess", str(flow.id))
    assert done["flows"][0]["reports"] == []
    after = snapshot(platform)
    assert after["invoices"] == before["invoices"] and after["out"] == before["out"]
    assert platform.flow(flow.id).state == "IN_INTEGRE"


def test_selection_and_refusals(tmp_path, db_url):
    platform, flow = rejected_flow(tmp_path, db_url)
    fix_directory(platform)
    result = platform.cli("reprocess", "NOPE")
    assert result.exit_code == 2 and "introuvable" in result.output
    result = platform.cli("reprocess")
    assert result.exit_code == 2 and "aucun flux" in result.output
    result = platform.cli("reprocess", "--state", "IN_ATTENTE_RETRAITEMENT")
    assert result.exit_code == 2 and "edi flows retry" in result.output
    listed = platform.cli_json("reprocess", "--partner", DEMO, "--state", "IN_INTEGRE_PARTIEL", "--dry-run")
    assert [f["flow"] for f in listed["flows"]] == [flow.id]
    assert [c["kind"] for c in listed["flows"][0]["changes"]] == ["rejetée → acceptée"] * 2
    assert platform.cli_json("reprocess", "--partner", "AUTRE", "--dry-run")["flows"] == []
