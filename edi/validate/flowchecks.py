"""Flow-level checks (design: "Checks and their codes", flow level).

A failed check makes the whole flow irrecevable: no invoice of it is integrated, and the
integration report (status 93) names the code. The checks that need only the file name, its
size and the partner run here, before any byte is parsed; the content checks (extraction,
well-formedness, envelope, declared count) raise `FlowRejected` from `edi.ingest.split`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edi.finding import Finding

INTERFACES = {
    "FSO1100A": "UBL",  # E1 UBL 2.1 Invoice / CreditNote
    "FSO1106A": "CII",  # E1 CII D16B CrossIndustryInvoice
    "FSO1110A": "CPP",  # CPP bulk XML (CPPFactureMixte V1.17)
}

# code -> French message (one line, as the operator reads it in the report)
MESSAGES = {
    "IRR_NOM_F": "Nom de fichier non conforme : attendu <INTERFACE>_<APP>_<IDFLUX 25 car.>.<xml|tar.gz>",
    "IRR_CODE_INTER": "Code interface inconnu",
    "IRR_CODE_APP": "Code application inconnu, désactivé, ou non autorisé pour cette interface",
    "IRR_UNCITE": "Identifiant de flux déjà reçu de cet émetteur",
    "IRR_VIDE": "Flux vide",
    "IRR_TAILLE": "Taille du flux supérieure à la limite autorisée",
    "IRR_TYPE": "Extension ou nature du fichier non conforme à l'interface",
    "IRR_EXTRAC": "Archive illisible : extraction impossible",
    "IRR_SYNTAX": "Fichier XML mal formé ou enveloppe invalide",
}

_STEM = re.compile(r"^(?P<interface>[A-Z0-9]{8})_(?P<app>[A-Z0-9]{3,8})_(?P<flow_ref>[A-Z0-9]{25})$")


class FlowRejected(Exception):
    """The flow is irrecevable. Carries the finding for the report."""

    def __init__(self, code: str, detail: str = "", *, location: str = "", value: str = ""):
        message = MESSAGES[code] + (f" : {detail}" if detail else "")
        super().__init__(message)
        self.finding = Finding(code=code, reason=code, message=message, location=location, value=value)


@dataclass(frozen=True)
class FlowName:
    interface: str
    app: str
    flow_ref: str
    extension: str  # "xml" | "tar.gz"


def split_extension(filename: str) -> tuple[str, str]:
    lower = filename.lower()
    for ext in ("tar.gz", "xml"):
        if lower.endswith("." + ext):
            return filename[: -len(ext) - 1], ext
    stem, dot, ext = filename.rpartition(".")
    return (stem, ext) if dot else (filename, "")


def parse_name(filename: str) -> FlowName:
    """Parse `<INTERFACE>_<APP>_<FLOWID>.<xml|tar.gz>`; raise FlowRejected when it is not.

    >>> parse_name("FSO1110A_DEMO_DEMO01110000000000000000001.xml").app
    'DEMO'
    """
    stem, ext = split_extension(filename)
    match = _STEM.match(stem)
    if not match:
        raise FlowRejected("IRR_NOM_F", location="nom du fichier", value=filename)
    if ext not in ("xml", "tar.gz") or not filename.endswith((".xml", ".tar.gz")):
        raise FlowRejected("IRR_TYPE", "extension attendue .xml ou .tar.gz", location="nom du fichier", value=filename)
    name = FlowName(extension=ext, **match.groupdict())
    if name.interface not in INTERFACES:
        raise FlowRejected("IRR_CODE_INTER", location="nom du fichier", value=name.interface)
    if name.interface == "FSO1110A" and ext != "xml":
        raise FlowRejected("IRR_TYPE", "un flux FSO1110A est un fichier .xml", location="nom du fichier", value=filename)
    return name


def check_sender(name: FlowName, folder_app: str | None, partner) -> None:
    """The sender must be the account that dropped the flow, known, enabled, and subscribed."""
    if folder_app and name.app != folder_app:
        raise FlowRejected("IRR_CODE_APP", f"flux déposé par {folder_app}", location="nom du fichier", value=name.app)
    if partner is None or not partner.enabled:
        raise FlowRejected("IRR_CODE_APP", location="nom du fichier", value=name.app)
    allowed = [c for c in (partner.interfaces or "").split(",") if c]
    if allowed and name.interface not in allowed:
        raise FlowRejected("IRR_CODE_APP", f"interface {name.interface} non souscrite", value=name.interface)


def check_size(size: int, limit: int) -> None:
    if size == 0:
        raise FlowRejected("IRR_VIDE", value="0 octet")
    if size > limit:
        raise FlowRejected("IRR_TAILLE", f"{size} octets pour {limit} autorisés", value=str(size))
