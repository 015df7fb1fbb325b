"""The lines of a recipient's status flow, each checked then applied (design, "Life cycle after
deposit"): the invoice exists (REJ_INEX), belongs to one of the partner's SIRETs (REJ_HAB), the
move is allowed (REJ_RG, from `edi.lifecycle.check_move` with the recipient as actor), the data
it needs is there (REJ_INC). Accepted lines go through `edi.route.status.record`; refused ones
change nothing and become lines of the recipient's CEN1200A.

Runs inside the flow's outcome transaction (`edi.pipeline`): a crash before its commit leaves
nothing applied, and the replay applies every line once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from edi import lifecycle
from edi.db.models import Invoice, StatusEvent
from edi.lifecycle import Refusal
from edi.reports import statut
from edi.route import status


@dataclass(frozen=True, slots=True)
class StatusLine:
    """One `CPPFactureStatutUnitaire` of a status flow, as read (text fields "" when absent)."""

    seq: int
    supplier_id_type: str
    supplier_id: str
    recipient_siret: str
    code_service: str
    status: str  # IdStatut
    reason: str  # ComplementStatut: the reform reason code (04, 05, 06)
    comment: str  # Commentaire, for the supplier
    number: str  # IdFacture: the supplier's invoice number
    invoice_date: str  # DateFacture (YYYY-MM-DD), optional
    mandate: str  # IdMandatDP
    producer: str  # Producteur/@Id as written (the report names the partner's APP whatever it says)


@dataclass(frozen=True, slots=True)
class LineRefused:
    line: StatusLine
    refusal: Refusal

    def error_line(self) -> statut.ErrorLine:
        """The CEN1200A line: the reform code, the French message, which invoice and status."""
        line = self.line
        what = f"Ligne {line.seq} : facture {line.number or '?'} du fournisseur {line.supplier_id or '?'}"
        return statut.ErrorLine(reason=self.refusal.code, code=self.refusal.code, message=self.refusal.message,
                                description=f"{what}, statut {line.status or '?'}"
                                            + (f", motif {line.reason}" if line.reason else ""))


class Applier:
    """Checks and applies the lines of one status flow from partner `app` in session `s`."""

    def __init__(self, s, app: str, sirets: set[str], at: datetime):
        self.s, self.app, self.sirets, self.at = s, app, sirets, at
        self.changed: list[tuple[Invoice, StatusEvent]] = []
        self.refused: list[LineRefused] = []
        self.count = 0

    def apply(self, line: StatusLine) -> Invoice | LineRefused:
        """The invoice changed, or why the line is refused."""
        self.count += 1
        found = self._invoice(line)
        if isinstance(found, Refusal):
            return self._refuse(line, found)
        change = status.Change(status=line.status, actor=lifecycle.RECIPIENT, producer=self.app,
                               reason=line.reason, comment=line.comment, mandate=line.mandate)
        try:
            event = status.record(self.s, found, change, self.at)
        except status.Refused as refused:
            return self._refuse(line, refused.refusal)
        except status.Conflict:
            return self._refuse(line, Refusal("REJ_RG", "la facture a changé de statut pendant le traitement du flux"))
        self.changed.append((found, event))
        return found

    def _invoice(self, line: StatusLine) -> Invoice | Refusal:
        missing = [name for name, value in (("Fournisseur/Identifiant", line.supplier_id),
                                            ("DonneesStatut/IdFacture", line.number),
                                            ("DonneesStatut/IdStatut", line.status)) if not value]
        if missing:
            return Refusal("REJ_INC", f"donnée obligatoire absente : {', '.join(missing)}")
        query = select(Invoice).where(Invoice.supplier_id == line.supplier_id, Invoice.number == line.number,
                                      Invoice.accepted.is_(True), Invoice.deposit_no.is_not(None))
        if line.invoice_date:
            query = query.where(Invoice.issue_date == line.invoice_date)
        invoice = self.s.execute(query.order_by(Invoice.id.desc()).limit(1)).scalars().first()
        if invoice is None:
            dated = f" du {line.invoice_date}" if line.invoice_date else ""
            return Refusal("REJ_INEX", f"aucune facture n° {line.number}{dated} du fournisseur "
                                       f"{line.supplier_id} déposée sur la plateforme")
        if invoice.recipient_siret not in self.sirets:
            return Refusal("REJ_HAB", f"la facture n° {line.number} est adressée au SIRET "
                                      f"{invoice.recipient_siret}, dont {self.app} ne reçoit pas les factures")
        return invoice

    def _refuse(self, line: StatusLine, refusal: Refusal) -> LineRefused:
        refused = LineRefused(line, refusal)
        self.refused.append(refused)
        return refused
