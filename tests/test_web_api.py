"""The console's HTTP surface on a real platform (real flows ingested, SQLite and PostgreSQL):
every `/api/v1` endpoint, authentication and CSRF refusals, role isolation, the upload intake,
`/healthz` and `/metrics`, the pages and their CSV exports."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil

import pytest
import structlog
from structlog.testing import capture_logs
from sqlalchemy import select

from edi import db, worker
from edi.db.models import ConsoleUser, Flow
from edi.cli import app
from edi.ingest import intake
from edi.queries import invoice_detail
from edi.web import users
from edi.web.app import create_app
from tests.helpers import DEMO, flow_name, generated, make_platform
from tests.web_helpers import OTHER, PASSWORD, make_console
from fastapi.testclient import TestClient
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    return make_console(tmp_path_factory.mktemp("console"))


@pytest.fixture(scope="module")
def ops(console):
    client = console.client()
    assert console.login(client, "ops").status_code == 303
    return client


# ------------------------------------------------------------------ health and metrics


def test_healthz_answers_without_login(console):
    response = console.client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "spool": "ok"}}


def test_healthz_503_when_the_spool_is_not_writable_or_a_check_fails(console, tmp_path):
    client = console.client(checks={"workers": lambda: (_ for _ in ()).throw(RuntimeError("aucun worker"))})
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["workers"] == "en échec : aucun worker"
    platform = make_platform(tmp_path, directory=False)
    client = TestClient(create_app(platform.cfg), base_url="https://testserver")
    work = platform.spool.work
    shutil.rmtree(work)
    work.write_text("un fichier à la place du dossier : rien ne peut plus y être écrit")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["spool"].startswith("en échec")
    assert response.json()["checks"]["database"] == "ok"


def test_metrics_after_real_flows(console):
    text = console.client().get("/metrics").text
    assert 'edi_flows_total{state="IN_INTEGRE_PARTIEL"} 1.0' in text
    assert 'edi_flows_total{state="IN_INTEGRE"} 1.0' in text
    demo = console.platform.detail(console.demo_flow.id)
    accepted = sum(i["accepted"] for i in demo["invoices"]) + console.other_flow.accepted_count
    assert f'edi_invoices_total{{outcome="accepted",status="03"}} {float(accepted)}' in text
    rejected = [i for i in demo["invoices"] if not i["accepted"]]
    assert f'edi_invoices_total{{outcome="rejected",status=""}} {float(len(rejected))}' in text
    for code in {f["code"] for i in rejected for f in i["findings"]}:
        assert re.search(rf'edi_findings_total{{rule="{re.escape(code)}",severity="fatal"}} \d', text), code
    assert "edi_flows_held 0.0" in text and "edi_queue_depth 0.0" in text


def test_metrics_stage_times_and_cached_counts(tmp_path):
    """Stage durations come from the trace, incrementally; the counts are kept a few seconds."""
    platform = make_platform(tmp_path)
    platform.ingest(generated(tmp_path, "FSO1110A", 3, seed=5).path)
    client = TestClient(create_app(platform.cfg), base_url="https://testserver")
    first = client.get("/metrics").text
    assert 'edi_stage_seconds_count{stage="total"} 1.0' in first
    for stage in ("intake", "queue", "flow_checks", "invoices", "commit", "report_write"):
        assert f'edi_stage_seconds_count{{stage="{stage}"}} 1.0' in first, stage
    assert 'edi_stage_seconds_bucket{le="+Inf",stage="total"} 1.0' in first
    platform.ingest(generated(tmp_path, "FSO1110A", 2, seed=6).path)
    second = client.get("/metrics").text
    assert 'edi_stage_seconds_count{stage="total"} 2.0' in second  # read from the new trace rows
    assert 'edi_flows_total{state="IN_INTEGRE"} 1.0' in second  # counts kept COUNTS_SECONDS
    fresh = TestClient(create_app(platform.cfg), base_url="https://testserver").get("/metrics").text
    assert 'edi_flows_total{state="IN_INTEGRE"} 2.0' in fresh


# ------------------------------------------------------------------ authentication


def test_api_refuses_without_or_with_a_bad_token(console):
    client = console.client()
    for path in ("/api/v1/flows", "/api/v1/invoices", f"/api/v1/flows/{console.demo_flow.id}",
                 "/api/v1/invoices/EDI0000000001000000000001"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/flows", headers={"Authorization": "Bearer edi_faux"}).status_code == 401
    assert client.post("/api/v1/flows", files={"file": ("x.xml", b"<a/>")}).status_code == 401


def test_pages_redirect_to_login_without_session(console):
    client = console.client()
    for path in ("/", "/flux", "/factures", f"/flux/{console.demo_flow.id}", "/factures.csv", "/deposer"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/connexion?suite=")


def test_session_cookie_flags(console):
    response = console.login(console.client(), "demo")
    assert response.status_code == 303
    cookie = [c for c in response.headers.get_list("set-cookie") if c.startswith("edi_session=")][0]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=lax" in cookie


def test_wrong_password_and_forged_cookie(console):
    client = console.client()
    with capture_logs() as logs:
        response = console.login(client, "demo", "pas-le-bon-mot")
        assert console.login(console.client(), "demo").status_code == 303
    assert response.status_code == 401
    assert "Identifiant ou mot de passe incorrect" in response.text
    events = [(e["event"], e.get("login") or e.get("user")) for e in logs if e["event"].startswith("console_login")]
    assert events == [("console_login_failed", "demo"), ("console_login", "demo")]
    client.cookies.set("edi_session", "eyJ1IjoxfQ.forge.signature", domain="testserver")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_csrf_refusals(console):
    client = console.client()
    client.get("/connexion")
    refused = client.post("/connexion", data={"login": "ops", "password": PASSWORD, "csrf": "faux"},
                          follow_redirects=False)
    assert refused.status_code == 403
    assert console.login(client, "ops").status_code == 303
    assert client.post("/deconnexion", data={}, follow_redirects=False).status_code == 403
    assert client.post("/deconnexion", data={"csrf": "faux"}, follow_redirects=False).status_code == 403
    upload = client.post("/deposer", files={"file": (flow_name(), b"<x/>")}, data={"csrf": "faux"})
    assert upload.status_code == 403
    # the API with a session cookie (not a token) needs the CSRF header for a POST
    assert client.post("/api/v1/flows", files={"file": (flow_name(), b"<x/>")}).status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 200  # still logged in
    page = client.get("/")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    out = client.post("/deconnexion", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/connexion"


def test_login_throttling_locks_the_account(tmp_path):
    console = make_console(tmp_path)
    client = console.client()
    for _ in range(users.MAX_FAILURES):
        assert console.login(client, "demo", "mauvais-mot-de-passe").status_code == 401
    locked = console.login(client, "demo")  # right password, but locked
    assert locked.status_code == 429
    assert "verrouillé" in locked.text
    with db.session(console.platform.url) as s:
        row = s.execute(select(ConsoleUser).where(ConsoleUser.login == "demo")).scalars().one()
        assert row.failed_logins == users.MAX_FAILURES and row.locked_until is not None
        row.locked_until = None  # the delay has passed
        s.commit()
    assert console.login(client, "demo").status_code == 303


def test_address_throttle_window():
    from edi.web.auth import AddressThrottle

    throttle = AddressThrottle(limit=3, window=60)
    for t in (0, 1, 2):
        assert not throttle.blocked("10.0.0.1", now=t)
        throttle.failed("10.0.0.1", now=t)
    assert throttle.blocked("10.0.0.1", now=3)
    assert not throttle.blocked("10.0.0.2", now=3)
    assert not throttle.blocked("10.0.0.1", now=62)  # the window slid past the failures


# ------------------------------------------------------------------ API searches and details


def test_api_flows_search_and_detail_as_ops(console):
    client, token = console.client(), console.token("ops")
    body = client.get("/api/v1/flows", headers=token).json()
    assert {f["app"] for f in body["items"]} == {DEMO, OTHER}
    assert body["page"] == 1 and body["has_next"] is False
    only = client.get("/api/v1/flows", params={"partner": OTHER}, headers=token).json()["items"]
    assert [f["id"] for f in only] == [console.other_flow.id]
    by_state = client.get("/api/v1/flows", params={"state": "IN_INTEGRE_PARTIEL"}, headers=token).json()["items"]
    assert [f["id"] for f in by_state] == [console.demo_flow.id]
    flowid = console.platform.detail(console.demo_flow.id)["flow_ref"]
    assert [f["id"] for f in client.get("/api/v1/flows", params={"flowid": flowid}, headers=token).json()["items"]] \
        == [console.demo_flow.id]
    assert client.get("/api/v1/flows", params={"since": "2999-01-01"}, headers=token).json()["items"] == []
    paged = client.get("/api/v1/flows", params={"size": 1}, headers=token).json()
    assert len(paged["items"]) == 1 and paged["has_next"] is True
    second = client.get("/api/v1/flows", params={"size": 1, "page": 2}, headers=token).json()
    assert second["items"][0]["id"] != paged["items"][0]["id"] and second["has_next"] is False
    detail = client.get(f"/api/v1/flows/{flowid}", headers=token).json()
    assert detail == json.loads(json.dumps(console.platform.detail(flowid), default=str))
    assert client.get("/api/v1/flows/INCONNU", headers=token).status_code == 404
    assert client.get("/api/v1/flows", params={"since": "hier"}, headers=token).status_code == 422


def test_api_invoice_search_filters_and_detail(console):
    client, token = console.client(), console.token("ops")
    items = client.get("/api/v1/invoices", params={"size": 500}, headers=token).json()["items"]
    accepted = [i for i in items if i["accepted"]]
    assert len(items) == 6 and len(accepted) == 4
    one = accepted[0]

    def numbers(**params):
        found = client.get("/api/v1/invoices", params=params, headers=token)
        assert found.status_code == 200, found.text
        return sorted(i["number"] for i in found.json()["items"])

    assert numbers(number=one["number"]) == [one["number"]]
    assert numbers(deposit_no=one["deposit_no"]) == [one["number"]]
    assert numbers(supplier=one["supplier_id"]) == sorted(i["number"] for i in items
                                                          if i["supplier_id"] == one["supplier_id"])
    assert numbers(recipient=one["recipient_siret"], code_service=one["code_service"]) == sorted(
        i["number"] for i in items if (i["recipient_siret"], i["code_service"]) ==
        (one["recipient_siret"], one["code_service"]))
    assert numbers(status="03") == sorted(i["number"] for i in accepted)
    amount = float(one["total_ttc"])
    assert one["number"] in numbers(amount_min=str(amount), amount_max=str(amount))
    assert numbers(amount_min=str(amount + 0.01), amount_max=str(amount + 0.01)) == []
    assert numbers(amount_min=str(amount).replace(".", ",")) == sorted(
        i["number"] for i in accepted if float(i["total_ttc"]) >= amount)
    today = one["deposited_at"][:10]
    assert numbers(since=today, until=today) == sorted(i["number"] for i in items)
    assert numbers(until="2000-01-01") == []
    bad = client.get("/api/v1/invoices", params={"amount_min": "beaucoup"}, headers=token)
    assert bad.status_code == 422 and "Montant minimum" in bad.json()["detail"]
    detail = client.get(f"/api/v1/invoices/{one['deposit_no']}", headers=token).json()
    assert detail["number"] == one["number"]
    assert [e["code"] for e in detail["events"]] == ["01", "03"]
    assert client.get("/api/v1/invoices/EDI9999999999999999999999", headers=token).status_code == 404


def test_role_isolation_sender(console):
    client, token = console.client(), console.token("demo")
    flows = client.get("/api/v1/flows", headers=token).json()["items"]
    assert [f["app"] for f in flows] == [DEMO]
    assert client.get("/api/v1/flows", params={"partner": OTHER}, headers=token).json()["items"] == []
    assert client.get(f"/api/v1/flows/{console.other_flow.id}", headers=token).status_code == 404
    invoices = client.get("/api/v1/invoices", headers=token).json()["items"]
    assert invoices and {i["app"] for i in invoices} == {DEMO}
    other_invoice = console.platform.detail(console.other_flow.id)["invoices"][0]["deposit_no"]
    assert client.get(f"/api/v1/invoices/{other_invoice}", headers=token).status_code == 404
    # the same through the pages: another partner's flow, report or invoice is a 404
    assert console.login(client, "demo").status_code == 303
    assert client.get(f"/flux/{console.other_flow.id}").status_code == 404
    other_report = console.platform.stored_reports(console.other_flow.id)[0]["filename"]
    assert client.get(f"/flux/{console.other_flow.id}/rapports/{other_report}").status_code == 404
    assert client.get(f"/factures/{other_invoice}").status_code == 404
    assert client.get(f"/factures/{other_invoice}/certificat").status_code == 404
    assert OTHER not in client.get("/flux.csv").text
    assert client.get(f"/flux/{console.demo_flow.id}").status_code == 200


def test_a_flowid_two_senders_used_opens_each_senders_own_flow(tmp_path):
    """The scope is in the query: a FLOWID is unique per sender only, so a sender asking for one
    another sender also used (later) gets its own flow, never the other's nor a 404."""
    console = make_console(tmp_path)
    shared = console.demo_flow.flow_ref
    later = console.platform.ingest(generated(tmp_path, "FSO1110A", 1, seed=5, partner=OTHER, flow_id=shared).path)
    assert later.app == OTHER and later.flow_ref == shared and later.id > console.demo_flow.id
    client = console.client()
    for login, expected in (("demo", console.demo_flow), ("autre", later), ("ops", later)):
        found = client.get(f"/api/v1/flows/{shared}", headers=console.token(login))
        assert found.status_code == 200 and found.json()["id"] == expected.id, login
    report = console.platform.stored_reports(console.demo_flow.id)[0]
    assert console.login(client, "demo").status_code == 303
    download = client.get(f"/flux/{shared}/rapports/{report['filename']}")
    assert download.status_code == 200 and download.content == report["content"]
    assert client.get(f"/flux/{later.id}").status_code == 404


