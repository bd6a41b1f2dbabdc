"""Reports for staff: what was earned, by day, plan or payment method."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from duckline.billing.models import Order, Payment
from duckline.billing.order_states import PAID_FOR, held_amount
from duckline.catalog.models import Plan
from duckline.core.unit_of_work import Transactions, UnitOfWork


def revenue_between(
    transactions: Transactions, by: str, start: datetime, end: datetime, tz: ZoneInfo
) -> list[dict[str, object]]:
    """`revenue` in a transaction of its own (the staff report's flow)."""
    with transactions() as uow:
        return revenue(uow, by, start, end, tz)


def revenue(uow: UnitOfWork, by: str, start: datetime, end: datetime, tz: ZoneInfo) -> list[dict[str, object]]:
    """Per day (of the order, in `tz`), plan or payment method, for orders made in [start, end) that
    took money: `orders` counted once each however many payments they took, `gross` their price,
    `refunded` what their refunds gave back, `net` the difference — the revenue. Apart from it:
    `captured`, all the providers captured for them, and `held`, what was captured beyond an
    order's price (a second capture, a wrong amount) and not yet refunded: the subscriber's money."""
    paid = uow.session.execute(
        select(Order, Plan.code)
        .join(Plan, Plan.id == Order.plan_id)
        .where(
            Order.created_at >= start,
            Order.created_at < end,
            Order.id.in_(select(Payment.order_id).where(Payment.captured_at.is_not(None))),
        )
    ).all()
    captures: dict[int, list[Payment]] = defaultdict(list)
    if paid:
        for payment in uow.session.scalars(
            select(Payment)
            .where(Payment.order_id.in_([order.id for order, _ in paid]), Payment.captured_at.is_not(None))
            .order_by(Payment.captured_at, Payment.id)
        ):
            captures[payment.order_id].append(payment)
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for order, plan_code in paid:
        taken = captures[order.id]
        # The method is the one of the payment that paid the order: the first captured.
        key = {
            "day": order.created_at.astimezone(tz).date().isoformat(),
            "plan": plan_code,
            "method": taken[0].method.value,
        }[by]
        row = totals[(key, order.currency)]
        if order.status in PAID_FOR:
            row[0] += 1
            row[1] += order.total_amount
            row[2] += order.refunded_amount
        row[3] += sum(p.captured_amount for p in taken)
        row[4] += held_amount(
            order.status,
            order.total_amount,
            order.refunded_amount,
            [(p.captured_amount, p.refunded_amount) for p in taken],
        )
    return [
        {by: key, "currency": currency, "orders": n, "gross": g, "refunded": r, "net": g - r, "captured": c, "held": h}
        for (key, currency), (n, g, r, c, h) in sorted(totals.items())
    ]
