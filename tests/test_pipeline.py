"""The pipeline end to end, on generated flows: outcome, reports, deliveries, routing, CLI JSON.

The database tests run on SQLite and PostgreSQL (`db_url`, tests/conftest_pg.py). Every report
written is validated against AIFE's official schemas/aife/CPPStatutPivot_V1_19.xsd.
"""

from __future__ import annotations

import base64
from datetime import date
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from edi import gen
from edi.db.models import flow_state
from edi.reports import statut
from edi.spool import safe_name
from edi.route import routing
from tests.helpers import (
    DEMO,
    MOA_ONLY_SIRET,
    assert_irrecevable,
    certificate_of,
    cpp_bytes,
    cpp_tree,
    cpp_units,
    error_lines,
    flow_status,
    generated,
    make_platform,
    set_routing,
    status_lines,
    tar_members,
)

DAY = date(2026, 3, 2)  # generated flows are dated from it, so runs are reproducible


def recipient_folder(platform, siret, code):
    return platform.spool.root / "recipients" / siret / (safe_name(code) if code else "_")


def check_accepted(platform, flow, invoice_numbers: list[str], raw_by_number: dict[str, bytes] | None = None):
    """The processing report lists 01 then 03 for exactly these invoices, with deposit numbers and
    certificates matching the delivered files and `edi invoices show --json`."""
    detail = platform.cli_json("flows", "show", flow.flow_ref)
    by_number = {i["number"]: i for i in detail["invoices"]}
    name, root = platform.report(flow, "FEN1200A")
    assert name.startswith(f"FEN1200A_{flow.app}_") and name.endswith(".xml")
    lines = status_lines(root)
    assert [(line["IdFacture"], line["IdStatut"]) for line in lines] == [
        (number, code) for number in invoice_numbers for code in ("01", "03")]
    deposits = set()
    for line in lines:
        invoice = by_number[line["IdFacture"]]
        assert invoice["accepted"] and invoice["status"] == "03" and invoice["findings"] == []
        deposit = line["ComplementStatut"]
        assert deposit == invoice["deposit_no"] and len(deposit) == 25
        deposits.add(deposit)
        shown = platform.cli_json("invoices", "show", deposit)
        delivered = recipient_folder(platform, invoice["recipient_siret"], invoice["code_service"]) / f"{deposit}.xml"
        assert shown["path"] == str(delivered) and delivered.is_file()
        data = delivered.read_bytes()
        assert line["Commentaire"] == certificate_of(data) == shown["certificate"]
        assert line["Debiteur/Identifiant"] == invoice["recipient_siret"] == shown["recipient_siret"]
        assert line.get("Debiteur/CodeService", "") == invoice["code_service"]
        assert (shown["number"], shown["deposit_no"], shown["status"]) == (line["IdFacture"], deposit, "03")
        assert [e["code"] for e in shown["events"]] == ["01", "03"]
        assert shown["events"][0]["comment"] == certificate_of(data)
        if raw_by_number is not None:
            assert data == raw_by_number[line["IdFacture"]]
    assert len(deposits) == len(invoice_numbers)
    return by_number


# ------------------------------------------------------------------ partial flow


def test_three_invoices_one_bad_gives_a_partial_flow(tmp_path, db_url):
    platform = make_platform(tmp_path, db_url=db_url)
    made = generated(tmp_path, "FSO1110A", 3, errors=1 / 3, kinds=("recipient",), seed=5, reference_date=DAY)
    (bad,) = made.errors
    good = [i.number for i in made.invoices if not i.error]
    flow = platform.ingest(made.path)

    assert (flow.state, flow.error_code, flow.invoice_count, flow.accepted_count) == ("IN_INTEGRE_PARTIEL", None, 3, 2)
    assert made.path.exists()  # `edi ingest` of a file outside the spool leaves the user's file
    name, root = platform.report(flow, "CSO")
    assert name == f"CSO1110A_{DEMO}_{made.flow_id}.xml"
    assert flow_status(root) == "96"
    lines = error_lines(root)
    detail = platform.detail(made.flow_id)
    (bad_json,) = [i for i in detail["invoices"] if i["number"] == bad.number]
    assert not bad_json["accepted"] and bad_json["deposit_no"] is None
    findings = bad_json["findings"]
    assert [f["code"] for f in findings] == [routing.RECIPIENT_UNKNOWN]
    assert len(lines) == len(findings)
    for line, finding in zip(lines, findings):
        assert (line["NatureErreur"], line["CodeErreur"], line["LibelleErreur"]) == (
            finding["reason"], finding["code"], finding["message"])
        assert line["DescriptionErreur"].startswith(f"Facture {bad.number} — champ Debiteur/Identifiant")
        assert bad.recipient_siret in line["DescriptionErreur"]
    assert (findings[0]["reason"], findings[0]["location"], findings[0]["value"]) == (
        "DEST_INC", "Debiteur/Identifiant", bad.recipient_siret)

    check_accepted(platform, flow, good)
    assert len(platform.new_deliveries) >= 2
    assert not (platform.spool.root / "recipients" / bad.recipient_siret).exists()
    archive = Path(flow.archive_path)
    assert archive.read_bytes() == made.path.read_bytes()
    assert sorted(platform.out_files()) == sorted(r["filename"] for r in detail["reports"])
    assert platform.validate_all_reports() == 2