def test_role_isolation_recipient(console):
    client, token = console.client(), console.token("chu")
    invoices = client.get("/api/v1/invoices", headers=token).json()["items"]
    assert invoices and {i["recipient_siret"] for i in invoices} == {console.chu_siret}
    assert all(i["accepted"] for i in invoices)
    assert client.get("/api/v1/flows", headers=token).status_code == 403
    assert client.get(f"/api/v1/flows/{console.demo_flow.id}", headers=token).status_code == 404
    elsewhere = [i["deposit_no"] for i in console.platform.detail(console.other_flow.id)["invoices"]
                 if i["recipient_siret"] != console.chu_siret]
    assert client.get(f"/api/v1/invoices/{elsewhere[0]}", headers=token).status_code == 404
    mine = invoices[0]["deposit_no"]
    assert client.get(f"/api/v1/invoices/{mine}", headers=token).status_code == 200
    assert client.post("/api/v1/flows", files={"file": (flow_name(), b"<x/>")}, headers=token).status_code == 403
    assert console.login(client, "chu").status_code == 303
    assert client.get(f"/flux/{console.demo_flow.id}").status_code == 404
    assert client.get("/flux").status_code == 404


def test_recipient_without_sirets_sees_nothing(console):
    users.add(console.platform.url, "sans-siret", "recipient", PASSWORD, OTHER)  # AUTRE declares no SIRET
    client = console.client()
    assert client.get("/api/v1/invoices", headers=console.token("sans-siret")).json()["items"] == []


