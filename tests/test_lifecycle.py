"""The life-cycle table (edi.lifecycle): every move of every actor, the motif rule, docs/lifecycle.md.

The expected moves are written here from the design notes ("Life cycle after deposit") and the
brief, as rules, not read from the table: a change to the table that breaks them fails here.
"""

from __future__ import annotations

import doctest
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edi import lifecycle
from edi.lifecycle import OPS, PLATFORM, RECIPIENT, SUPPLIER, check_move, status_for_reason
from tests.test_catalogue import REFORM_REASONS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "lifecycle.md"

ACTORS = (PLATFORM, RECIPIENT, SUPPLIER, OPS)
PRODUCT = [f"{n:02d}" for n in range(1, 13)]  # the statuses the platform supports
OFFICIAL = [f"{n:02d}" for n in range(1, 42)]  # CPPStatut V1_19: 01..41
CURRENT = ["", *PRODUCT]  # "": not deposited yet

# Reference §2.6, MDT-113 business list: the reform's reasons less the rejection (REJ_*) and
# non-receivability (IRR_*) ones, which the platform gives, not recipients.
BUSINESS_REASONS = {r for r in REFORM_REASONS if not r.startswith(("REJ_", "IRR_"))}
TO_RECYCLE_REASONS = {"CODE_ROUTAGE_ERR", "REF_CT_ABSENT", "REF_ERR"}
A_REASON_FOR = {"04": "REF_ERR", "05": "MONTANTTOTAL_ERR", "06": "JUSTIF_ABS"}
ENGLISH = re.compile(r"\b(the|is|are|must|not|of|and|invalid|missing|unknown|empty|file|status)\b", re.IGNORECASE)


def who_sets(new: str) -> set[str]:
    if new not in PRODUCT:
        return set()  # 13..41: validation circuits, not supported yet
    if new in ("01", "02", "03"):
        return {PLATFORM}
    if new == "12":
        return {SUPPLIER}
    return {RECIPIENT, OPS}  # ops act for recipients without EDI


def expected_allowed(current: str, new: str, actor: str) -> bool:
    """The design notes' moves, as rules."""
    if actor not in who_sets(new) or current in ("05", "11"):  # 05 and 11 are final
        return False
    if actor == PLATFORM:  # deposit, routing, recycling (04 resent and routed again)
        return (current, new) in {("", "01"), ("01", "02"), ("01", "03"), ("02", "03"), ("04", "03")}
    if actor == SUPPLIER:  # completion after a suspension
        return current == "06"
    made_available = current in ("03", "12")  # 12: made available again, treated as 03
    if new in ("04", "05", "06"):
        # a refusal of an invoice made available; a suspended one may still be refused
        return made_available or (current == "06" and new != "06")
    # 07..10 optional and ordered; 11 after 03 or any of 07..10
    return made_available or ("07" <= current <= "10" and current < new)


def expected_refusal(current: str, new: str, actor: str) -> str:
    if new > "12":
        return "REJ_RG"
    if actor not in who_sets(new):
        return "REJ_HAB"
    return "REJ_RG"


def assert_message(refusal, *codes: str) -> None:
    text = str(refusal)
    assert text.startswith(refusal.code + " : ")
    assert "\n" not in text and text == text.strip()
    assert not ENGLISH.search(refusal.message), refusal.message
    for code in codes:
        assert code in refusal.message, (code, refusal.message)


# ------------------------------------------------------------------ every move


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("new", OFFICIAL)
@pytest.mark.parametrize("current", CURRENT, ids=lambda c: c or "new")
def test_every_move(current, new, actor):
    refusal = check_move(current, new, actor, reason=A_REASON_FOR.get(new, ""))
    if expected_allowed(current, new, actor):
        assert refusal is None, str(refusal)
        assert new in lifecycle.next_statuses(current, actor)
        return
    assert refusal is not None, f"{current or 'new'} -> {new} by {actor} must be refused"
    assert refusal.code == expected_refusal(current, new, actor), str(refusal)
    assert_message(refusal, new)
    assert new not in lifecycle.next_statuses(current, actor)


def test_there_are_moves_for_every_supported_status_and_ops_act_as_the_recipient():
    for new in PRODUCT:
        assert any(expected_allowed(c, new, a) for c in CURRENT for a in ACTORS), new
    for current in CURRENT:
        assert lifecycle.next_statuses(current, OPS) == lifecycle.next_statuses(current, RECIPIENT)
    assert lifecycle.next_statuses("05", RECIPIENT) == lifecycle.next_statuses("11", OPS) == []


@pytest.mark.parametrize("new", ["", "0", "7", "00", "42", "99", "ab", "7a", "003", " 07"])
def test_unknown_status_codes_are_rej_inc(new):
    refusal = check_move("03", new, OPS)
    assert refusal.code == "REJ_INC"
    assert_message(refusal)


def test_programming_errors_raise():
    with pytest.raises(ValueError):
        check_move("03", "07", "comptable")
    with pytest.raises(ValueError):
        check_move("13", "07", OPS)


