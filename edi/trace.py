"""The trace of a flow, as in Bots: every step is a row (`FlowStep`) that ops can read with
`edi flows show REF`, so that what happened to a flow — and why it failed — is in the database,
not only in a log file.

Steps before the outcome (received, archived, claimed, failed, held, retried, lease lost) are
written as they happen, each in the transaction of the change it records; the steps of the
processing itself (checked, split, each invoice, delivered, reported, finished) are written with
the outcome, in one transaction, so a flow replayed after a crash never has them twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert

from edi import db
from edi.db.models import FlowStep, utcnow

RECEIVED = "received"  # Flow row recorded (file claimed from in/, hashed)
ARCHIVED = "archived"  # original moved into archive/ (read-only)
CLAIMED = "claimed"  # a worker took the flow for processing (an attempt)
CHECKED = "checked"  # flow checks before the split: name, sender, flow id, size
SPLIT = "split"  # the flow read to its end: envelope, counter, every invoice out
INVOICE = "invoice"  # one invoice decided (accepted or rejected)
DELIVERED = "delivered"  # accepted invoices placed in their recipients' folders
REPORTED = "reported"  # a report built for the sender (outbox)
WRITTEN = "written"  # a report file written into the partner's out/
FINISHED = "finished"  # the flow's final state committed
FAILED = "failed"  # a platform error (its text in `detail`)
HELD = "held"  # put in IN_ATTENTE_RETRAITEMENT after too many attempts
RETRIED = "retried"  # put back in the queue by ops (`edi flows retry`)
REPROCESSED = "reprocessed"  # a finished flow checked again by ops (`edi reprocess`), with who asked
LEASE_LOST = "lease_lost"  # another worker took the flow over; this worker's work is dropped

OK, KO, ERROR = "ok", "ko", "error"
MAX_DETAIL = 4000  # characters: an exception text can be long, a trace row stays small


def row(flow_id: int, step: str, outcome: str = OK, detail: str = "", *, at: datetime | None = None,
        invoice_id: int | None = None) -> dict:
    """One FlowStep row, as a dict for Core's bulk insert."""
    return dict(flow_id=flow_id, invoice_id=invoice_id, step=step, outcome=outcome,
                detail=detail[:MAX_DETAIL], at=at or utcnow())


def add(session, flow_id: int, step: str, outcome: str = OK, detail: str = "") -> None:
    """A step written in the caller's transaction (committed with the change it records)."""
    session.execute(insert(FlowStep.__table__), [row(flow_id, step, outcome, detail)])


def write(url: str, flow_id: int, step: str, outcome: str = OK, detail: str = "") -> None:
    """A step written on its own, at once."""
    with db.session(url) as s:
        add(s, flow_id, step, outcome, detail)
        s.commit()
