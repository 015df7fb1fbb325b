"""Flow-level checks end to end: each IRR_* code through `ingest_paths`, on real files.

For every irrecevable flow the contract is the same (tests/helpers.assert_irrecevable): state
IN_REJETE with the code, an integration report CSO... with IdStatut 93 and a LigneErreurDetail
naming the code, the original archived byte for byte, nothing delivered, the code in the logs.
"""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from edi import partners
from tests.helpers import (
    DEMO,
    assert_irrecevable,
    cpp_bytes,
    cpp_tree,
    cpp_units,
    error_lines,
    flow_name,
    flow_status,
    generated,
    make_platform,
    tar_gz,
)


@pytest.fixture
def platform(tmp_path):
    return make_platform(tmp_path)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """One small generated flow of each kind (bytes), reused under new names."""
    folder = tmp_path_factory.mktemp("samples")
    cpp = generated(folder, "FSO1110A", 2, seed=11)
    ubl = generated(folder, "FSO1100A", 1, seed=12)
    cii = generated(folder, "FSO1106A", 1, seed=13)
    return {"cpp": cpp.path.read_bytes(), "ubl": ubl.path.read_bytes(), "cii": cii.path.read_bytes()}


def set_sender(app):
    return lambda root: root.find("Enveloppe/EnveloppeUnitaire/Partenaires/Emetteur/Id").__setattr__("text", app)


def cpp_with(samples, edit) -> bytes:
    root = cpp_tree(samples["cpp"])
    edit(root)
    return cpp_bytes(root)


def ingest_file(platform, name, data, partner=None):
    return platform.ingest(platform.file(name, data), partner)


# ------------------------------------------------------------------ IRR_NOM_F


@pytest.mark.parametrize("name", [
    "facture.xml",
    "FSO1110A_DEMO_short.xml",  # FLOWID not 25 characters
    "FSO1110A_DEMO_abcdefghijklmnopqrstuvwxy.xml",  # lower case
    "FSO1110A_D_AAAAAAAAAAAAAAAAAAAAAAAAA.xml",  # APP too short
    "FSO1110A-DEMO-AAAAAAAAAAAAAAAAAAAAAAAAA.xml",
])
def test_irr_nom_f_bad_name(platform, samples, name):
    flow = ingest_file(platform, name, samples["cpp"], partner=DEMO)
    lines = assert_irrecevable(platform, flow, "IRR_NOM_F", samples["cpp"])
    assert name in lines[0]["DescriptionErreur"]
    # the report is named after the sender and the internal id, since the FLOWID is unknown
    report_name, _ = platform.report(flow)
    assert report_name == f"CSO0000A_{DEMO}_{flow.id:025d}.xml"


def test_irr_nom_f_without_partner_keeps_the_report_in_the_database(platform, samples):
    flow = ingest_file(platform, "n'importe quoi.xml", samples["cpp"])
    assert flow.app == "INCONNU"
    assert_irrecevable(platform, flow, "IRR_NOM_F", samples["cpp"])
    assert platform.out_files("INCONNU") == {} and platform.out_files(DEMO) == {}


# ------------------------------------------------------------------ IRR_CODE_INTER


def test_irr_code_inter_unknown_interface(platform, samples):
    name = flow_name("FSO9999A")
    flow = ingest_file(platform, name, samples["cpp"])
    lines = assert_irrecevable(platform, flow, "IRR_CODE_INTER", samples["cpp"])
    assert "FSO9999A" in lines[0]["DescriptionErreur"]


# ------------------------------------------------------------------ IRR_CODE_APP


def test_irr_code_app_unknown_partner(platform, samples):
    flow = ingest_file(platform, flow_name("FSO1110A", app="ZZZ"), samples["cpp"])
    assert flow.app == "ZZZ"
    assert_irrecevable(platform, flow, "IRR_CODE_APP", samples["cpp"])
    assert not (platform.spool.root / "partners" / "ZZZ").exists()  # no folder made for a stranger


