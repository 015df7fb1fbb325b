"""CPPStatut reports: builders, schema, names and the French rendering.

Every report built here is validated against AIFE's official schemas/aife/CPPStatutPivot_V1_19.xsd
(and tests/conftest.py validates every report any test leaves in a partner's out/). Characters XML 1.0
cannot hold are replaced by U+FFFD by the builders (decision documented in edi/reports/statut.py);
the property test checks that every other character survives unchanged.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from edi.reports import render, statut
from edi.reports.statut import (
    FLOW_PARTIAL,
    FLOW_RECEIVED,
    FLOW_REJECTED,
    ErrorLine,
    InvoiceStatusLine,
    description,
    integration_report,
    load_schema,
    processing_report,
)
from edi import gen
from edi.finding import Finding
from tests.aife import AIFE, OutFiles, out_file_problem
from tests.helpers import DEMO, flow_name, generated, make_platform

PARIS = timezone(timedelta(hours=1))
AT = datetime(2026, 3, 1, 10, 30, 5, tzinfo=PARIS)
FLOW_ID = "A1B2C3D4E5F6G7H8J9K0L1M2N"
CERT = "lzqJULoPEATJ6+FS09CJcQKINwzYnLEZgxcIUr/kqw0="


def parse_valid(xml: bytes) -> etree._Element:
    """Parse a built report and assert it is valid against the official CPPStatut schema."""
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = etree.fromstring(xml)
    schema = load_schema()
    assert schema.validate(root), schema.error_log
    return root


def flow_report(status: str, lines=(), **extra) -> bytes:
    return integration_report(
        sender_app="CPPEDI",
        recipient_app="PART1",
        report_flow_id="RPT0000000000000000000001",
        flow_ref=FLOW_ID,
        status=status,
        produced_at=AT,
        lines=list(lines),
        **extra,
    )


def status_line(number: str, status: str = "01", **extra) -> InvoiceStatusLine:
    fields = dict(
        supplier_id_type=1,
        supplier_id="40668031400012",
        supplier_name="Bricorama SARL",
        supplier_country="FR",
        recipient_siret="11000201100044",
        code_service="SERV-ACHATS",
        status=status,
        complement=f"DEP{number}",
        comment=CERT,
        at=AT,
        invoice_number=number,
        invoice_date="2026-02-27",
    )
    fields.update(extra)
    return InvoiceStatusLine(**fields)


def invoice_report(lines) -> bytes:
    return processing_report(
        sender_app="CPPEDI",
        recipient_app="PART1",
        report_flow_id="PRC0000000000000000000001",
        produced_at=AT,
        lines=lines,
    )


# ----- integration report (flow block) -----


def test_received_flow_has_no_details_and_carries_the_envelope():
    root = parse_valid(flow_report(FLOW_RECEIVED))
    assert root.get("Version") == "V1_19"
    params = {
        p.findtext("Code"): (p.get("NumOrdre"), p.findtext("Valeurparametre"))
        for p in root.iterfind("Enveloppe/EnveloppeUnitaire/Parametres/ParametreIndiv")
    }
    assert params == {"DtPrd": ("0001", "2026-03-01"), "IdFlx": ("0002", "RPT0000000000000000000001")}
    assert root.findtext("Enveloppe/EnveloppeUnitaire/Partenaires/Emetteur/Id") == "CPPEDI"
    assert root.findtext("Enveloppe/EnveloppeUnitaire/Partenaires/Recepteur/Id") == "PART1"
    block = root.find("CPPFluxStatuts")
    assert block.get("compteur") == "1"
    data = block.find("CPPFluxStatutUnitaire/DonneesStatut")
    assert data.findtext("IdStatut") == "90"
    assert data.findtext("IdFlux") == FLOW_ID
    assert data.findtext("Horodatage") == "2026-03-01T10:30:05+01:00"
    assert data.find("Details") is None
    assert root.find("CPPFactureStatuts") is None


def test_irrecevable_flow_reports_its_flow_level_error():
    line = ErrorLine.from_finding(
        Finding(code="IRR_NOM_F", reason="IRR_NOM_F", message="Nom de flux invalide",
                location="nom du fichier", value="FSO1100A_X.xml")
    )
    root = parse_valid(flow_report(FLOW_REJECTED, [line], comment="Flux irrecevable"))
    data = root.find("CPPFluxStatuts/CPPFluxStatutUnitaire/DonneesStatut")
    assert data.findtext("IdStatut") == "93"
    assert data.findtext("Commentaire") == "Flux irrecevable"
    assert data.find("Details").get("NbLignesErreur") == "1"
    detail = data.find("Details/LigneErreurDetail")
    assert detail.get("IdLigne") == "1"
    assert detail.findtext("NatureErreur") == "IRR_NOM_F"
    assert detail.findtext("DescriptionErreur") == "Champ nom du fichier, valeur « FSO1100A_X.xml »"


def test_partial_flow_lists_every_error_in_order():
    findings = [
        Finding(code="BR-CO-15", reason="REJ_SEMAN", message="Le montant TTC est incohérent",
                location="/Invoice/cac:LegalMonetaryTotal", value="120.00", invoice_number="F2026-001"),
        Finding(code="DEST_SIRET", reason="DEST_INC", message="Destinataire inconnu de l'annuaire",
                location="Debiteur/Identifiant", value="12345678900011", invoice_number="F2026-007"),
        Finding(code="DOUBLON", reason="DOUBLON", message="Facture déjà déposée",
                invoice_number="F2026-009"),
    ]
    lines = [ErrorLine.from_finding(f) for f in findings]
    xml = flow_report(FLOW_PARTIAL, lines, complement="2 sur 5 rejetées")
    root = parse_valid(xml)
    details = root.find("CPPFluxStatuts/CPPFluxStatutUnitaire/DonneesStatut/Details")
    assert details.get("NbLignesErreur") == "3"
    got = [
        (d.get("IdLigne"), d.findtext("NatureErreur"), d.findtext("CodeErreur"), d.findtext("LibelleErreur"))
        for d in details
    ]
    assert got == [(str(i), f.reason, f.code, f.message) for i, f in enumerate(findings, start=1)]
    assert details[2].findtext("DescriptionErreur") == "Facture F2026-009"
    data = root.find("CPPFluxStatuts/CPPFluxStatutUnitaire/DonneesStatut")
    assert data.findtext("ComplementStatut") == "2 sur 5 rejetées"


def test_error_line_without_description_omits_the_element():
    root = parse_valid(flow_report(FLOW_REJECTED, [ErrorLine("IRR_VIDE", "IRR_VIDE", "Flux vide")]))
    assert root.find(".//LigneErreurDetail/DescriptionErreur") is None


def test_naive_times_are_written_as_utc():
    xml = integration_report(sender_app="CPPEDI", recipient_app="PART1", report_flow_id="R", flow_ref="F",
                             status="90", produced_at=datetime(2026, 3, 1, 9, 30), lines=[])
    root = parse_valid(xml)
    assert root.findtext(".//Horodatage") == "2026-03-01T09:30:00+00:00"
    assert "01/03/2026 09:30:00 UTC\n" in render.render_text(xml)


def test_same_input_gives_the_same_bytes():
    lines = [ErrorLine("REJ_SEMAN", "BR-01", "Message", "Facture F1")]
    assert flow_report(FLOW_PARTIAL, lines) == flow_report(FLOW_PARTIAL, lines)
    assert invoice_report([status_line("F1")]) == invoice_report([status_line("F1")])


@pytest.mark.parametrize(
    "change",
    [dict(status="97"), dict(status="01"), dict(complement="x" * 41)],
)
def test_integration_report_refuses_values_the_schema_forbids(change):
    args = dict(status=FLOW_RECEIVED)
    args.update(change)
    status = args.pop("status")
    with pytest.raises(ValueError):
        flow_report(status, **args)


@pytest.mark.parametrize("app", ["AB", "ABCDEFGHI"])
def test_application_codes_must_fit_the_envelope(app):
    with pytest.raises(ValueError):
        integration_report(sender_app=app, recipient_app="PART1", report_flow_id="R", flow_ref="F",
                           status="90", produced_at=AT, lines=[])
    with pytest.raises(ValueError):
        processing_report(sender_app="CPPEDI", recipient_app=app, report_flow_id="R", produced_at=AT,
                          lines=[status_line("F1")])


def test_flow_status_follows_the_outcome():
    assert statut.flow_status(accepted=5, rejected=0) == FLOW_RECEIVED
    assert statut.flow_status(accepted=3, rejected=2) == FLOW_PARTIAL
    assert statut.flow_status(accepted=0, rejected=4) == FLOW_REJECTED
    assert statut.flow_status(accepted=0, rejected=0) == FLOW_REJECTED


# ----- processing report (invoice block) -----


def test_processing_report_lists_each_status_change_in_order():
    lines = [
        status_line("F2026-001", "01"),
        status_line("F2026-001", "03"),
        status_line("F2026-002", "01", supplier_name="", supplier_country="", code_service="",
                    invoice_date=""),
        status_line("F2026-003", "05", complement="", comment="Montant erroné, voir bon de commande",
                    producer="ORDO0001", supplier_id_type="2", supplier_id="DE123456789"),
    ]
    root = parse_valid(invoice_report(lines))
    block = root.find("CPPFactureStatuts")
    assert block.get("compteur") == "4"
    units = block.findall("CPPFactureStatutUnitaire")
    assert [u.get("NumOrdre") for u in units] == ["1", "2", "3", "4"]
    assert [(u.findtext("DonneesStatut/IdFacture"), u.findtext("DonneesStatut/IdStatut")) for u in units] == [
        ("F2026-001", "01"), ("F2026-001", "03"), ("F2026-002", "01"), ("F2026-003", "05")
    ]
    first = units[0]
    assert first.findtext("Fournisseur/TypeIdentifiant") == "1"
    assert first.findtext("Fournisseur/CodePays") == "FR"
    assert first.findtext("Debiteur/Identifiant") == "11000201100044"
    assert first.findtext("Debiteur/CodeService") == "SERV-ACHATS"
    assert first.findtext("DonneesStatut/ComplementStatut") == "DEPF2026-001"
    assert first.findtext("DonneesStatut/Commentaire") == CERT
    producer = first.find("DonneesStatut/Producteur")
    assert producer.get("Id") == "EDI" and producer.text is None and len(producer) == 0
    assert first.findtext("Debiteur/TypeIdentifiant") == "1"
    assert first.findtext("DonneesStatut/DateFacture") == "2026-02-27"
    bare = units[2]
    for path in ("Fournisseur/CodePays", "Debiteur/CodeService", "DonneesStatut/DateFacture"):
        assert bare.find(path) is None, path
    assert bare.find("Fournisseur/RaisonSociale").text is None  # required by the schema, even unknown
    assert units[3].find("DonneesStatut/ComplementStatut") is None
    assert units[3].findtext("Fournisseur/TypeIdentifiant") == "2"


def test_processing_report_of_ten_thousand_lines_from_a_generator():
    started = time.perf_counter()
    xml = invoice_report(status_line(f"F{n:07d}", "01" if n % 2 else "03") for n in range(10_000))
    root = parse_valid(xml)
    assert time.perf_counter() - started < 10
    units = root.find("CPPFactureStatuts")
    assert units.get("compteur") == "10000"
    assert len(units) == 10_000
    assert units[-1].get("NumOrdre") == "10000"
    assert units[-1].findtext("DonneesStatut/IdFacture") == "F0009999"
    assert render.render_text(xml).count("\n  - Facture ") == 10_000


def test_processing_report_needs_at_least_one_line():
    with pytest.raises(ValueError):
        invoice_report(iter(()))


@pytest.mark.parametrize(
    "change",
    [
        dict(status="42"),
        dict(status="1"),
        dict(recipient_siret="1100020110004"),
        dict(supplier_id_type=8),
        dict(supplier_country="FRA"),
        dict(complement="D" * 41),
    ],
)
def test_processing_report_refuses_values_the_schema_forbids(change):
    with pytest.raises(ValueError):
        invoice_report([status_line("F1", **{"status": "01", **change})])


# ----- the schema itself -----


def _mutated(xml: bytes, path: str, text: str) -> etree._Element:
    root = etree.fromstring(xml)
    root.find(path).text = text
    return root


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("CPPFluxStatuts/CPPFluxStatutUnitaire/DonneesStatut/IdStatut", "97"),
        ("CPPFluxStatuts/CPPFluxStatutUnitaire/DonneesStatut/Horodatage", "01/03/2026"),
        ("CPPFluxStatuts/CPPFluxStatutUnitaire/DonneesStatut/ComplementStatut", "x" * 41),
        ("Enveloppe/EnveloppeUnitaire/Parametres/ParametreIndiv/Code", "DtPr"),
        ("Enveloppe/EnveloppeUnitaire/Partenaires/Emetteur/Id", "AB"),
    ],
)
def test_schema_rejects_a_broken_flow_report(path, text):
    xml = flow_report(FLOW_PARTIAL, [ErrorLine("R", "C", "M")], complement="ok")
    assert not load_schema().validate(_mutated(xml, path, text))


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("CPPFactureStatuts/CPPFactureStatutUnitaire/DonneesStatut/IdStatut", "00"),
        ("CPPFactureStatuts/CPPFactureStatutUnitaire/DonneesStatut/IdStatut", "93"),
        ("CPPFactureStatuts/CPPFactureStatutUnitaire/Debiteur/Identifiant", "110002011"),
        ("CPPFactureStatuts/CPPFactureStatutUnitaire/Fournisseur/TypeIdentifiant", "0"),
        ("CPPFactureStatuts/CPPFactureStatutUnitaire/DonneesStatut/DateFacture", "27/02/2026"),
    ],
)
def test_schema_rejects_a_broken_processing_report(path, text):
    assert not load_schema().validate(_mutated(invoice_report([status_line("F1")]), path, text))


def test_schema_rejects_both_blocks_and_neither():
    flow = etree.fromstring(flow_report(FLOW_RECEIVED))
    invoices = etree.fromstring(invoice_report([status_line("F1")]))
    flow.append(invoices.find("CPPFactureStatuts"))
    assert not load_schema().validate(flow)
    neither = etree.fromstring(invoice_report([status_line("F1")]))
    neither.remove(neither.find("CPPFactureStatuts"))
    assert not load_schema().validate(neither)


def test_load_schema_is_cached():
    assert load_schema() is load_schema()


# ----- AIFE's official schema: the shape it wants -----


def test_reports_follow_the_official_envelope_and_invoice_block():
    for root in (parse_valid(flow_report(FLOW_RECEIVED)), parse_valid(invoice_report([status_line("F1")]))):
        partners = root.find("Enveloppe/EnveloppeUnitaire/Partenaires")
        assert [child.tag for child in partners] == ["Recepteur", "Emetteur"]
    unit = parse_valid(invoice_report([status_line("F1", producer="CHUDEMO")])).find(
        "CPPFactureStatuts/CPPFactureStatutUnitaire")
    assert [c.tag for c in unit.find("Debiteur")] == ["TypeIdentifiant", "Identifiant", "CodeService"]
    assert [c.tag for c in unit.find("DonneesStatut")] == [
        "IdStatut", "ComplementStatut", "Commentaire", "Horodatage", "Producteur", "IdFacture", "DateFacture"]
    assert dict(unit.find("DonneesStatut/Producteur").attrib) == {"Id": "CHUDEMO"}


def test_report_without_producer_leaves_the_optional_element_out():
    unit = parse_valid(invoice_report([status_line("F1", producer="")])).find("CPPFactureStatuts/CPPFactureStatutUnitaire")
    assert unit.find("DonneesStatut/Producteur") is None


def test_code_service_longer_than_the_schema_allows_is_cut_to_100_characters():
    code = "S" * 99 + "XYZ"
    unit = parse_valid(invoice_report([status_line("F1", code_service=code)])).find("CPPFactureStatuts/CPPFactureStatutUnitaire")
    assert unit.findtext("Debiteur/CodeService") == code[:100]


@pytest.mark.parametrize("value", ["2026-02-30", "27/02/2026", "20260227", "2026-2-27", "2026-02-27T00:00:00"])
def test_invoice_date_that_is_not_a_date_is_left_out(value):
    unit = parse_valid(invoice_report([status_line("F1", invoice_date=value)])).find("CPPFactureStatuts/CPPFactureStatutUnitaire")
    assert unit.find("DonneesStatut/DateFacture") is None


def test_long_texts_and_markup_characters_survive_whole():
    long_text = "Montant <HT> & \"TTC\" l'écart ]]> 💶 " * 3000  # ~100,000 characters, no bound in the schema
    line = ErrorLine("REJ_SEMAN", "BR-CO-15", long_text, description("F1", "Montants/" + long_text, long_text))
    root = parse_valid(flow_report(FLOW_PARTIAL, [line], comment=long_text))
    assert root.findtext(".//LibelleErreur") == long_text
    assert root.findtext(".//Commentaire") == long_text
    assert root.findtext(".//DescriptionErreur").endswith("… »")  # the quoted value alone is shortened
    unit = parse_valid(invoice_report([status_line(long_text, supplier_name=long_text, comment=long_text,
                                                   complement="DEP1", producer="<&'\">")])).find("CPPFactureStatuts/CPPFactureStatutUnitaire")
    assert unit.findtext("DonneesStatut/IdFacture") == unit.findtext("Fournisseur/RaisonSociale") == long_text
    assert unit.find("DonneesStatut/Producteur").get("Id") == "<&'\">"


def _official_mutation(xml: bytes, change) -> bool:
    root = etree.fromstring(xml)
    change(root)
    return load_schema().validate(root)


def _swap_partners(root):
    partners = root.find("Enveloppe/EnveloppeUnitaire/Partenaires")
    partners.append(partners[0])  # Recepteur moved after Emetteur


def _remove(path):
    return lambda root: root.find(path).getparent().remove(root.find(path))


def _producer_as_text(root):
    producer = root.find(".//DonneesStatut/Producteur")
    producer.text = producer.attrib.pop("Id")


@pytest.mark.parametrize("change", [
    _swap_partners,
    _remove("CPPFactureStatuts/CPPFactureStatutUnitaire/Debiteur/TypeIdentifiant"),
    _remove("CPPFactureStatuts/CPPFactureStatutUnitaire/Fournisseur/RaisonSociale"),
    _producer_as_text,
])
def test_official_schema_refuses_what_the_old_reports_did(change):
    xml = invoice_report([status_line("F1")])
    assert _official_mutation(xml, lambda root: None)
    assert not _official_mutation(xml, change)


def test_schemas_are_the_official_files():
    """Verbatim copies: the checksums of schemas/aife/README.md, and the shared reference when
    it sits next to the repository (as in CI)."""
    listed = dict(re.findall(r"\| `([^`]+\.xsd)` \| `([0-9a-f]{64})` \|", (AIFE / "README.md").read_text()))
    files = sorted(path.name for path in AIFE.glob("*.xsd"))
    assert sorted(listed) == files and len(files) == 4
    for name in files:
        assert hashlib.sha256((AIFE / name).read_bytes()).hexdigest() == listed[name], name
    shared = AIFE.parents[2] / "shared" / "reference" / "aife"
    if shared.is_dir():
        for name in files:
            assert (shared / name).read_bytes() == (AIFE / name).read_bytes(), name
    assert statut.SCHEMA_PATH == AIFE / "CPPStatutPivot_V1_19.xsd"


# ----- every report the pipeline writes, in every case -----

DAY = date(2026, 3, 2)


@pytest.mark.parametrize("interface", sorted(gen.INTERFACES))
def test_every_outcome_of_an_interface_gives_official_reports(tmp_path, interface):
    platform = make_platform(tmp_path)
    states = []
    every_kind = tuple(gen.ERROR_KINDS)
    alone = tuple(kind for kind in every_kind if kind != "duplicate")  # a duplicate of a rejected one passes
    for seed, errors, kinds in ((1, 0.0, every_kind), (2, 0.5, every_kind), (3, 1.0, alone)):
        made = generated(tmp_path, interface, 8, errors=errors, kinds=kinds, seed=seed, reference_date=DAY)
        states.append(platform.ingest(made.path).state)
    states.append(platform.ingest(made.path).error_code)  # the same FLOWID again
    states.append(platform.ingest(platform.file("facture.xml", b"<Invoice/>"), partner=DEMO).error_code)
    broken = b"<CPPFactureMixte><" if interface == "FSO1110A" else b"<Invoice><"
    states.append(platform.ingest(platform.file(flow_name(interface), broken)).error_code)
    assert states == ["IN_INTEGRE", "IN_INTEGRE_PARTIEL", "IN_REJETE", "IRR_UNCITE", "IRR_NOM_F", "IRR_SYNTAX"]
    out = platform.spool.outbox(DEMO)
    names = sorted(path.name for path in out.glob("*.xml"))
    assert len(names) == 8, names  # six integration reports, two processing reports
    assert sum(name.startswith("FEN1200A_") for name in names) == 2
    assert sum(name.startswith(f"C{interface[1:]}_") for name in names) == 5
    assert sum(name.startswith("CSO0000A_") for name in names) == 1
    assert [out_file_problem(out / name) for name in names] == [None] * 8


# ----- the automatic check of tests/conftest.py can fail -----


def test_out_files_check_flags_invalid_and_unknown_files_once(tmp_path):
    out = tmp_path / "spool" / "partners" / "ABC" / "out"
    out.mkdir(parents=True)
    good = invoice_report([status_line("F1")])
    (out / "FEN1200A_ABC_1.xml").write_bytes(good)
    (out / ".FEN1200A_ABC_2.xml.part").write_bytes(b"<half")
    (tmp_path / "elsewhere.xml").write_bytes(b"<Other/>")
    check = OutFiles()
    assert check.problems(tmp_path) == []
    old = good.replace(b"<Recepteur><Id>PART1</Id></Recepteur>", b"").replace(
        b"</Emetteur>", b"</Emetteur><Recepteur><Id>PART1</Id></Recepteur>")
    (out / "FEN1200A_ABC_3.xml").write_bytes(old)
    (out / "FDE2001A_ABC_4.xml").write_bytes(b"<CPPFacturePivot/>")
    (out / "X_ABC_5.xml").write_bytes(b"<Invoice/>")
    problems = check.problems(tmp_path)
    assert len(problems) == 3
    assert "FEN1200A_ABC_3.xml: invalide selon CPPStatutPivot_V1_19.xsd" in problems[1]
    assert "FDE2001A_ABC_4.xml: invalide selon CPPFacturePivot_V2_01.xsd" in problems[0]
    assert "racine 'Invoice' sans schéma officiel" in problems[2]
    assert check.problems(tmp_path) == []  # each file once, again only when it changes
    (out / "FEN1200A_ABC_1.xml").write_bytes(good.replace(b"<IdStatut>01</IdStatut>", b"<IdStatut>99</IdStatut>"))
    assert len(check.problems(tmp_path)) == 1
    for path in out.glob("*.xml"):  # or the automatic check of this very test would refuse them
        path.unlink()


# ----- description, labels, names -----


def test_description_names_invoice_field_and_value():
    assert description("F2026-001", "Debiteur/Identifiant", "12345678900011") == (
        "Facture F2026-001 — champ Debiteur/Identifiant, valeur « 12345678900011 »"
    )
    assert description("", "Compteur", "3") == "Champ Compteur, valeur « 3 »"
    assert description("F1", "", "") == "Facture F1"
    assert description("F1", "DonneesFacture/Id", "") == "Facture F1 — champ DonneesFacture/Id"
    assert description("", "", "") == ""


def test_description_shortens_a_long_value():
    text = description("F1", "PJ/Contenu", "A" * 5000)
    assert len(text) < 200
    assert text.endswith("… »")


def test_labels_cover_the_codes():
    assert sorted(statut.LIFECYCLE_LABELS) == [f"{n:02d}" for n in range(1, 13)]
    assert statut.LIFECYCLE_LABELS["01"] == "Déposée"
    assert statut.LIFECYCLE_LABELS["03"] == "Mise à disposition du destinataire"
    assert sorted(statut.FLOW_STATUS_LABELS) == [str(n) for n in range(90, 97)]


@pytest.mark.parametrize(
    ("interface", "expected"),
    [("FSO1100A", "CSO1100A_PART1_" + FLOW_ID + ".xml"), ("FSO1110A", "CSO1110A_PART1_" + FLOW_ID + ".xml")],
)
def test_integration_report_name(interface, expected):
    assert statut.integration_report_name(interface, "PART1", FLOW_ID) == expected


def test_integration_report_name_needs_an_f_interface():
    with pytest.raises(ValueError):
        statut.integration_report_name("CSO1100A", "PART1", FLOW_ID)


def test_processing_report_name():
    assert statut.processing_report_name("PART1", "PRC01") == "FEN1200A_PART1_PRC01.xml"


# ----- rendering -----


def test_render_text_of_a_partial_flow():
    lines = [
        ErrorLine("REJ_SEMAN", "BR-CO-15", "Le montant TTC est incohérent",
                  description("F2026-001", "Montants/MontantTTC", "120.00")),
        ErrorLine("DEST_INC", "DEST_SIRET", "Destinataire inconnu",
                  description("F2026-007", "Debiteur/Identifiant", "12345678900011")),
    ]
    text = render.render_text(flow_report(FLOW_PARTIAL, lines))
    assert "Compte rendu d'intégration n° RPT0000000000000000000001" in text
    assert f"Flux : {FLOW_ID}" in text
    assert "Statut : 96 – Flux reçu, intégration partielle" in text
    assert "01/03/2026 10:30:05" in text
    assert "2 erreurs :" in text
    first = text.index("1. Règle BR-CO-15 (motif REJ_SEMAN) : Le montant TTC est incohérent")
    assert text.index("Facture F2026-001 — champ Montants/MontantTTC, valeur « 120.00 »") > first
    assert text.index("2. Règle DEST_SIRET (motif DEST_INC) : Destinataire inconnu") > first
    assert "Facture F2026-007 — champ Debiteur/Identifiant, valeur « 12345678900011 »" in text


def test_render_text_of_received_and_rejected_flows():
    assert "Aucune erreur." in render.render_text(flow_report(FLOW_RECEIVED))
    assert "toutes les factures ont été intégrées" in render.render_text(flow_report(FLOW_RECEIVED))
    empty = ErrorLine("IRR_VIDE", "IRR_VIDE", "Flux vide")
    rejected = render.render_text(flow_report(FLOW_REJECTED, [empty]))
    assert "Statut : 93 – Erreur de réception du flux : aucune facture n'a été intégrée." in rejected
    assert "1 erreur :" in rejected


def test_render_text_of_a_processing_report():
    lines = [
        status_line("F2026-001", "01"),
        status_line("F2026-001", "03"),
        status_line("F2026-002", "05", complement="", comment="Montant erroné", producer="SERVFIN"),
    ]
    text = render.render_text(invoice_report(lines))
    assert "Compte rendu de traitement n° PRC0000000000000000000001" in text
    assert "3 changements de statut :" in text
    rows = [line for line in text.splitlines() if line.startswith("  - ")]
    assert len(rows) == 3
    assert "Facture F2026-001 du 27/02/2026" in rows[0]
    assert "01 Déposée" in rows[0]
    assert "n° de dépôt DEPF2026-001" in rows[0]
    assert f"certificat de dépôt : {CERT}" in rows[0]
    assert "03 Mise à disposition du destinataire" in rows[1]
    assert "05 Rejetée par l'ordonnateur pour autre motif" in rows[2]
    assert "commentaire : Montant erroné" in rows[2]
    assert "par SERVFIN" in rows[2]
    assert "n° de dépôt" not in rows[2]


def test_render_rich_draws_the_report():
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    markup = ErrorLine("REJ_SEMAN", "[bold]BR-01", "Montant")
    console.print(render.render_rich(flow_report(FLOW_PARTIAL, [markup])))
    console.print(render.render_rich(invoice_report([status_line("F2026-001")])))
    drawn = out.getvalue()
    assert "[bold]BR-01" in drawn  # user text is not taken as markup
    assert "F2026-001" in drawn and "01 Déposée" in drawn


def test_render_refuses_a_doctype_and_does_not_expand_entities():
    evil = (
        b'<?xml version="1.0"?><!DOCTYPE CPPStatut [<!ENTITY x "boom">]>'
        b"<CPPStatut><Enveloppe/><CPPFluxStatuts/></CPPStatut>"
    )
    with pytest.raises(ValueError):
        render.render_text(evil)


def test_render_refuses_another_document():
    with pytest.raises(ValueError):
        render.render_text(b"<Invoice/>")


# ----- arbitrary text -----


def _xml_legal(char: str) -> bool:
    code = ord(char)
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _expected(text: str) -> str:
    return "".join(c if _xml_legal(c) else "\ufffd" for c in text)


# Hypothesis never draws lone surrogates by itself; mix them in with the other illegal ones.
ANY_TEXT = st.text(
    st.one_of(
        st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()),
        st.sampled_from(["\ud800", "\udfff", "\ufffe", "\uffff", "\x00", "\x1f", "\x7f", "\x85"]),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reason=ANY_TEXT, code=ANY_TEXT, message=ANY_TEXT, desc=ANY_TEXT, comment=ANY_TEXT)
def test_any_text_in_an_integration_report_yields_a_valid_document(reason, code, message, desc, comment):
    xml = flow_report(FLOW_PARTIAL, [ErrorLine(reason, code, message, desc)], comment=comment)
    root = parse_valid(xml)
    data = root.find("CPPFluxStatuts/CPPFluxStatutUnitaire/DonneesStatut")
    detail = data.find("Details/LigneErreurDetail")
    assert (detail.findtext("NatureErreur") or "") == _expected(reason)
    assert (detail.findtext("CodeErreur") or "") == _expected(code)
    assert (detail.findtext("LibelleErreur") or "") == _expected(message)
    assert (detail.findtext("DescriptionErreur") or "") == _expected(desc)
    assert (data.findtext("Commentaire") or "") == _expected(comment)
    assert "Statut : 96" in render.render_text(xml)


@settings(max_examples=100, deadline=None)
@given(name=ANY_TEXT, number=ANY_TEXT, comment=ANY_TEXT, supplier=ANY_TEXT)
def test_any_text_in_a_processing_report_yields_a_valid_document(name, number, comment, supplier):
    xml = invoice_report([status_line(number, supplier_name=name, comment=comment, supplier_id=supplier, complement="DEP0001")])
    unit = parse_valid(xml).find("CPPFactureStatuts/CPPFactureStatutUnitaire")
    assert (unit.findtext("DonneesStatut/IdFacture") or "") == _expected(number)
    assert (unit.findtext("DonneesStatut/Commentaire") or "") == _expected(comment)
    assert (unit.findtext("Fournisseur/RaisonSociale") or "") == _expected(name)
    assert render.render_text(xml).count("\n  - Facture ") == 1


def test_characters_xml_cannot_hold_are_replaced():
    message = "a\x00b\x0bc\ud800d\ufffee\U0001f600\r\n\tf"
    root = parse_valid(flow_report(FLOW_REJECTED, [ErrorLine("R", "C", message)]))
    assert root.findtext(".//LibelleErreur") == "a\ufffdb\ufffdc\ufffdd\ufffde\U0001f600\r\n\tf"
