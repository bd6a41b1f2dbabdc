"""Usage from network elements, applied to balances exactly once.

A batch is applied with a handful of set-based statements, not a round trip per record.
The buckets the batch can draw from are locked first, always in the same order (by id), so two
batches for one line's allowance apply one after the other and never spend the same amount twice.
The records then go in with ON CONFLICT DO NOTHING on (source, record_id): a retried or repeated
batch inserts nothing and so charges nothing.

On PostgreSQL each step is one fixed statement whose values travel as arrays (`= ANY(:ids)`,
`unnest(...)`), so its text and plan are the same whatever the batch size; other databases
(SQLite) run the equivalent portable statements.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import BigInteger, Connection, DateTime, String, Table, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from duckline.adapters.db.tables import Bucket, LedgerEntry, Line, UsageRecord
from duckline.domain import balances
from duckline.domain.catalog import Unit, Zone
from duckline.domain.lines import LineStatus, can_use_service
from duckline.errors import DomainError, ErrorCode
from duckline.services.unit_of_work import UnitOfWork

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


def ingest(uow: UnitOfWork, source: str, records: list[UsageInput]) -> BatchOutcome:
    """Apply a batch; each record's outcome is reported in the order received."""
    if len(records) > MAX_BATCH:
        raise DomainError(ErrorCode.USAGE_BATCH_TOO_LARGE, field="records", max=MAX_BATCH)
    for record in records:
        if record.started_at.tzinfo is None:  # as the UTC column type would refuse it
            raise ValueError(f"usage record {record.record_id!r}: started_at has no time zone")
    now = uow.now()
    db = _PostgresStatements(uow) if uow.session.bind.dialect.name == "postgresql" else _Statements(uow)  # type: ignore[union-attr]

    outcomes: list[RecordOutcome | None] = [None] * len(records)
    first_index: dict[str, int] = {}
    for index, record in enumerate(records):
        if record.record_id in first_index:
            outcomes[index] = RecordOutcome(record.record_id, "duplicate")
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

    # Only lines in service draw from buckets; on the others everything is overage.
    buckets = db.lock_buckets([r for r in known if lines[r.msisdn].in_service], lines)
    inserted = db.insert_new(source, known, lines, now)

    bucket_by_id = {b.id: b for line_buckets in buckets.values() for b in line_buckets}
    touched: set[int] = set()
    ledger = _LedgerRows()
    for record in sorted((r for r in known if r.record_id in inserted), key=lambda r: (r.started_at, r.record_id)):
        line, usage_id, unit, zone = lines[record.msisdn], inserted[record.record_id], record.kind.unit, record.zone
        if line.in_service:
            draws, overage = balances.draw(buckets.get(line.id, []), unit, zone, record.quantity, record.started_at)
        else:
            draws, overage = [], record.quantity  # the network let it through: keep it, as overage
        for taken in draws:
            touched.add(taken.bucket_id)
            ledger.add(line.id, taken.bucket_id, unit, zone, -taken.amount, "usage", usage_id)
        if overage:
            ledger.add(line.id, None, unit, zone, -overage, "overage", usage_id)
        outcomes[first_index[record.record_id]] = RecordOutcome(
            record.record_id, "applied", record.quantity - overage, overage
        )

    if touched:
        db.update_remaining([bucket_by_id[i] for i in sorted(touched)])
    if ledger.line_id:
        db.insert_ledger(ledger, now)
    repeated = [r for r in known if r.record_id not in inserted]
    for record, outcome in zip(repeated, db.repeat_outcomes(source, repeated, lines), strict=True):
        outcomes[first_index[record.record_id]] = outcome
    return BatchOutcome(cast(list[RecordOutcome], outcomes))


@dataclass(frozen=True)
class _Line:
    id: int
    in_service: bool


@dataclass
class _LedgerRows:
    """Ledger entries to write, column by column (as the array statements want them)."""

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


def _bucket(row: Any) -> balances.Bucket:
    id_, _line_id, unit, zone, remaining, valid_from, valid_until = row
    return balances.Bucket(id_, Unit(unit), Zone(zone), remaining, valid_from, valid_until)


def _same(row: Any, record: UsageInput, line: _Line) -> bool:
    """Whether a stored usage row (line_id, unit, zone, quantity, started_at) is this record."""
    return tuple(row) == (line.id, record.kind.unit.value, record.zone.value, record.quantity, record.started_at)


