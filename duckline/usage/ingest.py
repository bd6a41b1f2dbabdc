"""Usage from network elements, applied to balances exactly once.

A batch is applied with a handful of set-based statements, not a round trip per record.
The buckets the batch can draw from are locked first, always in the same order (by id), so two
batches drawing on one line's allowance apply one after the other and never spend the same amount
twice. The records then go in with ON CONFLICT DO NOTHING on (source, record_id): a retried or
repeated batch inserts nothing and so charges nothing.

On PostgreSQL (psycopg) each step is one fixed statement whose values travel as arrays
(`= ANY(...)`, `unnest(...)`): its text, and so its prepared plan, is the same whatever the batch
size. Other databases (SQLite) run the equivalent portable statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from duckline.accounts.models import Account
from duckline.catalog.rules import Unit, Zone
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db import pg_arrays
from duckline.db.pg_arrays import Array
from duckline.lines.models import Line
from duckline.lines.states import LineStatus, can_use_service
from duckline.usage import drawing as balances
from duckline.usage.models import Bucket, LedgerEntry, UsageRecord

MAX_BATCH = 5000
_usage = cast(Table, UsageRecord.__table__)
_buckets = cast(Table, Bucket.__table__)
_ledger = cast(Table, LedgerEntry.__table__)
_lines = cast(Table, Line.__table__)


class UsageKind(StrEnum):
    VOICE = "voice"
    SMS = "sms"
    DATA = "data"

    @property
    def unit(self) -> Unit:
        return _UNITS[self]


_UNITS = {UsageKind.VOICE: Unit.VOICE_SECONDS, UsageKind.SMS: Unit.SMS, UsageKind.DATA: Unit.DATA_BYTES}


@dataclass(frozen=True)
class UsageInput:
    record_id: str
    msisdn: str
    kind: UsageKind
    zone: Zone
    quantity: int
    started_at: datetime


@dataclass(frozen=True)
class RecordOutcome:
    record_id: str
    status: str  # applied, duplicate, conflict, rejected
    charged: int = 0
    overage: int = 0
    error: str | None = None


@dataclass
class BatchOutcome:
    records: list[RecordOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r.status == status)


def report_batch(transactions: Transactions, reporter: Account, records: list[UsageInput]) -> BatchOutcome:
    """A network element's batch, in one transaction: each record_id is charged at most once per
    reporting client, so a batch may be retried freely."""
    with transactions() as uow:
        return ingest(uow, f"account:{reporter.id}", records)


def ingest(uow: UnitOfWork, source: str, records: list[UsageInput]) -> BatchOutcome:
    """Apply a batch; each record's outcome is reported in the order received."""
    if len(records) > MAX_BATCH:
        raise DomainError(ErrorCode.USAGE_BATCH_TOO_LARGE, field="records", max=MAX_BATCH)
    for index, record in enumerate(records):
        if record.started_at.tzinfo is None:  # what the UTC column type refuses too
            raise ValueError(f"usage record {record.record_id!r}: started_at has no time zone")
        if type(record.quantity) is not int or record.quantity < 0:  # never True for 1, nor 1.0
            raise DomainError(ErrorCode.VALIDATION_FAILED, field=f"records.{index}.quantity")
    now = uow.now()
    earliest, latest = accepted_window(uow)
    db = _statements(uow)

    outcomes: list[RecordOutcome | None] = [None] * len(records)
    first_index: dict[str, int] = {}
    for index, record in enumerate(records):
        if record.record_id in first_index:
            outcomes[index] = RecordOutcome(record.record_id, "duplicate")
        elif not earliest <= record.started_at <= latest:
            outcomes[index] = RecordOutcome(
                record.record_id, "rejected", error=ErrorCode.USAGE_RECORD_OUT_OF_WINDOW.code
            )
        else:
            first_index[record.record_id] = index

    lines = db.find_lines({records[i].msisdn for i in first_index.values()})
    known: list[UsageInput] = []
    for index in first_index.values():
        record = records[index]
        if record.msisdn in lines:
            known.append(record)
        else:
            outcomes[index] = RecordOutcome(record.record_id, "rejected", error="line_not_found")

    # Only lines in service draw from buckets; everything used on the others is overage.
    buckets = db.lock_buckets([r for r in known if lines[r.msisdn].in_service], lines)
    inserted = db.insert_new(source, known, lines, now)

    touched: dict[int, balances.Bucket] = {}
    ledger = _LedgerRows()
    for record in sorted((r for r in known if r.record_id in inserted), key=lambda r: (r.started_at, r.record_id)):
        line, usage_id, unit, zone = lines[record.msisdn], inserted[record.record_id], record.kind.unit, record.zone
        if line.in_service:
            line_buckets = buckets.get(line.id, [])
            draws, overage = balances.draw(line_buckets, unit, zone, record.quantity, record.started_at)
        else:
            line_buckets, draws, overage = [], [], record.quantity  # the network let it through: keep it
        for taken in draws:
            touched[taken.bucket_id] = next(b for b in line_buckets if b.id == taken.bucket_id)
            ledger.add(line.id, taken.bucket_id, unit, zone, -taken.amount, "usage", usage_id)
        if overage:
            ledger.add(line.id, None, unit, zone, -overage, "overage", usage_id)
        outcomes[first_index[record.record_id]] = RecordOutcome(
            record.record_id, "applied", record.quantity - overage, overage
        )

    if touched:
        db.update_remaining([touched[i] for i in sorted(touched)])
    if ledger.line_id:
        db.insert_ledger(ledger, now)
    repeated = [r for r in known if r.record_id not in inserted]
    for record, outcome in zip(repeated, db.repeat_outcomes(source, repeated, lines), strict=True):
        outcomes[first_index[record.record_id]] = outcome
    return BatchOutcome(cast(list[RecordOutcome], outcomes))


