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

from sqlalchemy import select, tuple_

from edi import lifecycle
from edi.db.models import Invoice
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


#: What a status line needs of its invoice (checks, the event, the supplier's report line).
_COLUMNS = (Invoice.id, Invoice.flow_id, Invoice.status, Invoice.supplier_id, Invoice.supplier_id_type,
            Invoice.supplier_name, Invoice.supplier_country, Invoice.recipient_siret, Invoice.code_service,
            Invoice.number, Invoice.issue_date, Invoice.deposit_no)


class Applier:
    """Checks and applies the lines of one status flow from partner `app` in session `s`, a
    batch at a time: one query finds the batch's invoices (locked on PostgreSQL), the lines are
    checked in order in memory, then `status.record_many` writes them. Memory holds one batch of
    lines, and for the supplier's report one light row per accepted line."""

    BATCH = 500

    def __init__(self, s, app: str, sirets: set[str], at: datetime):
        self.s, self.app, self.sirets, self.at = s, app, sirets, at
        self.changed: list[tuple[object, status.Recorded]] = []
        self.refused: list[LineRefused] = []
        self.count = 0
        self._batch: list[StatusLine] = []

    def add(self, line: StatusLine) -> list[tuple[StatusLine, object]]:
        """Queue a line; when a batch is full, apply it and return each line's outcome (an
        invoice row, or a LineRefused), else []."""
        self.count += 1
        self._batch.append(line)
        return self.flush() if len(self._batch) >= self.BATCH else []

    def flush(self) -> list[tuple[StatusLine, object]]:
        """Apply the queued lines; their outcomes, in order."""
        batch, self._batch = self._batch, []
        if not batch:
            return []
        found = self._invoices(batch)
        outcomes: list[object] = []
        items = []
        for line in batch:
            invoice = self._check(line, found)
            outcomes.append(invoice)
            if not isinstance(invoice, Refusal):
                items.append((invoice, status.Change(status=line.status, actor=lifecycle.RECIPIENT,
                                                     producer=self.app, reason=line.reason,
                                                     comment=line.comment, mandate=line.mandate)))
        recorded = iter(status.record_many(self.s, items, self.at))
        done = []
        for line, outcome in zip(batch, outcomes):
            if not isinstance(outcome, Refusal):
                event = next(recorded)
                if not isinstance(event, Refusal):
                    self.changed.append((outcome, event))
                    done.append((line, outcome))
                    continue
                outcome = event
            refused = LineRefused(line, outcome)
            self.refused.append(refused)
            done.append((line, refused))
        return done

    def _invoices(self, batch: list[StatusLine]) -> dict[tuple[str, str], list]:
        """The deposited invoices the batch names, by (supplier, number), newest first."""
        keys = {(line.supplier_id, line.number) for line in batch if line.supplier_id and line.number}
        found: dict[tuple[str, str], list] = {}
        if not keys:
            return found
        query = (select(*_COLUMNS).where(tuple_(Invoice.supplier_id, Invoice.number).in_(sorted(keys)),
                                         Invoice.accepted.is_(True), Invoice.deposit_no.is_not(None))
                 .order_by(Invoice.id.desc()).with_for_update())
        for row in self.s.execute(query):
            found.setdefault((row.supplier_id, row.number), []).append(row)
        return found

    def _check(self, line: StatusLine, found: dict) -> object:
        missing = [name for name, value in (("Fournisseur/Identifiant", line.supplier_id),
                                            ("DonneesStatut/IdFacture", line.number),
                                            ("DonneesStatut/IdStatut", line.status)) if not value]
        if missing:
            return Refusal("REJ_INC", f"donnée obligatoire absente : {', '.join(missing)}")
        candidates = [row for row in found.get((line.supplier_id, line.number), ())
                      if not line.invoice_date or row.issue_date == line.invoice_date]
        if not candidates:
            dated = f" du {line.invoice_date}" if line.invoice_date else ""
            return Refusal("REJ_INEX", f"aucune facture n° {line.number}{dated} du fournisseur "
                                       f"{line.supplier_id} déposée sur la plateforme")
        invoice = candidates[0]
        if invoice.recipient_siret not in self.sirets:
            return Refusal("REJ_HAB", f"la facture n° {line.number} est adressée au SIRET "
                                      f"{invoice.recipient_siret}, dont {self.app} ne reçoit pas les factures")
        return invoice
