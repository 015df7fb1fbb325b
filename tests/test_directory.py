"""Directory import and lookup: real CSV files in tmp_path, real SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from edi.db import engine_for
from edi.db.models import Service, Structure
from edi.route.directory import (
    STRUCTURE_COLUMNS,
    Directory,
    DirectoryFileError,
    ServiceInfo,
    import_directory,
    parse_bool,
    read_services,
    read_structures,
    replace_directory,
    show,
)

CONFIG = Path(__file__).resolve().parent.parent / "config"
STATE = "11000201100044"
HEADER = ";".join(STRUCTURE_COLUMNS)
SERVICES_HEADER = "Identifiant;CodeService;NomService;GestionEGMT;ServiceActif"


def structure_line(siret="21750123800018", name="COMMUNE", flags=None, id_type="1") -> str:
    """One 21-column line; `flags` overrides the 9 flag cells by CSV column name."""
    values = {
        "EmetteurEdi": "false", "RecepteurEdi": "false", "GestionStatutMiseEnPaiement": "false",
        "GestionEngagement": "false", "GestionService": "false",
        "GestionServiceEngagement": "false", "EstMOA": "false", "EstMOAUniquement": "false",
        "StructureActive": "true",
    }
    values.update(flags or {})
    cells = [id_type, siret, name, *values.values(),
             "1 RUE X", "BAT A", "", "75001", "PARIS", "0100000000", "a@b.example", "FR", "France"]
    assert len(cells) == 21
    return ";".join(cells)


def write(path: Path, lines: list[str], encoding="utf-8") -> Path:
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path}/t.db"


def count(url, model) -> int:
    with engine_for(url).connect() as conn:
        return conn.execute(select(func.count()).select_from(model.__table__)).scalar_one()


# --- parse_bool --------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["true", "TRUE", "True", "1", "oui", "OUI", "Oui", " oui "])
def test_parse_bool_true(text):
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["false", "FALSE", "False", "0", "non", "NON", "Non", "non\t"])
def test_parse_bool_false(text):
    assert parse_bool(text) is False


@pytest.mark.parametrize("text", ["", "yes", "vrai", "2", "o", "n"])
def test_parse_bool_rejects_other_words(text):
    with pytest.raises(ValueError, match="oui/non"):
        parse_bool(text)


# --- reading the files ---------------------------------------------------------------------

def test_read_sample_structures_and_services():
    structures = {s.siret: s for s in read_structures(CONFIG / "structures.csv")}
    state = structures[STATE]
    assert state.service_required and state.ej_required and state.active
    assert not state.moa_only
    assert any(s.moa_only for s in structures.values())
    assert any(not s.active for s in structures.values())
    services = read_services(CONFIG / "services.csv", set(structures))
    assert {s.siret for s in services} <= set(structures)
    assert any(s.siret == STATE and s.ej_required for s in services)


def test_structure_columns_map_to_fields(tmp_path):
    flags = {"EmetteurEdi": "oui", "GestionEngagement": "1", "GestionService": "TRUE",
             "GestionServiceEngagement": "Non", "EstMOA": "0", "StructureActive": "false"}
    f = write(tmp_path / "s.csv", [HEADER, structure_line(STATE, "ETAT", flags)])
    [s] = read_structures(f)
    assert (s.siret, s.name, s.id_type) == (STATE, "ETAT", "1")
    assert s.edi_sender and s.ej_required and s.service_required
    assert not (s.edi_receiver or s.service_or_ej or s.is_moa or s.moa_only or s.active)
    assert (s.address, s.address_complement1, s.postal_code, s.city, s.country) == (
        "1 RUE X", "BAT A", "75001", "PARIS", "FR")
    assert (s.phone, s.email, s.country_name) == ("0100000000", "a@b.example", "France")


def test_bom_and_cp1252_files(tmp_path):
    line = structure_line(STATE, "SERVICES DE L'ÉTAT – DÉMO")
    with_bom = tmp_path / "bom.csv"
    with_bom.write_bytes(b"\xef\xbb\xbf" + f"{HEADER}\n{line}\n".encode())
    cp1252 = write(tmp_path / "win.csv", [HEADER, line], encoding="cp1252")
    assert read_structures(with_bom)[0].name == "SERVICES DE L'ÉTAT – DÉMO"
    assert read_structures(cp1252)[0].name == "SERVICES DE L'ÉTAT – DÉMO"


def test_excel_stripped_leading_zeros_are_restored(tmp_path, url):
    f = write(tmp_path / "s.csv", [HEADER, structure_line("1234567890123"),
                                   structure_line("98765432100019.0")])
    assert [s.siret for s in read_structures(f)] == ["01234567890123", "98765432100019"]
    svc = write(tmp_path / "v.csv", [SERVICES_HEADER, "1234567890123;ACHATS;;false;true"])
    stats = import_directory(url, f, svc)
    assert stats.padded_ids == 1
    assert Directory(url).service("01234567890123", "ACHATS") is not None


def test_excel_scientific_notation_is_refused(tmp_path):
    f = write(tmp_path / "s.csv", [HEADER, structure_line("1,10002E+13")])
    with pytest.raises(DirectoryFileError, match="notation scientifique") as err:
        read_structures(f)
    assert err.value.line_no == 2


@pytest.mark.parametrize(
    "bad_line, line_no, fragment",
    [
        (structure_line(STATE, flags={"GestionService": "peut-être"}), 3, "GestionService"),
        (structure_line("2175012380001X"), 3, "14 chiffres"),
        (structure_line("217501238000180"), 3, "plus de 14"),
        (structure_line("21750123800018"), 3, "en double (déjà ligne 2)"),
        (structure_line(STATE, flags={"StructureActive": ""}), 3, "StructureActive"),
        (";".join(["1", "21330005600016"] + ["x"] * 10), 3, "12 colonnes au lieu de 21"),
    ],
)
def test_bad_structure_line_is_reported_with_its_number(tmp_path, bad_line, line_no, fragment):
    f = write(tmp_path / "s.csv", [HEADER, structure_line("21750123800018"), bad_line])
    with pytest.raises(DirectoryFileError) as err:
        read_structures(f)
    assert err.value.line_no == line_no
    assert fragment in err.value.message
    assert f"ligne {line_no}" in str(err.value) and str(f) in str(err.value)


def test_optional_flags_may_be_empty_and_trailing_separator_is_tolerated(tmp_path):
    line = structure_line(flags={"EmetteurEdi": "", "RecepteurEdi": "", "EstMOAUniquement": ""})
    f = write(tmp_path / "s.csv", [HEADER + ";", line + ";", ""])
    [s] = read_structures(f)
    assert not (s.edi_sender or s.edi_receiver or s.moa_only)


def test_wrong_header_names_the_column(tmp_path):
    header = HEADER.replace("GestionService;", "GestionDesServices;")
    f = write(tmp_path / "s.csv", [header, structure_line()])
    with pytest.raises(DirectoryFileError, match="colonne 8 = 'GestionDesServices'") as err:
        read_structures(f)
    assert err.value.line_no == 1


def test_undecodable_file_names_the_line(tmp_path):
    f = tmp_path / "s.csv"
    f.write_bytes(f"{HEADER}\n{structure_line()}\n".encode() + b"1;\x81\x8d;X\n")
    with pytest.raises(DirectoryFileError, match="encodage") as err:
        read_structures(f)
    assert err.value.line_no == 3


def test_service_of_unknown_siret_is_an_error_on_its_line(tmp_path):
    f = write(tmp_path / "v.csv", [SERVICES_HEADER, f"{STATE};A;;oui;oui",
                                   "21750123800018;B;;non;oui"])
    with pytest.raises(DirectoryFileError, match="absent du fichier des structures") as err:
        read_services(f, {STATE})
    assert err.value.line_no == 3
    assert len(read_services(f)) == 2  # without the structures, only the shape is checked


@pytest.mark.parametrize(
    "bad_line, fragment",
    [(f"{STATE};;NOM;oui;oui", "CodeService vide"),
     (f"{STATE};A;NOM;peut-être;oui", "GestionEGMT"),
     (f"{STATE};A;NOM;oui;", "ServiceActif"),
     (f"{STATE};" + "C" * 101 + ";NOM;oui;oui", "plus de 100"),
     (f"{STATE};DUP;NOM;oui;oui", "en double")],
)
def test_bad_service_line(tmp_path, bad_line, fragment):
    f = write(tmp_path / "v.csv", [SERVICES_HEADER, f"{STATE};DUP;;1;1", bad_line])
    with pytest.raises(DirectoryFileError, match=fragment) as err:
        read_services(f, {STATE})
    assert err.value.line_no == 3


# --- import --------------------------------------------------------------------------------

def test_import_sample_and_lookup(url):
    stats = import_directory(url, CONFIG / "structures.csv", CONFIG / "services.csv")
    assert (stats.structures, stats.services) == (6, 6)
    assert (count(url, Structure), count(url, Service)) == (6, 6)
    d = Directory(url)
    state = d.structure(STATE)
    assert state.service_required and state.ej_required and state.name.startswith("ETAT")
    assert d.service(STATE, "DGFIP-DEMO") == ServiceInfo(
        STATE, "DGFIP-DEMO", "DIRECTION DEMO DES FINANCES PUBLIQUES", True, True)
    assert d.service(STATE, "NOPE") is None
    assert d.structure("00000000000000") is None


def test_reimport_replaces_everything(tmp_path, url):
    import_directory(url, CONFIG / "structures.csv", CONFIG / "services.csv")
    s = write(tmp_path / "s.csv", [HEADER, structure_line("21750123800018", "NOUVEAU NOM",
                                                         {"GestionService": "oui"})])
    v = write(tmp_path / "v.csv", [SERVICES_HEADER, "21750123800018;NEUF;;non;oui"])
    stats = import_directory(url, s, v)
    assert (stats.structures, stats.services) == (1, 1)
    assert (count(url, Structure), count(url, Service)) == (1, 1)
    d = Directory(url)
    assert d.structure(STATE) is None
    assert d.structure("21750123800018").name == "NOUVEAU NOM"
    assert d.structure("21750123800018").service_required


def test_import_without_services_keeps_services_of_remaining_structures(tmp_path, url):
    import_directory(url, CONFIG / "structures.csv", CONFIG / "services.csv")
    s = write(tmp_path / "s.csv", [HEADER, structure_line(STATE, "ETAT")])
    stats = import_directory(url, s)
    assert stats.services_kept == 3 and count(url, Service) == 3
    assert Directory(url).service(STATE, "ARMEES-DEMO") is not None
    assert Directory(url).service("20069001400010", "ACHATS") is None


def test_failed_reimport_changes_nothing(tmp_path, url):
    import_directory(url, CONFIG / "structures.csv", CONFIG / "services.csv")
    s = write(tmp_path / "s.csv", [HEADER, structure_line(STATE), structure_line("bad")])
    with pytest.raises(DirectoryFileError) as err:
        import_directory(url, s)
    assert err.value.line_no == 3
    v = write(tmp_path / "v.csv", [SERVICES_HEADER, "21750123800018;X;;non;oui"])
    with pytest.raises(DirectoryFileError):
        import_directory(url, write(tmp_path / "ok.csv", [HEADER, structure_line(STATE)]), v)
    assert (count(url, Structure), count(url, Service)) == (6, 6)
    assert Directory(url).service(STATE, "DGFIP-DEMO") is not None


def test_database_error_mid_import_rolls_back(url):
    """The delete + insert is one transaction: a failure while inserting services undoes it."""
    import_directory(url, CONFIG / "structures.csv", CONFIG / "services.csv")
    structures = read_structures(CONFIG / "structures.csv")[:1]
    dup = ServiceInfo(structures[0].siret, "SAME")
    with pytest.raises(IntegrityError):
        replace_directory(url, structures, [dup, dup])
    assert (count(url, Structure), count(url, Service)) == (6, 6)


def test_directory_is_memoised_per_instance(tmp_path, url):
    import_directory(url, CONFIG / "structures.csv", CONFIG / "services.csv")
    d = Directory(url)
    assert d.structure(STATE) is not None and d.service(STATE, "DGFIP-DEMO") is not None
    import_directory(url, write(tmp_path / "s.csv", [HEADER, structure_line()]))
    assert d.structure(STATE) is not None  # same flow: same answer
    assert d.service(STATE, "DGFIP-DEMO") is not None
    assert Directory(url).structure(STATE) is None  # next flow sees the re-import


def test_show(url):
    import_directory(url, CONFIG / "structures.csv", CONFIG / "services.csv")
    structure, services = show(url, STATE)
    assert structure.siret == STATE
    assert [s.code for s in services] == ["ANCIEN-SERVICE", "ARMEES-DEMO", "DGFIP-DEMO"]
    assert [s.active for s in services] == [False, True, True]
    assert show(url, "21750123800018") == (Directory(url).structure("21750123800018"), [])
    assert show(url, "99999999999999") is None


# --- issue 8, item 12: an import that empties the directory, NUL bytes ----------------------


def test_header_only_file_does_not_empty_the_directory(db_url, tmp_path):
    """A header-only export (a truncated download) would make every invoice DEST_INC."""
    full = write(tmp_path / "full.csv", [HEADER, structure_line("21750123800018"), structure_line(STATE)])
    import_directory(db_url, full)
    empty = write(tmp_path / "empty.csv", [HEADER])
    with pytest.raises(DirectoryFileError) as err:
        import_directory(db_url, empty)
    assert err.value.line_no == 1 and "--allow-empty" in err.value.message and "2 structures" in err.value.message
    assert count(db_url, Structure) == 2
    stats = import_directory(db_url, empty, allow_empty=True)
    assert stats.structures == 0 and count(db_url, Structure) == 0
    import_directory(db_url, empty)  # nothing left to remove: an empty directory stays empty


def test_nul_byte_in_a_cell_refused_with_its_line(db_url, tmp_path):
    """SQLite would store it and PostgreSQL raise DataError: both refuse it, naming the line."""
    good = write(tmp_path / "good.csv", [HEADER, structure_line("21750123800018")])
    import_directory(db_url, good)
    bad = write(tmp_path / "bad.csv", [HEADER, structure_line(STATE), structure_line(name="COM\x00MUNE")])
    with pytest.raises(DirectoryFileError) as err:
        import_directory(db_url, bad)
    assert err.value.line_no == 3 and "RaisonSociale" in err.value.message and "NUL" in err.value.message
    services = write(tmp_path / "services.csv", [SERVICES_HEADER, f"{STATE};SE\x001;Service;false;true"])
    with pytest.raises(DirectoryFileError) as err:
        import_directory(db_url, write(tmp_path / "s.csv", [HEADER, structure_line(STATE)]), services)
    assert err.value.line_no == 2 and "CodeService" in err.value.message
    assert show(db_url, "21750123800018") is not None and show(db_url, STATE) is None  # unchanged


def test_cli_import_refuses_empty_file_unless_allowed(tmp_path):
    from typer.testing import CliRunner

    from edi.cli import app

    config = tmp_path / "edi.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/t.db"\n[spool]\nroot = "{tmp_path}/spool"\n')
    full = write(tmp_path / "full.csv", [HEADER, structure_line("21750123800018")])
    empty = write(tmp_path / "empty.csv", [HEADER])
    runner = CliRunner()
    try:
        assert runner.invoke(app, ["--config", str(config), "directory", "import", str(full)]).exit_code == 0
        res = runner.invoke(app, ["--config", str(config), "directory", "import", str(empty)])
        assert res.exit_code == 2 and "--allow-empty" in res.output and "Traceback" not in res.output
        assert count(f"sqlite:///{tmp_path}/t.db", Structure) == 1
        res = runner.invoke(app, ["--config", str(config), "directory", "import", str(empty), "--allow-empty"])
        assert res.exit_code == 0 and count(f"sqlite:///{tmp_path}/t.db", Structure) == 0
    finally:
        structlog.reset_defaults()  # the CLI pointed the logger at the runner's (closed) stderr
