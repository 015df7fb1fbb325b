"""Recycling and completion (issue 9, point 4): a resend of an invoice in 04 with only its routing
data changed is recycled (routed again, back to 03, delivered again `Recyclée`); a resend of an
invoice in 06 with attachments added is completed (12, delivered again `Complétée`); every other
resend of a known number stays DOUBLON; the number of a rejected (05) invoice stays used. By EDI
(a new flow from the sender) and by command (`edi invoices recycle|complete`). SQLite and PostgreSQL.
"""

from __future__ import annotations

import copy
from datetime import date, datetime, timezone

from lxml import etree
from sqlalchemy import select

from edi import db, gen
from edi.db.models import Invoice, StatusEvent
from edi.gen_statuses import Answer, status_file
from tests.helpers import (
    DEMO, PARTNERS, cpp_bytes, cpp_tree, cpp_units, error_lines, generated, make_platform, set_routing,
    status_lines, validate_report,
)

DAY = date(2026, 3, 2)
AT = datetime(2026, 3, 10, 9, 30, tzinfo=timezone.utc)
CHU = "CHUDEMO"
SIRETS = sorted(s.siret for s in gen.DIRECTORY_STRUCTURES if s.active)
RECIPIENT = {"app": CHU, "name": "CHU de démonstration", "role": "recipient", "sirets": SIRETS}


def setup(tmp_path, db_url, answers):
    """A deposit of 4 invoices, then the recipient's statuses `answers` [(status, reason)]."""
    platform = make_platform(tmp_path, db_url=db_url, partners=(*PARTNERS, RECIPIENT))
    made = generated(tmp_path, "FSO1110A", 4, seed=3, reference_date=DAY)
    flow = platform.ingest(made.path)
    assert flow.accepted_count == 4
    rows = invoices(platform)
    path = status_file(platform.root / "st", CHU, "ST" + "1" * 23,
                       [Answer(i, code, reason) for i, (code, reason) in zip(rows, answers) if code], AT)
    assert platform.ingest(platform.drop(path.name, path.read_bytes(), app=CHU)).state == "IN_INTEGRE"
    return platform, made, rows


def invoices(platform) -> list[Invoice]:
    with db.session(platform.url) as s:
        return list(s.execute(select(Invoice).where(Invoice.deposit_no.is_not(None)).order_by(Invoice.id)).scalars())


def events(platform, invoice_id) -> list[tuple]:
    with db.session(platform.url) as s:
        return [tuple(r) for r in s.execute(select(StatusEvent.code, StatusEvent.actor, StatusEvent.producer)
                                            .where(StatusEvent.invoice_id == invoice_id).order_by(StatusEvent.id))]


def resend_flow(platform, made, edit, flow_id: str):
    """The sender's original flow sent again under a new FLOWID, each unit passed to `edit`
    (which returns it changed, or None to leave it out)."""
    root = cpp_tree(made.path.read_bytes())
    for unit in cpp_units(root):
        if edit(unit) is None:
            unit.getparent().remove(unit)
    units = cpp_units(root)
    root.find("CPPFactures").set("Compteur", str(len(units)))
    data = cpp_bytes(root).replace(made.flow_id.encode(), flow_id.encode())
    return platform.ingest(platform.drop(f"FSO1110A_{DEMO}_{flow_id}.xml", data))


def routing_of(invoice: Invoice) -> dict:
    return dict(siret_=invoice.recipient_siret, code=invoice.code_service or None, ej=invoice.ej or None)


def with_extra_attachment(unit):
    pj = copy.deepcopy(unit.find("PJ"))
    pj.set("NumOrdre", str(len(unit.findall("PJ")) + 1))
    pj.find("NomPJ").text = "PV_reception.pdf"
    pj.find("TypePJ").text = "02"
    unit.findall("PJ")[-1].addnext(pj)
    return unit


def deliveries(platform) -> list[etree._Element]:
    return [etree.fromstring(d) for n, d in sorted(platform.out_files(CHU).items()) if n.startswith("FDE2001A_")]