# ------------------------------------------------------------------ IRR_UNCITE


def test_irr_uncite_same_flow_id_twice(tmp_path, db_url):
    platform = make_platform(tmp_path, db_url=db_url, partners=[{"app": DEMO}, {"app": "AUTRE"}])
    first = generated(tmp_path, "FSO1110A", 2, seed=1, reference_date=DAY)
    flow1 = platform.ingest(first.path)
    assert flow1.state == "IN_INTEGRE"
    report1 = f"CSO1110A_{DEMO}_{first.flow_id}.xml"
    before = platform.out_files()[report1]

    # same name, other content: still a repeat
    second = generated(tmp_path, "FSO1110A", 2, seed=2, flow_id=first.flow_id, reference_date=DAY)
    assert second.path.name == first.path.name and second.path.read_bytes() != first.path.read_bytes()
    flow2 = platform.ingest(second.path)
    assert_irrecevable(platform, flow2, "IRR_UNCITE", second.path.read_bytes())
    name2, root2 = platform.report(flow2)
    assert name2 == f"CSO1110A_{DEMO}_{first.flow_id}_{flow2.id}.xml"
    assert root2.findtext("CPPFluxStatuts/CPPFluxStatutUnitaire/DonneesStatut/IdFlux") == first.flow_id
    assert platform.out_files()[report1] == before  # the first report is untouched
    assert platform.flow(flow1.id).state == "IN_INTEGRE"

    # a third time, byte-identical to the first: another distinct report
    flow3 = platform.ingest(first.path)
    assert (flow3.state, flow3.error_code) == ("IN_REJETE", "IRR_UNCITE")
    names = {name2, platform.report(flow3)[0], report1}
    assert len(names) == 3 and names <= set(platform.out_files())

    # the id is unique per sender: another partner may use it (for other invoices: not duplicates)
    root = cpp_tree(first.path.read_bytes())
    root.find("Enveloppe/EnveloppeUnitaire/Partenaires/Emetteur/Id").text = "AUTRE"
    for unit in cpp_units(root):
        unit.find("DonneesFacture/Id").text += "B"
    other = platform.file(first.path.name.replace(f"_{DEMO}_", "_AUTRE_"), cpp_bytes(root))
    assert platform.ingest(other).state == "IN_INTEGRE"
    # the FLOWID names the latest flow, the internal id any one
    assert platform.detail(first.flow_id)["app"] == "AUTRE"
    assert platform.detail(str(flow1.id))["state"] == "IN_INTEGRE"
    assert platform.validate_all_reports() == 6  # 4 integration + 2 processing


# ------------------------------------------------------------------ archives of UBL and CII


def check_archive_flow(platform, tmp_path, interface):
    made = generated(tmp_path, interface, 3, seed=4, reference_date=DAY)
    assert made.path.name.endswith(".tar.gz")
    members = tar_members(made.path.read_bytes())
    flow = platform.ingest(made.path)
    assert (flow.state, flow.invoice_count, flow.accepted_count) == ("IN_INTEGRE", 3, 3), platform.detail(flow.id)
    name, root = platform.report(flow, "CSO")
    assert name == f"C{interface[1:]}_{DEMO}_{made.flow_id}.xml"
    assert flow_status(root) == "90" and error_lines(root) == []
    raw = {inv.number: members[inv.member] for inv in made.invoices}
    check_accepted(platform, flow, [i.number for i in made.invoices], raw)
    assert len(platform.new_deliveries) == 3  # UBL/CII: the invoice alone, no attachment files
    assert platform.validate_all_reports() == 2


