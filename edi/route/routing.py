"""Routing rules: can this invoice reach its public recipient? Pure rules, no I/O.

Inputs are the routing data of one invoice (recipient SIRET, code service, engagement number
"EJ") and a directory lookup (anything with `structure(siret)` and `service(siret, code)`, e.g.
`edi.route.directory.Directory`). Output is a list of findings, empty when the invoice can be
routed. Rules follow reference §3.1, §3.2 and §4.1 and run in the order of `RULES`.

Reason codes (Finding.reason, reference §2.6), chosen so a supplier knows what to fix:
- `SIRET_ERR`: the recipient SIRET itself is wrong (absent, malformed, bad check digit) and not
  in the directory;
- `DEST_INC`: a well-formed SIRET that is not a known, active recipient;
- `CODE_ROUTAGE_ERR`: the code service (the reform's "code routage", §4.2) is missing, unknown or
  inactive, or neither code service nor EJ is given when one of them is required;
- `REF_CT_ABSENT`: the engagement number (contract/order reference) is required and missing;
- `REF_ERR`: the engagement number is given but does not have the recipient's format;
- `DEST_ERR`: the recipient exists but cannot receive this kind of invoice (MOA-only).

Directory presence wins over the SIRET checksum (reference §3.1): the real directory holds
identifiers that fail it, so the checksum is only looked at when the SIRET is not found.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import NamedTuple, Protocol

from stdnum.fr import siret as stdnum_siret

from edi.finding import Finding


class Rule(NamedTuple):
    reason: str  # reform reason code (NatureErreur)
    message: str  # one line, French
    field: str  # which routing field the finding points at: siret | code_service | ej


# Stable codes: never renumber, only add.
SIRET_ABSENT = "ROUT-01"
SIRET_MALFORMED = "ROUT-02"
SIRET_CHECKSUM = "ROUT-03"
RECIPIENT_UNKNOWN = "ROUT-04"
RECIPIENT_INACTIVE = "ROUT-05"
SERVICE_REQUIRED = "ROUT-06"
SERVICE_UNKNOWN = "ROUT-07"
SERVICE_INACTIVE = "ROUT-08"
EJ_REQUIRED = "ROUT-09"
EJ_REQUIRED_BY_SERVICE = "ROUT-10"
SERVICE_OR_EJ_REQUIRED = "ROUT-11"
EJ_FORMAT = "ROUT-12"
MOA_ONLY = "ROUT-13"

RULES: dict[str, Rule] = {
    SIRET_ABSENT: Rule(
        "SIRET_ERR", "Le SIRET du destinataire est absent.", "siret"),
    SIRET_MALFORMED: Rule(
        "SIRET_ERR", "Le SIRET du destinataire doit comporter 14 chiffres.", "siret"),
    SIRET_CHECKSUM: Rule(
        "SIRET_ERR", "Le SIRET du destinataire est invalide (clé de contrôle) et absent de "
        "l'annuaire.", "siret"),
    RECIPIENT_UNKNOWN: Rule(
        "DEST_INC", "Le destinataire est absent de l'annuaire des structures publiques.", "siret"),
    RECIPIENT_INACTIVE: Rule(
        "DEST_INC", "La structure destinataire n'est pas active dans l'annuaire.", "siret"),
    SERVICE_REQUIRED: Rule(
        "CODE_ROUTAGE_ERR", "Le code service est obligatoire pour ce destinataire.",
        "code_service"),
    SERVICE_UNKNOWN: Rule(
        "CODE_ROUTAGE_ERR", "Le code service n'existe pas pour ce destinataire.", "code_service"),
    SERVICE_INACTIVE: Rule(
        "CODE_ROUTAGE_ERR", "Le service destinataire n'est pas actif dans l'annuaire.",
        "code_service"),
    EJ_REQUIRED: Rule(
        "REF_CT_ABSENT", "Le numéro d'engagement est obligatoire pour ce destinataire.", "ej"),
    EJ_REQUIRED_BY_SERVICE: Rule(
        "REF_CT_ABSENT", "Le numéro d'engagement est obligatoire pour ce service.", "ej"),
    SERVICE_OR_EJ_REQUIRED: Rule(
        "CODE_ROUTAGE_ERR", "Le code service ou le numéro d'engagement est obligatoire pour ce "
        "destinataire.", "code_service"),
    EJ_FORMAT: Rule(
        "REF_ERR", "Le numéro d'engagement ne respecte pas le format attendu par ce "
        "destinataire.", "ej"),
    MOA_ONLY: Rule(
        "DEST_ERR", "Le destinataire est maître d'ouvrage uniquement : il ne reçoit que des "
        "factures de travaux.", "siret"),
}

# Default locations: CPP bulk XML field paths (reference §1.3). Callers pass the field names
# of their syntax (UBL/CII XPaths) in `locations`, with the same keys.
DEFAULT_LOCATIONS: dict[str, str] = {
    "siret": "Debiteur/Identifiant",
    "code_service": "Debiteur/CodeService",
    "ej": "DonneesFacture/Engagement/NumeroEngagement",
}


class StructureView(Protocol):
    active: bool
    service_required: bool
    ej_required: bool
    service_or_ej: bool
    moa_only: bool


class ServiceView(Protocol):
    active: bool
    ej_required: bool


class DirectoryLookup(Protocol):
    def structure(self, siret: str) -> StructureView | None: ...
    def service(self, siret: str, code: str) -> ServiceView | None: ...


@lru_cache(maxsize=4096)
def siret_shape_error(siret: str) -> str | None:
    """The rule code that makes `siret` unusable before any lookup, or None if well-formed.
    Remembered per SIRET: a flow names the same suppliers again and again (python-stdnum's
    check costs ~20 µs, a third of the platform rules of an invoice)."""
    if not siret:
        return SIRET_ABSENT
    if len(siret) != 14 or not siret.isdigit() or not siret.isascii():
        return SIRET_MALFORMED
    if not stdnum_siret.is_valid(siret):  # Luhn, with the La Poste exception (reference §3.1)
        return SIRET_CHECKSUM
    return None


def check_routing(
    *,
    recipient_siret: str,
    code_service: str,
    ej: str,
    directory: DirectoryLookup,
    ej_patterns: Mapping[str, str],
    invoice_number: str = "",
    locations: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Check the routing data of one invoice against the directory; [] when routable.

    Stops after the SIRET rules when the recipient is not found (nothing else can be judged);
    otherwise every failing rule is reported. `ej_patterns` maps a SIRET to a regular
    expression a given EJ must match in full (config `[directory] ej_patterns`).
    """
    where = {**DEFAULT_LOCATIONS, **(locations or {})}
    siret = (recipient_siret or "").strip()
    code = (code_service or "").strip()
    ej = (ej or "").strip()
    values = {"siret": siret, "code_service": code, "ej": ej}
    findings: list[Finding] = []

    def fail(rule_code: str) -> None:
        rule = RULES[rule_code]
        findings.append(
            Finding(
                code=rule_code,
                reason=rule.reason,
                message=rule.message,
                location=where[rule.field],
                value=values[rule.field],
                invoice_number=invoice_number,
            )
        )

    structure = directory.structure(siret) if siret else None
    if structure is None:
        fail(siret_shape_error(siret) or RECIPIENT_UNKNOWN)
        return findings

    if not structure.active:
        fail(RECIPIENT_INACTIVE)

    service = None
    if code:
        service = directory.service(siret, code)
        if service is None:
            fail(SERVICE_UNKNOWN)
        elif not service.active:
            fail(SERVICE_INACTIVE)
    elif structure.service_required:
        fail(SERVICE_REQUIRED)

    if not ej:
        if structure.ej_required:
            fail(EJ_REQUIRED)
        elif service is not None and service.ej_required:
            fail(EJ_REQUIRED_BY_SERVICE)

    # not repeated when a stricter flag (code service / EJ mandatory) already reported it
    if structure.service_or_ej and not code and not ej and not (
        structure.service_required or structure.ej_required
    ):
        fail(SERVICE_OR_EJ_REQUIRED)

    pattern = ej_patterns.get(siret)
    if ej and pattern and re.fullmatch(pattern, ej) is None:
        fail(EJ_FORMAT)

    if structure.moa_only:
        fail(MOA_ONLY)

    return findings
