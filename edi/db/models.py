"""Tables. Payloads live on disk (archive, recipients); metadata and history live here.

Every decision is a row: flows and their state, invoices, findings, status events, reports.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timezone

from decimal import Decimal

from sqlalchemy import Column, Index, LargeBinary, Numeric, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class Packed(bytes):
    """Bytes already compressed by `pack` (a large report compressed as it is read from disk)."""


_MARK = b"\x00Z1"  # never the start of an XML document


def pack(chunks) -> Packed:
    """Compress an iterable of byte chunks into the stored form of a CompressedBytes column."""
    z = zlib.compressobj(1)
    return Packed(_MARK + b"".join(z.compress(c) for c in chunks) + z.flush())


class CompressedBytes(TypeDecorator):
    """Report payloads, zlib-compressed in the database (a 10,000-invoice processing report is
    16 MB of XML, under 2 MB stored). Values stored before compression are read back as is."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None or isinstance(value, Packed):
            return value
        return pack((value,))

    def process_result_value(self, value, dialect):
        return b"".join(unpack(value)) if value is not None else None


def unpack(stored: bytes):
    """The stored form of a CompressedBytes value, uncompressed piece by piece."""
    stored = bytes(stored)
    if stored[:3] != _MARK:
        yield stored
        return
    z = zlib.decompressobj()
    view = memoryview(stored)[3:]
    for start in range(0, len(view), 1 << 18):
        yield z.decompress(view[start:start + (1 << 18)])
    yield z.flush()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# Flow states (design: received -> in progress -> IN_INTEGRE | IN_INTEGRE_PARTIEL | IN_REJETE)
RECEIVED = "RECU"
IN_PROGRESS = "EN_COURS"
INTEGRATED = "IN_INTEGRE"
PARTIAL = "IN_INTEGRE_PARTIEL"
REJECTED = "IN_REJETE"
TERMINAL_STATES = (INTEGRATED, PARTIAL, REJECTED)


def flow_state(accepted: int, total: int) -> str:
    """The final state of a recevable flow of `total` invoices (or status lines), `accepted` of them
    integrated: the one rule for the pipeline, status flows and reprocessing (an irrecevable
    flow is IN_REJETE whatever its counts)."""
    if accepted <= 0:
        return REJECTED
    return INTEGRATED if accepted == total else PARTIAL

# A flow whose processing failed on a platform error MAX_ATTEMPTS times waits for ops
# (`edi flows retry REF`), as Chorus Pro's IN_EN_ATTENTE_RETRAITEMENT_CPP, instead of
# blocking the queue.
ON_HOLD = "IN_ATTENTE_RETRAITEMENT"


class Partner(SQLModel, table=True):
    app: str = Field(primary_key=True, max_length=8)
    name: str = ""
    interfaces: str = ""  # comma-separated interface codes; empty = all
    enabled: bool = True
    password_hash: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    role: str = "sender"  # sender (deposits invoices) | recipient (receives them, sends statuses)
    sirets: str = ""  # recipient: comma-separated SIRETs it receives for and answers for


