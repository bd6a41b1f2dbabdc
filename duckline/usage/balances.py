"""Granting allowances and rebuilding balances from the append-only ledger."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from duckline.catalog.models import Plan, PlanAllowance
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines.models import Line
from duckline.usage.models import Bucket, LedgerEntry


def grant_plan_allowances(
    uow: UnitOfWork, line: Line, plan: Plan, valid_from: datetime, valid_until: datetime, source: str, source_ref: str
) -> list[Bucket]:
    """One bucket per allowance of the plan, each with its grant in the ledger."""
    allowances = uow.session.scalars(select(PlanAllowance).where(PlanAllowance.plan_id == plan.id)).all()
    buckets = []
    for allowance in allowances:
        bucket = Bucket(
            line_id=line.id,
            unit=allowance.unit,
            zone=allowance.zone,
            initial=allowance.amount,
            remaining=allowance.amount,
            valid_from=valid_from,
            valid_until=valid_until,
            source=source,
            source_ref=source_ref,
            created_at=uow.now(),
        )
        uow.session.add(bucket)
        buckets.append(bucket)
    uow.session.flush()
    uow.session.add_all(
        LedgerEntry(
            line_id=line.id,
            bucket_id=b.id,
            unit=b.unit,
            zone=b.zone,
            delta=b.initial,
            reason="grant",
            created_at=uow.now(),
        )
        for b in buckets
    )
    return buckets


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
