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

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import psycopg
from sqlalchemy import (
    Connection,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from duckline.catalog import rating
from duckline.catalog.models import Plan
from duckline.catalog.rules import Unit, Zone
from duckline.catalog.voice_rating import Increments
from duckline.core.config import Settings
from duckline.core.unit_of_work import UnitOfWork
from duckline.db import pg_arrays
from duckline.db.pg_arrays import bools, ints, texts, times
from duckline.lines.models import Line
from duckline.lines.states import LineStatus, Suspension, can_use_service
from duckline.usage.charging_states import CreditSessionStatus
from duckline.usage.ingest import UsageInput
from duckline.usage.models import Bucket, CreditReservation, CreditSession

_lines = cast(Table, Line.__table__)
_sessions = cast(Table, CreditSession.__table__)
_reservations = cast(Table, CreditReservation.__table__)
_buckets = cast(Table, Bucket.__table__)
_plans = cast(Table, Plan.__table__)


@dataclass(eq=False)
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
    seconds_used: int = 0  # voice seconds reported used in all (a call's increments apply to the total)
    emergency: bool = False  # a call to an emergency number: granted whatever, never charged
    origin_host: str | None = None  # the element that opened it: where a RAR or ASR goes
    origin_realm: str | None = None
    closed_reason: str | None = None  # set when Duckline closed it (read only here)
    changed: bool = False


@dataclass(eq=False)
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
    increments: Increments = field(default_factory=Increments)  # its plan's, for calls
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
    db = _statements(uow.session.connection())
    now = uow.now()
    batch = Batch(now, uow.settings, {}, {}, {}, rating.units_for(uow, rated) if rated else {})
    if not session_ids and not msisdns:
        return batch
    for id_, msisdn, status, suspension, initial, subsequent in db.lock_lines(session_ids, msisdns):
        in_service = can_use_service(LineStatus(status), Suspension(suspension) if suspension else None)
        line = LineState(id_, msisdn, in_service, Increments(initial or 1, subsequent or 1))
        batch.lines[id_] = line
        batch.lines_by_msisdn[msisdn] = line
    if not batch.lines:
        return batch
    line_ids = list(batch.lines)

    for row in db.sessions(session_ids):
        id_, session_id, line_id, unit, zone, status, reserved, expires_at, number, answer, created_at = row[:11]
        batch.sessions[session_id] = Session(
            session_id,
            line_id,
            Unit(unit),
            Zone(zone),
            CreditSessionStatus(status),
            number,
            expires_at,
            created_at,
            id=id_,
            reserved=reserved,
            last_answer=answer,
            seconds_used=row[11],
            emergency=bool(row[12]),
            closed_reason=row[13],
        )

    others: dict[int, Session] = {}  # sessions of other requests, as far as their reservations need
    mine = {s.id: s for s in batch.sessions.values() if s.id is not None}
    for session_pk, line_id, group, unit, zone, reserved, expires_at, status in db.reservations(line_ids):
        owner = mine.get(session_pk) or others.get(session_pk)
        if owner is None:
            owner = Session(
                "", line_id, Unit(unit), Zone(zone), CreditSessionStatus(status), 0, expires_at, expires_at, session_pk
            )
            others[session_pk] = owner
        batch.lines[line_id].reservations.append(
            Reservation(owner, group, Unit(unit), Zone(zone), reserved, expires_at, stored=True)
        )

    for line_id, unit, zone, total in db.held(line_ids, now):
        batch.lines[line_id].held[(Unit(unit), Zone(zone))] = int(total or 0)
    return batch


def write(uow: UnitOfWork, batch: Batch) -> None:
    """Put back the sessions and reservations the batch changed (the usage is `ingest`'s)."""
    db = _statements(uow.session.connection())
    changed = [s for s in batch.sessions.values() if s.changed]
    new = [s for s in changed if s.id is None]
    old = [s for s in changed if s.id is not None]
    if new:
        ids = dict(db.insert_sessions(new, batch.now))
        for s in new:
            s.id = ids[s.session_id]
    if old:
        db.update_sessions(old, batch.now)
    touched = [r for line in batch.lines.values() for r in line.reservations if r.changed]
    held = [r for r in touched if r.reserved > 0]
    if held:
        db.save_reservations(held)
    # A reservation given back is deleted, not kept at zero: the table holds what is reserved now,
    # so what a line's sessions hold is read from a few rows, however long its history.
    released = [r for r in touched if r.reserved == 0 and r.stored]
    if released:
        db.release_reservations(released)


def _statements(connection: Connection) -> _Statements:
    return _PostgresStatements(connection) if pg_arrays.is_postgres(connection) else _Statements(connection)


class _Statements:
    """The steps in portable SQL (what SQLite runs). Rows come back as plain values (enums as
    their strings), as the PostgreSQL statements give them."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def lock_lines(self, session_ids: set[str], msisdns: set[str]) -> Sequence[Any]:
        of_sessions = select(_sessions.c.line_id).where(_sessions.c.session_id.in_(session_ids))
        return self.connection.execute(
            select(
                _lines.c.id,
                _lines.c.msisdn,
                _raw(_lines.c.status),
                _raw(_lines.c.suspension),
                _plans.c.voice_initial_increment,
                _plans.c.voice_subsequent_increment,
            )
            .select_from(_lines.outerjoin(_plans, _plans.c.id == _lines.c.plan_id))
            .where(or_(_lines.c.id.in_(of_sessions), _lines.c.msisdn.in_(msisdns)))
            .order_by(_lines.c.id)
            .with_for_update(of=_lines)
        ).all()

    def sessions(self, session_ids: set[str]) -> Sequence[Any]:
        c = _sessions.c
        return self.connection.execute(
            select(
                c.id,
                c.session_id,
                c.line_id,
                _raw(c.unit),
                _raw(c.zone),
                _raw(c.status),
                c.reserved,
                c.expires_at,
                c.last_request_number,
                c.last_answer,
                c.created_at,
                c.seconds_used,
                c.emergency,
                _raw(c.closed_reason),
            ).where(c.session_id.in_(session_ids))
        ).all()

    def reservations(self, line_ids: list[int]) -> Sequence[Any]:
        r = _reservations.c
        return self.connection.execute(
            select(
                r.credit_session_id,
                r.line_id,
                r.rating_group,
                _raw(r.unit),
                _raw(r.zone),
                r.reserved,
                r.expires_at,
                _raw(_sessions.c.status),
            )
            .join(_sessions, _sessions.c.id == r.credit_session_id)
            .where(r.line_id.in_(line_ids), r.reserved > 0)
        ).all()

    def held(self, line_ids: list[int], now: datetime) -> Sequence[Any]:
        b = _buckets.c
        return self.connection.execute(
            select(b.line_id, _raw(b.unit), _raw(b.zone), func.sum(b.remaining))
            .where(b.line_id.in_(line_ids), b.valid_from <= now, b.valid_until > now)
            .group_by(b.line_id, b.unit, b.zone)
        ).all()

    def insert_sessions(self, new: list[Session], now: datetime) -> Sequence[Any]:
        rows = self.connection.execute(
            insert(_sessions).returning(_sessions.c.session_id, _sessions.c.id),
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
                    "seconds_used": s.seconds_used,
                    "emergency": s.emergency,
                    "origin_host": s.origin_host,
                    "origin_realm": s.origin_realm,
                    "created_at": s.created_at,
                    "updated_at": now,
                }
                for s in new
            ],
        )
        return rows.all()

    def update_sessions(self, old: list[Session], now: datetime) -> None:
        self.connection.execute(
            update(_sessions).where(_sessions.c.id == bindparam("pk")),
            [
                {
                    "pk": s.id,
                    "status": s.status,
                    "reserved": s.reserved,
                    "expires_at": s.expires_at,
                    "last_request_number": s.last_request_number,
                    "last_answer": s.last_answer,
                    "seconds_used": s.seconds_used,
                    "updated_at": now,
                }
                for s in old
            ],
        )

    def save_reservations(self, held: list[Reservation]) -> None:
        insert_ = pg_insert if self.connection.dialect.name == "postgresql" else sqlite_insert
        statement = insert_(_reservations)
        self.connection.execute(
            statement.on_conflict_do_update(
                index_elements=["credit_session_id", "rating_group"],
                set_={
                    "unit": statement.excluded.unit,
                    "reserved": statement.excluded.reserved,
                    "expires_at": statement.excluded.expires_at,
                },
            ),
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
                for r in held
            ],
        )

    def release_reservations(self, released: list[Reservation]) -> None:
        self.connection.execute(
            delete(_reservations).where(
                _reservations.c.credit_session_id == bindparam("session_pk"),
                _reservations.c.rating_group == bindparam("group"),
            ),
            [{"session_pk": r.session.id, "group": r.rating_group} for r in released],
        )


class _Rows:
    """What `_run` gives: `.all()`, as SQLAlchemy's result does."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def all(self) -> list[Any]:
        return self.cursor.fetchall() if self.cursor.description is not None else []


def _pk(session: Session) -> int:
    assert session.id is not None, "written sessions have their id"
    return session.id


def _raw(column: Any) -> Any:
    """An enum column read as the string it stores."""
    return type_coerce(column, String)


_PG_LOCK_LINES = """
    SELECT lines.id, lines.msisdn, lines.status, lines.suspension,
           plans.voice_initial_increment, plans.voice_subsequent_increment
    FROM lines LEFT JOIN plans ON plans.id = lines.plan_id
    WHERE lines.id IN (
        SELECT credit_sessions.line_id FROM credit_sessions
        WHERE credit_sessions.session_id = ANY(CAST(%(session_ids)s AS VARCHAR[]))
        UNION
        SELECT wanted.id FROM lines AS wanted WHERE wanted.msisdn = ANY(CAST(%(msisdns)s AS VARCHAR[]))
    )
    ORDER BY lines.id
    FOR UPDATE OF lines
"""

_PG_SESSIONS = """
    SELECT id, session_id, line_id, unit, zone, status, reserved, expires_at, last_request_number,
           last_answer, created_at, seconds_used, emergency, closed_reason
    FROM credit_sessions WHERE session_id = ANY(CAST(%(session_ids)s AS VARCHAR[]))
"""

_PG_RESERVATIONS = """
    SELECT r.credit_session_id, r.line_id, r.rating_group, r.unit, r.zone, r.reserved, r.expires_at, s.status
    FROM credit_reservations AS r JOIN credit_sessions AS s ON s.id = r.credit_session_id
    WHERE r.line_id = ANY(CAST(%(line_ids)s AS BIGINT[])) AND r.reserved > 0
"""

_PG_HELD = """
    SELECT line_id, unit, zone, sum(remaining) FROM buckets
    WHERE line_id = ANY(CAST(%(line_ids)s AS BIGINT[])) AND valid_from <= %(now)s AND valid_until > %(now)s
    GROUP BY line_id, unit, zone
"""

_PG_INSERT_SESSIONS = """
    INSERT INTO credit_sessions (session_id, line_id, unit, zone, status, reserved, expires_at,
                                 last_request_number, last_answer, seconds_used, emergency,
                                 origin_host, origin_realm, created_at, updated_at)
    SELECT v.session_id, v.line_id, v.unit, v.zone, v.status, v.reserved, v.expires_at, v.number,
           CAST(v.answer AS JSON), v.seconds_used, v.emergency, v.origin_host, v.origin_realm,
           v.created_at, %(now)s
    FROM unnest(
        CAST(%(session_ids)s AS VARCHAR[]), CAST(%(line_ids)s AS BIGINT[]), CAST(%(units)s AS VARCHAR[]),
        CAST(%(zones)s AS VARCHAR[]), CAST(%(statuses)s AS VARCHAR[]), CAST(%(reserved)s AS BIGINT[]),
        CAST(%(expires)s AS TIMESTAMPTZ[]), CAST(%(numbers)s AS INTEGER[]), CAST(%(answers)s AS TEXT[]),
        CAST(%(seconds)s AS BIGINT[]), CAST(%(emergency)s AS BOOLEAN[]), CAST(%(origin_hosts)s AS VARCHAR[]),
        CAST(%(origin_realms)s AS VARCHAR[]), CAST(%(created)s AS TIMESTAMPTZ[])
    ) AS v (session_id, line_id, unit, zone, status, reserved, expires_at, number, answer,
            seconds_used, emergency, origin_host, origin_realm, created_at)
    RETURNING credit_sessions.session_id, credit_sessions.id
"""

_PG_UPDATE_SESSIONS = """
    UPDATE credit_sessions SET status = v.status, reserved = v.reserved, expires_at = v.expires_at,
        last_request_number = v.number, last_answer = CAST(v.answer AS JSON),
        seconds_used = v.seconds_used, updated_at = %(now)s
    FROM unnest(
        CAST(%(ids)s AS BIGINT[]), CAST(%(statuses)s AS VARCHAR[]), CAST(%(reserved)s AS BIGINT[]),
        CAST(%(expires)s AS TIMESTAMPTZ[]), CAST(%(numbers)s AS INTEGER[]), CAST(%(answers)s AS TEXT[]),
        CAST(%(seconds)s AS BIGINT[])
    ) AS v (id, status, reserved, expires_at, number, answer, seconds_used)
    WHERE credit_sessions.id = v.id
"""

# New and changed reservations alike: one per (session, rating group) in a batch.
_PG_SAVE_RESERVATIONS = """
    INSERT INTO credit_reservations (credit_session_id, line_id, rating_group, unit, zone, reserved, expires_at)
    SELECT * FROM unnest(
        CAST(%(session_ids)s AS BIGINT[]), CAST(%(line_ids)s AS BIGINT[]), CAST(%(groups)s AS BIGINT[]),
        CAST(%(units)s AS VARCHAR[]), CAST(%(zones)s AS VARCHAR[]), CAST(%(reserved)s AS BIGINT[]),
        CAST(%(expires)s AS TIMESTAMPTZ[])
    )
    ON CONFLICT (credit_session_id, rating_group) DO UPDATE
    SET unit = EXCLUDED.unit, reserved = EXCLUDED.reserved, expires_at = EXCLUDED.expires_at
"""


_PG_RELEASE_RESERVATIONS = """
    DELETE FROM credit_reservations
    USING unnest(CAST(%(session_ids)s AS BIGINT[]), CAST(%(groups)s AS BIGINT[])) AS v (s, g)
    WHERE credit_reservations.credit_session_id = v.s AND credit_reservations.rating_group = v.g
"""


class _PostgresStatements(_Statements):
    """The same steps on PostgreSQL: one fixed statement each, the values as array literals, run
    on the transaction's psycopg connection directly (SQLAlchemy's execution adds ~70 µs of CPU
    to each, and these statements need none of it)."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        driver = cast(psycopg.Connection[Any], connection.connection.driver_connection)
        self.cursor = driver.cursor()

    def _run(self, sql: str, params: dict[str, Any]) -> _Rows:
        self.cursor.execute(sql, params)
        return _Rows(self.cursor)

    def lock_lines(self, session_ids: set[str], msisdns: set[str]) -> Sequence[Any]:
        params = {"session_ids": texts(session_ids), "msisdns": texts(msisdns)}
        return self._run(_PG_LOCK_LINES, params).all()

    def sessions(self, session_ids: set[str]) -> Sequence[Any]:
        return self._run(_PG_SESSIONS, {"session_ids": texts(session_ids)}).all()

    def reservations(self, line_ids: list[int]) -> Sequence[Any]:
        return self._run(_PG_RESERVATIONS, {"line_ids": ints(line_ids)}).all()

    def held(self, line_ids: list[int], now: datetime) -> Sequence[Any]:
        return self._run(_PG_HELD, {"line_ids": ints(line_ids), "now": now}).all()

    def insert_sessions(self, new: list[Session], now: datetime) -> Sequence[Any]:
        params = {
            "now": now,
            "session_ids": texts(s.session_id for s in new),
            "line_ids": ints(s.line_id for s in new),
            "units": texts(s.unit.value for s in new),
            "zones": texts(s.zone.value for s in new),
            "statuses": texts(s.status.value for s in new),
            "reserved": ints(s.reserved for s in new),
            "expires": times(s.expires_at for s in new),
            "numbers": ints(s.last_request_number for s in new),
            "answers": texts(json.dumps(s.last_answer) for s in new),
            "seconds": ints(s.seconds_used for s in new),
            "emergency": bools(s.emergency for s in new),
            "origin_hosts": texts(s.origin_host for s in new),
            "origin_realms": texts(s.origin_realm for s in new),
            "created": times(s.created_at for s in new),
        }
        return self._run(_PG_INSERT_SESSIONS, params).all()

    def update_sessions(self, old: list[Session], now: datetime) -> None:
        params = {
            "now": now,
            "ids": ints(_pk(s) for s in old),
            "statuses": texts(s.status.value for s in old),
            "reserved": ints(s.reserved for s in old),
            "expires": times(s.expires_at for s in old),
            "numbers": ints(s.last_request_number for s in old),
            "answers": texts(json.dumps(s.last_answer) for s in old),
            "seconds": ints(s.seconds_used for s in old),
        }
        self._run(_PG_UPDATE_SESSIONS, params)

    def release_reservations(self, released: list[Reservation]) -> None:
        params = {
            "session_ids": ints(_pk(r.session) for r in released),
            "groups": ints(r.rating_group for r in released),
        }
        self._run(_PG_RELEASE_RESERVATIONS, params)

    def save_reservations(self, held: list[Reservation]) -> None:
        every = held
        params = {
            "session_ids": ints(_pk(r.session) for r in every),
            "line_ids": ints(r.session.line_id for r in every),
            "groups": ints(r.rating_group for r in every),
            "units": texts(r.unit.value for r in every),
            "zones": texts(r.zone.value for r in every),
            "reserved": ints(r.reserved for r in every),
            "expires": times(r.expires_at for r in every),
        }
        self._run(_PG_SAVE_RESERVATIONS, params)