def test_openapi_documents_the_api(console, ops):
    client = console.client()
    assert client.get("/api/docs", follow_redirects=False).status_code == 303  # a page: login first
    assert client.get("/api/openapi.json").status_code == 401
    docs = ops.get("/api/docs")
    assert docs.status_code == 200
    for line in ("GET /api/v1/flows", "POST /api/v1/flows", "GET /api/v1/flows/{ref}", "GET /api/v1/invoices",
                 "GET /api/v1/invoices/{deposit_no}", "<code>amount_min</code>", "<code>413</code>"):
        assert line in docs.text, line
    assert "cdn" not in docs.text.lower()  # served whole from here
    paths = client.get("/api/openapi.json", headers=console.token("demo")).json()["paths"]
    assert set(paths) == {"/api/v1/flows", "/api/v1/flows/{ref}", "/api/v1/invoices",
                          "/api/v1/invoices/{deposit_no}", "/api/v1/flows/{ref}/retry", "/api/v1/flows/{ref}/reprocess",
                          "/api/v1/flows/{ref}/reports/{filename}/resend", "/api/v1/invoices/{deposit_no}/status",
                          "/api/v1/invoices/{deposit_no}/recycle", "/api/v1/invoices/{deposit_no}/complete"}
    assert "multipart/form-data" in paths["/api/v1/invoices/{deposit_no}/complete"]["post"]["requestBody"]["content"]
    assert "post" in paths["/api/v1/flows"]