def test_tar_gz_of_ubl_invoices(tmp_path, db_url):
    check_archive_flow(make_platform(tmp_path, db_url=db_url), tmp_path, "FSO1100A")


def test_tar_gz_of_cii_invoices(tmp_path):
    check_archive_flow(make_platform(tmp_path), tmp_path, "FSO1106A")


def test_single_ubl_invoice_flow(tmp_path):
    platform = make_platform(tmp_path)
    made = generated(tmp_path, "FSO1100A", 1, seed=8, reference_date=DAY)
    assert made.path.name.endswith(".xml")
    flow = platform.ingest(made.path)
    assert flow.state == "IN_INTEGRE"
    check_accepted(platform, flow, [made.invoices[0].number], {made.invoices[0].number: made.path.read_bytes()})


# ------------------------------------------------------------------ CPP bulk with attachments


def test_cpp_bulk_flow_with_attachments(tmp_path):
    platform = make_platform(tmp_path)
    made = generated(tmp_path, "FSO1110A", 4, seed=0, reference_date=DAY)
    source = cpp_tree(made.path.read_bytes())
    attachments = {u.findtext("DonneesFacture/Id"): [(pj.findtext("NomPJ"), base64.b64decode(pj.findtext("Contenu")))
                                                    for pj in u.findall("PJ")] for u in cpp_units(source)}
    # what this seed gives, so the test shows both folders and several attachments
    assert any(i.code_service is None for i in made.invoices)
    assert any(len(pjs) > 1 for pjs in attachments.values())

    dropped = platform.drop(made.path.name, made.path.read_bytes())  # the way an operator drops it
    flow = platform.ingest(dropped)
    assert not dropped.exists()
    assert (flow.state, flow.accepted_count, flow.source) == ("IN_INTEGRE", 4, "cli")
    by_number = check_accepted(platform, flow, [i.number for i in made.invoices])
    expected_files = set()
    for inv in made.invoices:
        deposit = by_number[inv.number]["deposit_no"]
        folder = recipient_folder(platform, inv.recipient_siret, inv.code_service)
        if inv.code_service is None:
            assert folder.name == "_"
        invoice_file = folder / f"{deposit}.xml"
        delivered = etree.fromstring(invoice_file.read_bytes())
        assert delivered.tag == "CPPFactureMixteUnitaire" and delivered.findtext("DonneesFacture/Id") == inv.number
        expected_files.add(invoice_file)
        for n, (pj_name, payload) in enumerate(attachments[inv.number], start=1):
            path = folder / f"{deposit}_PJ{n}_{safe_name(pj_name)}"
            assert path.read_bytes() == payload, path
            expected_files.add(path)
        assert sorted(p.name for p in folder.iterdir() if p.name.startswith(deposit)) == sorted(
            p.name for p in expected_files if p.parent == folder and p.name.startswith(deposit))
    assert set(platform.new_deliveries) == expected_files
    assert any(p.read_bytes().startswith(b"%PDF") for p in expected_files)
    assert not any(platform.spool.work.iterdir())  # nothing left staged


# ------------------------------------------------------------------ routing rules through a flow


