"""What staff read of the Gy servers (`diameter_peer_states`): each server process with its peers,
their state and counters; a server that stopped says so, one that went silent shows as stale."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select

from duckline.accounts.models import Account
from duckline.accounts.roles import CHARGING_READERS
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions
from duckline.diameter.models import SERVER_ROW, DiameterPeerState

# Stopped servers are listed this long after they stopped.
SHOW_STOPPED = timedelta(hours=24)


@dataclass(frozen=True)
class PeerView:
    host: str
    state: str  # connected, suspect, down, or: stale (its server went silent), stopped (its server stopped)
    reported_state: str  # as its server last wrote it
    since: datetime
    connections: int
    accepted: int
    refused: int
    requests: int
    answers: list[tuple[int, int]]  # (Result-Code, count)
    errors: int
    dropped: int
    suspects: int
    last_event: str
    last_event_at: datetime | None


@dataclass(frozen=True)
class ServerView:
    node: str  # Origin-Host
    instance: str  # host name and pid
    condition: str  # running, stale, stopped
    started_at: datetime
    updated_at: datetime
    refused: int  # CERs refused, from any host
    garbage: int  # connections closed on bad bytes before a CER was accepted
    peers: list[PeerView]


def stale_after(status_seconds: float) -> timedelta:
    """How long a running server may go without writing before it is shown as stale."""
    return timedelta(seconds=max(30.0, 3 * status_seconds))


def servers(transactions: Transactions, viewer: Account) -> list[ServerView]:
    """Every server that runs or stopped lately, running ones first, each with its peers."""
    if viewer.role not in CHARGING_READERS:
        raise DomainError(ErrorCode.FORBIDDEN)
    with transactions() as uow:
        now = uow.clock.now()
        silent = now - stale_after(uow.settings.diameter_status_seconds)
        rows = uow.session.scalars(
            select(DiameterPeerState)
            .where(or_(DiameterPeerState.running.is_(True), DiameterPeerState.updated_at >= now - SHOW_STOPPED))
            .order_by(DiameterPeerState.node, DiameterPeerState.instance, DiameterPeerState.peer_host)
        ).all()
        grouped: dict[tuple[str, str], list[DiameterPeerState]] = {}
        for row in rows:
            grouped.setdefault((row.node, row.instance), []).append(row)
    found = []
    for (node, instance), rows in grouped.items():
        running = all(r.running for r in rows)
        updated = max(r.updated_at for r in rows)
        condition = "stopped" if not running else "stale" if updated < silent else "running"
        own = next((r for r in rows if r.peer_host == SERVER_ROW), None)
        found.append(
            ServerView(
                node,
                instance,
                condition,
                min(r.started_at for r in rows),
                updated,
                own.refused if own else 0,
                own.errors if own else 0,
                [_peer(r, condition) for r in rows if r.peer_host != SERVER_ROW],
            )
        )
    order = {"running": 0, "stale": 1, "stopped": 2}
    return sorted(found, key=lambda s: (order[s.condition], s.node, -s.updated_at.timestamp()))


def _peer(row: DiameterPeerState, condition: str) -> PeerView:
    return PeerView(
        host=row.peer_host,
        state=row.state if condition == "running" else condition,
        reported_state=row.state,
        since=row.state_since,
        connections=row.connections,
        accepted=row.accepted,
        refused=row.refused,
        requests=row.requests,
        answers=sorted((int(code), int(count)) for code, count in row.answers.items()),
        errors=row.errors,
        dropped=row.dropped,
        suspects=row.suspects,
        last_event=row.last_event,
        last_event_at=row.last_event_at,
    )
