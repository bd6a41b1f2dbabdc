"""Refunds: back to the original payment method through its provider, with a credit note."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select

from duckline.accounts.models import Account
from duckline.billing import fulfilment, orders, payment_labels, receipts
from duckline.billing.models import Order, Payment, Receipt, Refund
from duckline.billing.order_states import OrderStatus, PaymentStatus, RefundStatus
from duckline.billing.providers import ProviderError, RefundResult
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.money import Money
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines.models import Line
from duckline.messaging import events
from duckline.messaging.event_types import RenewalRefunded
from duckline.staff import audit

if TYPE_CHECKING:  # checkout → payments → provider_refunds → refunds: no import cycle at run time
    from duckline.billing.checkout import App

REFUNDABLE = (OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED)


def refund(app: App, actor_id: int | None, order_id: int, amount: int | None, reason: str) -> Refund:
    """Refund `amount` (default: all that is left) of an order. The amount is reserved in a first
    transaction, so two staff refunding at once cannot refund more than was paid."""
    if not reason.strip():
        raise DomainError(ErrorCode.REASON_REQUIRED, field="reason")
    with app.unit_of_work() as uow:
        order = uow.session.get(Order, order_id, with_for_update=True)
        if order is None:
            raise DomainError(ErrorCode.NOT_FOUND)
        if order.status not in REFUNDABLE:
            raise DomainError(ErrorCode.REFUND_NOT_ALLOWED, reason=f"the order is {order.status.value}")
        payment = uow.session.scalars(
            select(Payment)
            .where(Payment.order_id == order.id, Payment.status == PaymentStatus.SUCCEEDED)
            .order_by(Payment.id)
        ).first()
        if payment is None:
            raise DomainError(ErrorCode.REFUND_NOT_ALLOWED, reason="no captured payment")
        left = order.total_amount - order.refunded_amount - _pending(uow, order.id)
        amount = left if amount is None else amount
        if not 0 < amount <= left:
            raise DomainError(ErrorCode.REFUND_AMOUNT_INVALID, field="amount", max=left)
        refund_id = _reserve(uow, payment, amount, reason, actor_id)
    answer = _ask_provider(app, refund_id)
    with app.unit_of_work() as uow:
        return _record(uow, refund_id, answer.provider_ref, answer.succeeded)


def _reserve(uow: UnitOfWork, payment: Payment, amount: int, reason: str, actor_id: int | None) -> int:
    """A pending refund row: it holds the amount while the provider is asked (outside any transaction)."""
    row = Refund(
        order_id=payment.order_id,
        payment_id=payment.id,
        amount=amount,
        currency=payment.currency,
        reason=reason.strip()[:300],
        status=RefundStatus.PENDING,
        actor_id=actor_id,
        created_at=uow.now(),
    )
    uow.session.add(row)
    uow.session.flush()
    return row.id


def _ask_provider(app: App, refund_id: int) -> RefundResult:
    with app.unit_of_work() as uow:
        row = uow.session.get(Refund, refund_id)
        payment = uow.session.get(Payment, row.payment_id) if row else None
        assert row is not None and payment is not None
        provider, ref, amount, reason = (
            payment.provider,
            payment.provider_ref,
            Money(row.amount, row.currency),
            row.reason,
        )
    try:
        return app.payments.by_name(provider).refund(ref or "", amount, f"refund_{refund_id}", reason)
    except ProviderError as exc:
        with app.unit_of_work() as uow:
            failed = uow.session.get(Refund, refund_id)
            assert failed is not None
            failed.status = RefundStatus.FAILED
        raise DomainError(ErrorCode.PAYMENT_PROVIDER_ERROR) from exc


def _pending(uow: UnitOfWork, order_id: int) -> int:
    return int(
        uow.session.scalar(
            select(func.coalesce(func.sum(Refund.amount), 0)).where(
                Refund.order_id == order_id, Refund.status == RefundStatus.PENDING
            )
        )
        or 0
    )


def _record(uow: UnitOfWork, refund_id: int, provider_ref: str, succeeded: bool) -> Refund:
    row = uow.session.get(Refund, refund_id)
    assert row is not None
    order = uow.session.get(Order, row.order_id, with_for_update=True)
    payment = uow.session.get(Payment, row.payment_id, with_for_update=True)
    assert order is not None and payment is not None
    row.provider_ref = provider_ref
    if not succeeded:
        row.status = RefundStatus.FAILED
        return row
    row.status = RefundStatus.SUCCEEDED
    payment.refunded_amount += row.amount
    if payment.refunded_amount >= payment.captured_amount:
        payment.status = PaymentStatus.REFUNDED
    note = credit(uow, order, payment, row, row.amount, f"refund {row.id}: {row.reason}")
    events.emit(
        uow,
        RenewalRefunded(
            account_id=order.account_id,
            order_id=order.id,
            amount=row.amount,
            currency=row.currency,
            credit_note=note.display_number,
        ),
    )
    if row.actor_id is not None:
        audit.record(
            uow,
            row.actor_id,
            "order.refunded",
            f"order:{order.id}",
            amount=audit.money(row.amount, row.currency),
            reason=row.reason,
        )
    return row


def credit(uow: UnitOfWork, order: Order, payment: Payment, row: Refund, amount: int, why: str) -> Receipt:
    """`amount` of the order's price given back by the refund `row` (through Duckline or at the
    provider): the order's state, what a full refund takes back while unused, a credit note."""
    order.refunded_amount += amount
    full = order.refunded_amount >= order.total_amount
    orders.move(uow, order, OrderStatus.REFUNDED if full else OrderStatus.PARTIALLY_REFUNDED, why, row.actor_id)
    if full and order.fulfilled_at is not None:  # also when refunded in several parts
        fulfilment.void_order_buckets(uow, order)
    original = uow.session.scalars(
        select(Receipt).where(Receipt.order_id == order.id, Receipt.kind == receipts.RECEIPT)
    ).first()
    return receipts.issue(
        uow,
        receipts.CREDIT_NOTE,
        order,
        amount,
        {
            "refund_of": original.display_number if original else None,
            "msisdn": _msisdn(uow, order, original),
            "reason": row.reason,
            "payment": payment_labels.label(payment),
            "plan_names": order.quote["plan_names"],
        },
        refund_id=row.id,
    )


