"""Granting allowances and rebuilding balances from the append-only ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from duckline.catalog.models import Plan, PlanAllowance
from duckline.catalog.rules import Unit, Zone
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines.models import Line
from duckline.usage import credit_signals
from duckline.usage.models import Bucket, LedgerEntry


@dataclass(frozen=True)
class Grant:
    """One bucket to open: what it holds and where it came from (its ledger row says so too)."""

    unit: Unit
    zone: Zone
    amount: int
    source: str  # plan, addon, promotion
    source_ref: str  # order:42, order:42:promotion:7, activation:5


def grant(
    uow: UnitOfWork, line_id: int, grants: list[Grant], valid_from: datetime, valid_until: datetime
) -> list[Bucket]:
    """Open the buckets, each with its grant in the ledger: two statements whatever their number.
    The line's open credit-control sessions are re-authorized (a RAR each), so they draw on the new
    buckets at once."""
    now = uow.now()
    buckets = [
        Bucket(
            line_id=line_id,
            unit=g.unit,
            zone=g.zone,
            initial=g.amount,
            remaining=g.amount,
            valid_from=valid_from,
            valid_until=valid_until,
            source=g.source,
            source_ref=g.source_ref,
            created_at=now,
        )
        for g in grants
    ]
    uow.session.add_all(buckets)
    uow.session.flush()  # the buckets' ids, for their ledger rows
    uow.session.add_all(
        LedgerEntry(
            line_id=line_id, bucket_id=b.id, unit=b.unit, zone=b.zone, delta=b.initial, reason="grant", created_at=now
        )
        for b in buckets
    )
    credit_signals.reauthorize(uow, line_id)
    return buckets


def grant_plan_allowances(
    uow: UnitOfWork, line: Line, plan: Plan, valid_from: datetime, valid_until: datetime, source: str, source_ref: str
) -> list[Bucket]:
    """One bucket per allowance of the plan, each with its grant in the ledger."""
    allowances = uow.session.scalars(
        select(PlanAllowance).where(PlanAllowance.plan_id == plan.id).order_by(PlanAllowance.id)
    ).all()
    grants = [Grant(Unit(a.unit), Zone(a.zone), a.amount, source, source_ref) for a in allowances]
    return grant(uow, line.id, grants, valid_from, valid_until)


def rebuild_remaining(uow: UnitOfWork, line_id: int) -> dict[int, int]:
    """Each bucket's remaining amount as the ledger says it is (used to audit the projection)."""
    rows = uow.session.execute(
        select(LedgerEntry.bucket_id, func.sum(LedgerEntry.delta))
        .where(LedgerEntry.line_id == line_id, LedgerEntry.bucket_id.is_not(None))
        .group_by(LedgerEntry.bucket_id)
    ).all()
    return {int(bucket_id or 0): int(total or 0) for bucket_id, total in rows}


def projected_remaining(uow: UnitOfWork, line_id: int) -> dict[int, int]:
    rows = uow.session.execute(select(Bucket.id, Bucket.remaining).where(Bucket.line_id == line_id)).all()
    return {int(i): int(r) for i, r in rows}
