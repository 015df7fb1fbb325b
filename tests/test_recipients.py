"""Recipient partners (issue 9, point 2): their invoices as CPPFacturePivot V2_01 in their out/
(`FDE2001A_<APP>_<ID>.xml`), the files in spool/recipients/ as before; on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from datetime import date
from pathlib import Path

from lxml import etree
from sqlalchemy import select

from edi import db, gen
from edi.db.models import Invoice, Partner
from edi.reports.outbox import deliver_pending
from tests.aife import official
from tests.helpers import DEMO, PARTNERS, generated, make_platform

DAY = date(2026, 3, 2)
CHU = "CHUDEMO"
SIRETS = sorted(s.siret for s in gen.DIRECTORY_STRUCTURES if s.active)
RECIPIENT = {"app": CHU, "name": "CHU de démonstration", "role": "recipient", "sirets": SIRETS}


def with_recipient(tmp_path, db_url, sirets=SIRETS):
    return make_platform(tmp_path, db_url=db_url, partners=(*PARTNERS, {**RECIPIENT, "sirets": sirets}))


def deliveries(platform) -> dict[str, etree._Element]:
    files = {n: d for n, d in platform.out_files(CHU).items() if n.startswith("FDE2001A_")}
    roots = {n: etree.fromstring(d) for n, d in files.items()}
    for name, root in roots.items():
        assert official("CPPFacturePivot_V2_01.xsd").validate(root), (name, official("CPPFacturePivot_V2_01.xsd").error_log)
    return roots


def test_recipient_partner_is_stored_with_its_role_sirets_and_default_interface(tmp_path, db_url):
    platform = with_recipient(tmp_path, db_url)
    with db.session(platform.url) as s:
        chu, demo = s.get(Partner, CHU), s.get(Partner, DEMO)
    assert (chu.role, chu.sirets.split(","), chu.interfaces) == ("recipient", SIRETS, "FEN1200A")
    assert (demo.role, demo.sirets) == ("sender", "")
    assert platform.spool.outbox(CHU).is_dir() and platform.spool.inbox(CHU).is_dir()


def test_each_processed_flow_gives_the_recipient_partner_one_pivot_with_its_invoices(tmp_path, db_url):
    platform = with_recipient(tmp_path, db_url)
    made = generated(tmp_path, "FSO1110A", 4, seed=3, reference_date=DAY)
    flow = platform.ingest(made.path)
    assert flow.accepted_count == 4
    (name, root), = deliveries(platform).items()
    assert name == f"FDE2001A_{CHU}_FDE{flow.id:010d}{1:012d}.xml"
    units = root.findall("CPPFactures/CPPFacturePivotUnitaire")
    assert root.find("CPPFactures").get("Compteur") == "4" and len(units) == 4
    assert root.findtext("Enveloppe/EnveloppeUnitaire/Partenaires/Recepteur/Id") == CHU
    with db.session(platform.url) as s:
        invoices = {i.number: i for i in s.execute(select(Invoice).where(Invoice.flow_id == flow.id)).scalars()}
    for unit in units:
        invoice = invoices[unit.findtext("DonneesFacture/Id")]
        assert unit.findtext("DonneesFacture/IdCPRO") == str(invoice.id)
        assert unit.findtext("DonneesFacture/Renvoi") == "Non"
        assert unit.findtext("Debiteur/Identifiant") == invoice.recipient_siret
        pieces = unit.findall("PJ")
        assert pieces[0].findtext("TypePJ") == "01"
        with open(invoice.path, "rb") as fh:
            assert base64.b64decode(pieces[0].findtext("Contenu")) == fh.read()  # the original invoice
        assert len(pieces) >= 2 and all(p.findtext("TypePJ") == "02" for p in pieces[1:])  # its attachments
    # the spool/recipients files are still there for every invoice
    assert all(Path(i.path).is_file() for i in invoices.values())


def test_only_the_invoices_of_the_partners_sirets_and_nothing_twice_on_replay(tmp_path, db_url):
    mine = SIRETS[:1]
    platform = with_recipient(tmp_path, db_url, sirets=mine)
    made = generated(tmp_path, "FSO1110A", 12, seed=5, reference_date=DAY)
    flow = platform.ingest(made.path)
    with db.session(platform.url) as s:
        expected = sorted(i.number for i in s.execute(select(Invoice).where(
            Invoice.flow_id == flow.id, Invoice.accepted.is_(True), Invoice.recipient_siret.in_(mine))).scalars())
    found = deliveries(platform)
    delivered = sorted(u.findtext("DonneesFacture/Id") for r in found.values()
                       for u in r.iterfind("CPPFactures/CPPFacturePivotUnitaire"))
    assert delivered == expected and expected
    assert deliver_pending(platform.url, platform.spool) == 0  # written once: nothing left, nothing rewritten
    assert deliveries(platform).keys() == found.keys()
