"""Usage from network elements, applied to balances exactly once.

A batch is applied with a handful of set-based statements, not a round trip per record.
The buckets of the lines concerned are locked first, always in the same order (by id), so two
batches for one line apply one after the other and never spend the same amount twice. The
records then go in with ON CONFLICT DO NOTHING on (source, record_id): a retried or repeated
batch inserts nothing and so charges nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from duckline.adapters.db.tables import Bucket, LedgerEntry, Line, UsageRecord
from duckline.clock import as_utc
from duckline.domain import balances
from duckline.domain.catalog import Unit, Zone
from duckline.domain.lines import LineStatus, can_use_service
from duckline.errors import DomainError, ErrorCode
from duckline.services.unit_of_work import UnitOfWork

MAX_BATCH = 5000
_usage = cast(Table, UsageRecord.__table__)
_buckets = cast(Table, Bucket.__table__)
_ledger = cast(Table, LedgerEntry.__table__)


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
    session, now = uow.session, uow.now()
    outcomes: dict[int, RecordOutcome] = {}
    first_index: dict[str, int] = {}
    for index, record in enumerate(records):
        if record.record_id in first_index:
            outcomes[index] = RecordOutcome(record.record_id, "duplicate")
        else:
            first_index[record.record_id] = index

    msisdns = {records[i].msisdn for i in first_index.values()}
    lines = {
        row.msisdn: row
        for row in session.execute(select(Line.id, Line.msisdn, Line.status).where(Line.msisdn.in_(msisdns)))
    }
    known: list[int] = []
    for index in first_index.values():
        if records[index].msisdn in lines:
            known.append(index)
        else:
            outcomes[index] = RecordOutcome(records[index].record_id, "rejected", error="line_not_found")

    buckets = _lock_buckets(uow, sorted({lines[records[i].msisdn].id for i in known}))
    inserted = _insert_new(uow, source, [records[i] for i in known], lines, now)

    ledger: list[dict[str, Any]] = []
    touched: dict[int, balances.Bucket] = {}
    for index in sorted(
        (i for i in known if records[i].record_id in inserted),
        key=lambda i: (records[i].started_at, records[i].record_id),
    ):
        record, line = records[index], lines[records[index].msisdn]
        usage_id, unit = inserted[record.record_id], record.kind.unit
        line_buckets = buckets.get(line.id, [])
        if can_use_service(LineStatus(line.status)):
            draws, overage = balances.draw(line_buckets, unit, record.zone, record.quantity, record.started_at)
        else:
            draws, overage = [], record.quantity  # the network let it through: keep it, as overage
        for taken in draws:
            touched[taken.bucket_id] = next(b for b in line_buckets if b.id == taken.bucket_id)
            ledger.append(_entry(line.id, taken.bucket_id, unit, record.zone, -taken.amount, "usage", usage_id, now))
        if overage:
            ledger.append(_entry(line.id, None, unit, record.zone, -overage, "overage", usage_id, now))
        outcomes[index] = RecordOutcome(record.record_id, "applied", record.quantity - overage, overage)

    if touched:
        session.execute(
            update(_buckets).where(_buckets.c.id == bindparam("bucket_id")),
            [{"bucket_id": b.id, "remaining": b.remaining} for b in touched.values()],
        )
    if ledger:
        session.execute(_ledger.insert(), ledger)
    repeated = [i for i in known if i not in outcomes]
    for index, outcome in zip(
        repeated, _repeat_outcomes(uow, source, [records[i] for i in repeated], lines), strict=True
    ):
        outcomes[index] = outcome
    return BatchOutcome([outcomes[i] for i in range(len(records))])


def _lock_buckets(uow: UnitOfWork, line_ids: list[int]) -> dict[int, list[balances.Bucket]]:
    if not line_ids:
        return {}
    rows = uow.session.execute(
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
    by_line: dict[int, list[balances.Bucket]] = {}
    for row in rows:
        by_line.setdefault(row.line_id, []).append(
            balances.Bucket(row.id, Unit(row.unit), Zone(row.zone), row.remaining, row.valid_from, row.valid_until)
        )
    return by_line


def _insert_new(
    uow: UnitOfWork, source: str, records: list[UsageInput], lines: dict[str, Any], now: datetime
) -> dict[str, int]:
    """Insert the records not seen before; return record_id → new row id for exactly those."""
    if not records:
        return {}
    insert = pg_insert if uow.session.bind.dialect.name == "postgresql" else sqlite_insert  # type: ignore[union-attr]
    statement = (
        insert(_usage)
        .on_conflict_do_nothing(index_elements=["source", "record_id"])
        .returning(_usage.c.id, _usage.c.record_id)
    )
    rows = uow.session.execute(
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
    return {row.record_id: row.id for row in rows}


def _repeat_outcomes(
    uow: UnitOfWork, source: str, records: list[UsageInput], lines: dict[str, Any]
) -> list[RecordOutcome]:
    """Records seen before: harmless if the same record comes again, a conflict if its content differs."""
    if not records:
        return []
    stored = {
        row.record_id: row
        for row in uow.session.execute(
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
    outcomes = []
    for record in records:
        row = stored[record.record_id]
        same = (row.line_id, row.unit, row.zone, row.quantity, row.started_at) == (
            lines[record.msisdn].id,
            record.kind.unit.value,
            record.zone.value,
            record.quantity,
            as_utc(record.started_at),
        )
        outcomes.append(
            RecordOutcome(record.record_id, "duplicate")
            if same
            else RecordOutcome(record.record_id, "conflict", error=ErrorCode.USAGE_RECORD_CONFLICT.code)
        )
    return outcomes


def _entry(
    line_id: int, bucket_id: int | None, unit: Unit, zone: Zone, delta: int, reason: str, usage_id: int, now: datetime
) -> dict[str, Any]:
    return {
        "line_id": line_id,
        "bucket_id": bucket_id,
        "unit": unit.value,
        "zone": zone.value,
        "delta": delta,
        "reason": reason,
        "usage_record_id": usage_id,
        "created_at": now,
    }
