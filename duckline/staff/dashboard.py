"""The staff console's dashboard figures for the last DAYS local days, read in one transaction:
revenue by day (as GET /api/v1/reports/revenue?by=day), usage by day, open reconciliation cases,
lines by status, the number pool and the support desk."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select

from duckline.accounts.models import Account
from duckline.accounts.roles import NUMBER_POOL_MANAGERS
from duckline.billing import reconciliation, reports
from duckline.catalog.rules import Unit
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.lines import numbers
from duckline.lines.models import Line
from duckline.lines.states import LineStatus
from duckline.support import desk as support_desk
from duckline.support.models import Ticket
from duckline.usage.models import UsageRecord

DAYS = 30


@dataclass(frozen=True)
class Figures:
    days: list[date]  # the last DAYS local days, oldest first, today last
    revenue: list[dict[str, object]]  # reports.revenue by day
    usage: dict[Unit, list[int]]  # per day, in each unit's own measure
    open_cases: int
    lines_by_status: dict[LineStatus, int]
    pool: dict[str, int] | None  # only for those who manage the number pool
    desk: support_desk.Summary


def figures(transactions: Transactions, viewer: Account) -> Figures:
    with transactions() as uow:
        tz = ZoneInfo(uow.settings.display_timezone)
        today = uow.now().astimezone(tz).date()
        days = [today - timedelta(days=DAYS - 1 - i) for i in range(DAYS)]
        start = datetime.combine(days[0], time(), tz)
        end = datetime.combine(today + timedelta(days=1), time(), tz)
        open_cases = uow.session.scalar(
            select(func.count())
            .select_from(Ticket)
            .where(Ticket.kind.in_(reconciliation.CASE_KINDS), Ticket.status == "open")
        )
        lines_by_status = dict(uow.session.execute(select(Line.status, func.count()).group_by(Line.status)).all())
        return Figures(
            days=days,
            revenue=reports.revenue(uow, "day", start, end, tz),
            usage=_usage_by_day(uow, start, end),
            open_cases=int(open_cases or 0),
            lines_by_status={status: int(lines_by_status.get(status, 0)) for status in LineStatus},
            pool=numbers.pool_summary(uow) if viewer.role in NUMBER_POOL_MANAGERS else None,
            desk=support_desk.summary(uow),
        )


def _day_index(column: Any, start: datetime) -> Any:
    """Which of the last DAYS local days a timestamp falls on, in SQL that every database runs."""
    return case(*((column < start + timedelta(days=i + 1), i) for i in range(DAYS)), else_=DAYS)


def _usage_by_day(uow: UnitOfWork, start: datetime, end: datetime) -> dict[Unit, list[int]]:
    totals = {unit: [0] * DAYS for unit in Unit}
    day = _day_index(UsageRecord.started_at, start)
    rows = uow.session.execute(
        select(UsageRecord.unit, day, func.sum(UsageRecord.quantity))
        .where(UsageRecord.started_at >= start, UsageRecord.started_at < end)
        .group_by(UsageRecord.unit, day)
    ).all()
    for unit, index, quantity in rows:
        if 0 <= index < DAYS:
            totals[Unit(unit)][index] += int(quantity or 0)
    return totals