def _repeat(record: UsageInput, same: bool) -> RecordOutcome:
    """A record seen before: harmless if the same record comes again, a conflict if its content differs."""
    if same:
        return RecordOutcome(record.record_id, "duplicate")
    return RecordOutcome(record.record_id, "conflict", error=ErrorCode.USAGE_RECORD_CONFLICT.code)


class _Statements:
    """The steps of a batch in portable SQL (what SQLite runs)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.connection: Connection = uow.session.connection()

    def find_lines(self, msisdns: set[str]) -> dict[str, _Line]:
        rows = self.connection.execute(
            select(_lines.c.id, _lines.c.msisdn, _lines.c.status).where(_lines.c.msisdn.in_(msisdns))
        )
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
        )
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
        )
        return {record_id: id_ for id_, record_id in rows}

    def update_remaining(self, buckets: list[balances.Bucket]) -> None:
        self.connection.execute(
            update(_buckets).where(_buckets.c.id == bindparam("bucket_id")),
            [{"bucket_id": b.id, "remaining": b.remaining} for b in buckets],
        )

    def insert_ledger(self, rows: _LedgerRows, now: datetime) -> None:
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
                for line_id, bucket_id, unit, zone, delta, reason, usage_id in zip(
                    rows.line_id,
                    rows.bucket_id,
                    rows.unit,
                    rows.zone,
                    rows.delta,
                    rows.reason,
                    rows.usage_record_id,
                    strict=True,
                )
            ],
        )

    def repeat_outcomes(self, source: str, records: list[UsageInput], lines: dict[str, _Line]) -> list[RecordOutcome]:
        if not records:
            return []
        stored = {
            row.record_id: row
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
        return [_repeat(r, _same(stored[r.record_id][1:], r, lines[r.msisdn])) for r in records]


_BIGINTS, _STRINGS, _TIMES = ARRAY(BigInteger), ARRAY(String), ARRAY(DateTime(timezone=True))

_PG_FIND_LINES = text(
    "SELECT lines.id, lines.msisdn, lines.status FROM lines WHERE lines.msisdn = ANY(:msisdns)"
).bindparams(bindparam("msisdns", type_=_STRINGS))

# One row per (line, unit, zone) the batch uses, with the span of its records' start times:
# exactly the buckets `balances.draw` could take from (remaining > 0, valid at some start time).
_PG_LOCK_BUCKETS = text(
    """
    SELECT buckets.id, buckets.line_id, buckets.unit, buckets.zone, buckets.remaining,
           buckets.valid_from, buckets.valid_until
    FROM buckets
    JOIN unnest(:line_ids, :units, :zones, :first_starts, :last_starts)
         AS wanted(line_id, unit, zone, first_start, last_start)
      ON buckets.line_id = wanted.line_id AND buckets.unit = wanted.unit AND buckets.zone = wanted.zone
    WHERE buckets.remaining > 0
      AND buckets.valid_from <= wanted.last_start AND buckets.valid_until > wanted.first_start
    ORDER BY buckets.id
    FOR UPDATE OF buckets
    """
).bindparams(
    bindparam("line_ids", type_=_BIGINTS),
    bindparam("units", type_=_STRINGS),
    bindparam("zones", type_=_STRINGS),
    bindparam("first_starts", type_=_TIMES),
    bindparam("last_starts", type_=_TIMES),
)

_PG_INSERT_USAGE = text(
    """
    INSERT INTO usage_records (source, record_id, line_id, unit, zone, quantity, started_at, received_at)
    SELECT :source, r.record_id, r.line_id, r.unit, r.zone, r.quantity, r.started_at, :received_at
    FROM unnest(:record_ids, :line_ids, :units, :zones, :quantities, :started_ats)
         AS r(record_id, line_id, unit, zone, quantity, started_at)
    ON CONFLICT (source, record_id) DO NOTHING
    RETURNING usage_records.id, usage_records.record_id
    """
).bindparams(
    bindparam("source", type_=String()),
    bindparam("received_at", type_=DateTime(timezone=True)),
    bindparam("record_ids", type_=_STRINGS),
    bindparam("line_ids", type_=_BIGINTS),
    bindparam("units", type_=_STRINGS),
    bindparam("zones", type_=_STRINGS),
    bindparam("quantities", type_=_BIGINTS),
    bindparam("started_ats", type_=_TIMES),
)

_PG_UPDATE_REMAINING = text(
    """
    UPDATE buckets SET remaining = v.remaining
    FROM unnest(:ids, :remaining) AS v(id, remaining)
    WHERE buckets.id = v.id
    """
).bindparams(bindparam("ids", type_=_BIGINTS), bindparam("remaining", type_=_BIGINTS))

_PG_INSERT_LEDGER = text(
    """
    INSERT INTO ledger_entries (line_id, bucket_id, unit, zone, delta, reason, usage_record_id, created_at)
    SELECT e.line_id, e.bucket_id, e.unit, e.zone, e.delta, e.reason, e.usage_record_id, :created_at
    FROM unnest(:line_ids, :bucket_ids, :units, :zones, :deltas, :reasons, :usage_record_ids)
         AS e(line_id, bucket_id, unit, zone, delta, reason, usage_record_id)
    """
).bindparams(
    bindparam("created_at", type_=DateTime(timezone=True)),
    bindparam("line_ids", type_=_BIGINTS),
    bindparam("bucket_ids", type_=_BIGINTS),
    bindparam("units", type_=_STRINGS),
    bindparam("zones", type_=_STRINGS),
    bindparam("deltas", type_=_BIGINTS),
    bindparam("reasons", type_=_STRINGS),
    bindparam("usage_record_ids", type_=_BIGINTS),
)

_PG_STORED = text(
    """
    SELECT usage_records.record_id, usage_records.line_id, usage_records.unit, usage_records.zone,
           usage_records.quantity, usage_records.started_at
    FROM usage_records
    WHERE usage_records.source = :source AND usage_records.record_id = ANY(:record_ids)
    """
).bindparams(bindparam("source", type_=String()), bindparam("record_ids", type_=_STRINGS))


class _PostgresStatements(_Statements):
    """The same steps on PostgreSQL, one fixed statement each with the values as arrays."""

    def find_lines(self, msisdns: set[str]) -> dict[str, _Line]:
        rows = self.connection.execute(_PG_FIND_LINES, {"msisdns": list(msisdns)})
        return {msisdn: _Line(id_, can_use_service(LineStatus(status))) for id_, msisdn, status in rows}

    def lock_buckets(self, records: list[UsageInput], lines: dict[str, _Line]) -> dict[int, list[balances.Bucket]]:
        spans: dict[tuple[int, str, str], list[datetime]] = {}
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
        keys = sorted(spans)
        rows = self.connection.execute(
            _PG_LOCK_BUCKETS,
            {
                "line_ids": [k[0] for k in keys],
                "units": [k[1] for k in keys],
                "zones": [k[2] for k in keys],
                "first_starts": [spans[k][0] for k in keys],
                "last_starts": [spans[k][1] for k in keys],
            },
        )
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
                "record_ids": [r.record_id for r in ordered],
                "line_ids": [lines[r.msisdn].id for r in ordered],
                "units": [r.kind.unit.value for r in ordered],
                "zones": [r.zone.value for r in ordered],
                "quantities": [r.quantity for r in ordered],
                "started_ats": [r.started_at for r in ordered],
            },
        )
        return {record_id: id_ for id_, record_id in rows}

    def update_remaining(self, buckets: list[balances.Bucket]) -> None:
        self.connection.execute(
            _PG_UPDATE_REMAINING, {"ids": [b.id for b in buckets], "remaining": [b.remaining for b in buckets]}
        )

    def insert_ledger(self, rows: _LedgerRows, now: datetime) -> None:
        self.connection.execute(
            _PG_INSERT_LEDGER,
            {
                "created_at": now,
                "line_ids": rows.line_id,
                "bucket_ids": rows.bucket_id,
                "units": rows.unit,
                "zones": rows.zone,
                "deltas": rows.delta,
                "reasons": rows.reason,
                "usage_record_ids": rows.usage_record_id,
            },
        )

    def repeat_outcomes(self, source: str, records: list[UsageInput], lines: dict[str, _Line]) -> list[RecordOutcome]:
        if not records:
            return []
        stored = {
            row[0]: row[1:]
            for row in self.connection.execute(
                _PG_STORED, {"source": source, "record_ids": [r.record_id for r in records]}
            )
        }
        return [_repeat(r, _same(stored[r.record_id], r, lines[r.msisdn])) for r in records]


def _by_line(rows: Iterable[Any]) -> dict[int, list[balances.Bucket]]:
    by_line: dict[int, list[balances.Bucket]] = {}
    for row in rows:
        by_line.setdefault(row[1], []).append(_bucket(row))
    return by_line
