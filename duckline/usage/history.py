"""A line's usage over one calendar month: totals per local day and the records themselves.

Days are counted on the viewer's calendar (Asia/Hong_Kong unless the account says otherwise).
The month's bounds are computed in Python and the grouping by local date is done in Python too,
so the SQL is the same plain range query on SQLite and PostgreSQL. What each record drew from
the allowances and what went beyond them come from the ledger: `usage` rows are what was
charged to buckets, `overage` rows what was not covered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from duckline.catalog.rules import Unit, Zone
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines.models import Line
from duckline.usage.models import LedgerEntry, UsageRecord

DEFAULT_RECORD_LIMIT = 500


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str | None, today: date) -> Month:
        """'2026-11' → Month(2026, 11); anything else → the month of `today`."""
        try:
            year, month = (int(part) for part in (text or "").split("-"))
            if 2000 <= year <= 2999 and 1 <= month <= 12:
                return cls(year, month)
        except ValueError:
            pass
        return cls(today.year, today.month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def days(self) -> int:
        return (self.next().first_day - self.first_day).days

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def bounds(self, tz: str) -> tuple[datetime, datetime]:
        """The month's first and the next month's first local midnight, in UTC."""
        zone = ZoneInfo(tz)
        start = datetime.combine(self.first_day, time(), zone).astimezone(UTC)
        end = datetime.combine(self.next().first_day, time(), zone).astimezone(UTC)
        return start, end


@dataclass
class DayTotals:
    day: date
    voice_seconds: int = 0
    sms: int = 0
    data_bytes: int = 0

    def add(self, unit: Unit, quantity: int) -> None:
        if unit is Unit.VOICE_SECONDS:
            self.voice_seconds += quantity
        elif unit is Unit.SMS:
            self.sms += quantity
        else:
            self.data_bytes += quantity

    @property
    def empty(self) -> bool:
        return not (self.voice_seconds or self.sms or self.data_bytes)


@dataclass(frozen=True)
class RecordRow:
    id: int
    started_at: datetime
    unit: Unit
    zone: Zone
    quantity: int
    charged: int  # drawn from the allowances
    overage: int  # beyond them


@dataclass
class MonthUsage:
    month: Month
    days: list[DayTotals]
    records: list[RecordRow]  # newest first, at most the limit asked for
    record_count: int  # all of the month's records
    totals: DayTotals = field(default_factory=lambda: DayTotals(date.min))


def month_usage(
    uow: UnitOfWork, line: Line, month: Month, tz: str, record_limit: int = DEFAULT_RECORD_LIMIT
) -> MonthUsage:
    """Per-day totals (every day of the month, in `tz`) and the month's records with their charges."""
    start, end = month.bounds(tz)
    zone = ZoneInfo(tz)
    in_month = (UsageRecord.line_id == line.id, UsageRecord.started_at >= start, UsageRecord.started_at < end)

    days = [DayTotals(month.first_day + timedelta(days=i)) for i in range(month.days)]
    totals = DayTotals(month.first_day)
    count = 0
    for unit, quantity, started_at in uow.session.execute(
        select(UsageRecord.unit, UsageRecord.quantity, UsageRecord.started_at).where(*in_month)
    ):
        local_day = started_at.astimezone(zone).date()
        days[(local_day - month.first_day).days].add(unit, quantity)
        totals.add(unit, quantity)
        count += 1

    rows = uow.session.scalars(
        select(UsageRecord)
        .where(*in_month)
        .order_by(UsageRecord.started_at.desc(), UsageRecord.id.desc())
        .limit(record_limit)
    ).all()
    charged: dict[int, int] = {}
    overage: dict[int, int] = {}
    if rows:
        first_shown = min(r.started_at for r in rows)
        ledger = uow.session.execute(
            select(LedgerEntry.usage_record_id, LedgerEntry.reason, func.sum(LedgerEntry.delta))
            .join(UsageRecord, UsageRecord.id == LedgerEntry.usage_record_id)
            .where(
                *in_month,
                UsageRecord.started_at >= first_shown,
                LedgerEntry.line_id == line.id,
                LedgerEntry.reason.in_(("usage", "overage")),
            )
            .group_by(LedgerEntry.usage_record_id, LedgerEntry.reason)
        )
        for record_id, reason, delta in ledger:
            if record_id is None:  # the join makes it a record's; the column type allows None
                continue
            target = charged if reason == "usage" else overage
            target[record_id] = -int(delta or 0)
    records = [
        RecordRow(r.id, r.started_at, r.unit, r.zone, r.quantity, charged.get(r.id, 0), overage.get(r.id, 0))
        for r in rows
    ]
    return MonthUsage(month, days, records, count, totals)
