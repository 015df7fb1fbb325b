"""Actions from the console and the API (issue 10, point 4) on a real platform: they go through
the command line's functions, check roles, scope and CSRF, and are recorded with the user's
login. SQLite and PostgreSQL (`db_url`)."""

from __future__ import annotations

import re

from sqlalchemy import select, update

from edi import db, trace
from edi.db.models import ON_HOLD, Flow, Invoice, StatusEvent
from tests.helpers import DEMO, validate_report
from tests.web_helpers import CHU, make_console


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


# ------------------------------------------------------------------ senders: recycle (04), complete (06)


def _put(console, deposit: str, code: str, reason: str) -> None:
    """As the recipient (here ops for it) would: the invoice in 04 or 06, its report delivered."""
    from edi import lifecycle
    from edi.reports.outbox import deliver_pending
    from edi.route import status
    from edi.spool import Spool

    applied = status.change_status(console.platform.url, deposit,
                                   status.Change(code, lifecycle.OPS, "ops", reason=reason))
    deliver_pending(console.platform.url, Spool(console.platform.cfg.spool_root), applied.flow_id)


def _demo_invoices(console) -> list[Invoice]:
    with db.session(console.platform.url) as s:
        return list(s.execute(select(Invoice).where(Invoice.flow_id == console.demo_flow.id, Invoice.accepted)
                              .order_by(Invoice.id)).scalars())


def _recyclable(console) -> tuple[Invoice, Invoice]:
    """A DEMO invoice not at the CHU, and the CHU's invoice (whose routing it is recycled to)."""
    chu = next(i for i in _demo_invoices(console) if i.recipient_siret == console.chu_siret)
    away = next(i for i in _demo_invoices(console) if i.recipient_siret != console.chu_siret)
    return away, chu


def _new_fen(console, before: set) -> object:
    (new,) = set(console.platform.out_files(DEMO)) - before
    assert new.startswith(f"FEN1200A_{DEMO}_FEN")
    return validate_report(console.platform.out_files(DEMO)[new])


def _chu_partner(console) -> None:
    """The CHU's `sirets` (appended to the configuration after the flows) into the database, as
    `edi serve` loads them: it is then a recipient partner, delivered FDE2001A."""
    from edi import partners

    partners.load_from_config(console.platform.cfg)


def _fde(console, before: set) -> list:
    from lxml import etree

    return [etree.fromstring(d) for n, d in console.platform.out_files(CHU).items()
            if n.startswith("FDE2001A_") and n not in before]


def test_sender_recycles_an_invoice_in_04_from_the_page(tmp_path, db_url):
    console = make_console(tmp_path, db_url=db_url)
    invoice, chu = _recyclable(console)
    client = _session(console, "demo")
    page = client.get(f"/factures/{invoice.deposit_no}")
    assert "Recycler la facture" not in page.text  # in 03: nothing to recycle
    _put(console, invoice.deposit_no, "04", "REF_ERR")
    page = client.get(f"/factures/{invoice.deposit_no}")
    assert "Recycler la facture" in page.text and "Compléter la facture" not in page.text
    assert f'value="{invoice.recipient_siret}"' in page.text  # the form starts from the current routing
    _chu_partner(console)
    before, fde_before = set(console.platform.out_files(DEMO)), set(console.platform.out_files(CHU))
    form = {"siret": chu.recipient_siret, "service": chu.code_service, "ej": chu.ej}

    assert client.post(f"/factures/{invoice.deposit_no}/recycler", data=form).status_code == 403  # no CSRF
    refused = client.post(f"/factures/{invoice.deposit_no}/recycler",
                          data={**form, "csrf": _csrf(page), "siret": "35600000000048"})
    assert refused.status_code == 400 and "ROUT-04 : Le destinataire est absent de l&#39;annuaire" in refused.text
    assert set(console.platform.out_files(DEMO)) == before

    done = client.post(f"/factures/{invoice.deposit_no}/recycler", data={**form, "csrf": _csrf(page)})
    assert done.status_code == 200 and "04 → 03" in done.text, done.text
    root = _new_fen(console, before)
    line = root.find(".//DonneesStatut")
    assert line.findtext("IdStatut") == "03" and "recyclée par le fournisseur (demo)" in line.findtext("Commentaire")
    with db.session(console.platform.url) as s:
        now = s.get(Invoice, invoice.id)
        event = s.execute(select(StatusEvent).where(StatusEvent.invoice_id == invoice.id)
                          .order_by(StatusEvent.id.desc())).scalars().first()
    assert (now.status, now.recipient_siret, now.code_service, now.ej) == ("03", chu.recipient_siret,
                                                                          chu.code_service, chu.ej)
    assert (event.code, event.producer) == ("03", "demo")
    (delivered,) = _fde(console, fde_before)  # the CHU, a recipient partner, gets it again
    assert delivered.findtext(".//DonneesFacture/Renvoi") == "Recyclée"

    again = client.post(f"/factures/{invoice.deposit_no}/recycler", data={**form, "csrf": _csrf(page)})
    assert again.status_code == 400 and "REJ_" in again.text  # now in 03