def test_irr_code_app_partner_not_subscribed_to_the_interface(tmp_path, samples):
    platform = make_platform(tmp_path, partners=[{"app": "CPPONLY", "interfaces": ["FSO1110A"]}])
    flow = ingest_file(platform, flow_name("FSO1100A", app="CPPONLY"), samples["ubl"])
    lines = assert_irrecevable(platform, flow, "IRR_CODE_APP", samples["ubl"])
    assert "FSO1100A" in lines[0]["LibelleErreur"] + lines[0]["DescriptionErreur"]
    # the interface it is subscribed to goes through
    ok = ingest_file(platform, flow_name("FSO1110A", app="CPPONLY"), cpp_with(samples, set_sender("CPPONLY")))
    assert ok.error_code is None and ok.state == "IN_INTEGRE"


def test_irr_code_app_flow_dropped_in_another_partners_inbox(tmp_path, samples):
    platform = make_platform(tmp_path, partners=[{"app": "AAA"}, {"app": "BBB"}])
    data = cpp_with(samples, set_sender("BBB"))
    dropped = platform.drop(flow_name("FSO1110A", app="BBB"), data, app="AAA")
    flow = platform.ingest(dropped)
    assert flow.app == "AAA"
    lines = assert_irrecevable(platform, flow, "IRR_CODE_APP", data)
    assert "AAA" in lines[0]["LibelleErreur"]
    assert not dropped.exists()  # claimed out of in/
    assert list(platform.out_files("AAA")) == [f"CSO1110A_AAA_{flow.flow_ref}.xml"]
    assert platform.out_files("BBB") == {}


def test_irr_code_app_disabled_partner(platform, samples):
    partners.disable(platform.url, DEMO)
    flow = ingest_file(platform, flow_name("FSO1110A"), samples["cpp"])
    assert_irrecevable(platform, flow, "IRR_CODE_APP", samples["cpp"])
    partners.enable(platform.url, DEMO)
    assert ingest_file(platform, flow_name("FSO1110A"), samples["cpp"]).state == "IN_INTEGRE"


def test_irr_code_app_cpp_envelope_sender_differs_from_the_name(platform, samples):
    data = cpp_with(samples, set_sender("AUTRE"))
    flow = ingest_file(platform, flow_name("FSO1110A"), data)
    lines = assert_irrecevable(platform, flow, "IRR_CODE_APP", data)
    assert "AUTRE" in lines[0]["DescriptionErreur"]


# ------------------------------------------------------------------ IRR_UNCITE: tests/test_pipeline.py (both databases)
# ------------------------------------------------------------------ IRR_VIDE


def test_irr_vide_empty_file(platform):
    flow = ingest_file(platform, flow_name("FSO1110A"), b"")
    assert_irrecevable(platform, flow, "IRR_VIDE", b"")