def test_final_and_unsupported_messages_name_the_statuses():
    refusal = check_move("05", "07", OPS)
    assert (refusal.code, refusal.message) == (
        "REJ_RG", "la facture est au statut final 05 (Rejetée) : passage à 07 (Service fait) impossible")
    assert "pas encore pris en charge" in check_move("03", "22", OPS).message
    assert "Conforme – non intégrée" in check_move("03", "22", OPS).message
    assert check_move("03", "12", OPS).message.startswith("l'exploitation ne peut pas poser le statut 12")
    assert check_move("07", "07", OPS).message.startswith("passage de 07 (Service fait) à 07 (Service fait) interdit")


# ------------------------------------------------------------------ reasons


def test_reasons_are_the_reform_business_list():
    assert set(lifecycle.REASONS) == BUSINESS_REASONS
    for code, label in lifecycle.REASONS.items():
        assert label and label == label.strip() and "\n" not in label, code


@pytest.mark.parametrize("reason", sorted(BUSINESS_REASONS))
def test_the_motif_decides_between_04_05_and_06(reason):
    meant = "06" if reason == "JUSTIF_ABS" else "04" if reason in TO_RECYCLE_REASONS else "05"
    assert status_for_reason(reason) == meant
    for new in ("04", "05", "06"):
        refusal = check_move("03", new, RECIPIENT, reason=reason)
        if new == meant:
            assert refusal is None, str(refusal)
        else:
            assert refusal.code == "REJ_RG", str(refusal)
            assert_message(refusal, reason, meant, new)


def test_status_for_an_unknown_reason_raises():
    with pytest.raises(KeyError):
        status_for_reason("PAS_UN_MOTIF")


@pytest.mark.parametrize("new", ["04", "05", "06"])
def test_a_refusal_needs_a_reason(new):
    refusal = check_move("03", new, OPS)
    assert refusal.code == "REJ_INC"
    assert_message(refusal, new)


@pytest.mark.parametrize("reason", ["INCONNU", "justif_abs", "REJ_SEMAN", "IRR_SYNTAX"])
def test_only_the_business_reasons_are_accepted(reason):
    refusal = check_move("03", "06", OPS, reason=reason)
    assert refusal.code == "REJ_INC"
    assert_message(refusal, reason)


@pytest.mark.parametrize("new", ["07", "08", "09", "10", "11"])
def test_no_reason_with_the_other_statuses(new):
    refusal = check_move("03", new, OPS, reason="AUTRE")
    assert refusal.code == "REJ_RG"
    assert_message(refusal, new)


# ------------------------------------------------------------------ mandate


@pytest.mark.parametrize("new", ["04", "05", "06", "07", "08", "09", "10", "11"])
def test_a_mandate_number_goes_with_08_to_11_only(new):
    refusal = check_move("03", new, OPS, reason=A_REASON_FOR.get(new, ""), mandate="M-2026-0042")
    if new in ("08", "09", "10", "11"):
        assert refusal is None, str(refusal)
    else:
        assert refusal.code == "REJ_RG"
        assert_message(refusal, new)


# ------------------------------------------------------------------ table shape and docs


def test_the_table_covers_01_to_12_and_the_rest_is_unsupported():
    assert [s.code for s in lifecycle.STATUSES] == PRODUCT
    assert sorted(lifecycle.UNSUPPORTED) == OFFICIAL[12:]
    assert [s.code for s in lifecycle.STATUSES if s.final] == ["05", "11"]
    assert [s.code for s in lifecycle.STATUSES if s.reason] == ["04", "05", "06"]
    assert lifecycle.LABELS["04"] == "Rejetée par l'ordonnateur pour erreur dans les données d'acheminement"
    assert (lifecycle.BY_CODE["04"].name, lifecycle.BY_CODE["05"].name) == ("A recycler", "Rejetée")


def test_refusal_codes_are_the_reform_status_rejections():
    assert set(lifecycle.REFUSALS) == {"REJ_INEX", "REJ_HAB", "REJ_RG", "REJ_INC"}


def test_docs_lifecycle_md_is_up_to_date():
    stale = f"docs/lifecycle.md est périmé : régénérez-le avec `{lifecycle.GENERATE_COMMAND}`"
    assert DOCS.exists(), stale
    assert DOCS.read_text(encoding="utf-8") == lifecycle.render_markdown(), stale


def test_the_documented_command_writes_the_file_text():
    assert f"`{lifecycle.GENERATE_COMMAND}`" in DOCS.read_text(encoding="utf-8").splitlines()[2]
    out = subprocess.run([sys.executable, "-m", "edi.lifecycle"], cwd=ROOT, capture_output=True, text=True,
                         check=True, encoding="utf-8").stdout
    assert out == lifecycle.render_markdown()


def test_the_docs_matrix_shows_every_allowed_move():
    text = lifecycle.render_markdown()
    rows = {line.split(" | ")[0][2:]: line.strip("| ").split(" | ")[1:]
            for line in text.splitlines() if re.match(r"\| (dépôt|\d\d) \|", line)}
    for current in CURRENT:
        cells = rows["dépôt" if current == "" else current]
        for new, cell in zip(PRODUCT, cells):
            allowed = any(expected_allowed(current, new, a) for a in ACTORS)
            assert bool(cell.strip()) == allowed, (current, new, cell)
    for reason in BUSINESS_REASONS:
        assert f"| `{reason}` |" in text


def test_doctests():
    from edi.route import status

    assert doctest.testmod(lifecycle).failed == 0
    assert doctest.testmod(status).failed == 0