def test_recycle_roles_and_the_api(tmp_path, db_url):
    console = make_console(tmp_path, db_url=db_url)
    invoice, chu = _recyclable(console)
    api = console.client()
    body = {"siret": chu.recipient_siret, "service": chu.code_service, "ej": chu.ej}
    url = f"/api/v1/invoices/{invoice.deposit_no}/recycle"
    wrong = api.post(url, json=body, headers=console.token("demo"))
    assert wrong.status_code == 400 and "REJ_RG" in wrong.json()["detail"]  # in 03
    _put(console, invoice.deposit_no, "04", "REF_ERR")
    assert api.post(url, json=body, headers=console.token("autre")).status_code == 404  # another sender's
    assert api.post(url, json=body, headers=console.token("chu")).status_code == 403  # a recipient
    assert api.post(url, json=body).status_code == 401
    assert api.post("/api/v1/invoices/EDI9999999999999999999999/recycle", json=body,
                    headers=console.token("demo")).status_code == 404
    nothing = api.post(url, json={}, headers=console.token("demo"))
    assert nothing.status_code == 400 and "REJ_INC" in nothing.json()["detail"]
    # the other sender's page shows no form and its post is a 404
    autre = _session(console, "autre")
    page = autre.get(f"/factures/{_other_invoice_of(console, 'AUTRE')}")
    assert autre.post(f"/factures/{invoice.deposit_no}/recycler",
                      data={**body, "csrf": _csrf(page)}).status_code == 404
    chu_client = _session(console, "chu")
    page = chu_client.get(f"/factures/{_chu_invoice(console)}")
    assert chu_client.post(f"/factures/{invoice.deposit_no}/recycler",
                           data={**body, "csrf": _csrf(page)}).status_code == 403

    before = set(console.platform.out_files(DEMO))
    done = api.post(url, json=body, headers=console.token("demo"))
    assert done.status_code == 200, done.text
    assert (done.json()["previous"], done.json()["status"]) == ("04", "03")
    assert done.json()["report"] in console.platform.out_files(DEMO)
    _new_fen(console, before)


def _other_invoice_of(console, app: str) -> str:
    with db.session(console.platform.url) as s:
        return s.execute(select(Invoice.deposit_no).where(Invoice.flow_id == console.other_flow.id,
                                                          Invoice.accepted)).scalars().first()


