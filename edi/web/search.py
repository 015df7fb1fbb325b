"""Console and API searches: flows and invoices by the pages' filters, within the caller's scope.

All the console's SQL is here (the details reuse `edi.queries`). Searches are paginated without
counting the whole result (one row more than the page tells whether a next page exists); filters
use indexed columns (flow app/state/FLOWID/date, invoice number/supplier/recipient/status/deposit
number). The scope is applied in SQL, so a sender never receives a row of another partner.
"""

from __future__ import annotations

import threading
import time as time_
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Self

from sqlalchemy import false, func, or_, select

from edi import db, queries
from edi.finding import FATAL
from edi.db.models import ON_HOLD, IN_PROGRESS, RECEIVED, Finding, Flow, Invoice, Partner, ReportPush, Service, Structure
from edi.reports.statut import LIFECYCLE_LABELS
from edi.web.users import User

PAGE_SIZE = 50
FLOW_STATES = ("RECU", "EN_COURS", "IN_INTEGRE", "IN_INTEGRE_PARTIEL", "IN_REJETE", ON_HOLD)
FLOW_STATE_LABELS = {
    "RECU": "Reçu", "EN_COURS": "En cours", "IN_INTEGRE": "Intégré", "IN_INTEGRE_PARTIEL": "Intégré partiellement",
    "IN_REJETE": "Rejeté", ON_HOLD: "En attente de retraitement",
}


class FilterError(ValueError):
    """A filter value that cannot be read (a date, an amount): a French message for the page."""


@dataclass(frozen=True)
class Scope:
    """What a user may see: every partner (ops), one sender's flows, or one recipient's SIRETs."""

    app: str | None = None
    sirets: tuple[str, ...] | None = None

    @property
    def sees_flows(self) -> bool:
        return self.sirets is None


def partner_sirets(cfg, app: str) -> tuple[str, ...]:
    """The SIRETs a recipient partner answers for: its `sirets` column (comma-separated, loaded from
    `[[partners]]` by every command), else its entry in this configuration (a partner whose
    entry was changed since the database last loaded it)."""
    with db.session(cfg.database_url) as s:
        partner = s.get(Partner, app)
    stored = [x.strip() for x in (partner.sirets if partner is not None else "").split(",") if x.strip()]
    return tuple(stored or next((p.sirets for p in cfg.partners if p.app == app), []))


def scope_of(cfg, user: User) -> Scope:
    if user.role == "ops":
        return Scope()
    if user.role == "sender":
        return Scope(app=user.partner)
    return Scope(sirets=partner_sirets(cfg, user.partner))


# ------------------------------------------------------------------ filters


