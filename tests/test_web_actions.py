"""Actions from the console and the API (issue 10, point 4) on a real platform: they go through
the command line's functions, check roles, scope and CSRF, and are recorded with the user's
login. SQLite and PostgreSQL (`db_url`)."""

from __future__ import annotations

import re

from sqlalchemy import select, update

from edi import db, trace
from edi.db.models import ON_HOLD, Flow, Invoice, StatusEvent
from tests.helpers import DEMO, validate_report
from tests.web_helpers import make_console


def _csrf(page) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def _session(console, login: str):
    client = console.client()
    assert console.login(client, login).status_code == 303
    return client


def _chu_invoice(console) -> str:
    with db.session(console.platform.url) as s:
        return s.execute(select(Invoice.deposit_no).where(Invoice.recipient_siret == console.chu_siret,
                                                          Invoice.accepted)).scalars().first()


def _other_invoice(console) -> str:
    with db.session(console.platform.url) as s:
        return s.execute(select(Invoice.deposit_no).where(Invoice.recipient_siret != console.chu_siret,
                                                          Invoice.accepted)).scalars().first()


def _hold(console, flow_id: int) -> None:
    with db.session(console.platform.url) as s:
        s.execute(update(Flow).where(Flow.id == flow_id).values(state=ON_HOLD, attempts=3))
        trace.add(s, flow_id, trace.HELD, ON_HOLD, "3 tentatives en échec")
        s.commit()


def test_recipient_sets_a_status_by_reason(tmp_path, db_url):
    console = make_console(tmp_path, db_url=db_url)
    deposit = _chu_invoice(console)
    client = _session(console, "chu")
    page = client.get(f"/factures/{deposit}")
    assert 'value="motif"' in page.text and "JUSTIF_ABS" in page.text
    before = set(console.platform.out_files(DEMO))

    refused = client.post(f"/factures/{deposit}/statut", data={"statut": "motif", "motif": "JUSTIF_ABS"})
    assert refused.status_code == 403  # no CSRF token
    done = client.post(f"/factures/{deposit}/statut", data={
        "csrf": _csrf(page), "statut": "motif", "motif": "JUSTIF_ABS", "commentaire": "Joindre le PV."})
    assert done.status_code == 200 and "03 → 06" in done.text
    (new,) = set(console.platform.out_files(DEMO)) - before
    assert new.startswith(f"FEN1200A_{DEMO}_FEN")
    root = validate_report(console.platform.out_files(DEMO)[new])
    assert root.findtext(".//DonneesStatut/IdStatut") == "06"
    with db.session(console.platform.url) as s:
        event = s.execute(select(StatusEvent).order_by(StatusEvent.id.desc())).scalars().first()
    assert (event.code, event.producer, event.actor, event.reason) == ("06", "chu", "recipient", "JUSTIF_ABS")

    # a status the table refuses: the page says why, nothing changes
    again = client.post(f"/factures/{deposit}/statut", data={"csrf": _csrf(page), "statut": "11"})
    assert again.status_code == 422 and "REJ_" in again.text
    # another recipient's invoice: as if it did not exist
    other = client.post(f"/factures/{_other_invoice(console)}/statut",
                        data={"csrf": _csrf(page), "statut": "07"})
    assert other.status_code == 404
    # a sender sets no status
    sender = _session(console, "demo")
    page = sender.get(f"/factures/{_other_invoice(console)}")
    assert "Changer le statut" not in page.text
    assert sender.post(f"/factures/{_other_invoice(console)}/statut",
                       data={"csrf": _csrf(page), "statut": "07"}).status_code == 404


def test_status_through_the_api(tmp_path, db_url):
    console = make_console(tmp_path, db_url=db_url)
    deposit = _other_invoice(console)
    api = console.client()
    done = api.post(f"/api/v1/invoices/{deposit}/status", json={"status": "07", "comment": "Service fait."},
                    headers=console.token("ops"))
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "07" and done.json()["report"] in console.platform.out_files(DEMO)
    refused = api.post(f"/api/v1/invoices/{deposit}/status", json={"status": "motif", "reason": "NOPE"},
                       headers=console.token("ops"))
    assert refused.status_code == 422 and "REJ_INC" in refused.json()["detail"]
    hidden = api.post(f"/api/v1/invoices/{deposit}/status", json={"status": "08"}, headers=console.token("chu"))
    assert hidden.status_code == 404


def test_ops_retry_a_held_flow(tmp_path, db_url):
    console = make_console(tmp_path, db_url=db_url)
    flow_id = console.other_flow.id
    _hold(console, flow_id)
    sender = _session(console, "autre")
    page = sender.get(f"/flux/{flow_id}")
    assert "Remettre en file" not in page.text
    assert sender.post(f"/flux/{flow_id}/relancer", data={"csrf": _csrf(page)}).status_code == 403
    ops = _session(console, "ops")
    page = ops.get(f"/flux/{flow_id}")
    assert "Remettre en file" in page.text and "Étapes" in page.text and "held" in page.text
    assert ops.post(f"/flux/{flow_id}/relancer", data={"csrf": "faux"}).status_code == 403
    done = ops.post(f"/flux/{flow_id}/relancer", data={"csrf": _csrf(page)})
    assert done.status_code == 200 and "remis en file" in done.text
    assert console.platform.flow(flow_id).state == "RECU"
    assert "remis en file par ops" in console.platform.detail(flow_id)["trace"][-1]["detail"]
    again = console.client().post(f"/api/v1/flows/{flow_id}/retry", headers=console.token("ops"))
    assert again.status_code == 409  # no longer held