def test_sender_completes_an_invoice_in_06_from_the_page_and_the_api(tmp_path, db_url):
    console = make_console(tmp_path, db_url=db_url)
    cfg = console.platform.cfg  # attachments within 1000 bytes here (the flows were ingested already)
    console.platform.cfg = cfg.model_copy(update={"limits": cfg.limits.model_copy(update={"max_file_bytes": 1000})})
    deposit = _chu_invoice(console)
    client = _session(console, "demo")
    _put(console, deposit, "06", "JUSTIF_ABS")
    page = client.get(f"/factures/{deposit}")
    assert "Compléter la facture" in page.text and "Recycler la facture" not in page.text
    _chu_partner(console)
    before, fde_before = set(console.platform.out_files(DEMO)), set(console.platform.out_files(CHU))
    files = [("pieces", ("../../PV de réception.pdf", b"%PDF-1.4 proces-verbal\n", "application/pdf")),
             ("pieces", ("bon.txt", b"bon de livraison\n", "text/plain"))]

    assert client.post(f"/factures/{deposit}/completer", files=files,
                       data={"commentaire": "PV joint"}).status_code == 403  # no CSRF
    big = client.post(f"/factures/{deposit}/completer", data={"csrf": _csrf(page)},
                      files=[("pieces", ("gros.pdf", b"x" * 1001, "application/pdf"))])
    assert big.status_code == 413 and "1000 octets" in big.text
    assert "REJ_INC : pièce jointe gros.pdf de plus de 1000 octets" in big.text
    empty = client.post(f"/factures/{deposit}/completer", data={"csrf": _csrf(page)},
                        files=[("pieces", ("vide.pdf", b"", "application/pdf"))])
    assert empty.status_code == 400 and "REJ_INC : pièce jointe vide.pdf vide" in empty.text
    none = client.post(f"/factures/{deposit}/completer", data={"csrf": _csrf(page)})
    assert none.status_code == 400 and "REJ_INC" in none.text
    assert set(console.platform.out_files(DEMO)) == before

    done = client.post(f"/factures/{deposit}/completer", files=files,
                       data={"csrf": _csrf(page), "commentaire": "PV joint"})
    assert done.status_code == 200 and "06 → 12" in done.text, done.text
    line = _new_fen(console, before).find(".//DonneesStatut")
    assert line.findtext("IdStatut") == "12" and "PV joint" in line.findtext("Commentaire")
    with db.session(console.platform.url) as s:
        invoice = s.execute(select(Invoice).where(Invoice.deposit_no == deposit)).scalars().one()
        event = s.execute(select(StatusEvent).where(StatusEvent.invoice_id == invoice.id)
                          .order_by(StatusEvent.id.desc())).scalars().first()
    assert (invoice.status, event.code, event.producer, event.actor) == ("12", "12", "demo", "supplier")
    import os
    beside = sorted(n for n in os.listdir(os.path.dirname(invoice.path)) if n.startswith(f"{deposit}_PJ"))
    assert beside[-2:] == [f"{deposit}_PJ3_PV_de_r_ception.pdf", f"{deposit}_PJ4_bon.txt"]  # no folder kept
    (delivered,) = _fde(console, fde_before)
    assert delivered.findtext(".//DonneesFacture/Renvoi") == "Complétée"

    # the API: the status is now 12, a refusal (400); roles as for recycling
    url = f"/api/v1/invoices/{deposit}/complete"
    piece = [("files", ("pv.pdf", b"%PDF-1.4\n", "application/pdf"))]
    refused = console.client().post(url, files=piece, headers=console.token("demo"))
    assert refused.status_code == 400 and "REJ_" in refused.json()["detail"]
    assert console.client().post(url, files=piece, headers=console.token("autre")).status_code == 404
    assert console.client().post(url, files=piece, headers=console.token("chu")).status_code == 403


def test_complete_through_the_api(tmp_path):
    console = make_console(tmp_path)
    deposit = _other_invoice_of(console, "AUTRE")
    _put(console, deposit, "06", "JUSTIF_ABS")
    before = set(console.platform.out_files("AUTRE"))
    done = console.client().post(f"/api/v1/invoices/{deposit}/complete", data={"comment": "Pièces jointes"},
                                 files=[("files", ("a.pdf", b"%PDF-1.4 a\n", "application/pdf")),
                                        ("files", ("b.pdf", b"%PDF-1.4 b\n", "application/pdf"))],
                                 headers=console.token("autre"))
    assert done.status_code == 200, done.text
    assert (done.json()["previous"], done.json()["status"]) == ("06", "12")
    (new,) = set(console.platform.out_files("AUTRE")) - before
    assert new == done.json()["report"] and validate_report(console.platform.out_files("AUTRE")[new]) is not None
    empty = console.client().post(f"/api/v1/invoices/{deposit}/complete", headers=console.token("ops"))
    assert empty.status_code == 400
