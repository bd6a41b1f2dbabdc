"""Applying a paid order: balances, expiry, line status, receipt — all in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select

from duckline.accounts.models import Account
from duckline.billing import orders, payment_labels, receipts
from duckline.billing.models import Order, Payment, Receipt
from duckline.billing.order_states import OrderKind, OrderStatus, PaymentStatus
from duckline.billing.renewal import next_term
from duckline.catalog import promotions
from duckline.catalog import service as catalog
from duckline.catalog.models import Plan
from duckline.catalog.rules import Allowance, Unit, Validity, Zone
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines import service as lines
from duckline.lines.models import Line
from duckline.lines.states import LineStatus
from duckline.messaging import events
from duckline.messaging.event_types import RenewalSucceeded
from duckline.usage import balances
from duckline.usage.models import Bucket, LedgerEntry


def fulfil(uow: UnitOfWork, order: Order, paid_with: Payment | None = None) -> Receipt | None:
    """Paid → fulfilled, exactly once: the caller holds the order's row lock, so a second
    confirmation (webhook and return URL together) finds it fulfilled and does nothing.
    `paid_with`: the payment that captured, when the caller holds it (else it is read).
    Returns the receipt issued (None if the order was not PAID)."""
    if order.status is not OrderStatus.PAID:
        return None
    # The line locked, and its account read, in one statement: the message (events.emit) finds
    # the account in the session, which holds it while it is referenced (here, to the end).
    line, _account = uow.session.execute(
        select(Line, Account)
        .join(Account, Account.id == Line.account_id)
        .where(Line.id == order.line_id)
        .with_for_update(of=Line)
        .execution_options(populate_existing=True)
    ).one()
    # Money that arrived for an order that had stopped counting (declined, then paid after all)
    # is applied only within the month's cap; promotions.confirm below likewise re-takes a given-
    # back use only if it is still free. Otherwise DomainError: the money goes back.
    orders.check_month_at_capture(uow, order)
    sold = _sold(uow, order)
    now = uow.now()
    kind = OrderKind(order.kind)
    term = next_term(kind, line.status, line.expires_at, now, sold.validity, uow.settings.display_timezone)
    source, ref = ("addon" if kind is OrderKind.ADDON else "plan"), f"order:{order.id}"
    grants = [balances.Grant(a.unit, a.zone, a.amount, source, ref) for a in sold.allowances]
    grants += [
        balances.Grant(
            Unit(str(b["unit"])),
            Zone(str(b["zone"])),
            int(str(b["amount"])),
            "promotion",
            f"{ref}:promotion:{b['promotion_id']}",
        )
        for b in order.quote.get("bonuses", [])
    ]
    balances.grant(uow, line.id, grants, term.start, term.end)
    if kind is not OrderKind.ADDON:
        if term.reactivates:
            reason = f"order {order.id}"
            if line.status is LineStatus.PENDING:
                lines.transition(uow, line, LineStatus.ACTIVE, f"activated by {reason}")
            else:
                lines.transition(uow, line, LineStatus.ACTIVE, f"renewed by {reason}")
            line.period_start = term.start
        line.plan_id, line.expires_at = order.plan_id, term.end
    promotions.confirm(uow, order)
    order.period_start, order.period_end, order.fulfilled_at = term.start, term.end, now
    orders.move(uow, order, OrderStatus.FULFILLED, "renewal applied")
    details = _receipt_details(uow, order, line, paid_with)
    uow.session.flush()
    # The counter row stays locked to the commit: as little as possible comes after it.
    receipt = receipts.issue(uow, receipts.RECEIPT, order, order.total_amount, details)
    events.emit(
        uow,
        RenewalSucceeded(
            account_id=order.account_id,
            order_id=order.id,
            receipt=receipt.display_number,
            kind=order.kind.value,
            msisdn=line.msisdn,
            plan=sold.plan_code,
            amount=order.total_amount,
            currency=order.currency,
            expires_at=line.expires_at.isoformat() if line.expires_at else None,
        ),
    )
    return receipt


@dataclass(frozen=True)
class _Sold:
    plan_code: str
    validity: Validity
    allowances: list[Allowance]


def _sold(uow: UnitOfWork, order: Order) -> _Sold:
    """What the order bought, from its quote; an order from before the quote kept allowances and
    validity reads them from its plan."""
    quote = order.quote
    if "allowances" in quote and "validity" in quote:
        return _Sold(
            str(quote["plan_code"]),
            Validity(int(quote["validity"]["days"]), int(quote["validity"]["months"])),
            [Allowance(Unit(a["unit"]), Zone(a["zone"]), int(a["amount"])) for a in quote["allowances"]],
        )
    plan = uow.session.get(Plan, order.plan_id)
    assert plan is not None
    return _Sold(
        plan.code,
        Validity(plan.validity_days, plan.validity_months),
        catalog.allowances_of(uow, [plan.id])[plan.id],
    )


def _receipt_details(uow: UnitOfWork, order: Order, line: Line, paid_with: Payment | None) -> dict[str, object]:
    payment = (
        paid_with
        or uow.session.scalars(
            select(Payment)
            .where(Payment.order_id == order.id, Payment.status == PaymentStatus.SUCCEEDED)
            .order_by(Payment.id)
        ).first()
    )
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
