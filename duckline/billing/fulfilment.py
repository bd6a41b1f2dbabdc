"""Applying a paid order: balances, expiry, line status, receipt — all in one transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select

from duckline.accounts.models import Account
from duckline.billing import orders, payment_labels, receipts
from duckline.billing.models import Order, Payment
from duckline.billing.order_states import OrderKind, OrderStatus, PaymentStatus
from duckline.billing.renewal import next_term
from duckline.catalog import promotions
from duckline.catalog.models import Plan
from duckline.catalog.rules import Unit, Validity, Zone
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines import service as lines
from duckline.lines.models import Line
from duckline.lines.states import LineStatus
from duckline.messaging import events
from duckline.messaging.event_types import RenewalSucceeded
from duckline.usage import balances
from duckline.usage.models import Bucket, LedgerEntry


def fulfil(uow: UnitOfWork, order: Order) -> None:
    """Paid → fulfilled, exactly once: the caller holds the order's row lock, so a second
    confirmation (webhook and return URL together) finds it fulfilled and does nothing."""
    if order.status is not OrderStatus.PAID:
        return
    line = uow.session.get(Line, order.line_id, with_for_update=True)
    # Money that arrived for an order that had stopped counting (declined, then paid after all)
    # is applied only within the month's cap; promotions.confirm below likewise re-takes a given-
    # back use only if it is still free. Otherwise DomainError: the money goes back.
    orders.check_month_at_capture(uow, order)
    plan = uow.session.get(Plan, order.plan_id)
    assert line is not None and plan is not None
    now = uow.now()
    kind = OrderKind(order.kind)
    term = next_term(
        kind,
        line.status,
        line.expires_at,
        now,
        Validity(plan.validity_days, plan.validity_months),
        uow.settings.display_timezone,
    )
    source = "addon" if kind is OrderKind.ADDON else "plan"
    balances.grant_plan_allowances(uow, line, plan, term.start, term.end, source, f"order:{order.id}")
    for bonus in order.quote.get("bonuses", []):
        _grant_bonus(uow, line, bonus, term.start, term.end, order.id)
    if kind is not OrderKind.ADDON:
        if term.reactivates:
            reason = f"order {order.id}"
            if line.status is LineStatus.PENDING:
                lines.transition(uow, line, LineStatus.ACTIVE, f"activated by {reason}")
            else:
                lines.transition(uow, line, LineStatus.ACTIVE, f"renewed by {reason}")
            line.period_start = term.start
        line.plan_id, line.expires_at = plan.id, term.end
    promotions.confirm(uow, order)
    order.period_start, order.period_end, order.fulfilled_at = term.start, term.end, now
    orders.move(uow, order, OrderStatus.FULFILLED, "renewal applied")
    details = _receipt_details(uow, order, line)
    # Read before the receipt number is taken (events.emit finds it in the session, which holds
    # it only while it is referenced): the counter row stays locked to the commit, so as little
    # as possible comes after it.
    account = uow.session.get(Account, order.account_id)
    uow.session.flush()
    receipt = receipts.issue(uow, receipts.RECEIPT, order, order.total_amount, details)
    events.emit(
        uow,
        RenewalSucceeded(
            account_id=order.account_id,
            order_id=order.id,
            receipt=receipt.display_number,
            kind=order.kind.value,
            msisdn=line.msisdn,
            plan=plan.code,
            amount=order.total_amount,
            currency=order.currency,
            expires_at=line.expires_at.isoformat() if line.expires_at else None,
        ),
    )
    del account  # kept in the identity map up to here


def _grant_bonus(
    uow: UnitOfWork, line: Line, bonus: dict[str, object], start: datetime, end: datetime, order_id: int
) -> None:
    amount = int(str(bonus["amount"]))
    bucket = Bucket(
        line_id=line.id,
        unit=Unit(str(bonus["unit"])),
        zone=Zone(str(bonus["zone"])),
        initial=amount,
        remaining=amount,
        valid_from=start,
        valid_until=end,
        source="promotion",
        source_ref=f"order:{order_id}:promotion:{bonus['promotion_id']}",
        created_at=uow.now(),
    )
    uow.session.add(bucket)
    uow.session.flush()
    uow.session.add(
        LedgerEntry(
            line_id=line.id,
            bucket_id=bucket.id,
            unit=bucket.unit,
            zone=bucket.zone,
            delta=amount,
            reason="grant",
            created_at=uow.now(),
        )
    )


def _receipt_details(uow: UnitOfWork, order: Order, line: Line) -> dict[str, object]:
    payment = uow.session.scalars(
        select(Payment)
        .where(Payment.order_id == order.id, Payment.status == PaymentStatus.SUCCEEDED)
        .order_by(Payment.id)
    ).first()
    return {
        "msisdn": line.msisdn,
        "plan_code": order.quote["plan_code"],
        "plan_names": order.quote["plan_names"],
        "kind": order.kind.value,
        "period_start": order.period_start.isoformat() if order.period_start else None,
        "period_end": order.period_end.isoformat() if order.period_end else None,
        "list_amount": order.list_amount,
        "adjustments": order.quote.get("adjustments", []),
        "bonuses": order.quote.get("bonuses", []),
        "total": order.total_amount,
        "payment": payment_labels.label(payment),
    }


def void_order_buckets(uow: UnitOfWork, order: Order) -> int:
    """A fully refunded renewal takes back what it granted and is still unused (ledger entries)."""
    buckets = uow.session.scalars(
        select(Bucket)
        .where(
            Bucket.line_id == order.line_id,
            # order:42 and its bonuses order:42:promotion:…, never order:420
            or_(Bucket.source_ref == f"order:{order.id}", Bucket.source_ref.like(f"order:{order.id}:%")),
            Bucket.remaining > 0,
        )
        .with_for_update()
    ).all()
    for bucket in buckets:
        uow.session.add(
            LedgerEntry(
                line_id=bucket.line_id,
                bucket_id=bucket.id,
                unit=bucket.unit,
                zone=bucket.zone,
                delta=-bucket.remaining,
                reason="refund",
                created_at=uow.now(),
            )
        )
        bucket.remaining = 0
    return len(buckets)