def accepted_window(uow: UnitOfWork) -> tuple[datetime, datetime]:
    """The earliest and latest start a usage record may have now. Older records belong to periods
    long closed (and would be charged to whatever is left today); later ones come from a clock
    gone wrong, and a year-9999 record would otherwise be charged like any other."""
    now, settings = uow.now(), uow.settings
    return now - timedelta(days=settings.usage_max_age_days), now + timedelta(minutes=settings.usage_max_future_minutes)


@dataclass(frozen=True)
class _Line:
    id: int
    in_service: bool


@dataclass
class _LedgerRows:
    """Ledger entries to write, column by column (as the array statements take them)."""

    line_id: list[int] = field(default_factory=list)
    bucket_id: list[int | None] = field(default_factory=list)
    unit: list[str] = field(default_factory=list)
    zone: list[str] = field(default_factory=list)
    delta: list[int] = field(default_factory=list)
    reason: list[str] = field(default_factory=list)
    usage_record_id: list[int] = field(default_factory=list)

    def add(
        self, line_id: int, bucket_id: int | None, unit: Unit, zone: Zone, delta: int, reason: str, usage_id: int
    ) -> None:
        self.line_id.append(line_id)
        self.bucket_id.append(bucket_id)
        self.unit.append(unit.value)
        self.zone.append(zone.value)
        self.delta.append(delta)
        self.reason.append(reason)
        self.usage_record_id.append(usage_id)


_UNIT_OF = {u.value: u for u in Unit}
_ZONE_OF = {z.value: z for z in Zone}


def _by_line(rows: Sequence[Any]) -> dict[int, list[balances.Bucket]]:
    """Rows of (id, line_id, unit, zone, remaining, valid_from, valid_until), as buckets by line."""
    by_line: dict[int, list[balances.Bucket]] = {}
    for id_, line_id, unit, zone, remaining, valid_from, valid_until in rows:
        by_line.setdefault(line_id, []).append(
            balances.Bucket(id_, _UNIT_OF[unit], _ZONE_OF[zone], remaining, valid_from, valid_until)
        )
    return by_line