def test_resends_by_edi_recycle_a_04_complete_a_06_and_stay_doublon_otherwise(tmp_path, db_url):
    platform, made, (a, b, c, d) = setup(tmp_path, db_url, [("04", "REF_ERR"), ("06", "JUSTIF_ABS"),
                                                          ("05", "DOUBLE_FACT"), ("04", "CODE_ROUTAGE_ERR")])
    other = next(i for i in (b, c, d) if (i.recipient_siret, i.code_service, i.ej) != (a.recipient_siret, a.code_service, a.ej))
    numbers = {a.number: "recycle", b.number: "complete", c.number: "rejected", d.number: "same"}
    before = platform.out_files(DEMO)

    def edit(unit):
        kind = numbers[unit.find("DonneesFacture/Id").text if unit.find("DonneesFacture/Id") is not None else ""]
        if kind == "recycle":
            set_routing(unit, **routing_of(other))
        elif kind == "complete":
            with_extra_attachment(unit)
        return unit  # "rejected" (05) and "same" (04, nothing changed) are sent back as they were

    flow = resend_flow(platform, made, edit, "RESEND0000000000000000001")
    assert (flow.state, flow.invoice_count, flow.accepted_count) == ("IN_INTEGRE_PARTIEL", 4, 2)
    _, cso = platform.report(flow, "CSO")
    assert sorted(ln["CodeErreur"] for ln in error_lines(cso)) == ["PLT-20", "PLT-20"]
    assert {ln["DescriptionErreur"].split(" ")[1] for ln in error_lines(cso)} == {c.number, d.number}

    now = {i.number: i for i in invoices(platform)}
    assert len(now) == 4  # no new deposit: the known invoices carry on
    assert (now[a.number].status, now[a.number].recipient_siret, now[a.number].code_service, now[a.number].ej) == (
        "03", other.recipient_siret, other.code_service, other.ej)
    assert now[a.number].path != a.path and now[a.number].path.endswith(f"{a.deposit_no}.xml")
    assert events(platform, a.id)[-2:] == [("04", "recipient", CHU), ("03", "platform", "EDI")]
    assert (now[b.number].status, events(platform, b.id)[-1]) == ("12", ("12", "supplier", DEMO))
    assert (now[c.number].status, now[d.number].status) == ("05", "04")

    # the sender hears of both changes; the recipient partner gets them again, marked
    reports = [validate_report(data) for name, data in platform.out_files(DEMO).items()
               if name not in before and name.startswith("FEN1200A_")]
    assert sorted((ln["IdFacture"], ln["IdStatut"]) for r in reports for ln in status_lines(r)) == sorted(
        [(a.number, "03"), (b.number, "12")])
    last = deliveries(platform)[-1]
    again = {u.findtext("DonneesFacture/Id"): u for u in last.iterfind("CPPFactures/CPPFacturePivotUnitaire")}
    assert {n: u.findtext("DonneesFacture/Renvoi") for n, u in again.items()} == {a.number: "Recyclée",
                                                                                  b.number: "Complétée"}
    assert again[a.number].findtext("DonneesFacture/IdCPRO") == str(a.id)
    assert again[a.number].findtext("Debiteur/Identifiant") == other.recipient_siret
    assert "PV_reception.pdf" in [p.findtext("NomPJ") for p in again[b.number].iterfind("PJ")]

    # the recycled invoice is the recipient's again: its statuses still reach it by its number
    path = status_file(platform.root / "st", CHU, "ST" + "2" * 23, [Answer(now[a.number], "07")], AT)
    assert platform.ingest(platform.drop(path.name, path.read_bytes(), app=CHU)).accepted_count == 1
    assert invoices(platform)[0].status == "07"


def test_a_resend_changing_more_than_the_routing_or_adding_nothing_stays_doublon(tmp_path, db_url):
    platform, made, (a, b, _c, _d) = setup(tmp_path, db_url, [("04", "REF_ERR"), ("06", "JUSTIF_ABS"), ("", ""), ("", "")])
    other = b if (b.recipient_siret, b.code_service, b.ej) != (a.recipient_siret, a.code_service, a.ej) else _c

    def edit(unit):
        number = unit.findtext("DonneesFacture/Id")
        if number == a.number:  # routing changed, and the amount too
            set_routing(unit, **routing_of(other))
            unit.find("DonneesFacture/Montants/MontantTTC").text = "999999.99"
            return unit
        return unit if number == b.number else None  # 06 sent again without any new attachment

    flow = resend_flow(platform, made, edit, "RESEND0000000000000000002")
    assert (flow.state, flow.accepted_count) == ("IN_REJETE", 0)
    _, cso = platform.report(flow, "CSO")
    assert "PLT-20" in {ln["CodeErreur"] for ln in error_lines(cso)}
    assert [i.status for i in invoices(platform)][:2] == ["04", "06"]


