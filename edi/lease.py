"""Who holds a flow: a lease on its row, so that several workers — processes on one machine
or on several sharing the database — never process a flow at the same time.

A worker takes a flow that is received, or in progress under a lease that expired, or whose
owner on this host is gone (`kill -9`: detected at once by its pid); a worker on another host
is presumed alive until its lease (`[intake] lease_seconds`) runs out. A long flow renews its
lease as it goes, and the final commit checks the lease is still held before writing anything
(`hold`); a worker that lost it drops its work and leaves the flow alone.

Every take is an attempt, counted when the flow is taken — not when it fails — so that a worker
killed in the middle (kill -9, the kernel out of memory) counts too: a flow taken MAX_ATTEMPTS
times without an outcome is put on hold (IN_ATTENTE_RETRAITEMENT) for ops instead of being
replayed for ever. A platform error releases the flow (`release_failed`) only if this worker
still holds it.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta, timezone

from sqlalchemy import select, update

from edi import db, log, trace
from edi.db.models import IN_PROGRESS, ON_HOLD, RECEIVED, Flow, utcnow

LOG = log.get("edi.lease")
MAX_ATTEMPTS = 3


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseLost(Exception):
    """Another worker took the flow over (our lease expired): stop without committing."""


def _owner_dead(owner: str | None) -> bool:
    if not owner or ":" not in owner:
        return True
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def resumable(url: str) -> list[int]:
    """Flows to (re)process: received, or in progress under a lease that expired or whose
    worker on this host is gone (kill -9)."""
    now = utcnow()
    with db.session(url) as s:
        rows = s.execute(
            select(Flow.id, Flow.state, Flow.owner, Flow.lease_until)
            .where(Flow.state.in_((RECEIVED, IN_PROGRESS)))
            .order_by(Flow.id)
        ).all()
    out = []
    for flow_id, state, owner, lease_until in rows:
        if state == RECEIVED or lease_until is None or _aware(lease_until) < now or _owner_dead(owner):
            out.append(flow_id)
    return out


def _aware(moment):
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def acquire(url: str, flow_id: int, lease_seconds: float) -> bool:
    """Take the flow's lease (one more attempt); False when another live worker holds it, it is
    finished, or it was taken MAX_ATTEMPTS times already (it is then put on hold)."""
    now = utcnow()
    me = owner_id()
    with db.session(url) as s:
        row = s.execute(select(Flow.state, Flow.owner, Flow.lease_until, Flow.attempts)
                        .where(Flow.id == flow_id)).first()
        if row is None or row.state not in (RECEIVED, IN_PROGRESS):
            return False
        free = row.state == RECEIVED or row.lease_until is None or _aware(row.lease_until) < now or (
            row.owner != me and _owner_dead(row.owner)
        ) or row.owner == me
        if not free:
            return False
        spent = row.attempts >= MAX_ATTEMPTS
        unchanged = update(Flow).where(  # nobody took it since we read it
            Flow.id == flow_id, Flow.state == row.state, Flow.attempts == row.attempts,
            Flow.owner.is_(None) if row.owner is None else Flow.owner == row.owner)
        result = s.execute(unchanged.values(state=ON_HOLD, owner=None, lease_until=None) if spent else
                           unchanged.values(state=IN_PROGRESS, owner=me, attempts=row.attempts + 1,
                                            lease_until=now + timedelta(seconds=lease_seconds)))
        if result.rowcount != 1:
            s.rollback()
            return False
        if spent:
            trace.add(s, flow_id, trace.HELD, ON_HOLD,
                      f"{row.attempts} tentatives sans résultat ; après correction : edi flows retry {flow_id}")
        else:
            trace.add(s, flow_id, trace.CLAIMED, trace.OK, f"tentative {row.attempts + 1}/{MAX_ATTEMPTS} par {me}")
        s.commit()
    if spent:
        LOG.error("flow_held", flow=flow_id, attempts=row.attempts,
                  hint=f"le traitement n'a pas abouti {row.attempts} fois ; après correction : edi flows retry {flow_id}")
    return not spent


def hold(session, flow_id: int, state: str | None = IN_PROGRESS) -> None:
    """First statement of a flow's outcome transaction: check this worker still holds the flow
    (in `state`, when given), and lock its row until the commit (a conditional UPDATE: the row
    lock on PostgreSQL, the write lock on SQLite), so nobody can take it over meanwhile. Raises
    LeaseLost otherwise."""
    mine = [Flow.id == flow_id, Flow.owner == owner_id()] + ([Flow.state == state] if state else [])
    held = session.execute(update(Flow).where(*mine).values(owner=owner_id()))
    if held.rowcount != 1:
        session.rollback()
        raise LeaseLost()


def release_failed(url: str, flow_id: int, error: str) -> str | None:
    """After a platform error: record it (trace row `failed`, `last_error`) and release the flow
    — back to RECU for another attempt, or on hold once MAX_ATTEMPTS were spent. Only a flow this
    worker still holds is touched; returns its new state, or None when it was not ours."""
    with db.session(url) as s:
        try:
            hold(s, flow_id)
        except LeaseLost:
            return None
        attempts = s.execute(select(Flow.attempts).where(Flow.id == flow_id)).scalar_one()
        state = ON_HOLD if attempts >= MAX_ATTEMPTS else RECEIVED
        s.execute(update(Flow).where(Flow.id == flow_id)
                  .values(state=state, owner=None, lease_until=None, last_error=error[:trace.MAX_DETAIL]))
        trace.add(s, flow_id, trace.FAILED, trace.ERROR, error)
        if state == ON_HOLD:
            trace.add(s, flow_id, trace.HELD, ON_HOLD,
                      f"{attempts} tentatives en échec ; après correction : edi flows retry {flow_id}")
        s.commit()
    return state


class Lease:
    """Renews the flow's lease while a long flow is processed, and notices if it was lost."""

    EVERY = 1000  # invoices between renewals

    def __init__(self, url: str, flow_id: int, seconds: float):
        self.url, self.flow_id, self.seconds = url, flow_id, seconds

    def renew(self, seq: int) -> None:
        if not seq % self.EVERY:
            self.check()

    def check(self) -> None:
        """Renew the lease now, or raise LeaseLost (before anything visible, such as delivery)."""
        with db.session(self.url) as s:
            done = s.execute(update(Flow).where(Flow.id == self.flow_id, Flow.owner == owner_id())
                             .values(lease_until=utcnow() + timedelta(seconds=self.seconds)))
            s.commit()
        if done.rowcount != 1:
            raise LeaseLost()