def test_every_routing_rule_through_a_cpp_flow(tmp_path):
    structures = {s.siret: s for s in gen.DIRECTORY_STRUCTURES}
    commune = next(s.siret for s in gen.DIRECTORY_STRUCTURES if s.gestion_service and s.siret != gen.STATE_SIRET)
    hospital = next(s.siret for s in gen.DIRECTORY_STRUCTURES if s.gestion_engagement and not s.gestion_service)
    department = next(s.siret for s in gen.DIRECTORY_STRUCTURES if s.gestion_service_engagement)
    closed = next(s.siret for s in gen.DIRECTORY_STRUCTURES if not s.active)
    services = {(v.siret, v.code): v for v in gen.DIRECTORY_SERVICES}
    assert not services[(commune, "CCAS-ANCIEN")].active and services[(commune, "ECOLES")].egmt
    assert structures[gen.STATE_SIRET].gestion_engagement
    platform = make_platform(tmp_path, extra_structures=[
        {"Identifiant": MOA_ONLY_SIRET, "EstMOA": "true", "EstMOAUniquement": "true"}])

    cases = [  # rule, siret, code service (None: absent), EJ (None: absent)
        (routing.SIRET_MALFORMED, "2138004280011A", None, None),
        (routing.SIRET_CHECKSUM, "21750123800019", None, None),
        (routing.RECIPIENT_UNKNOWN, "21750123800026", None, None),
        (routing.RECIPIENT_INACTIVE, closed, None, None),
        (routing.SERVICE_REQUIRED, commune, None, None),
        (routing.SERVICE_UNKNOWN, commune, "NOPE", None),
        (routing.SERVICE_INACTIVE, commune, "CCAS-ANCIEN", None),
        (routing.EJ_REQUIRED, hospital, None, None),
        (routing.EJ_REQUIRED_BY_SERVICE, commune, "ECOLES", None),
        (routing.SERVICE_OR_EJ_REQUIRED, department, None, None),
        (routing.EJ_FORMAT, gen.STATE_SIRET, "AIFE-DSI", "2026-0042"),
        (routing.MOA_ONLY, MOA_ONLY_SIRET, None, None),
    ]
    made = generated(tmp_path, "FSO1110A", len(cases) + 1, seed=6, reference_date=DAY)
    root = cpp_tree(made.path.read_bytes())
    units = cpp_units(root)
    for unit, (_, siret, code, ej) in zip(units, cases):
        set_routing(unit, siret_=siret, code=code, ej=ej)
    path = platform.file(made.path.name, cpp_bytes(root))
    flow = platform.ingest(path)
    assert (flow.state, flow.accepted_count) == ("IN_INTEGRE_PARTIEL", 1)

    detail = platform.detail(flow.id)
    _, report = platform.report(flow)
    lines = error_lines(report)
    assert len(lines) == len(cases)
    for invoice, line, (rule, siret, code, ej) in zip(detail["invoices"], lines, cases):
        expected = routing.RULES[rule]
        location = routing.DEFAULT_LOCATIONS[expected.field]
        value = {"siret": siret, "code_service": code or "", "ej": ej or ""}[expected.field]
        assert [(f["code"], f["reason"], f["location"], f["value"]) for f in invoice["findings"]] == [
            (rule, expected.reason, location, value)], (rule, invoice)
        assert (line["NatureErreur"], line["CodeErreur"], line["LibelleErreur"]) == (expected.reason, rule, expected.message)
        assert line["DescriptionErreur"].startswith(f"Facture {invoice['number']} — champ {location}")
        assert not invoice["accepted"]
    assert detail["invoices"][-1]["accepted"]
    assert platform.validate_all_reports() == 2


