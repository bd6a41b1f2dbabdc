"""The number pool: numbers the operator loads, handed out once each, safe under concurrency."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, insert, select, update

from duckline.accounts.models import Account
from duckline.accounts.phone import normalise_pool_number
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.lines.models import PoolNumber
from duckline.staff import audit


@dataclass(frozen=True)
class ImportResult:
    added: int
    already_present: int


def import_numbers(uow: UnitOfWork, raw_numbers: Iterable[str]) -> ImportResult:
    """Add numbers to the pool; any invalid number rejects the whole import (nothing changes)."""
    wanted = {normalise_pool_number(raw, uow.settings.default_region) for raw in raw_numbers if raw.strip()}
    present = set(uow.session.scalars(select(PoolNumber.msisdn).where(PoolNumber.msisdn.in_(wanted))).all())
    fresh = sorted(wanted - present)
    if fresh:
        uow.session.execute(
            insert(PoolNumber),
            [{"msisdn": n, "available": True, "created_at": uow.now()} for n in fresh],
        )
    return ImportResult(added=len(fresh), already_present=len(present))


def take_number(uow: UnitOfWork) -> str:
    """Take one available number. Two concurrent callers never get the same one: on PostgreSQL
    the row is locked and others skip it; SQLite serialises writers (BEGIN IMMEDIATE)."""
    row = uow.session.execute(
        select(PoolNumber.id, PoolNumber.msisdn)
        .where(PoolNumber.available.is_(True))
        .order_by(PoolNumber.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if row is None:
        raise DomainError(ErrorCode.NO_NUMBER_AVAILABLE)
    taken = cast(
        CursorResult[Any],
        uow.session.execute(
            update(PoolNumber)
            .where(PoolNumber.id == row.id, PoolNumber.available.is_(True))
            .values(available=False, allocated_at=uow.now())
        ),
    )
    if taken.rowcount != 1:  # belt and braces: the guard in WHERE makes a double take impossible
        raise DomainError(ErrorCode.NO_NUMBER_AVAILABLE)
    return str(row.msisdn)


def release_number(uow: UnitOfWork, msisdn: str) -> None:
    """Return a recycled line's number to the pool."""
    uow.session.execute(update(PoolNumber).where(PoolNumber.msisdn == msisdn).values(available=True, allocated_at=None))


def pool_summary(uow: UnitOfWork) -> dict[str, int]:
    rows = uow.session.execute(select(PoolNumber.available)).scalars().all()
    return {"available": sum(1 for r in rows if r), "allocated": sum(1 for r in rows if not r)}


# --- Flows: each owns its transaction ---------------------------------------------------------------


def import_into_pool(transactions: Transactions, actor: Account, raw_numbers: Iterable[str]) -> ImportResult:
    """Load numbers into the pool; an invalid one rejects the whole list. Audited."""
    with transactions() as uow:
        result = import_numbers(uow, raw_numbers)
        audit.record(uow, actor.id, "numbers.imported", "pool", added=result.added)
    return result


def pool(transactions: Transactions) -> dict[str, int]:
    with transactions() as uow:
        return pool_summary(uow)
