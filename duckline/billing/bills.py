"""A subscriber's bills: orders, receipts and credit notes, refunds, spending per month.

Flows for the portal's bills page and the API's bills routes: each owns its transaction and
returns what it read, loaded before commit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select

from duckline.accounts.models import Account
from duckline.accounts.roles import may_see
from duckline.billing import receipt_documents
from duckline.billing.models import Order, Receipt, Refund
from duckline.billing.order_states import OrderStatus
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.pagination import page
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db.types import is_id
from duckline.lines.models import Line

PAID = (OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED, OrderStatus.PAID)
SHOWN = 100  # the newest of each kind on the bills page


@dataclass(frozen=True)
class MonthSpend:
    month: str  # YYYY-MM, Hong Kong calendar
    currency: str
    paid: int
    refunded: int
    net: int


@dataclass(frozen=True)
class Bills:
    orders: tuple[tuple[Order, str], ...]  # each with its line's number
    receipts: tuple[Receipt, ...]
    refunds: tuple[Refund, ...]


@dataclass(frozen=True)
class ReceiptFile:
    name: str
    pdf: bytes


def bills(transactions: Transactions, viewer: Account) -> Bills:
    """The viewer's newest orders, receipts and credit notes, and refunds."""
    with transactions() as uow:
        order_rows = uow.session.execute(
            select(Order, Line.msisdn)
            .join(Line, Line.id == Order.line_id)
            .where(Order.account_id == viewer.id)
            .order_by(Order.id.desc())
            .limit(SHOWN)
        ).all()
        receipts = uow.session.scalars(
            select(Receipt).where(Receipt.account_id == viewer.id).order_by(Receipt.id.desc()).limit(SHOWN)
        ).all()
        refunds = uow.session.scalars(
            select(Refund)
            .join(Order, Order.id == Refund.order_id)
            .where(Order.account_id == viewer.id)
            .order_by(Refund.id.desc())
            .limit(SHOWN)
        ).all()
        return Bills(tuple((o, msisdn) for o, msisdn in order_rows), tuple(receipts), tuple(refunds))


def spending_by_month(transactions: Transactions, viewer: Account, timezone: str) -> list[MonthSpend]:
    """Paid, refunded and net per month (in `timezone`'s calendar), newest first."""
    tz = ZoneInfo(timezone)
    with transactions() as uow:
        rows = uow.session.scalars(select(Order).where(Order.account_id == viewer.id, Order.status.in_(PAID))).all()
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for order in rows:
        key = (order.created_at.astimezone(tz).strftime("%Y-%m"), order.currency)
        totals[key][0] += order.total_amount
        totals[key][1] += order.refunded_amount
    return [
        MonthSpend(month=m, currency=c, paid=p, refunded=r, net=p - r)
        for (m, c), (p, r) in sorted(totals.items(), reverse=True)
    ]


def receipt_page(
    transactions: Transactions, viewer: Account, cursor: str | None, limit: int
) -> tuple[list[Receipt], str | None]:
    """The viewer's receipts and credit notes, newest first, a page at a time."""
    with transactions() as uow:
        query = select(Receipt).where(Receipt.account_id == viewer.id)
        return page(uow.session, query, Receipt.id, cursor, limit)


def _visible_receipt(uow: UnitOfWork, viewer: Account, receipt_id: int) -> Receipt:
    receipt = uow.session.get(Receipt, receipt_id) if is_id(receipt_id) else None
    if receipt is None or not may_see(viewer.role, viewer.id, receipt.account_id):
        raise DomainError(ErrorCode.NOT_FOUND)
    return receipt


def receipt(transactions: Transactions, viewer: Account, receipt_id: int) -> Receipt:
    """A receipt or credit note: the viewer's own, or any for staff."""
    with transactions() as uow:
        return _visible_receipt(uow, viewer, receipt_id)


def receipt_file(transactions: Transactions, viewer: Account, receipt_id: int, language: str) -> ReceiptFile:
    """As `receipt`, as PDF in `language`."""
    with transactions() as uow:
        found = _visible_receipt(uow, viewer, receipt_id)
        return ReceiptFile(found.display_number, receipt_documents.pdf(uow, found, language))


def own_receipt_pdf(transactions: Transactions, viewer: Account, receipt_id: int, language: str) -> ReceiptFile:
    """One of the viewer's own receipts or credit notes as PDF; anyone else's is not found."""
    with transactions() as uow:
        receipt = uow.session.get(Receipt, receipt_id) if is_id(receipt_id) else None
        if receipt is None or receipt.account_id != viewer.id:
            raise DomainError(ErrorCode.NOT_FOUND)
        return ReceiptFile(receipt.display_number, receipt_documents.pdf(uow, receipt, language))


__all__ = [
    "PAID",
    "Bills",
    "MonthSpend",
    "ReceiptFile",
    "bills",
    "own_receipt_pdf",
    "receipt",
    "receipt_file",
    "receipt_page",
    "spending_by_month",
]