def _date(value: str | None, label: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise FilterError(f"{label} : date attendue au format AAAA-MM-JJ ({value!r})") from None


def _amount(value: str | None, label: str) -> Decimal | None:
    if not value:
        return None
    try:
        return Decimal(value.replace(",", ".").replace(" ", ""))
    except InvalidOperation:
        raise FilterError(f"{label} : montant attendu, par exemple 1250.50 ({value!r})") from None


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


@dataclass(frozen=True)
class _Filter:
    @classmethod
    def of(cls, params) -> Self:
        """The filter of a page's query parameters (absent: empty; spaces trimmed)."""
        return cls(**{f.name: (params.get(f.name) or "").strip() for f in fields(cls)})


@dataclass(frozen=True)
class FlowFilter(_Filter):
    partner: str = ""
    state: str = ""
    since: str = ""  # received on or after (AAAA-MM-JJ, UTC)
    until: str = ""  # received on or before
    flowid: str = ""


@dataclass(frozen=True)
class InvoiceFilter(_Filter):
    number: str = ""
    supplier: str = ""  # supplier SIRET (or identifier)
    recipient: str = ""  # recipient SIRET
    code_service: str = ""
    status: str = ""
    deposit_no: str = ""
    since: str = ""  # deposited on or after
    until: str = ""
    amount_min: str = ""  # total TTC
    amount_max: str = ""


def _received_between(query, since: str, until: str):
    if day := _date(since, "Du"):
        query = query.where(Flow.received_at >= _start(day))
    if day := _date(until, "Au"):
        query = query.where(Flow.received_at < _start(day + timedelta(days=1)))
    return query


def _flows_query(scope: Scope, f: FlowFilter):
    query = select(Flow)
    if not scope.sees_flows:
        query = query.where(false())
    if scope.app:
        query = query.where(Flow.app == scope.app)
    if f.partner:
        query = query.where(Flow.app == f.partner)
    if f.state:
        query = query.where(Flow.state == f.state)
    if f.flowid:
        conditions = [Flow.flow_ref == f.flowid]
        if f.flowid.isdigit() and len(f.flowid) < 19:
            conditions.append(Flow.id == int(f.flowid))
        query = query.where(or_(*conditions))
    return _received_between(query, f.since, f.until).order_by(Flow.id.desc())


def _invoices_in_scope(query, scope: Scope, joined: bool = False):
    """Restrict an invoice query to the scope; joins the flows only when the scope needs them."""
    if scope.app:
        query = (query if joined else query.join(Flow, Flow.id == Invoice.flow_id)).where(Flow.app == scope.app)
    if scope.sirets is not None:
        query = query.where(Invoice.accepted, Invoice.recipient_siret.in_(scope.sirets or ("",)))
    return query


def _invoices_query(scope: Scope, f: InvoiceFilter):
    query = select(Invoice, Flow.app, Flow.flow_ref, Flow.received_at).join(Flow, Flow.id == Invoice.flow_id)
    query = _invoices_in_scope(query, scope, joined=True)
    for column, value in ((Invoice.number, f.number), (Invoice.supplier_id, f.supplier),
                          (Invoice.recipient_siret, f.recipient), (Invoice.code_service, f.code_service),
                          (Invoice.status, f.status), (Invoice.deposit_no, f.deposit_no)):
        if value:
            query = query.where(column == value)
    if (low := _amount(f.amount_min, "Montant minimum")) is not None:
        query = query.where(Invoice.amount_ttc >= low)  # indexed; accepted invoices only
    if (high := _amount(f.amount_max, "Montant maximum")) is not None:
        query = query.where(Invoice.amount_ttc <= high)
    return _received_between(query, f.since, f.until).order_by(Invoice.id.desc())


def flow_row(flow: Flow) -> dict:
    return dict(id=flow.id, flow_ref=flow.flow_ref, app=flow.app, interface=flow.interface, filename=flow.filename,
                state=flow.state, state_label=FLOW_STATE_LABELS.get(flow.state, flow.state),
                error_code=flow.error_code, invoice_count=flow.invoice_count, accepted_count=flow.accepted_count,
                received_at=flow.received_at.isoformat() if flow.received_at else None, source=flow.source)


def _invoice_row(inv: Invoice, app: str, flow_ref: str, received_at: datetime | None) -> dict:
    return dict(id=inv.id, flow_id=inv.flow_id, flow_ref=flow_ref, app=app, seq=inv.seq, number=inv.number,
                deposit_no=inv.deposit_no, status=inv.status, status_label=LIFECYCLE_LABELS.get(inv.status, ""),
                accepted=inv.accepted, supplier_id=inv.supplier_id, supplier_name=inv.supplier_name,
                recipient_siret=inv.recipient_siret, code_service=inv.code_service, ej=inv.ej,
                issue_date=inv.issue_date, currency=inv.currency, total_ht=inv.total_ht, total_ttc=inv.total_ttc,
                deposited_at=received_at.isoformat() if received_at else None)


@dataclass(frozen=True)
class Page:
    rows: list[dict]
    page: int
    has_next: bool


def _page(url: str, query, page: int, size: int, to_row) -> Page:
    page = max(page, 1)
    with db.session(url) as s:
        found = s.execute(query.offset((page - 1) * size).limit(size + 1)).all()
    return Page([to_row(*r) for r in found[:size]], page, len(found) > size)


def search_flows(url: str, scope: Scope, f: FlowFilter, page: int = 1, size: int = PAGE_SIZE) -> Page:
    return _page(url, _flows_query(scope, f), page, size, flow_row)


def search_invoices(url: str, scope: Scope, f: InvoiceFilter, page: int = 1, size: int = PAGE_SIZE) -> Page:
    return _page(url, _invoices_query(scope, f), page, size, _invoice_row)


def all_flows(url: str, scope: Scope, f: FlowFilter) -> Iterator[dict]:
    """Every flow of the search, streamed (CSV export)."""
    with db.session(url) as s:
        for (flow,) in s.execute(_flows_query(scope, f).execution_options(yield_per=1000)):
            yield flow_row(flow)


def all_invoices(url: str, scope: Scope, f: InvoiceFilter) -> Iterator[dict]:
    with db.session(url) as s:
        for row in s.execute(_invoices_query(scope, f).execution_options(yield_per=1000)):
            yield _invoice_row(*row)


def visible_flow_detail(url: str, scope: Scope, ref: str, page: tuple[int, int] | None = None) -> dict | None:
    """The flow's detail (`queries.flow_detail`) if the user may open it, the scope in the query
    itself; None for anything else, which answers 404 as if it did not exist."""
    return queries.flow_detail(url, ref, page=page, app=scope.app) if scope.sees_flows else None


def visible_flow_id(url: str, scope: Scope, ref: str) -> int | None:
    """The id alone of a flow the user may open (an action, a report download); else None."""
    if not scope.sees_flows:
        return None
    with db.session(url) as s:
        flow = queries.find_flow(s, ref, scope.app)
        return flow.id if flow is not None else None


def invoice_visible(url: str, scope: Scope, deposit_no: str) -> bool:
    return bool(_page(url, _invoices_query(scope, InvoiceFilter(deposit_no=deposit_no)), 1, 1, _invoice_row).rows)


# ------------------------------------------------------------------ directory


@dataclass(frozen=True)
class StructureFilter(_Filter):
    siret: str = ""
    name: str = ""  # part of the raison sociale, any case
    city: str = ""  # part of the city, any case


def _contains(column, text: str):
    return func.lower(column).like("%" + text.lower().replace("\\", "").replace("%", "").replace("_", "") + "%")


def _structures_query(f: StructureFilter):
    query = select(Structure)
    if f.siret:
        query = query.where(Structure.siret == f.siret)
    if f.name:
        query = query.where(_contains(Structure.name, f.name))
    if f.city:
        query = query.where(_contains(Structure.city, f.city))
    return query.order_by(Structure.siret)


def structure_row(st: Structure) -> dict:
    return dict(siret=st.siret, name=st.name, city=st.city, postal_code=st.postal_code, active=st.active,
                edi_receiver=st.edi_receiver, service_required=st.service_required, ej_required=st.ej_required,
                service_or_ej=st.service_or_ej, moa_only=st.moa_only)


def search_structures(url: str, f: StructureFilter, page: int = 1, size: int = PAGE_SIZE) -> Page:
    """The directory of public structures (public data: every role may search it)."""
    return _page(url, _structures_query(f), page, size, structure_row)


def all_structures(url: str, f: StructureFilter) -> Iterator[dict]:
    with db.session(url) as s:
        for (st,) in s.execute(_structures_query(f).execution_options(yield_per=1000)):
            yield structure_row(st)


def structure_detail(url: str, siret: str) -> dict | None:
    with db.session(url) as s:
        st = s.get(Structure, siret)
        if st is None:
            return None
        services = s.execute(select(Service).where(Service.siret == siret).order_by(Service.code)).scalars().all()
    out = {c.name: getattr(st, c.name) for c in Structure.__table__.columns}
    out["services"] = [dict(code=v.code, name=v.name, ej_required=v.ej_required, active=v.active) for v in services]
    return out


# ------------------------------------------------------------------ dashboard and metrics


def _grouped(s, column, query) -> dict:
    return {key: count for key, count in s.execute(query.with_only_columns(column, func.count())
                                                   .group_by(column).order_by(None)).all()}


DASHBOARD_SECONDS = 5.0  # the figures of one scope are shared by the page views meanwhile
_dashboards: dict[tuple[str, Scope], tuple[float, dict]] = {}
_dashboards_lock = threading.Lock()


def dashboard_cached(url: str, scope: Scope) -> dict:
    """`dashboard`, computed at most every DASHBOARD_SECONDS per scope: at a million invoices
    its grouped counts cost a few hundred milliseconds, and a tableau de bord open on many
    screens need not pay them at every view."""
    key = (url, scope)
    with _dashboards_lock:
        found = _dashboards.get(key)
        if found is None or time_.monotonic() - found[0] > DASHBOARD_SECONDS:
            if len(_dashboards) > 1000:  # one entry per sender/recipient scope: bounded anyway
                _dashboards.clear()
            found = _dashboards[key] = (time_.monotonic(), dashboard(url, scope))
        return found[1]


def dashboard(url: str, scope: Scope, days: int = 14, now: datetime | None = None) -> dict:
    """The tableau de bord's figures, within the user's scope."""
    now = now or datetime.now(timezone.utc)
    first_day = (now - timedelta(days=days - 1)).date()
    flows = _flows_query(scope, FlowFilter())
    with db.session(url) as s:
        by_status = dict(s.execute(_invoices_in_scope(select(Invoice.status, func.count()), scope)
                                   .group_by(Invoice.status)).all())
        by_state = _grouped(s, Flow.state, flows)
        day = func.date(Flow.received_at)
        per_day = {str(k): v for k, v in _grouped(s, day, flows.where(Flow.received_at >= _start(first_day))).items()}
        rules = select(Finding.code, Finding.reason, func.count()).where(Finding.severity == FATAL)
        if scope.app:
            rules = rules.join(Flow, Flow.id == Finding.flow_id).where(Flow.app == scope.app)
        rules = [] if not scope.sees_flows else s.execute(
            rules.group_by(Finding.code, Finding.reason).order_by(func.count().desc()).limit(10)).all()
        held = [flow_row(f) for (f,) in s.execute(flows.where(Flow.state == ON_HOLD).limit(20)).all()]
        queue = s.execute(flows.with_only_columns(func.count()).order_by(None)
                          .where(Flow.state.in_((RECEIVED, IN_PROGRESS)))).scalar_one()
        failing = [flow_row(f) for (f,) in s.execute(flows.where(Flow.attempts > 0).limit(10)).all()]
        pushes = [] if not scope.sees_flows else [
            dict(app=p.app, state=p.state, attempts=p.attempts, last_error=p.last_error)
            for (p,) in s.execute(select(ReportPush).where(ReportPush.last_error.is_not(None))
                                  .where(*([ReportPush.app == scope.app] if scope.app else []))
                                  .order_by(ReportPush.id.desc()).limit(10)).all()]
    return dict(
        invoices_by_status=[dict(status=k, label=LIFECYCLE_LABELS.get(k, "Rejetée (non déposée)" if not k else ""),
                                 count=v) for k, v in sorted(by_status.items())],
        flows_by_state=[dict(state=k, label=FLOW_STATE_LABELS.get(k, k), count=by_state[k])
                        for k in FLOW_STATES if k in by_state],
        flows_per_day=[dict(day=str(first_day + timedelta(days=i)),
                            count=per_day.get(str(first_day + timedelta(days=i)), 0)) for i in range(days)],
        top_rules=[dict(code=c, reason=r, count=n) for c, r, n in rules],
        held_flows=held, queue_depth=queue, platform_errors=failing, push_errors=pushes,
    )


def metric_counts(url: str) -> dict:
    """Platform-wide counts for /metrics (no scope: the endpoint is for the operators' monitoring)."""
    with db.session(url) as s:
        flows = dict(s.execute(select(Flow.state, func.count()).group_by(Flow.state)).all())
        invoices = {(bool(a), st): n for a, st, n in s.execute(
            select(Invoice.accepted, Invoice.status, func.count()).group_by(Invoice.accepted, Invoice.status)).all()}
        findings = s.execute(select(Finding.code, Finding.severity, func.count())
                             .group_by(Finding.code, Finding.severity)).all()
        pushes = dict(s.execute(select(ReportPush.state, func.count()).group_by(ReportPush.state)).all())
    return dict(flows=flows, invoices=invoices, findings=[(c, sev, n) for c, sev, n in findings], pushes=pushes)