def _repeat_outcome(record: UsageInput, line: _Line, stored: Sequence[Any]) -> RecordOutcome:
    """A record seen before: harmless if the same record comes again, a conflict if its content
    differs. `stored` is (line_id, unit, zone, quantity, started_at) as first received."""
    if tuple(stored) == (line.id, record.kind.unit.value, record.zone.value, record.quantity, record.started_at):
        return RecordOutcome(record.record_id, "duplicate")
    return RecordOutcome(record.record_id, "conflict", error=ErrorCode.USAGE_RECORD_CONFLICT.code)


def _statements(uow: UnitOfWork) -> _Statements:
    connection = uow.session.connection()
    if pg_arrays.is_postgres(connection):
        return _PostgresStatements(connection)
    return _Statements(connection)


class _Statements:
    """The steps of a batch in portable SQL (what SQLite runs)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def find_lines(self, msisdns: set[str]) -> dict[str, _Line]:
        if not msisdns:
            return {}
        rows = self.connection.execute(
            select(_lines.c.id, _lines.c.msisdn, _lines.c.status).where(_lines.c.msisdn.in_(msisdns))
        ).all()
        return {msisdn: _Line(id_, can_use_service(LineStatus(status))) for id_, msisdn, status in rows}

    def lock_buckets(self, records: list[UsageInput], lines: dict[str, _Line]) -> dict[int, list[balances.Bucket]]:
        """Lock, in id order, the buckets these records may draw from; by line."""
        line_ids = sorted({lines[r.msisdn].id for r in records})
        if not line_ids:
            return {}
        rows = self.connection.execute(
            select(
                _buckets.c.id,
                _buckets.c.line_id,
                _buckets.c.unit,
                _buckets.c.zone,
                _buckets.c.remaining,
                _buckets.c.valid_from,
                _buckets.c.valid_until,
            )
            .where(_buckets.c.line_id.in_(line_ids), _buckets.c.remaining > 0)
            .order_by(_buckets.c.id)
            .with_for_update()
        ).all()
        return _by_line(rows)

    def insert_new(
        self, source: str, records: list[UsageInput], lines: dict[str, _Line], now: datetime
    ) -> dict[str, int]:
        """Insert the records not seen before; return record_id → new row id for exactly those."""
        if not records:
            return {}
        insert = pg_insert if self.connection.dialect.name == "postgresql" else sqlite_insert
        statement = (
            insert(_usage)
            .on_conflict_do_nothing(index_elements=["source", "record_id"])
            .returning(_usage.c.id, _usage.c.record_id)
        )
        rows = self.connection.execute(
            statement,
            [
                {
                    "source": source,
                    "record_id": r.record_id,
                    "line_id": lines[r.msisdn].id,
                    "unit": r.kind.unit.value,
                    "zone": r.zone.value,
                    "quantity": r.quantity,
                    "started_at": r.started_at,
                    "received_at": now,
                }
                for r in records
            ],
        ).all()
        return {record_id: id_ for id_, record_id in rows}

    def update_remaining(self, buckets: list[balances.Bucket]) -> None:
        self.connection.execute(
            update(_buckets).where(_buckets.c.id == bindparam("bucket_id")),
            [{"bucket_id": b.id, "remaining": b.remaining} for b in buckets],
        )

    def insert_ledger(self, rows: _LedgerRows, now: datetime) -> None:
        columns = (rows.line_id, rows.bucket_id, rows.unit, rows.zone, rows.delta, rows.reason, rows.usage_record_id)
        self.connection.execute(
            _ledger.insert(),
            [
                {
                    "line_id": line_id,
                    "bucket_id": bucket_id,
                    "unit": unit,
                    "zone": zone,
                    "delta": delta,
                    "reason": reason,
                    "usage_record_id": usage_id,
                    "created_at": now,
                }
                for line_id, bucket_id, unit, zone, delta, reason, usage_id in zip(*columns, strict=True)
            ],
        )

    def repeat_outcomes(self, source: str, records: list[UsageInput], lines: dict[str, _Line]) -> list[RecordOutcome]:
        if not records:
            return []
        stored = {
            row[0]: row[1:]
            for row in self.connection.execute(
                select(
                    _usage.c.record_id,
                    _usage.c.line_id,
                    _usage.c.unit,
                    _usage.c.zone,
                    _usage.c.quantity,
                    _usage.c.started_at,
                ).where(_usage.c.source == source, _usage.c.record_id.in_([r.record_id for r in records]))
            )
        }
        return [_repeat_outcome(r, lines[r.msisdn], stored[r.record_id]) for r in records]


_PG_FIND_LINES = text(
    "SELECT lines.id, lines.msisdn, lines.status FROM lines WHERE lines.msisdn = ANY(CAST(:msisdns AS VARCHAR[]))"
)

# `wanted` has one row per (line, unit, zone) used by the batch, with the span of its records'
# start times: so only the buckets `balances.draw` could take from are locked (remaining > 0 and
# valid at one of those times), not expired ones or those of other units.
_PG_LOCK_BUCKETS = text(
    """
    SELECT buckets.id, buckets.line_id, buckets.unit, buckets.zone, buckets.remaining,
           buckets.valid_from, buckets.valid_until
    FROM buckets
    JOIN unnest(
        CAST(:line_ids AS BIGINT[]), CAST(:units AS VARCHAR[]), CAST(:zones AS VARCHAR[]),
        CAST(:first_starts AS TIMESTAMPTZ[]), CAST(:last_starts AS TIMESTAMPTZ[])
    ) AS wanted (line_id, unit, zone, first_start, last_start)
      ON buckets.line_id = wanted.line_id AND buckets.unit = wanted.unit AND buckets.zone = wanted.zone
    WHERE buckets.line_id = ANY(CAST(:line_ids AS BIGINT[])) AND buckets.remaining > 0
      AND buckets.valid_from <= wanted.last_start AND buckets.valid_until > wanted.first_start
    ORDER BY buckets.id
    FOR UPDATE OF buckets
    """
)

_PG_INSERT_USAGE = text(
    """
    INSERT INTO usage_records (source, record_id, line_id, unit, zone, quantity, started_at, received_at)
    SELECT :source, r.record_id, r.line_id, r.unit, r.zone, r.quantity, r.started_at, :received_at
    FROM unnest(
        CAST(:record_ids AS VARCHAR[]), CAST(:line_ids AS BIGINT[]), CAST(:units AS VARCHAR[]),
        CAST(:zones AS VARCHAR[]), CAST(:quantities AS BIGINT[]), CAST(:started_ats AS TIMESTAMPTZ[])
    ) AS r (record_id, line_id, unit, zone, quantity, started_at)
    ON CONFLICT (source, record_id) DO NOTHING
    RETURNING usage_records.id, usage_records.record_id
    """
)

_PG_UPDATE_REMAINING = text(
    """
    UPDATE buckets SET remaining = v.remaining
    FROM unnest(CAST(:ids AS BIGINT[]), CAST(:remaining AS BIGINT[])) AS v (id, remaining)
    WHERE buckets.id = v.id
    """
)

_PG_INSERT_LEDGER = text(
    """
    INSERT INTO ledger_entries (line_id, bucket_id, unit, zone, delta, reason, usage_record_id, created_at)
    SELECT e.line_id, e.bucket_id, e.unit, e.zone, e.delta, e.reason, e.usage_record_id, :created_at
    FROM unnest(
        CAST(:line_ids AS BIGINT[]), CAST(:bucket_ids AS BIGINT[]), CAST(:units AS VARCHAR[]),
        CAST(:zones AS VARCHAR[]), CAST(:deltas AS BIGINT[]), CAST(:reasons AS VARCHAR[]),
        CAST(:usage_record_ids AS BIGINT[])
    ) AS e (line_id, bucket_id, unit, zone, delta, reason, usage_record_id)
    """
)

_PG_STORED = text(
    """
    SELECT usage_records.record_id, usage_records.line_id, usage_records.unit, usage_records.zone,
           usage_records.quantity, usage_records.started_at
    FROM usage_records
    WHERE usage_records.source = :source AND usage_records.record_id = ANY(CAST(:record_ids AS VARCHAR[]))
    """
)


class _PostgresStatements(_Statements):
    """The same steps on PostgreSQL: one fixed statement each, the values as binary arrays."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        pg_arrays.register(connection)

    def find_lines(self, msisdns: set[str]) -> dict[str, _Line]:
        if not msisdns:
            return {}
        rows = self.connection.execute(_PG_FIND_LINES, {"msisdns": Array(msisdns)}).all()
        return {msisdn: _Line(id_, can_use_service(LineStatus(status))) for id_, msisdn, status in rows}

    def lock_buckets(self, records: list[UsageInput], lines: dict[str, _Line]) -> dict[int, list[balances.Bucket]]:
        spans: dict[tuple[int, str, str], list[datetime]] = {}  # (line, unit, zone) → [first, last start]
        for r in records:
            key = (lines[r.msisdn].id, r.kind.unit.value, r.zone.value)
            span = spans.get(key)
            if span is None:
                spans[key] = [r.started_at, r.started_at]
            elif r.started_at < span[0]:
                span[0] = r.started_at
            elif r.started_at > span[1]:
                span[1] = r.started_at
        if not spans:
            return {}
        keys = list(spans)
        rows = self.connection.execute(
            _PG_LOCK_BUCKETS,
            {
                "line_ids": Array(k[0] for k in keys),
                "units": Array(k[1] for k in keys),
                "zones": Array(k[2] for k in keys),
                "first_starts": Array(spans[k][0] for k in keys),
                "last_starts": Array(spans[k][1] for k in keys),
            },
        ).all()
        return _by_line(rows)

    def insert_new(
        self, source: str, records: list[UsageInput], lines: dict[str, _Line], now: datetime
    ) -> dict[str, int]:
        if not records:
            return {}
        # In record id order, so two batches that share records wait for each other, never deadlock.
        ordered = sorted(records, key=lambda r: r.record_id)
        rows = self.connection.execute(
            _PG_INSERT_USAGE,
            {
                "source": source,
                "received_at": now,
                "record_ids": Array(r.record_id for r in ordered),
                "line_ids": Array(lines[r.msisdn].id for r in ordered),
                "units": Array(r.kind.unit.value for r in ordered),
                "zones": Array(r.zone.value for r in ordered),
                "quantities": Array(r.quantity for r in ordered),
                "started_ats": Array(r.started_at for r in ordered),
            },
        ).all()
        return {record_id: id_ for id_, record_id in rows}

    def update_remaining(self, buckets: list[balances.Bucket]) -> None:
        self.connection.execute(
            _PG_UPDATE_REMAINING,
            {"ids": Array(b.id for b in buckets), "remaining": Array(b.remaining for b in buckets)},
        )

    def insert_ledger(self, rows: _LedgerRows, now: datetime) -> None:
        self.connection.execute(
            _PG_INSERT_LEDGER,
            {
                "created_at": now,
                "line_ids": Array(rows.line_id),
                "bucket_ids": Array(rows.bucket_id),
                "units": Array(rows.unit),
                "zones": Array(rows.zone),
                "deltas": Array(rows.delta),
                "reasons": Array(rows.reason),
                "usage_record_ids": Array(rows.usage_record_id),
            },
        )

    def repeat_outcomes(self, source: str, records: list[UsageInput], lines: dict[str, _Line]) -> list[RecordOutcome]:
        if not records:
            return []
        rows = self.connection.execute(
            _PG_STORED, {"source": source, "record_ids": Array(r.record_id for r in records)}
        )
        stored = {row[0]: row[1:] for row in rows.all()}
        return [_repeat_outcome(r, lines[r.msisdn], stored[r.record_id]) for r in records]
