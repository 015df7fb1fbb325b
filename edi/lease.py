"""Who holds a flow: a lease on its row, so that several workers — processes on one machine
or on several sharing the database — never process a flow at the same time.

A worker takes a flow that is received, or in progress under a lease that expired, or whose
owner on this host is gone (`kill -9`: detected at once by its pid); a worker on another host
is presumed alive until its lease (`[intake] lease_seconds`) runs out. A long flow renews its
lease as it goes, and the final commit checks the lease is still held.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta, timezone

from sqlalchemy import select, update

from edi import db
from edi.db.models import IN_PROGRESS, RECEIVED, TERMINAL_STATES, Flow, utcnow


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
    """Take the flow's lease; False when another live worker holds it or it is finished."""
    now = utcnow()
    me = owner_id()
    with db.session(url) as s:
        row = s.execute(select(Flow.state, Flow.owner, Flow.lease_until).where(Flow.id == flow_id)).first()
        if row is None or row.state in TERMINAL_STATES:
            return False
        free = row.state == RECEIVED or row.lease_until is None or _aware(row.lease_until) < now or (
            row.owner != me and _owner_dead(row.owner)
        ) or row.owner == me
        if not free:
            return False
        result = s.execute(
            update(Flow)
            .where(Flow.id == flow_id, Flow.state == row.state,
                   Flow.owner.is_(None) if row.owner is None else Flow.owner == row.owner)
            .values(state=IN_PROGRESS, owner=me, lease_until=now + timedelta(seconds=lease_seconds))
        )
        s.commit()
        return result.rowcount == 1


class Lease:
    """Renews the flow's lease while a long flow is processed, and notices if it was lost."""

    EVERY = 1000  # invoices between renewals

    def __init__(self, url: str, flow_id: int, seconds: float):
        self.url, self.flow_id, self.seconds = url, flow_id, seconds

    def renew(self, seq: int) -> None:
        if seq % self.EVERY:
            return
        with db.session(self.url) as s:
            done = s.execute(update(Flow).where(Flow.id == self.flow_id, Flow.owner == owner_id())
                             .values(lease_until=utcnow() + timedelta(seconds=self.seconds)))
            s.commit()
        if done.rowcount != 1:
            raise LeaseLost()
