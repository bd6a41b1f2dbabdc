"""Receipts and credit notes: immutable, numbered without gaps per series, even under concurrency."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Update, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from duckline.billing.models import Order, Receipt, ReceiptCounter
from duckline.billing.order_states import ReceiptKind
from duckline.core.unit_of_work import UnitOfWork

RECEIPT, CREDIT_NOTE = ReceiptKind.RECEIPT, ReceiptKind.CREDIT_NOTE
_PREFIX = {RECEIPT: "R", CREDIT_NOTE: "CN"}


def next_number(uow: UnitOfWork, series: str) -> int:
    """Take the next number of a series. The counter row stays locked until the transaction
    ends, so concurrent issuers queue, and a rolled-back transaction gives its number back.
    Issuers take it as late as they can (fulfilment: its last statements), so the lock is short."""
    taken = uow.session.execute(_take(series)).scalar_one_or_none()
    if taken is None:  # the series' first number: make its counter (once; a racing issuer may too)
        insert = pg_insert if uow.session.bind.dialect.name == "postgresql" else sqlite_insert  # type: ignore[union-attr]
        uow.session.execute(
            insert(ReceiptCounter)
            .values(series=series, next_number=1)
            .on_conflict_do_nothing(index_elements=["series"])
        )
        taken = uow.session.execute(_take(series)).scalar_one()
    return int(taken) - 1


def _take(series: str) -> Update:
    return (
        update(ReceiptCounter)
        .where(ReceiptCounter.series == series)
        .values(next_number=ReceiptCounter.next_number + 1)
        .returning(ReceiptCounter.next_number)
    )


def issue(
    uow: UnitOfWork, kind: ReceiptKind, order: Order, amount: int, details: dict[str, Any], refund_id: int | None = None
) -> Receipt:
    year = uow.now().astimezone(ZoneInfo(uow.settings.display_timezone)).year
    series = f"{_PREFIX[kind]}{year}"
    number = next_number(uow, series)
    receipt = Receipt(
        series=series,
        number=number,
        display_number=f"{series}-{number:06d}",
        kind=kind,
        order_id=order.id,
        refund_id=refund_id,
        account_id=order.account_id,
        amount=amount,
        currency=order.currency,
        details=details,
        issued_at=uow.now(),
    )
    uow.session.add(receipt)
    uow.session.flush()
    issued_now(uow)[(order.id, kind)] = receipt
    return receipt


def issued_now(uow: UnitOfWork) -> dict[tuple[int, ReceiptKind], Receipt]:
    """The receipts this transaction issued, by order and kind: what shows the order after
    fulfilling it finds its receipt here rather than read it back."""
    found: dict[tuple[int, ReceiptKind], Receipt] = uow.session.info.setdefault("issued_receipts", {})
    return found