# ------------------------------------------------------------------ by command


def test_ops_recycle_an_invoice_in_04_with_the_routing_rules_and_who_did_it(tmp_path, db_url):
    platform, _made, (a, b, c, _d) = setup(tmp_path, db_url, [("04", "REF_ERR"), ("06", "JUSTIF_ABS"), ("", ""), ("", "")])
    other = next(i for i in (b, c, _d) if (i.recipient_siret, i.code_service, i.ej) != (a.recipient_siret, a.code_service, a.ej))
    before = platform.out_files(DEMO)

    refused = [platform.cli("invoices", "recycle", b.deposit_no, "--siret", other.recipient_siret, "--by", "alice"),
               platform.cli("invoices", "recycle", a.deposit_no, "--by", "alice"),
               platform.cli("invoices", "recycle", a.deposit_no, "--siret", "35600000000048", "--by", "alice"),
               platform.cli("invoices", "recycle", "EDI9999999999999999999999", "--service", "X")]
    assert [r.exit_code for r in refused] == [2, 2, 2, 2]
    assert "REJ_RG" in refused[0].stderr and "REJ_INC" in refused[1].stderr and "REJ_INEX" in refused[3].stderr
    assert "ROUT-04 : Le destinataire est absent de l'annuaire" in refused[2].stderr  # the routing rules ran
    assert [i.status for i in invoices(platform)][:2] == ["04", "06"] and platform.out_files(DEMO) == before

    args = ["--siret", other.recipient_siret, "--service", other.code_service, "--ej", other.ej]
    result = platform.cli("invoices", "recycle", a.deposit_no, *args, "--by", "alice")
    assert result.exit_code == 0, result.output
    assert "04 → 03 Mise à disposition du destinataire, par alice" in result.stdout
    now = invoices(platform)[0]
    assert (now.status, now.recipient_siret, now.code_service, now.ej) == ("03", other.recipient_siret,
                                                                          other.code_service, other.ej)
    assert events(platform, a.id)[-1] == ("03", "platform", "alice")
    (report,) = [validate_report(d) for n, d in platform.out_files(DEMO).items() if n not in before]
    (line,) = status_lines(report)
    assert (line["IdFacture"], line["IdStatut"]) == (a.number, "03") and "par l'exploitation" in line["Commentaire"]
    assert {p.get("Id") for p in report.iterfind(".//Producteur")} == {"alice"}
    last = deliveries(platform)[-1]
    assert last.findtext(".//DonneesFacture/Renvoi") == "Recyclée"
    assert last.findtext(".//Debiteur/Identifiant") == other.recipient_siret


def test_ops_complete_an_invoice_in_06_with_its_pieces(tmp_path, db_url):
    platform, _made, (a, b, _c, _d) = setup(tmp_path, db_url, [("04", "REF_ERR"), ("06", "JUSTIF_ABS"), ("", ""), ("", "")])
    piece = tmp_path / "PV de réception.pdf"
    piece.write_bytes(b"%PDF-1.4 proces-verbal\n")
    refused = platform.cli("invoices", "complete", a.deposit_no, "--attach", str(piece), "--by", "bob")
    assert refused.exit_code == 2 and "REJ_RG" in refused.stderr
    before = platform.out_files(DEMO)
    result = platform.cli("invoices", "complete", b.deposit_no, "--attach", str(piece), "--comment", "PV joint",
                          "--by", "bob")
    assert result.exit_code == 0, result.output
    assert "06 → 12" in result.stdout
    now = invoices(platform)[1]
    assert now.status == "12" and events(platform, b.id)[-1] == ("12", "supplier", "bob")
    (line,) = [ln for n, d in platform.out_files(DEMO).items() if n not in before for ln in status_lines(validate_report(d))]
    assert line["IdStatut"] == "12" and "PV joint" in line["Commentaire"]
    unit = deliveries(platform)[-1].find("CPPFactures/CPPFacturePivotUnitaire")
    assert unit.findtext("DonneesFacture/Renvoi") == "Complétée"
    pieces = {p.findtext("NomPJ"): p.findtext("Contenu") for p in unit.iterfind("PJ")}
    assert any(name.endswith("PV_de_reception.pdf") or "PV" in name for name in pieces)
    history = platform.cli_json("invoices", "history", b.deposit_no)
    assert [e["status"] for e in history["events"]][-2:] == ["06", "12"]