def _msisdn(uow: UnitOfWork, order: Order, original: Receipt | None) -> str | None:
    """The number the refunded order was for: as its receipt has it (the line may have been given
    another number since), else the line's."""
    if original is not None and original.details.get("msisdn"):
        return str(original.details["msisdn"])
    line = uow.session.get(Line, order.line_id)
    return line.msisdn if line is not None else None


def staff_refund(app: App, actor: Account, order_id: int, amount: int | None, reason: str) -> Refund:
    return refund(app, actor.id, order_id, amount, reason)


def stray_payment(uow: UnitOfWork, order_id: int) -> int | None:
    """Money captured that the order does not account for: a flagged payment (wrong amount) or
    a second capture for an order another payment already paid."""
    captured = uow.session.scalars(
        select(Payment)
        .where(
            Payment.order_id == order_id,
            Payment.status.in_((PaymentStatus.FLAGGED, PaymentStatus.SUCCEEDED)),
        )
        .order_by(Payment.id)
    ).all()
    flagged = [p for p in captured if p.status is PaymentStatus.FLAGGED]
    if flagged:
        return flagged[0].id
    extra = [p for p in captured if p.status is PaymentStatus.SUCCEEDED][1:]
    return extra[0].id if extra else None


def refund_payment(app: App, actor_id: int | None, payment_id: int, reason: str) -> Refund:
    """Refund one captured payment in full, outside the order's own accounting."""
    with app.unit_of_work() as uow:
        payment = uow.session.get(Payment, payment_id, with_for_update=True)
        if payment is None or payment.captured_amount - payment.refunded_amount <= 0:
            raise DomainError(ErrorCode.REFUND_NOT_ALLOWED, reason="nothing left to refund")
        amount = payment.captured_amount - payment.refunded_amount
        refund_id, currency = _reserve(uow, payment, amount, reason, actor_id), payment.currency
    answer = _ask_provider(app, refund_id)
    with app.unit_of_work() as uow:
        recorded = uow.session.get(Refund, refund_id)
        payment = uow.session.get(Payment, payment_id, with_for_update=True)
        assert recorded is not None and payment is not None
        recorded.provider_ref = answer.provider_ref
        recorded.status = RefundStatus.SUCCEEDED if answer.succeeded else RefundStatus.FAILED
        if answer.succeeded:
            payment.refunded_amount += amount
            payment.status = PaymentStatus.REFUNDED
            order = uow.session.get(Order, payment.order_id)
            events.emit(
                uow,
                RenewalRefunded(
                    account_id=order.account_id if order else None,
                    order_id=payment.order_id,
                    amount=amount,
                    currency=currency,
                    credit_note="",
                ),
            )
            if actor_id is not None:
                audit.record(
                    uow,
                    actor_id,
                    "payment.refunded",
                    f"payment:{payment.id}",
                    amount=audit.money(amount, currency),
                    reason=reason,
                )
        return recorded