def test_siret_absent_rule_through_a_ubl_flow(tmp_path):
    """The CPP schema requires a 14-character recipient, so the absent-SIRET rule is shown on UBL."""
    platform = make_platform(tmp_path)
    made = generated(tmp_path, "FSO1100A", 1, seed=3, reference_date=DAY)
    root = etree.fromstring(made.path.read_bytes())
    ns = {"cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
          "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"}
    party = root.find("cac:AccountingCustomerParty/cac:Party", ns)
    for xpath in ("cbc:EndpointID", "cac:PartyIdentification", "cac:PartyLegalEntity/cbc:CompanyID"):
        for element in party.findall(xpath, ns):
            element.getparent().remove(element)
    path = platform.file(made.path.name, etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    flow = platform.ingest(path)
    assert (flow.state, flow.error_code) == ("IN_REJETE", None)  # rejected invoice, not an irrecevable flow
    (invoice,) = platform.detail(flow.id)["invoices"]
    codes = [f["code"] for f in invoice["findings"]]
    assert routing.SIRET_ABSENT in codes, invoice["findings"]
    (finding,) = [f for f in invoice["findings"] if f["code"] == routing.SIRET_ABSENT]
    assert finding["reason"] == "SIRET_ERR" and "AccountingCustomerParty" in finding["location"]
    _, report = platform.report(flow)
    assert flow_status(report) == "93"
    assert any(line["CodeErreur"] == routing.SIRET_ABSENT and finding["location"] in line["DescriptionErreur"]
               for line in error_lines(report))
    assert platform.new_deliveries == []


# ------------------------------------------------------------------ CLI: ingest, flows, invoices


def test_cli_ingest_and_json_shapes(tmp_path):
    platform = make_platform(tmp_path)
    made = generated(tmp_path, "FSO1110A", 3, errors=1 / 3, kinds=("ej",), seed=9, reference_date=DAY)
    broken = platform.file(made.path.name.replace(made.flow_id, "B" * 25), made.path.read_bytes()[:-50])
    result = platform.cli("ingest", str(made.path), str(broken))
    assert result.exit_code == 0, result.output
    assert "IN_INTEGRE_PARTIEL" in result.stdout and "IRR_SYNTAX" in result.stdout

    listed = platform.cli_json("flows", "list")
    assert [f["flow_ref"] for f in listed] == ["B" * 25, made.flow_id]  # newest first
    for f in listed:
        assert {"id", "flow_ref", "app", "interface", "filename", "state", "error_code", "invoice_count",
                "accepted_count", "received_at", "sha256"} <= set(f)
    assert [f["state"] for f in platform.cli_json("flows", "list", "--state", "IN_REJETE")] == ["IN_REJETE"]
    assert len(platform.cli_json("flows", "list", "--partner", DEMO)) == 2
    assert platform.cli_json("flows", "list", "--partner", "NOPE") == []

    shown = platform.cli_json("flows", "show", made.flow_id)
    assert shown["state"] == "IN_INTEGRE_PARTIEL" and shown["findings"] == []
    kinds = {r["kind"]: r["filename"] for r in shown["reports"]}
    assert kinds["integration"] == f"CSO1110A_{DEMO}_{made.flow_id}.xml" and kinds["processing"].startswith("FEN1200A_")
    assert len(shown["reports"]) == 2 and set(kinds.values()) <= set(platform.out_files())
    assert all(r["written_at"] for r in shown["reports"])
    assert len(shown["invoices"]) == 3
    for invoice in shown["invoices"]:
        assert {"number", "deposit_no", "status", "accepted", "findings"} <= set(invoice)
        for finding in invoice["findings"]:
            assert {"code", "reason", "message", "location"} <= set(finding)
    (bad,) = [i for i in shown["invoices"] if not i["accepted"]]
    assert bad["number"] == made.errors[0].number and bad["deposit_no"] is None and bad["status"] == ""
    assert [(f["code"], f["reason"], f["location"]) for f in bad["findings"]] == [
        (routing.EJ_REQUIRED, "REF_CT_ABSENT", "DonneesFacture/Engagement/NumeroEngagement")]

    rejected = platform.cli_json("flows", "show", "B" * 25)
    assert (rejected["state"], rejected["error_code"]) == ("IN_REJETE", "IRR_SYNTAX")
    assert [(f["code"], f["reason"]) for f in rejected["findings"]] == [("IRR_SYNTAX", "IRR_SYNTAX")]
    assert rejected["findings"][0]["message"].startswith("Fichier XML mal formé")
    assert platform.cli_json("flows", "show", str(rejected["id"]))["flow_ref"] == "B" * 25

    good = next(i for i in shown["invoices"] if i["accepted"])
    inv = platform.cli_json("invoices", "show", good["deposit_no"])
    assert {"number", "deposit_no", "status", "certificate", "path", "events", "findings", "flow"} <= set(inv)
    assert inv["flow"] == made.flow_id and [e["code"] for e in inv["events"]] == ["01", "03"]
    assert {"code", "label", "at", "producer", "comment"} <= set(inv["events"][0])

    text = platform.cli("flows", "show", made.flow_id)
    assert text.exit_code == 0 and made.path.name in text.stdout and "IN_INTEGRE_PARTIEL" in text.stdout
    assert made.errors[0].number in text.stdout  # the report, rendered
    assert platform.cli("flows", "show", "Z" * 25).exit_code == 2
    assert platform.cli("invoices", "show", "EDI" + "9" * 22).exit_code == 2


def test_cli_flows_list_since(tmp_path):
    platform = make_platform(tmp_path)
    made = generated(tmp_path, "FSO1110A", 1, seed=9, reference_date=DAY)
    platform.ingest(made.path)
    assert platform.cli_json("flows", "list", "--since", "2999-01-01") == []
    assert len(platform.cli_json("flows", "list", "--since", "2000-01-01")) == 1


@given(total=st.integers(min_value=0, max_value=10_000), data=st.data())
def test_flow_state_matches_the_flow_status_of_its_report(total, data):
    """The one state rule (pipeline, status flows, reprocessing) and the report's IdStatut agree:
    none accepted IN_REJETE / 93, all IN_INTEGRE / 90, some IN_INTEGRE_PARTIEL / 96."""
    accepted = data.draw(st.integers(min_value=0, max_value=total))
    state = flow_state(accepted, total)
    assert {"IN_REJETE": "93", "IN_INTEGRE": "90", "IN_INTEGRE_PARTIEL": "96"}[state] == \
        statut.flow_status(accepted, total - accepted)
    assert state == ("IN_REJETE" if accepted == 0 else "IN_INTEGRE" if accepted == total else "IN_INTEGRE_PARTIEL")