# ------------------------------------------------------------------ pages


def test_security_headers_and_unknown_pages(console, ops):
    page = ops.get("/")
    assert "script-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    missing = ops.get("/nulle-part")
    assert missing.status_code == 404 and "Page introuvable" in missing.text
    assert console.client().get("/api/v1/nulle-part").json() == {"detail": "Not Found"}


def test_pages_as_ops(console, ops):
    board = ops.get("/")
    assert board.status_code == 200
    for heading in ("Factures par statut", "Flux par état", "Principales règles de rejet",
                    "Flux en attente de retraitement", "Dernières erreurs de la plateforme"):
        assert heading in board.text
    assert "Mise à disposition du destinataire" in board.text
    flow = ops.get(f"/flux/{console.demo_flow.id}")
    assert "Intégré partiellement" in flow.text
    assert "Flux reçu, intégration partielle" in flow.text  # the integration report, rendered in French
    report = console.platform.stored_reports(console.demo_flow.id)[0]
    xml = ops.get(f"/flux/{console.demo_flow.id}/rapports/{report['filename']}")
    assert xml.status_code == 200 and xml.content == report["content"]
    assert xml.headers["content-type"].startswith("application/xml")
    other_report = console.platform.stored_reports(console.other_flow.id)[0]["filename"]
    for name in ("INCONNU.xml", other_report):  # only a report of this very flow is served
        missing = ops.get(f"/flux/{console.demo_flow.id}/rapports/{name}")
        assert missing.status_code == 404 and f"Compte rendu {name} introuvable pour ce flux" in missing.text
    assert ops.get(f"/flux/999999/rapports/{report['filename']}").status_code == 404
    listing = ops.get("/flux", params={"state": "IN_INTEGRE"})
    assert console.other_flow.filename in listing.text and console.demo_flow.filename not in listing.text