def test_irr_vide_tar_gz_without_member(platform):
    data = tar_gz([])
    flow = ingest_file(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    assert_irrecevable(platform, flow, "IRR_VIDE", data)


def test_irr_vide_tar_gz_with_only_a_directory(platform):
    folder = tarfile.TarInfo("factures")
    folder.type = tarfile.DIRTYPE
    data = tar_gz([(folder, b"")])
    flow = ingest_file(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    assert_irrecevable(platform, flow, "IRR_VIDE", data)


def test_irr_vide_cpp_with_zero_invoices(platform, samples):
    def empty(root):
        factures = root.find("CPPFactures")
        for unit in cpp_units(root):
            factures.remove(unit)
        factures.set("Compteur", "0")

    data = cpp_with(samples, empty)
    flow = ingest_file(platform, flow_name("FSO1110A"), data)
    assert_irrecevable(platform, flow, "IRR_VIDE", data)


# ------------------------------------------------------------------ IRR_TAILLE


def test_irr_taille_flow_over_the_configured_limit(tmp_path, samples):
    size = len(samples["cpp"])
    platform = make_platform(tmp_path, limits={"max_flow_bytes": size - 1})
    flow = ingest_file(platform, flow_name("FSO1110A"), samples["cpp"])
    lines = assert_irrecevable(platform, flow, "IRR_TAILLE", samples["cpp"])
    assert str(size) in lines[0]["LibelleErreur"]


def test_irr_taille_limit_from_the_environment(tmp_path, samples):
    size = len(samples["cpp"])
    platform = make_platform(tmp_path, environ={"EDI_LIMITS_MAX_FLOW_BYTES": str(size)})
    assert platform.cfg.max_flow_bytes == size
    assert ingest_file(platform, flow_name("FSO1110A"), samples["cpp"]).state == "IN_INTEGRE"  # = limit: ok
    bigger = samples["cpp"] + b"\n"
    flow = ingest_file(platform, flow_name("FSO1110A"), bigger)
    assert_irrecevable(platform, flow, "IRR_TAILLE", bigger)


def test_irr_taille_limit_through_the_cli_environment(tmp_path, samples):
    platform = make_platform(tmp_path)
    path = platform.file(flow_name("FSO1110A"), samples["cpp"])
    result = platform.cli("ingest", str(path), env={"EDI_LIMITS_MAX_FLOW_BYTES": "100"})
    assert result.exit_code == 0, result.output
    assert "IRR_TAILLE" in result.stdout
    detail = platform.detail(path.name.split("_")[2][:25])
    assert (detail["state"], detail["error_code"]) == ("IN_REJETE", "IRR_TAILLE")


def test_irr_taille_xml_file_over_max_file_bytes(tmp_path, samples):
    platform = make_platform(tmp_path, limits={"max_file_bytes": len(samples["ubl"]) - 1})
    flow = ingest_file(platform, flow_name("FSO1100A"), samples["ubl"])
    assert_irrecevable(platform, flow, "IRR_TAILLE", samples["ubl"])


# ------------------------------------------------------------------ IRR_TYPE


@pytest.mark.parametrize("name", [
    flow_name("FSO1110A", ext="txt"),
    flow_name("FSO1110A", ext="zip"),
    flow_name("FSO1100A", ext="XML"),  # the extension is case-sensitive, like the name
    flow_name("FSO1110A", ext="tar.gz"),  # a CPP bulk flow is one XML file
])
def test_irr_type_wrong_extension(platform, samples, name):
    flow = ingest_file(platform, name, samples["cpp"])
    assert_irrecevable(platform, flow, "IRR_TYPE", samples["cpp"])


def test_irr_type_cii_document_in_a_ubl_flow(platform, samples):
    flow = ingest_file(platform, flow_name("FSO1100A"), samples["cii"])
    lines = assert_irrecevable(platform, flow, "IRR_TYPE", samples["cii"])
    assert "CrossIndustryInvoice" in lines[0]["LibelleErreur"]


def test_irr_type_ubl_document_in_a_cpp_flow(platform, samples):
    flow = ingest_file(platform, flow_name("FSO1110A"), samples["ubl"])
    assert_irrecevable(platform, flow, "IRR_TYPE", samples["ubl"])


def test_irr_type_cii_member_in_a_ubl_archive(platform, samples):
    data = tar_gz([("1.xml", samples["ubl"]), ("2.xml", samples["cii"])])
    flow = ingest_file(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    assert_irrecevable(platform, flow, "IRR_TYPE", data)


def test_irr_type_archive_member_not_xml(platform, samples):
    data = tar_gz([("1.xml", samples["ubl"]), ("facture.pdf", b"%PDF-1.4")])
    flow = ingest_file(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    assert_irrecevable(platform, flow, "IRR_TYPE", data)


# ------------------------------------------------------------------ IRR_EXTRAC


def test_irr_extrac_corrupt_tar_gz(platform, samples):
    good = tar_gz([("1.xml", samples["ubl"])])
    data = good[:10] + bytes(b ^ 0x5A for b in good[10:60]) + good[60:]
    flow = ingest_file(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    assert_irrecevable(platform, flow, "IRR_EXTRAC", data)


def test_irr_extrac_truncated_tar_gz(platform, samples):
    data = tar_gz([("1.xml", samples["ubl"]), ("2.xml", samples["ubl"])])[:-40]
    flow = ingest_file(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    assert_irrecevable(platform, flow, "IRR_EXTRAC", data)


def test_irr_extrac_upload_cut_between_two_members(platform, samples):
    """The cut falls right after a complete member: tar alone would see a shorter archive."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for n in (1, 2):
            info = tarfile.TarInfo(f"{n}.xml")
            info.size = len(samples["ubl"])
            tar.addfile(info, io.BytesIO(samples["ubl"]))
    first_member_end = 512 + -(-len(samples["ubl"]) // 512) * 512
    data = gzip.compress(raw.getvalue()[:first_member_end])[:-8]  # no gzip trailer: cut short
    flow = ingest_file(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    assert_irrecevable(platform, flow, "IRR_EXTRAC", data)


def test_irr_extrac_gzip_of_something_else(platform, samples):
    data = gzip.compress(samples["ubl"])  # gzip, but no tar inside
    flow = ingest_file(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    assert_irrecevable(platform, flow, "IRR_EXTRAC", data)


# ------------------------------------------------------------------ IRR_SYNTAX


def test_irr_syntax_not_well_formed_ubl(platform, samples):
    data = samples["ubl"].replace(b"</Invoice>", b"</Facture>")
    flow = ingest_file(platform, flow_name("FSO1100A"), data)
    assert_irrecevable(platform, flow, "IRR_SYNTAX", data)


def test_irr_syntax_not_well_formed_member_stops_the_whole_archive(platform, samples):
    data = tar_gz([("1.xml", samples["ubl"]), ("2.xml", samples["ubl"][:-30])])
    flow = ingest_file(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    lines = assert_irrecevable(platform, flow, "IRR_SYNTAX", data)
    assert "2.xml" in lines[0]["DescriptionErreur"]


def test_irr_syntax_truncated_cpp(platform, samples):
    data = samples["cpp"][: len(samples["cpp"]) * 2 // 3]
    flow = ingest_file(platform, flow_name("FSO1110A"), data)
    assert_irrecevable(platform, flow, "IRR_SYNTAX", data)  # the invoice read before the cut is not kept


def test_irr_syntax_invalid_envelope(platform, samples):
    def drop_receiver(root):
        partenaires = root.find("Enveloppe/EnveloppeUnitaire/Partenaires")
        partenaires.remove(partenaires.find("Recepteur"))

    data = cpp_with(samples, drop_receiver)
    flow = ingest_file(platform, flow_name("FSO1110A"), data)
    lines = assert_irrecevable(platform, flow, "IRR_SYNTAX", data)
    assert "enveloppe" in lines[0]["LibelleErreur"].lower()


def test_irr_syntax_envelope_without_flow_parameters(platform, samples):
    def drop_idflx(root):
        params = root.find("Enveloppe/EnveloppeUnitaire/Parametres")
        for param in params.findall("ParametreIndiv"):
            if param.findtext("Code") == "IdFlx":
                params.remove(param)

    data = cpp_with(samples, drop_idflx)
    flow = ingest_file(platform, flow_name("FSO1110A"), data)
    assert_irrecevable(platform, flow, "IRR_SYNTAX", data)


@pytest.mark.parametrize("declared", ["3", "1", "deux", None])
def test_irr_syntax_compteur_differs_from_the_invoices_found(platform, samples, declared):
    def set_count(root):
        factures = root.find("CPPFactures")
        if declared is None:
            del factures.attrib["Compteur"]
        else:
            factures.set("Compteur", declared)

    data = cpp_with(samples, set_count)
    flow = ingest_file(platform, flow_name("FSO1110A"), data)
    lines = assert_irrecevable(platform, flow, "IRR_SYNTAX", data)
    assert any("Compteur" in line.get("DescriptionErreur", "") for line in lines), lines


# ------------------------------------------------------------------ the first failing check wins


def test_only_the_first_flow_check_is_reported(platform, samples):
    """An empty, misnamed file: the name is checked first, and only that is reported."""
    flow = ingest_file(platform, "vide.xml", b"", partner=DEMO)
    lines = assert_irrecevable(platform, flow, "IRR_NOM_F", b"")
    assert [line["NatureErreur"] for line in lines] == ["IRR_NOM_F"]


def test_irrecevable_flow_report_lists_no_invoice(platform, samples):
    data = samples["cpp"][:-20]
    flow = ingest_file(platform, flow_name("FSO1110A"), data)
    _, root = platform.report(flow)
    assert flow_status(root) == "93"
    assert len(error_lines(root)) == 1
    assert root.findtext("CPPFluxStatuts/CPPFluxStatutUnitaire/DonneesStatut/IdFlux") == flow.flow_ref
