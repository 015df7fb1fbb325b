"""`edi gen --statuses`: a realistic status flow from a recipient partner, for the invoices of a
processed flow, so the whole loop can be tried and measured (deposit → recipient statuses →
FEN1200A to the sender → recycle → redelivery).

The file is what a recipient's EDI system sends (`FEN1200A_<APP>_<FLOWID>.xml`, a CPPStatut
V1_19 with a `CPPFactureStatuts` block): the builder is the platform's own one (`edi.reports.
statut`), with the recipient as `Emetteur` and producer. Deterministic for the same seed.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select

from edi import db
from edi.db.models import Invoice, Partner
from edi.lifecycle import PLATFORM_APP
from edi.queries import find_flow
from edi.reports import statut
from edi.route.status import status_line

#: What recipients answer to invoices just made available, and how often (status, reason).
MIX: tuple[tuple[float, str, str], ...] = (
    (0.35, "07", ""), (0.20, "08", ""), (0.15, "11", ""),
    (0.10, "04", "REF_ERR"), (0.10, "06", "JUSTIF_ABS"), (0.10, "05", "MONTANTTOTAL_ERR"),
)
COMMENTS = {"04": "Engagement juridique inconnu : merci de corriger l'EJ.",
            "06": "Merci de joindre le procès-verbal de réception.",
            "05": "Le montant ne correspond pas au bon de commande."}


class GenError(ValueError):
    """The status flow cannot be made (unknown flow, no recipient partner for its invoices)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One status the recipient sets on one invoice."""

    invoice: Invoice
    status: str
    reason: str = ""
    comment: str = ""
    mandate: str = ""


def flow_id_for(app: str, seed: int) -> str:
    """A 25-character FLOWID for a generated status flow."""
    return f"ST{app}{seed:0{23 - len(app)}d}"[:25]


def status_file(out_dir: Path, app: str, flow_ref: str, answers: Iterable[Answer], at: datetime) -> Path:
    """Write the recipient's status flow for these answers (atomically: dot-name, then rename)."""
    answers = list(answers)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"FEN1200A_{app}_{flow_ref}.xml"
    tmp = out_dir / f".{path.name}.part"
    with open(tmp, "wb") as fh:
        statut.write_processing_report(
            fh, sender_app=app, recipient_app=PLATFORM_APP, report_flow_id=flow_ref, produced_at=at,
            lines=(status_line(a.invoice, status=a.status, complement=a.reason, comment=a.comment, at=at,
                               producer=app, mandate=a.mandate) for a in answers),
            count=len(answers),
        )
    os.replace(tmp, path)
    return path


def generate(url: str, flow_ref: str, out_dir: Path, *, seed: int = 0, partner: str | None = None,
             at: datetime | None = None) -> tuple[Path, list[Answer]]:
    """A status flow answering every accepted invoice of flow `flow_ref` that a recipient partner
    (`partner`, or the one answering for the first invoice's SIRET) receives."""
    at = at or datetime.now(timezone.utc).replace(microsecond=0)
    with db.session(url) as s:
        flow = find_flow(s, flow_ref)
        if flow is None:
            raise GenError(f"flux {flow_ref} introuvable")
        invoices = list(s.execute(select(Invoice).where(Invoice.flow_id == flow.id, Invoice.accepted.is_(True),
                                                        Invoice.deposit_no.is_not(None))
                                  .order_by(Invoice.seq)).scalars())
        recipients = list(s.execute(select(Partner).where(Partner.role == "recipient")).scalars())
    sirets = {p.app: {x for x in p.sirets.split(",") if x} for p in recipients}
    if partner is None:
        partner = next((app for i in invoices for app, mine in sorted(sirets.items()) if i.recipient_siret in mine), None)
    if partner not in sirets:
        raise GenError(f"aucun partenaire destinataire ({partner or 'role = recipient'}) ne reçoit les factures "
                       f"du flux {flow_ref}")
    rng = random.Random(f"edi-gen-statuses:{seed}")
    answers = []
    for invoice in (i for i in invoices if i.recipient_siret in sirets[partner]):
        code, reason = _pick(rng)
        answers.append(Answer(invoice, code, reason, COMMENTS.get(code, ""),
                              f"M{rng.randrange(10**7):07d}" if code in ("08", "11") else ""))
    if not answers:
        raise GenError(f"aucune facture acceptée du flux {flow_ref} pour {partner}")
    return status_file(Path(out_dir), partner, flow_id_for(partner, seed), answers, at), answers


def _pick(rng: random.Random) -> tuple[str, str]:
    draw, total = rng.random(), 0.0
    for share, code, reason in MIX:
        total += share
        if draw < total:
            return code, reason
    return MIX[-1][1], MIX[-1][2]