def test_ops_reprocess_and_resend(tmp_path, db_url):
    console = make_console(tmp_path, db_url=db_url)
    flow_id = console.demo_flow.id
    api = console.client()
    assert api.post(f"/api/v1/flows/{flow_id}/reprocess", headers=console.token("demo")).status_code == 403
    assert api.post(f"/api/v1/flows/{console.other_flow.id}/reprocess",
                    headers=console.token("demo")).status_code == 404
    dry = api.post(f"/api/v1/flows/{flow_id}/reprocess?dry_run=true", headers=console.token("ops"))
    assert dry.status_code == 200 and dry.json()["dry_run"] and dry.json()["by"] == "ops"
    steps = len(console.platform.detail(flow_id)["trace"])

    ops = _session(console, "ops")
    page = ops.get(f"/flux/{flow_id}")
    done = ops.post(f"/flux/{flow_id}/retraiter", data={"csrf": _csrf(page)})  # the box unticked: for real
    assert done.status_code == 200 and "Retraitement" in done.text
    trace_ = console.platform.detail(flow_id)["trace"]
    assert len(trace_) > steps and any(t["step"] == "reprocessed" and "par ops" in t["detail"] for t in trace_)

    name = console.platform.detail(flow_id)["reports"][0]["filename"]
    (console.platform.spool.outbox(DEMO) / name).unlink()
    resent = ops.post(f"/flux/{flow_id}/rapports/{name}/renvoyer", data={"csrf": _csrf(page)})
    assert resent.status_code == 200 and "de nouveau dans out/" in resent.text
    assert name in console.platform.out_files(DEMO)
    assert f"{name} renvoyé par ops" in console.platform.detail(flow_id)["trace"][-1]["detail"]
    missing = api.post(f"/api/v1/flows/{flow_id}/reports/NOPE.xml/resend", headers=console.token("ops"))
    assert missing.status_code == 404


def test_directory_and_partners_pages(tmp_path):
    console = make_console(tmp_path)
    sender = _session(console, "demo")
    found = sender.get("/annuaire", params={"name": "Informatique financiere", "city": "montreuil"})
    assert found.status_code == 200 and "11000201100044" in found.text
    assert sender.get("/annuaire", params={"city": "montreuil", "name": "zzz"}).text.count("/annuaire/1") == 0
    page = sender.get("/annuaire/11000201100044")
    assert "AIFE-DSI" in page.text and "Direction des systèmes d" in page.text
    assert sender.get("/annuaire/00000000000000").status_code == 404
    exported = sender.get("/annuaire.csv", params={"siret": "11000201100044"})
    assert exported.text.lstrip("\ufeff").splitlines()[1].startswith("11000201100044;")
    assert sender.get("/partenaires").status_code == 404  # ops only
    listed = _session(console, "ops").get("/partenaires")
    assert listed.status_code == 200 and "Opérateur de démonstration" in listed.text and "/flux?partner=AUTRE" in listed.text


def test_amount_column_is_added_and_backfilled_on_upgrade(tmp_path, db_url):
    """`invoice.amount_ttc` (numeric, indexed) on a database from before it: added, filled from
    the accepted invoices' text amounts, indexed; the amount search then finds them."""
    from decimal import Decimal

    from sqlalchemy import inspect, text

    console = make_console(tmp_path, db_url=db_url)
    url = console.platform.url
    with db.session(url) as s:
        expected = {i.deposit_no: Decimal(i.total_ttc) for i in s.execute(select(Invoice)).scalars() if i.accepted}
        assert all(i.amount_ttc == Decimal(i.total_ttc) for i in s.execute(select(Invoice)).scalars() if i.accepted)
    with db.engine_for(url).begin() as conn:
        conn.execute(text("DROP INDEX ix_invoice_amount_ttc"))
        conn.execute(text("ALTER TABLE invoice DROP COLUMN amount_ttc"))
    db.dispose_all()  # as a new process would find it
    eng = db.engine_for(url)
    assert "ix_invoice_amount_ttc" in {i["name"] for i in inspect(eng).get_indexes("invoice")}
    with db.session(url) as s:
        rows = s.execute(select(Invoice)).scalars().all()
    assert {i.deposit_no: i.amount_ttc for i in rows if i.accepted} == expected
    assert all(i.amount_ttc is None for i in rows if not i.accepted)
    deposit, amount = next(iter(expected.items()))
    found = console.client().get("/api/v1/invoices", params={"amount_min": str(amount), "amount_max": str(amount)},
                                 headers=console.token("ops")).json()["items"]
    assert deposit in [i["deposit_no"] for i in found]


def test_flow_page_lists_its_invoices_by_page(tmp_path, monkeypatch):
    from edi.web import pages

    monkeypatch.setattr(pages, "FLOW_INVOICES_PAGE", 3)
    console = make_console(tmp_path)
    ops = _session(console, "ops")
    flow_id = console.demo_flow.id  # 4 invoices
    first = ops.get(f"/flux/{flow_id}")
    assert first.text.count('id="facture-') == 3 and f"/flux/{flow_id}?page=2" in first.text
    second = ops.get(f"/flux/{flow_id}?page=2")
    assert 'id="facture-4"' in second.text and second.text.count('id="facture-') == 1
    assert "Factures suivantes" not in second.text