def test_invoice_pages_certificate_and_csv(console, ops):
    detail = console.platform.detail(console.demo_flow.id)
    deposited = next(i for i in detail["invoices"] if i["deposit_no"])
    page = ops.get(f"/factures/{deposited['deposit_no']}")
    assert page.status_code == 200 and "Historique des statuts" in page.text and "Déposée" in page.text
    cert = ops.get(f"/factures/{deposited['deposit_no']}/certificat")
    stored = invoice_detail(console.platform.url, deposited["deposit_no"])
    assert stored["certificate"] and stored["certificate"] in cert.text
    assert base64.b64decode(stored["certificate"]).hex() in cert.text
    for value in (stored["number"], stored["supplier_id"], stored["recipient_siret"], stored["total_ttc"]):
        assert value in cert.text
    exported = ops.get("/factures.csv", params={"status": "03"})
    assert exported.headers["content-disposition"] == 'attachment; filename="factures.csv"'
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff")), delimiter=";"))
    assert rows and {r["Statut"] for r in rows} == {"03"}
    assert deposited["deposit_no"] in {r["Numéro de dépôt"] for r in rows}
    flows_csv = list(csv.DictReader(io.StringIO(ops.get("/flux.csv").text.lstrip("\ufeff")), delimiter=";"))
    assert {r["Émetteur"] for r in flows_csv} == {DEMO, OTHER}
    search = ops.get("/factures", params={"number": deposited["number"]})
    assert f'href="/factures/{deposited["deposit_no"]}"' in search.text
    assert "/factures.csv?number=" in search.text
    assert ops.get("/factures/EDI9999999999999999999999").status_code == 404


# ------------------------------------------------------------------ upload