class Flow(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    app: str = Field(index=True, max_length=64)
    interface: str = ""
    flow_ref: str = Field(default="", index=True)  # FLOWID from the file name
    # "APP/FLOWID" for the first flow received under that id; NULL for a repeat (IRR_UNCITE).
    flow_key: str | None = Field(default=None, unique=True)
    filename: str
    size: int = 0
    sha256: str = ""
    archive_path: str = ""
    work_path: str = Field(default="", index=True)  # claimed copy under spool/work until it is moved into the archive
    source: str = "spool"  # spool | sftp | cli
    state: str = Field(default=RECEIVED, index=True)
    error_code: str | None = None  # the IRR_* code when irrecevable
    invoice_count: int = 0
    accepted_count: int = 0
    attempts: int = 0  # times a worker took the flow for processing (counted at claim: a killed worker counts)
    owner: str | None = None  # host:pid of the worker holding the lease
    lease_until: datetime | None = None
    received_at: datetime = Field(default_factory=utcnow, index=True)
    finished_at: datetime | None = None
    last_error: str | None = None  # text of the last platform failure (the trace keeps them all)


class Invoice(SQLModel, table=True):
    # (supplier, number) finds duplicates (DOUBLON) with one index lookup per invoice
    __table_args__ = (UniqueConstraint("flow_id", "seq"), Index("ix_invoice_supplier_number", "supplier_id", "number"))
    id: int | None = Field(default=None, primary_key=True)
    flow_id: int = Field(foreign_key="flow.id", index=True)
    seq: int  # 1-based position in the flow
    number: str = Field(default="", index=True)
    doc_type: str = ""
    syntax: str = ""  # UBL | CII | CPP
    supplier_id: str = ""
    supplier_name: str = ""
    supplier_id_type: str = ""
    supplier_country: str = ""
    recipient_siret: str = Field(default="", index=True)  # console searches and recipient scope
    code_service: str = ""
    ej: str = ""
    issue_date: str = ""
    currency: str = ""
    total_ht: str = ""
    total_ttc: str = ""
    # total TTC as a number, for accepted invoices (their amounts passed the amount rules): the
    # console's amount range searches this index instead of casting text row by row
    amount_ttc: Decimal | None = Field(default=None, sa_column=Column(Numeric(18, 2), index=True, nullable=True))
    accepted: bool = False
    deposit_no: str | None = Field(default=None, unique=True)
    certificate: str = ""
    status: str = Field(default="", index=True)  # current life-cycle status code (01, 03, 04, ...)
    path: str = ""  # where the routed invoice lies under spool/recipients
    size: int = 0
    # a resend that recycled (04) or completed (06) a known invoice: that invoice's id. It has no
    # deposit number and no status of its own; the known invoice carries the life cycle.
    resend_of: int | None = None


class Finding(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    flow_id: int = Field(foreign_key="flow.id", index=True)
    invoice_id: int | None = Field(default=None, foreign_key="invoice.id", index=True)
    seq: int = 0  # order in the report
    code: str
    reason: str
    severity: str
    message: str
    location: str = ""
    value: str = ""
    invoice_number: str = ""


class StatusEvent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoice.id", index=True)
    code: str
    at: datetime = Field(default_factory=utcnow)
    producer: str = "EDI"
    reason: str = ""
    comment: str = ""
    report_id: int | None = Field(default=None, foreign_key="report.id", index=True)
    actor: str = "platform"  # role of the producer (edi.lifecycle.ACTORS)
    mandate: str = ""  # IdMandatDP, given with 08 to 11


class FlowStep(SQLModel, table=True):
    """The trace, as in Bots: one row per step of a flow (and per invoice decided), so that ops
    can read what happened to a flow, when, and why. Steps before the outcome (received,
    archived, claimed, failed, held) are written as they happen; the others are written in the
    transaction of the outcome, so a replayed flow never has them twice."""

    id: int | None = Field(default=None, primary_key=True)
    flow_id: int = Field(foreign_key="flow.id", index=True)
    invoice_id: int | None = Field(default=None, foreign_key="invoice.id")
    step: str  # one of edi.trace.STEPS
    outcome: str  # ok | ko | error, or the flow state it led to
    detail: str = ""
    at: datetime = Field(default_factory=utcnow)


class Structure(SQLModel, table=True):
    siret: str = Field(primary_key=True, max_length=14)
    id_type: str = "1"
    name: str = ""
    edi_sender: bool = False
    edi_receiver: bool = False
    payment_status: bool = False
    ej_required: bool = False
    service_required: bool = False
    service_or_ej: bool = False
    is_moa: bool = False
    moa_only: bool = False
    active: bool = True
    address: str = ""
    address_complement1: str = ""
    address_complement2: str = ""
    postal_code: str = ""
    city: str = ""
    phone: str = ""
    email: str = ""
    country: str = ""
    country_name: str = ""


class Service(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("siret", "code"),)
    id: int | None = Field(default=None, primary_key=True)
    siret: str = Field(index=True, max_length=14)
    code: str = Field(max_length=100)
    name: str = ""
    ej_required: bool = False
    active: bool = True


class Report(SQLModel, table=True):
    """A report for a partner. Rendered once and kept here (outbox), then written to out/."""

    id: int | None = Field(default=None, primary_key=True)
    flow_id: int | None = Field(default=None, foreign_key="flow.id", index=True)
    app: str = Field(index=True)
    kind: str  # integration | processing | delivery (FDE2001A: invoices for a recipient partner)
    filename: str = Field(unique=True)
    content: bytes = Field(sa_column=Column(CompressedBytes, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    written_at: datetime | None = None
    retrieved_at: datetime | None = None


# --- SFTP accounts and report pickup (issue 4) -------------------------------------------


class PartnerKey(SQLModel, table=True):
    """One public key allowed to log in as a partner (an OpenSSH `authorized_keys` line)."""

    __table_args__ = (UniqueConstraint("app", "fingerprint"),)
    id: int | None = Field(default=None, primary_key=True)
    app: str = Field(foreign_key="partner.app", index=True, max_length=8)
    key_type: str  # ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ...
    key_b64: str  # the base64 key blob, as in authorized_keys
    comment: str = ""
    fingerprint: str  # SHA256:... as OpenSSH prints it
    added_at: datetime = Field(default_factory=utcnow)


class ReportDownload(SQLModel, table=True):
    """A file of a partner's out/ read over SFTP: by which session, how much, when."""

    id: int | None = Field(default=None, primary_key=True)
    app: str = Field(index=True)
    filename: str = Field(index=True)
    session: str  # SFTP session id (also in the log lines)
    address: str = ""
    bytes: int = 0
    complete: bool = False  # the whole file was read
    at: datetime = Field(default_factory=utcnow)


class ReportPurge(SQLModel, table=True):
    """A file removed from a partner's out/ because it outlived the retention."""

    id: int | None = Field(default=None, primary_key=True)
    app: str = Field(index=True)
    filename: str = Field(index=True)
    size: int = 0
    modified_at: datetime | None = None
    purged_at: datetime = Field(default_factory=utcnow)


# --- push delivery of reports to a partner's own SFTP server (issue 4, point 6) ----------------


class ReportPush(SQLModel, table=True):
    """Delivery of one report to the partner's remote SFTP destination (`edi.reports.push`).

    A table of its own rather than columns on `report`, so that an existing database gains it
    by `create_all`. One row per report of a partner with a destination; `attempts` counts the
    tries since the last (re)send, `history` keeps every attempt (JSON lines: at, ok, error).
    """

    id: int | None = Field(default=None, primary_key=True)
    report_id: int = Field(foreign_key="report.id", unique=True)
    app: str = Field(index=True)
    destination: str = ""  # user@host:port/path, as configured when last tried
    state: str = Field(default="pending", index=True)  # pending | sending | retry | failed | pushed
    attempts: int = 0
    next_at: datetime | None = Field(default=None, index=True)
    lease_until: datetime | None = None  # while `sending`: another worker may take it over after
    last_error: str | None = None
    history: str = ""
    pushed_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


# --- console and API users (issue 10) ----------------------------------------------------------


class ConsoleUser(SQLModel, table=True):
    """A person or machine client of the web console and HTTP API (`edi.web`).

    `role` is ops | sender | recipient; `partner` binds a sender or recipient to its partner APP.
    Only hashes are stored: the password's argon2id hash, the API token's SHA-256.
    """

    __tablename__ = "console_user"
    id: int | None = Field(default=None, primary_key=True)
    login: str = Field(unique=True, max_length=64)
    role: str
    partner: str | None = Field(default=None, max_length=8)
    password_hash: str = ""
    token_hash: str | None = Field(default=None, unique=True)
    failed_logins: int = 0  # consecutive failures, for login throttling
    locked_until: datetime | None = None
    last_login_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
