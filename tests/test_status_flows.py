"""Status flows from a recipient partner (issue 9, point 2): `FEN1200A_<APP>_<FLOWID>.xml` in its
in/, each line checked (REJ_INEX, REJ_HAB, REJ_RG, REJ_INC) and applied through the life-cycle
table, a CEN1200A for the recipient (90 / 96 / 93, one LigneErreurDetail per refused line), one
FEN1200A per sender with the recipient as Producteur. Real flows, real spool, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import func, select

from edi import db, gen
from edi.db.models import Flow, Invoice, StatusEvent
from edi.gen_statuses import Answer, status_file
from edi.gen_statuses import generate as generate_statuses
from tests.test_serve import Site, wait_until
from tests.helpers import DEMO, PARTNERS, error_lines, flow_status, generated, make_platform, status_lines, validate_report

DAY = date(2026, 3, 2)
AT = datetime(2026, 3, 10, 9, 30, tzinfo=timezone.utc)
CHU = "CHUDEMO"
SIRETS = sorted(s.siret for s in gen.DIRECTORY_STRUCTURES if s.active)
_refs = iter(range(1, 10**6))


def platform_with_invoices(tmp_path, db_url, sirets=SIRETS, invoices: int = 6):
    recipient = {"app": CHU, "name": "CHU de démonstration", "role": "recipient", "sirets": list(sirets)}
    platform = make_platform(tmp_path, db_url=db_url, partners=(*PARTNERS, recipient))
    made = generated(tmp_path, "FSO1110A", invoices, seed=3, reference_date=DAY)
    flow = platform.ingest(made.path)
    assert flow.accepted_count == invoices
    with db.session(platform.url) as s:
        rows = list(s.execute(select(Invoice).where(Invoice.flow_id == flow.id).order_by(Invoice.seq)).scalars())
    return platform, rows


def send(platform, answers, app=CHU):
    """The recipient drops a status flow in its in/; the platform processes it (edi ingest)."""
    path = status_file(platform.root / "statuses", app, f"ST{next(_refs):023d}", answers, AT)
    return platform.ingest(platform.drop(path.name, path.read_bytes(), app=app))


def cen(platform, flow):
    name, root = platform.report(flow, "CEN1200A")
    assert name == f"CEN1200A_{flow.app}_{flow.flow_ref}.xml"
    return root


def statuses(platform) -> dict[str, str]:
    with db.session(platform.url) as s:
        return {i.number: i.status for i in s.execute(select(Invoice).where(Invoice.accepted.is_(True))).scalars()}


def fen_for_sender(platform, before) -> list:
    new = {n: d for n, d in platform.out_files(DEMO).items() if n not in before and n.startswith("FEN1200A_")}
    return [validate_report(d) for d in new.values()]


def test_recipient_statuses_are_applied_and_reported_to_the_sender_with_the_recipient_as_producer(tmp_path, db_url):
    platform, (a, b, c, d, *_rest) = platform_with_invoices(tmp_path, db_url)
    before = platform.out_files(DEMO)
    flow = send(platform, [Answer(a, "07"), Answer(b, "04", "REF_ERR", "EJ inconnu"),
                           Answer(c, "06", "JUSTIF_ABS", "Joindre le PV"), Answer(d, "08", mandate="M0000042")])
    assert (flow.state, flow.invoice_count, flow.accepted_count) == ("IN_INTEGRE", 4, 4)
    assert flow_status(cen(platform, flow)) == "90" and error_lines(cen(platform, flow)) == []
    now = statuses(platform)
    assert [now[i.number] for i in (a, b, c, d)] == ["07", "04", "06", "08"]
    (report,) = fen_for_sender(platform, before)  # one FEN1200A for the sender, for the whole status flow
    lines = status_lines(report)
    assert [(ln["IdFacture"], ln["IdStatut"]) for ln in lines] == [(a.number, "07"), (b.number, "04"),
                                                                  (c.number, "06"), (d.number, "08")]
    assert {p.get("Id") for p in report.iterfind(".//DonneesStatut/Producteur")} == {CHU}
    assert "REF_ERR" in lines[1]["Commentaire"] and lines[3]["IdMandatDP"] == "M0000042"
    with db.session(platform.url) as s:
        events = s.execute(select(StatusEvent.actor, StatusEvent.producer).where(StatusEvent.code != "01",
                                                                                 StatusEvent.code != "03")).all()
    assert sorted(events) == [("recipient", CHU)] * 4


def test_each_refused_line_is_a_coded_line_of_the_cen_and_changes_nothing(tmp_path, db_url):
    mine = SIRETS[:3]
    platform, rows = platform_with_invoices(tmp_path, db_url, sirets=mine, invoices=8)
    ours = [i for i in rows if i.recipient_siret in mine]
    other = next(i for i in rows if i.recipient_siret not in mine)
    assert len(ours) >= 2
    good, target = ours[0], ours[1]
    unknown = Invoice(**{**good.model_dump(), "number": "INCONNUE-1"})
    nameless = Invoice(**{**good.model_dump(), "number": ""})
    before = statuses(platform)
    flow = send(platform, [
        Answer(good, "07"),
        Answer(unknown, "07"),                               # REJ_INEX
        Answer(other, "07"),                                 # REJ_HAB: not one of the partner's SIRETs
        Answer(target, "05", "REF_ERR"),                     # REJ_RG: REF_ERR means 04, not 05
        Answer(target, "06"),                                # REJ_INC: 06 needs a reason
        Answer(nameless, "07"),                              # REJ_INC: no IdFacture
        Answer(target, "12"),                                # REJ_HAB: 12 is the supplier's
    ])
    assert (flow.state, flow.invoice_count, flow.accepted_count) == ("IN_INTEGRE_PARTIEL", 7, 1)
    root = cen(platform, flow)
    assert flow_status(root) == "96"
    lines = error_lines(root)
    assert [ln["CodeErreur"] for ln in lines] == ["REJ_INEX", "REJ_HAB", "REJ_RG", "REJ_INC", "REJ_INC", "REJ_HAB"]
    assert lines[0]["DescriptionErreur"].startswith("Ligne 2 : facture INCONNUE-1")
    assert other.number in lines[1]["DescriptionErreur"] and "SIRET" in lines[1]["LibelleErreur"]
    assert "REF_ERR" in lines[2]["LibelleErreur"]
    after = statuses(platform)
    assert after[good.number] == "07"
    assert {n: s for n, s in after.items() if n != good.number} == {n: s for n, s in before.items() if n != good.number}


def test_a_flow_whose_lines_are_all_refused_is_93_and_the_sender_gets_nothing(tmp_path, db_url):
    platform, rows = platform_with_invoices(tmp_path, db_url, invoices=2)
    before = platform.out_files(DEMO)
    flow = send(platform, [Answer(rows[0], "05")])  # 05 without a reason
    assert flow.state == "IN_REJETE" and flow_status(cen(platform, flow)) == "93"
    assert fen_for_sender(platform, before) == []


def test_the_reason_decides_between_04_05_and_06_through_a_flow(tmp_path, db_url):
    platform, (a, b, c, d, e, f) = platform_with_invoices(tmp_path, db_url)
    flow = send(platform, [
        Answer(a, "04", "CODE_ROUTAGE_ERR"), Answer(b, "06", "JUSTIF_ABS"), Answer(c, "05", "DOUBLE_FACT"),
        Answer(d, "04", "JUSTIF_ABS"), Answer(e, "06", "REF_CT_ABSENT"), Answer(f, "05", "REF_ERR"),
    ])
    assert flow.accepted_count == 3
    assert [ln["CodeErreur"] for ln in error_lines(cen(platform, flow))] == ["REJ_RG"] * 3
    now = statuses(platform)
    assert [now[i.number] for i in (a, b, c, d, e, f)] == ["04", "06", "05", "03", "03", "03"]


def test_a_sender_cannot_send_statuses_nor_a_recipient_invoices(tmp_path, db_url):
    platform, rows = platform_with_invoices(tmp_path, db_url, invoices=1)
    flow = send(platform, [Answer(rows[0], "07")], app=DEMO)
    assert (flow.state, flow.error_code) == ("IN_REJETE", "IRR_CODE_APP")
    made = generated(tmp_path / "again", "FSO1110A", 1, seed=9, reference_date=DAY, partner=CHU)
    flow = platform.ingest(platform.drop(made.path.name, made.path.read_bytes(), app=CHU))
    assert (flow.state, flow.error_code) == ("IN_REJETE", "IRR_CODE_APP")
    assert statuses(platform) == {rows[0].number: "03"}


def test_a_malformed_status_flow_is_irrecevable_and_applies_nothing(tmp_path, db_url):
    platform, rows = platform_with_invoices(tmp_path, db_url, invoices=1)
    path = status_file(platform.root / "statuses", CHU, "ST" + "9" * 23, [Answer(rows[0], "07")], AT)
    data = path.read_bytes().replace(b'compteur="1"', b'compteur="2"')
    flow = platform.ingest(platform.drop(path.name, data, app=CHU))
    assert (flow.state, flow.error_code) == ("IN_REJETE", "IRR_SYNTAX")
    assert flow_status(cen(platform, flow)) == "93"
    truncated = platform.drop("FEN1200A_CHUDEMO_" + "T" * 25 + ".xml", data[: len(data) // 2], app=CHU)
    assert platform.ingest(truncated).error_code == "IRR_SYNTAX"
    assert statuses(platform) == {rows[0].number: "03"}


def test_the_same_status_flow_twice_is_irr_uncite_and_applied_once(tmp_path, db_url):
    platform, rows = platform_with_invoices(tmp_path, db_url, invoices=1)
    path = status_file(platform.root / "statuses", CHU, "ST" + "8" * 23, [Answer(rows[0], "07")], AT)
    first = platform.ingest(platform.drop(path.name, path.read_bytes(), app=CHU))
    again = platform.ingest(platform.drop(path.name, path.read_bytes(), app=CHU))
    assert (first.state, again.error_code) == ("IN_INTEGRE", "IRR_UNCITE")
    with db.session(platform.url) as s:
        assert s.execute(select(func.count()).select_from(StatusEvent).where(StatusEvent.code == "07")).scalar_one() == 1
        assert s.execute(select(func.count()).select_from(Flow)).scalar_one() == 3


def test_a_status_flow_is_not_reprocessed_its_statuses_stay_applied_once(tmp_path, db_url):
    """`edi reprocess` re-checks the invoices of an invoice flow; a status flow's lines were
    applied once and are never applied again: the run refuses it in one line, changes nothing."""
    platform, rows = platform_with_invoices(tmp_path, db_url, invoices=2)
    flow = send(platform, [Answer(rows[0], "07"), Answer(rows[1], "05")])  # 05 without a reason: refused
    assert flow.state == "IN_INTEGRE_PARTIEL"
    before = (statuses(platform), sorted(platform.out_files()), platform.flow(flow.id).state)
    for args in ((str(flow.id),), (flow.flow_ref, "--dry-run")):
        result = platform.cli("reprocess", *args)
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert f"flux {flow.id} : un flux de statuts (FEN1200A) ne se retraite pas" in result.output
    listed = platform.cli("reprocess", "--partner", CHU, "--dry-run", "--json")
    assert listed.exit_code == 2 and json.loads(listed.stdout) == dict(dry_run=True, flows=[], refused=[
        f"flux {flow.id} : un flux de statuts (FEN1200A) ne se retraite pas : ses statuts sont appliqués une fois"])
    assert (statuses(platform), sorted(platform.out_files()), platform.flow(flow.id).state) == before
    with db.session(platform.url) as s:
        assert s.execute(select(Flow.owner).where(Flow.id == flow.id)).scalar_one() is None
        assert s.execute(select(func.count()).select_from(StatusEvent).where(StatusEvent.code == "07")).scalar_one() == 1


# ------------------------------------------------------------------ crash and resume (real `edi serve`)


@pytest.mark.parametrize("point", ["statuses_applied", "committed"])
def test_a_status_flow_killed_mid_way_is_resumed_and_applied_once(tmp_path, point):
    site = Site(tmp_path)
    with site.config.open("a", encoding="utf-8") as fh:
        fh.write(f'[[partners]]\napp = "{CHU}"\nrole = "recipient"\nsirets = {json.dumps(SIRETS)}\n')
    url = f"sqlite:///{site.db_path}"
    try:
        run = site.serve()
        made = gen.generate("FSO1110A", 5, tmp_path / "made", seed=4, reference_date=DAY)
        site.drop(made.path)
        wait_until(lambda: site.query("SELECT state FROM flow") == [("IN_INTEGRE",)]
                   and site.query("SELECT count(*) FROM report WHERE written_at IS NULL") == [(0,)], 60, "the deposit")
        assert run.stop() == 0
        path, answers = generate_statuses(url, made.flow_id, tmp_path / "statuses", seed=1, at=AT)
        db.dispose_all()
        inbox = site.spool / "partners" / CHU / "in"

        crashed = site.serve(EDI_TEST_CRASH_AT=point)
        shutil.copyfile(path, inbox / f".{path.name}.part")
        os.rename(inbox / f".{path.name}.part", inbox / path.name)
        assert crashed.proc.wait(timeout=60) == 137, crashed.log.read_text()[-3000:]
        applied = site.query("SELECT count(*) FROM statusevent WHERE actor = 'recipient'")
        assert applied == ([(0,)] if point == "statuses_applied" else [(len(answers),)])

        resumed = site.serve()
        wait_until(lambda: site.query("SELECT state FROM flow WHERE id = 2") in ([("IN_INTEGRE",)], [("IN_INTEGRE_PARTIEL",)])
                   and site.query("SELECT count(*) FROM report WHERE written_at IS NULL") == [(0,)], 60, "the statuses")
        assert resumed.stop() == 0
    finally:
        for run in site.runs:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()
    # every line once: one recipient event per answer, the invoices at the answered status
    assert site.query("SELECT count(*) FROM statusevent WHERE actor = 'recipient'") == [(len(answers),)]
    assert sorted(site.query("SELECT number, status FROM invoice WHERE accepted")) == sorted(
        (a.invoice.number, a.status) for a in answers)
    # one CEN1200A for the recipient, one more FEN1200A for the sender, each written once
    chu_out = sorted(p.name for p in (site.spool / "partners" / CHU / "out").iterdir())
    assert [n for n in chu_out if n.startswith("CEN")] == [f"CEN1200A_{CHU}_{path.name.split('_')[2]}"]
    assert len(site.reports("FEN1200A")) == 2  # the deposit's 01/03, then the recipient's statuses
    assert site.query("SELECT kind, count(*) FROM report GROUP BY kind ORDER BY kind") == [
        ("delivery", 1), ("integration", 2), ("processing", 2)]


# ------------------------------------------------------------------ the whole loop, by the command line


def test_the_loop_deposit_statuses_report_recycle_redelivery_by_the_command_line(tmp_path, db_url):
    platform, rows = platform_with_invoices(tmp_path, db_url, invoices=12)
    flow_ref = platform.detail(rows[0].flow_id)["flow_ref"]
    result = platform.cli("gen", "--statuses", flow_ref, "--seed", "2", "--out", str(tmp_path / "st"))
    assert result.exit_code == 0, result.output
    (made,) = (tmp_path / "st").glob("FEN1200A_CHUDEMO_*.xml")
    assert validate_report(made.read_bytes()) is not None  # a recipient's status flow follows CPPStatut V1_19
    result = platform.cli("ingest", str(platform.drop(made.name, made.read_bytes(), app=CHU)))
    assert result.exit_code == 0 and "IN_INTEGRE" in result.stdout, result.output
    shown = platform.cli_json("flows", "show", made.name.split("_")[2][:-4])
    assert shown["state"] == "IN_INTEGRE" and [r["filename"][:9] for r in shown["reports"]] == ["CEN1200A_"]
    now = statuses(platform)
    assert set(now.values()) - {"03"} and set(now.values()) <= {"04", "05", "06", "07", "08", "11"}
    assert any(n.startswith("FEN1200A_") for n in platform.out_files(DEMO)) and any(
        n.startswith("CEN1200A_") for n in platform.out_files(CHU))
    to_recycle = [i for i in rows if now[i.number] == "04"]
    assert to_recycle, now
    a = to_recycle[0]
    other = next(i for i in rows if (i.recipient_siret, i.code_service, i.ej) != (a.recipient_siret, a.code_service, a.ej))
    result = platform.cli("invoices", "recycle", a.deposit_no, "--siret", other.recipient_siret,
                          "--service", other.code_service, "--ej", other.ej, "--by", "support")
    assert result.exit_code == 0, result.output
    assert statuses(platform)[a.number] == "03"
    assert any(n.startswith("FDE2001A_CHUDEMO_FDR") for n in platform.out_files(CHU))
    assert platform.cli("gen", "--statuses", "INCONNU", "--out", str(tmp_path / "st")).exit_code == 2
