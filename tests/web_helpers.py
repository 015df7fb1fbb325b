"""A platform with two senders and a recipient, real flows processed, and console users:
shared by the API tests and the browser tests."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.testclient import TestClient
from sqlalchemy import select

from edi import config as config_mod
from edi import db
from edi.db.models import Invoice
from edi.web import users
from edi.web.app import create_app
from tests.helpers import DEMO, Platform, generated, make_platform

OTHER = "AUTRE"
CHU = "CHUDEMO"
PASSWORD = "mot-de-passe-solide"
INTERFACES = ["FSO1100A", "FSO1106A", "FSO1110A"]
WEB_PARTNERS = (
    {"app": DEMO, "name": "Opérateur de démonstration", "interfaces": INTERFACES},
    {"app": OTHER, "name": "Autre opérateur", "interfaces": INTERFACES},
    {"app": CHU, "name": "CHU de démonstration", "interfaces": []},
)


@dataclass
class Console:
    platform: Platform
    demo_flow: object  # Flow rows as ingested
    other_flow: object
    chu_siret: str  # the recipient partner's SIRET (one of DEMO's invoices goes there)

    def client(self, **app_options) -> TestClient:
        return TestClient(create_app(self.platform.cfg, **app_options), base_url="https://testserver")

    def token(self, login: str) -> dict:
        return {"Authorization": f"Bearer {users.new_token(self.platform.url, login)}"}

    def login(self, client: TestClient, login: str, password: str = PASSWORD):
        form = client.get("/connexion")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        return client.post("/connexion", data={"login": login, "password": password, "csrf": csrf, "suite": "/"},
                           follow_redirects=False)


def make_console(tmp_path, db_url: str | None = None, limits: dict | None = None) -> Console:
    platform = make_platform(tmp_path, db_url=db_url, partners=WEB_PARTNERS, limits=limits)
    demo = generated(tmp_path, "FSO1110A", 4, errors=0.5, seed=3, partner=DEMO)
    other = generated(tmp_path, "FSO1110A", 2, seed=4, partner=OTHER)
    demo_flow = platform.ingest(demo.path)
    other_flow = platform.ingest(other.path)
    with db.session(platform.url) as s:
        chu_siret = s.execute(select(Invoice.recipient_siret).where(Invoice.flow_id == demo_flow.id,
                                                                    Invoice.accepted)).scalars().first()
    with platform.config_path.open("a", encoding="utf-8") as fh:  # CHU's is the last [[partners]] entry
        fh.write(f'role = "recipient"\nsirets = ["{chu_siret}"]\n')  # design: a recipient partner
    platform.cfg = config_mod.load(platform.config_path, environ={})
    users.add(platform.url, "ops", "ops", PASSWORD)
    users.add(platform.url, "demo", "sender", PASSWORD, DEMO)
    users.add(platform.url, "autre", "sender", PASSWORD, OTHER)
    users.add(platform.url, "chu", "recipient", PASSWORD, CHU)
    return Console(platform, demo_flow, other_flow, chu_siret)
