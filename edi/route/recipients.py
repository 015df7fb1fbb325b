"""Invoices for recipient partners: the `FDE2001A` deliveries of the report outbox.

Design, "Life cycle after deposit": each recipient partner (role `recipient`, its `sirets`) that
has accepted invoices in a processed flow gets one `FDE2001A_<APP>_<ID>.xml` in its `out/`; a
recycled or completed invoice is delivered again with `Renvoi` = `Recyclée` / `Complétée`.
The files in `spool/recipients/` stay as they are for every recipient, partner or not.

Deliveries are Report rows (kind `delivery`) added in the caller's transaction, then written by
the outbox like every report: a replay after a crash rebuilds the same names, nothing goes twice.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from sqlalchemy import select

from edi.db.models import Partner, Report, pack
from edi.lifecycle import PLATFORM_APP
from edi.reports import pivot

DELIVERY = "delivery"  # Report.kind


def partner_for_siret(s) -> dict[str, str]:
    """SIRET -> application code of the enabled recipient partner answering for it."""
    rows = s.execute(select(Partner.app, Partner.sirets)
                     .where(Partner.role == "recipient", Partner.enabled.is_(True)).order_by(Partner.app))
    return {siret: app for app, sirets in rows for siret in sirets.split(",") if siret}


def pieces(deposit_no: str, path: str) -> tuple[pivot.Piece, ...]:
    """The invoice delivered at `path` and its attachments (`<deposit>_PJ<n>_<name>` beside it)."""
    if not path or not os.path.exists(path):
        return ()
    folder = os.path.dirname(path)
    pattern = re.compile(rf"{re.escape(deposit_no)}_PJ(\d+)_(.*)")
    found = sorted((int(m.group(1)), m.group(2), name) for name in os.listdir(folder)
                   if (m := pattern.fullmatch(name)))
    return (pivot.Piece(os.path.basename(path), path, main=True),
            *(pivot.Piece(shown, os.path.join(folder, name)) for _, shown, name in found))


def delivered(values: Mapping, platform_id: int, renvoi: str, received: datetime) -> pivot.DeliveredInvoice:
    """What the recipient receives of an invoice row (its columns as a mapping)."""
    return pivot.DeliveredInvoice(
        platform_id=platform_id, renvoi=renvoi, number=values["number"], doc_type=values["doc_type"],
        supplier_id_type=values["supplier_id_type"], supplier_id=values["supplier_id"],
        supplier_name=values["supplier_name"], supplier_country=values["supplier_country"],
        recipient_siret=values["recipient_siret"], code_service=values["code_service"], ej=values["ej"],
        issue_date=values["issue_date"], received=received.date(), currency=values["currency"],
        total_ht=values["total_ht"], total_ttc=values["total_ttc"],
        pieces=pieces(values["deposit_no"], values["path"]),
    )


def deliver(s, flow_id: int, items: Iterable[tuple[str, Callable[[], pivot.DeliveredInvoice]]], at: datetime,
            prefix: str = "FDE", number: int = 1) -> list[Report]:
    """One FDE2001A Report per recipient partner among `items` (SIRET, what builds the invoice),
    in the session. An invoice is built only for a partner's SIRET: most recipients have no
    partner account, and building one reads its folder. Its id: `prefix`, the flow, then
    `number` counted up per partner (deterministic names)."""
    by_app: dict[str, list[pivot.DeliveredInvoice]] = {}
    partners = partner_for_siret(s)
    for siret, invoice in items:
        if siret in partners:
            by_app.setdefault(partners[siret], []).append(invoice())
    reports = []
    for n, (app, invoices) in enumerate(sorted(by_app.items()), start=number):
        delivery_id = f"{prefix}{flow_id:010d}{n:012d}"
        with tempfile.TemporaryFile() as fh:
            pivot.write_delivery(fh, sender_app=PLATFORM_APP, recipient_app=app, delivery_id=delivery_id,
                                 produced_at=at, invoices=invoices, count=len(invoices))
            fh.seek(0)
            content = pack(iter(lambda: fh.read(1 << 20), b""))
        report = Report(flow_id=flow_id, app=app, kind=DELIVERY, created_at=at, content=content,
                        filename=pivot.name(app, delivery_id))
        s.add(report)
        reports.append(report)
    s.flush()
    return reports