def test_upload_goes_through_the_same_intake(tmp_path):
    console = make_console(tmp_path, limits={"max_flow_bytes": 200_000})
    client, token = console.client(), console.token("demo")
    flow = generated(tmp_path, "FSO1110A", 2, seed=7, partner=DEMO)
    data = flow.path.read_bytes()
    created = client.post("/api/v1/flows", files={"file": (flow.path.name, data)}, headers=token)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["state"] == "RECU" and body["filename"] == flow.path.name
    assert created.headers["location"] == f"/api/v1/flows/{body['id']}"
    with db.session(console.platform.url) as s:
        row = s.get(Flow, body["id"])
        assert row.source == "api:demo" and open(row.archive_path, "rb").read() == data
    worker.run_once(console.platform.cfg, console.platform.spool, intake.Readiness(0))
    done = client.get(f"/api/v1/flows/{flow.flow_id}", headers=token).json()
    assert done["state"] == "IN_INTEGRE"
    assert f"CSO1110A_{DEMO}_{flow.flow_id}.xml" in console.platform.out_files()

    def refused(name, content, headers=token):
        response = client.post("/api/v1/flows", files={"file": (name, content)}, headers=headers)
        return response.status_code, response.json().get("code")

    assert refused(flow.path.name, data) == (409, "IRR_UNCITE")
    assert refused(f"FSO1100A_{DEMO}_{flow.flow_id}.tar.gz", data) == (409, "IRR_UNCITE")  # any interface
    assert refused("facture.xml", data) == (400, "IRR_NOM_F")
    assert refused("../" + flow.path.name, data) == (400, "IRR_NOM_F")
    assert refused(flow_name(app=DEMO, ext="zip"), data) == (400, "IRR_TYPE")
    assert refused(flow_name(app=OTHER), data) == (403, "IRR_CODE_APP")
    assert refused(flow_name(app="INCONNU"), data, console.token("ops")) == (403, "IRR_CODE_APP")
    assert refused(flow_name(app=DEMO), b"") == (400, "IRR_VIDE")
    assert refused(flow_name(app=DEMO), b"x" * 200_001) == (413, "IRR_TAILLE")
    # ops may deposit for any partner; nothing is left behind in in/ or in the staging area
    other = generated(tmp_path, "FSO1110A", 1, seed=8, partner=OTHER)
    assert client.post("/api/v1/flows", files={"file": (other.path.name, other.path.read_bytes())},
                       headers=console.token("ops")).status_code == 201
    spool = console.platform.spool
    assert [p.name for p in spool.work.iterdir() if p.name.startswith(".upload")] == []
    assert list(spool.inbox(DEMO).iterdir()) == []
    # a second upload of the same FLOWID before the first was processed is refused too
    assert refused(other.path.name, other.path.read_bytes(), console.token("ops")) == (409, "IRR_UNCITE")


def test_deposit_form_in_the_console(tmp_path):
    woken = []
    console = make_console(tmp_path)
    client = console.client(on_deposit=woken.append)
    assert console.login(client, "demo").status_code == 303
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/deposer").text).group(1)
    flow = generated(tmp_path, "FSO1110A", 1, seed=9, partner=DEMO)
    done = client.post("/deposer", files={"file": (flow.path.name, flow.path.read_bytes())}, data={"csrf": csrf})
    assert done.status_code == 201 and "Flux reçu" in done.text
    assert len(woken) == 1
    bad = client.post("/deposer", files={"file": ("mauvais.xml", b"<x/>")}, data={"csrf": csrf})
    assert bad.status_code == 400 and "IRR_NOM_F" in bad.text


# ------------------------------------------------------------------ users CLI


