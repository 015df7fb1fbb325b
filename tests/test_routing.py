"""Routing rules, one test per rule, each both ways; then once through the real directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from edi.route import routing
from edi.route.directory import Directory, ServiceInfo, StructureInfo, import_directory
from edi.route.routing import RULES, check_routing

CONFIG = Path(__file__).resolve().parent.parent / "config"

STATE = "11000201100044"
COMMUNE = "21750123800018"  # no flag
HOSPITAL = "20069001400010"  # code service mandatory
DEPT = "21330005600016"  # code service or EJ
CLOSED = "13001123200019"  # inactive
MOA = "20590012900011"  # MOA only
BAD_CHECKSUM_LISTED = "13001100000000"  # fails Luhn, yet in the real directory (reference §3.1)
STATE_EJ = {STATE: r"^14\d{8}$"}

# Reform reason codes (reference §2.6): business list + rejection list.
REFORM_REASONS = {
    "DEST_INC", "DEST_ERR", "SIRET_ERR", "CODE_ROUTAGE_ERR", "REF_CT_ABSENT", "REF_ERR",
    "ROUTAGE_ERR", "ADR_ERR", "REJ_COH", "REJ_ADR",
}


class FakeDirectory:
    """In-memory stand-in with the same two lookups as edi.route.directory.Directory."""

    def __init__(self, structures, services=()):
        self.structures = {s.siret: s for s in structures}
        self.services = {(s.siret, s.code): s for s in services}

    def structure(self, siret):
        return self.structures.get(siret)

    def service(self, siret, code):
        return self.services.get((siret, code))


DIRECTORY = FakeDirectory(
    [
        StructureInfo(STATE, service_required=True, ej_required=True),
        StructureInfo(COMMUNE),
        StructureInfo(HOSPITAL, service_required=True),
        StructureInfo(DEPT, service_or_ej=True),
        StructureInfo(CLOSED, active=False),
        StructureInfo(MOA, is_moa=True, moa_only=True),
        StructureInfo(BAD_CHECKSUM_LISTED),
    ],
    [
        ServiceInfo(STATE, "DGFIP", ej_required=True),
        ServiceInfo(HOSPITAL, "ACHATS"),
        ServiceInfo(HOSPITAL, "INFO", ej_required=True),
        ServiceInfo(HOSPITAL, "FERME", active=False),
        ServiceInfo(COMMUNE, "TECH"),
    ],
)


def check(siret, code="", ej="", directory=DIRECTORY, patterns=STATE_EJ, **kw):
    return check_routing(recipient_siret=siret, code_service=code, ej=ej,
                         directory=directory, ej_patterns=patterns, **kw)


def codes(findings):
    return [f.code for f in findings]


def only(findings, code):
    assert codes(findings) == [code], findings
    f = findings[0]
    assert (f.reason, f.message) == (RULES[code].reason, RULES[code].message)
    assert f.fatal
    return f


# --- one test per rule --------------------------------------------------------------------

def test_rout01_siret_absent():
    f = only(check(""), routing.SIRET_ABSENT)
    assert (f.reason, f.location, f.value) == ("SIRET_ERR", "Debiteur/Identifiant", "")
    only(check("   "), routing.SIRET_ABSENT)
    assert check(COMMUNE) == []


@pytest.mark.parametrize("value", ["2175012380001", "217501238000180", "2175O123800018",
                                   "21 750 123 800 018", "２１７５０１２３８０００１８"])
def test_rout02_siret_malformed(value):
    f = only(check(value), routing.SIRET_MALFORMED)
    assert (f.reason, f.value) == ("SIRET_ERR", value.strip())
    assert check(COMMUNE) == []


def test_rout02_malformed_but_listed_identifier_is_accepted():
    listed = FakeDirectory([StructureInfo("ABC123")])
    assert check("ABC123", directory=listed) == []
    only(check("ABC123"), routing.SIRET_MALFORMED)


def test_rout03_bad_checksum_only_matters_when_not_in_directory():
    assert check(BAD_CHECKSUM_LISTED) == []  # directory presence wins
    f = only(check("21750123800019"), routing.SIRET_CHECKSUM)
    assert (f.reason, f.value) == ("SIRET_ERR", "21750123800019")
    # La Poste establishments fail Luhn but are valid SIRETs: unknown, not malformed
    la_poste = "35600000000123"  # digit sum 20, a multiple of 5 (reference §3.1)
    only(check(la_poste), routing.RECIPIENT_UNKNOWN)


def test_rout04_recipient_unknown_stops_the_checks():
    unknown = "21750123800026"  # valid checksum, not in the directory
    f = only(check(unknown, code="X", ej="Y"), routing.RECIPIENT_UNKNOWN)
    assert (f.reason, f.value) == ("DEST_INC", unknown)
    assert check(COMMUNE) == []


def test_rout05_structure_inactive():
    f = only(check(CLOSED), routing.RECIPIENT_INACTIVE)
    assert (f.reason, f.value) == ("DEST_INC", CLOSED)
    active = FakeDirectory([StructureInfo(CLOSED, active=True)])
    assert check(CLOSED, directory=active) == []


def test_rout06_code_service_required():
    f = only(check(HOSPITAL), routing.SERVICE_REQUIRED)
    assert (f.reason, f.location, f.value) == ("CODE_ROUTAGE_ERR", "Debiteur/CodeService", "")
    assert check(HOSPITAL, code="ACHATS") == []
    assert check(COMMUNE) == []  # not required there


def test_rout07_code_service_must_exist_under_that_siret():
    f = only(check(HOSPITAL, code="TECH"), routing.SERVICE_UNKNOWN)  # TECH is the commune's
    assert (f.reason, f.value) == ("CODE_ROUTAGE_ERR", "TECH")
    only(check(COMMUNE, code="ACHATS"), routing.SERVICE_UNKNOWN)  # given, so checked
    only(check(HOSPITAL, code="achats"), routing.SERVICE_UNKNOWN)  # codes are exact
    assert check(HOSPITAL, code="ACHATS") == []
    assert check(COMMUNE, code="TECH") == []


def test_rout08_service_inactive():
    f = only(check(HOSPITAL, code="FERME"), routing.SERVICE_INACTIVE)
    assert (f.reason, f.value) == ("CODE_ROUTAGE_ERR", "FERME")
    assert check(HOSPITAL, code="ACHATS") == []


def test_rout09_ej_required_by_structure():
    f = only(check(STATE, code="DGFIP"), routing.EJ_REQUIRED)
    assert (f.reason, f.location, f.value) == (
        "REF_CT_ABSENT", "DonneesFacture/Engagement/NumeroEngagement", "")
    assert check(STATE, code="DGFIP", ej="1400000001") == []


def test_rout10_ej_required_by_service():
    f = only(check(HOSPITAL, code="INFO"), routing.EJ_REQUIRED_BY_SERVICE)
    assert f.reason == "REF_CT_ABSENT"
    assert check(HOSPITAL, code="INFO", ej="EJ-42") == []
    assert check(HOSPITAL, code="ACHATS") == []  # that service does not require it


def test_rout11_code_service_or_ej():
    f = only(check(DEPT), routing.SERVICE_OR_EJ_REQUIRED)
    assert f.reason == "CODE_ROUTAGE_ERR"
    dept_services = FakeDirectory([StructureInfo(DEPT, service_or_ej=True)],
                                  [ServiceInfo(DEPT, "VOIRIE")])
    assert check(DEPT, code="VOIRIE", directory=dept_services) == []
    assert check(DEPT, ej="123") == []


def test_rout11_not_repeated_when_a_stricter_flag_already_failed():
    both = FakeDirectory([StructureInfo(DEPT, service_or_ej=True, service_required=True)])
    assert codes(check(DEPT, directory=both)) == [routing.SERVICE_REQUIRED]


def test_rout12_ej_pattern_must_match_in_full():
    for bad in ["1300000001", "140000000", "14000000011", "14000000a1"]:
        f = only(check(STATE, code="DGFIP", ej=bad), routing.EJ_FORMAT)
        assert (f.reason, f.value) == ("REF_ERR", bad)
    assert check(STATE, code="DGFIP", ej="1400000001") == []
    # unanchored pattern: still a full match
    only(check(STATE, code="DGFIP", ej="14000000019", patterns={STATE: r"14\d{8}"}),
         routing.EJ_FORMAT)
    # no pattern for this SIRET, or no EJ given: nothing to check
    assert check(COMMUNE, ej="anything") == []
    assert check(STATE, code="DGFIP", ej="free-form", patterns={}) == []


def test_rout13_moa_only_refuses_non_works_invoices():
    f = only(check(MOA), routing.MOA_ONLY)
    assert (f.reason, f.value) == ("DEST_ERR", MOA)
    moa_too = FakeDirectory([StructureInfo(MOA, is_moa=True, moa_only=False)])
    assert check(MOA, directory=moa_too) == []


# --- common behaviour ---------------------------------------------------------------------

def test_all_failing_rules_are_reported_in_rule_order():
    closed_state = FakeDirectory(
        [StructureInfo(STATE, active=False, service_required=True, ej_required=True,
                       moa_only=True)])
    assert codes(check(STATE, directory=closed_state)) == [
        routing.RECIPIENT_INACTIVE, routing.SERVICE_REQUIRED, routing.EJ_REQUIRED,
        routing.MOA_ONLY]


def test_locations_and_invoice_number_are_passed_through():
    ubl = {"siret": "cac:AccountingCustomerParty//cbc:EndpointID",
           "code_service": "cbc:BuyerReference", "ej": "cac:OrderReference/cbc:ID"}
    findings = check(STATE, ej="99", locations=ubl, invoice_number="F-001")
    assert [(f.location, f.invoice_number) for f in findings] == [
        ("cbc:BuyerReference", "F-001"), ("cac:OrderReference/cbc:ID", "F-001")]
    partial = check("", locations={"ej": "X"})
    assert partial[0].location == "Debiteur/Identifiant"


def test_surrounding_blanks_are_ignored():
    assert check(f" {STATE}\n", code=" DGFIP ", ej="\t1400000001 ") == []


def test_rule_catalogue():
    assert list(RULES) == [f"ROUT-{i:02d}" for i in range(1, len(RULES) + 1)]
    for code, rule in RULES.items():
        assert rule.reason in REFORM_REASONS, code
        assert rule.field in routing.DEFAULT_LOCATIONS, code
        assert rule.message and "\n" not in rule.message and rule.message.endswith("."), code
    tested = {name for name in globals() if name.startswith("test_rout")}
    assert {f"test_rout{c[-2:]}" for c in RULES} <= {t[: len("test_rout00")] for t in tested}


# --- through the real, DB-backed directory -------------------------------------------------

def test_routing_with_the_imported_sample_directory(tmp_path):
    url = f"sqlite:///{tmp_path}/t.db"
    import_directory(url, CONFIG / "structures.csv", CONFIG / "services.csv")
    d = Directory(url)
    assert check(STATE, code="DGFIP-DEMO", ej="1400000001", directory=d) == []
    assert codes(check(STATE, directory=d)) == [routing.SERVICE_REQUIRED, routing.EJ_REQUIRED]
    assert codes(check(STATE, code="ANCIEN-SERVICE", ej="1400000001", directory=d)) == [
        routing.SERVICE_INACTIVE]
    assert codes(check(STATE, code="DGFIP-DEMO", ej="1300000001", directory=d)) == [
        routing.EJ_FORMAT]
    assert codes(check(HOSPITAL, code="INFO", directory=d)) == [routing.EJ_REQUIRED_BY_SERVICE]
    assert codes(check(DEPT, directory=d)) == [routing.SERVICE_OR_EJ_REQUIRED]
    assert codes(check(CLOSED, directory=d)) == [routing.RECIPIENT_INACTIVE]
    assert codes(check(MOA, directory=d)) == [routing.MOA_ONLY]
    assert codes(check("21750123800026", directory=d)) == [routing.RECIPIENT_UNKNOWN]
    assert check(COMMUNE, directory=d) == []
