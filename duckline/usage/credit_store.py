"""What online charging reads and writes, a batch of requests at a time (`quota.handle_many`).

`read` locks the lines the requests are about, then reads what deciding them needs: their
credit-control sessions, every reservation on those lines that may hold something, what the
lines' usable buckets hold, and the units of the rating groups asked for. `write` puts back what
the decisions changed. A fixed number of statements per batch, whatever its size.

The lines are locked in one statement, in id order (two batches about the same lines wait for
each other, never deadlock): it is what keeps two sessions of a line, served by two threads or
two server processes, from both being granted the last units. The sessions are read after the
lock, so as whoever held it before left them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, insert, or_, select, update

from duckline.catalog import rating
from duckline.catalog.rules import Unit, Zone
from duckline.core.config import Settings
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines.models import Line
from duckline.lines.states import can_use_service
from duckline.usage.charging_states import CreditSessionStatus
from duckline.usage.ingest import UsageInput
from duckline.usage.models import Bucket, CreditReservation, CreditSession

_lines = cast(Table, Line.__table__)
_sessions = cast(Table, CreditSession.__table__)
_reservations = cast(Table, CreditReservation.__table__)
_buckets = cast(Table, Bucket.__table__)


@dataclass
class Session:
    """A credit_sessions row as a batch reads and changes it (`id` None until it is written)."""

    session_id: str
    line_id: int
    unit: Unit
    zone: Zone
    status: CreditSessionStatus
    last_request_number: int
    expires_at: datetime
    created_at: datetime
    id: int | None = None
    reserved: int = 0
    last_answer: dict[str, Any] | None = None
    changed: bool = False


@dataclass
class Reservation:
    """A credit_reservations row: what `session` holds of its line for one rating group."""

    session: Session
    rating_group: int
    unit: Unit
    zone: Zone
    reserved: int
    expires_at: datetime
    stored: bool = False  # read from the table (else inserted by `write`)
    changed: bool = False


@dataclass
class LineState:
    """A locked line: what its usable buckets hold by (unit, zone), less what the batch has
    charged so far, and every reservation on it that may hold something."""

    id: int
    msisdn: str
    in_service: bool
    held: dict[tuple[Unit, Zone], int] = field(default_factory=dict)
    reservations: list[Reservation] = field(default_factory=list)


@dataclass
class Batch:
    """What a batch has read, and what deciding it adds: the usage to charge."""

    now: datetime
    settings: Settings
    lines: dict[int, LineState]
    lines_by_msisdn: dict[str, LineState]
    sessions: dict[str, Session]  # by Session-Id: those of the batch's requests
    units: dict[tuple[int, int | None], Unit]  # (rating group, service identifier) → unit
    used: list[UsageInput] = field(default_factory=list)


def read(uow: UnitOfWork, session_ids: set[str], msisdns: set[str], rated: set[tuple[int, int | None]]) -> Batch:
    """Lock the lines of these sessions and numbers, and read what deciding needs."""
    connection = uow.session.connection()
    now = uow.now()
    batch = Batch(now, uow.settings, {}, {}, {}, rating.units_for(uow, rated) if rated else {})
    if not session_ids and not msisdns:
        return batch
    of_sessions = select(_sessions.c.line_id).where(_sessions.c.session_id.in_(session_ids))
    rows = connection.execute(
        select(_lines.c.id, _lines.c.msisdn, _lines.c.status, _lines.c.suspension)
        .where(or_(_lines.c.id.in_(of_sessions), _lines.c.msisdn.in_(msisdns)))
        .order_by(_lines.c.id)
        .with_for_update()
    ).all()
    for id_, msisdn, status, suspension in rows:
        line = LineState(id_, msisdn, can_use_service(status, suspension))
        batch.lines[id_] = line
        batch.lines_by_msisdn[msisdn] = line
    if not batch.lines:
        return batch
    line_ids = list(batch.lines)

    for row in connection.execute(select(_sessions).where(_sessions.c.session_id.in_(session_ids))).mappings():
        batch.sessions[row["session_id"]] = Session(
            session_id=row["session_id"],
            line_id=row["line_id"],
            unit=row["unit"],
            zone=row["zone"],
            status=row["status"],
            last_request_number=row["last_request_number"],
            expires_at=row["expires_at"],
            created_at=row["created_at"],
            id=row["id"],
            reserved=row["reserved"],
            last_answer=row["last_answer"],
        )

    others: dict[int, Session] = {}  # sessions of other requests, as far as their reservations need
    mine = {s.id: s for s in batch.sessions.values()}
    reservations = connection.execute(
        select(
            _reservations.c.credit_session_id,
            _reservations.c.line_id,
            _reservations.c.rating_group,
            _reservations.c.unit,
            _reservations.c.zone,
            _reservations.c.reserved,
            _reservations.c.expires_at,
            _sessions.c.status,
        )
        .join(_sessions, _sessions.c.id == _reservations.c.credit_session_id)
        .where(
            _reservations.c.line_id.in_(line_ids),
            or_(_reservations.c.reserved > 0, _reservations.c.credit_session_id.in_(list(mine))),
        )
    ).all()
    for session_pk, line_id, group, unit, zone, reserved, expires_at, status in reservations:
        owner = mine.get(session_pk) or others.get(session_pk)
        if owner is None:
            owner = others[session_pk] = Session("", line_id, unit, zone, status, 0, expires_at, expires_at, session_pk)
        batch.lines[line_id].reservations.append(
            Reservation(owner, group, unit, zone, reserved, expires_at, stored=True)
        )

    held = connection.execute(
        select(_buckets.c.line_id, _buckets.c.unit, _buckets.c.zone, func.sum(_buckets.c.remaining))
        .where(_buckets.c.line_id.in_(line_ids), _buckets.c.valid_from <= now, _buckets.c.valid_until > now)
        .group_by(_buckets.c.line_id, _buckets.c.unit, _buckets.c.zone)
    ).all()
    for line_id, unit, zone, total in held:
        batch.lines[line_id].held[(unit, zone)] = int(total or 0)
    return batch


def write(uow: UnitOfWork, batch: Batch) -> None:
    """Put back the sessions and reservations the batch changed (the usage is `ingest`'s)."""
    connection = uow.session.connection()
    now = batch.now
    changed = [s for s in batch.sessions.values() if s.changed]
    new = [s for s in changed if s.id is None]
    if new:
        rows = connection.execute(
            insert(_sessions).returning(_sessions.c.id, _sessions.c.session_id),
            [
                {
                    "session_id": s.session_id,
                    "line_id": s.line_id,
                    "unit": s.unit,
                    "zone": s.zone,
                    "status": s.status,
                    "reserved": s.reserved,
                    "expires_at": s.expires_at,
                    "last_request_number": s.last_request_number,
                    "last_answer": s.last_answer,
                    "created_at": s.created_at,
                    "updated_at": now,
                }
                for s in new
            ],
        ).all()
        ids = dict((session_id, id_) for id_, session_id in rows)
        for s in new:
            s.id = ids[s.session_id]
    old = [s for s in changed if s not in new]
    if old:
        connection.execute(
            update(_sessions).where(_sessions.c.id == bindparam("pk")),
            [
                {
                    "pk": s.id,
                    "status": s.status,
                    "reserved": s.reserved,
                    "expires_at": s.expires_at,
                    "last_request_number": s.last_request_number,
                    "last_answer": s.last_answer,
                    "updated_at": now,
                }
                for s in old
            ],
        )

    touched = [r for line in batch.lines.values() for r in line.reservations if r.changed]
    added = [r for r in touched if not r.stored]
    if added:
        connection.execute(
            insert(_reservations),
            [
                {
                    "credit_session_id": r.session.id,
                    "line_id": r.session.line_id,
                    "rating_group": r.rating_group,
                    "unit": r.unit,
                    "zone": r.zone,
                    "reserved": r.reserved,
                    "expires_at": r.expires_at,
                }
                for r in added
            ],
        )
    kept = [r for r in touched if r.stored]
    if kept:
        connection.execute(
            update(_reservations).where(
                and_(
                    _reservations.c.credit_session_id == bindparam("session_pk"),
                    _reservations.c.rating_group == bindparam("group"),
                )
            ),
            [
                {
                    "session_pk": r.session.id,
                    "group": r.rating_group,
                    "unit": r.unit,
                    "reserved": r.reserved,
                    "expires_at": r.expires_at,
                }
                for r in kept
            ],
        )