def test_users_cli(console):
    platform = console.platform
    def run(*args, stdin=None):
        try:
            return CliRunner().invoke(app, ["--config", str(platform.config_path), *args], input=stdin)
        finally:
            structlog.reset_defaults()  # the CLI points the logger at the runner's (closed) stderr

    added = run("users", "add", "compta", "--role", "sender", "--partner", DEMO, "--password-stdin",
                stdin="un-mot-de-passe-long\n")
    assert added.exit_code == 0, added.output
    assert run("users", "add", "compta", "--role", "ops", "--password-stdin",
               stdin="un-mot-de-passe-long\n").exit_code == 2
    assert "trop court" in run("users", "add", "x1", "--role", "ops", "--password-stdin", stdin="court\n").output
    assert "exige --partner" in run("users", "add", "x2", "--role", "sender", "--password-stdin",
                                    stdin="un-mot-de-passe-long\n").output
    assert "partenaire inconnu" in run("users", "add", "x3", "--role", "recipient", "--partner", "NOPE",
                                       "--password-stdin", stdin="un-mot-de-passe-long\n").output
    assert "rôle inconnu" in run("users", "add", "x4", "--role", "admin", "--password-stdin",
                                 stdin="un-mot-de-passe-long\n").output
    issued = run("users", "token", "compta")
    assert issued.exit_code == 0
    token = issued.stdout.strip().splitlines()[-1]
    assert token.startswith("edi_")
    assert run("users", "token", "personne").exit_code == 2
    listed = json.loads(run("users", "list", "--json").stdout)
    assert {"login": "compta", "role": "sender", "partner": DEMO, "token": True} .items() <= \
        next(u for u in listed if u["login"] == "compta").items()
    text = platform.database_text()
    assert token not in text and "un-mot-de-passe-long" not in text  # only hashes are stored
    assert "$argon2id$" in text
    client = console.client()
    assert client.get("/api/v1/flows", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert console.login(client, "compta", "un-mot-de-passe-long").status_code == 303


# ------------------------------------------------------------------ both databases


def test_searches_and_scope_on_each_database(tmp_path, db_url):
    console = make_console(tmp_path, db_url=db_url)
    client = console.client()
    ops, demo, chu = console.token("ops"), console.token("demo"), console.token("chu")
    assert len(client.get("/api/v1/flows", headers=ops).json()["items"]) == 2
    assert len(client.get("/api/v1/flows", headers=demo).json()["items"]) == 1
    amounts = client.get("/api/v1/invoices", params={"amount_min": "0", "size": 500}, headers=ops).json()["items"]
    assert len(amounts) == 4 and all(i["accepted"] for i in amounts)
    assert {i["recipient_siret"] for i in client.get("/api/v1/invoices", headers=chu).json()["items"]} \
        == {console.chu_siret}
    board = client.get("/", follow_redirects=False)
    assert board.status_code == 303
    assert console.login(client, "ops").status_code == 303
    page = client.get("/")
    assert page.status_code == 200 and "Flux reçus par jour" in page.text


def test_login_returns_to_the_asked_page_but_never_leaves_the_site(console):
    client = console.client()
    for asked, expected in (("/factures?status=03", "/factures?status=03"), ("//ailleurs.example", "/"),
                            ("/\\ailleurs.example", "/"), ("https://ailleurs.example/", "/")):
        form = client.get("/connexion", params={"suite": asked})
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        suite = re.search(r'name="suite" value="([^"]*)"', form.text).group(1)
        done = client.post("/connexion", data={"login": "ops", "password": PASSWORD, "csrf": csrf,
                                               "suite": asked if asked != expected else suite},
                           follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == expected, asked
        client.cookies.clear()


def test_edi_web_serves_until_sigterm(tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    platform = make_platform(tmp_path, directory=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with platform.config_path.open("a") as fh:
        fh.write(f"[web]\nport = {port}\n")
    proc = subprocess.Popen([sys.executable, "-m", "edi.cli", "--config", str(platform.config_path), "web"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=os.getcwd())
    try:
        deadline, answer = time.monotonic() + 60, None
        while time.monotonic() < deadline and answer is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    answer = (response.status, json.loads(response.read()))
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.2)
        assert answer == (200, {"status": "ok", "checks": {"database": "ok", "spool": "ok"}})
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert f"http://127.0.0.1:{port}/" in err.decode()


def test_edi_web_on_a_busy_port_says_so(tmp_path):
    import socket

    platform = make_platform(tmp_path, directory=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with platform.config_path.open("a") as fh:
            fh.write(f"[web]\nport = {busy.getsockname()[1]}\n")
        result = platform.cli("web")
    assert result.exit_code == 2
    assert "la console web n'a pas démarré" in result.output and "[web] port" in result.output


def test_csv_cells_never_start_a_formula():
    from edi.web.pages import _cell

    assert _cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert _cell("@SUM(A1)") == "'@SUM(A1)" and _cell("+33 1 23") == "'+33 1 23"
    assert _cell("-12.50") == "-12.50" and _cell("1250.00") == "1250.00"  # amounts stay numbers
    assert _cell(None) == "" and _cell(3) == "3" and _cell("F-001") == "F-001"
