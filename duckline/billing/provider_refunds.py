"""Refunds made at the provider — from its dashboard, by its support — that Duckline learns of
from a notification or a status query. They are recorded as Duckline records its own: a refund
row, the order's state, a credit note, a full refund taking back what is still unused, the
subscriber told; and staff see a case, left open where something cannot be undone.

Money is never counted twice. A provider that reports the payment's total refunded so far
(Stripe, Alipay, the sandbox) has refunded something new only beyond what Duckline has recorded
plus what it is still waiting to hear about (pending refunds of its own), computed under the
order's lock; so Duckline's own refunds need no recognising, and a repeated or late notice, or a
query answer older than what is recorded, finds nothing new. A provider that reports refunds one
at a time (WeChat Pay) names each: Duckline's own by the reference Duckline gave it, the others
by the provider's id, recorded once per payment (a unique constraint).

A refund first gives back money the order did not need (a second capture, a capture of the wrong
amount); only what is beyond that refunds the order itself.
"""

from __future__ import annotations

import re

from sqlalchemy import func, or_, select

from duckline.billing import refunds
from duckline.billing.models import Order, Payment, Receipt, Refund
from duckline.billing.order_states import OrderStatus, PaymentStatus, RefundStatus, held_amount
from duckline.billing.providers import ProviderPayment, WebhookNotice
from duckline.core.unit_of_work import UnitOfWork
from duckline.messaging import events
from duckline.messaging.event_types import RenewalRefunded
from duckline.support import case_texts
from duckline.support import cases as tickets
from duckline.usage.models import Bucket

_OURS = re.compile(r"refund_(\d+)")  # the reference Duckline gives its own refunds (billing.refunds)


def reports_refund(update: ProviderPayment | WebhookNotice) -> bool:
    """Whether the provider says money of this payment went back."""
    one = update.refund_amount if isinstance(update, WebhookNotice) else None
    return update.status is PaymentStatus.REFUNDED or update.refunded_amount > 0 or bool(one)


def record(uow: UnitOfWork, order: Order, payment: Payment, update: ProviderPayment | WebhookNotice) -> int:
    """Record what the provider refunded that Duckline has not recorded yet; the caller holds the
    order's and the payment's row locks. Returns the amount recorded (0: nothing new)."""
    amount = _not_yet_recorded(uow, payment, update)
    if amount <= 0:
        return 0
    extra_before = held(uow, order)
    row = Refund(
        order_id=order.id,
        payment_id=payment.id,
        amount=amount,
        currency=payment.currency,
        reason=f"refunded at {case_texts.PROVIDER_NAMES.get(payment.provider, payment.provider)}",
        status=RefundStatus.SUCCEEDED,
        provider_ref=update.refund_id if isinstance(update, WebhookNotice) else None,
        actor_id=None,
        created_at=uow.now(),
    )
    uow.session.add(row)
    uow.session.flush()
    payment.refunded_amount += amount
    payment.updated_at = uow.now()
    if payment.refunded_amount >= payment.captured_amount:
        payment.status = PaymentStatus.REFUNDED
    for_order = 0
    if order.status in refunds.REFUNDABLE:
        for_order = min(max(0, amount - extra_before), order.total_amount - order.refunded_amount)
    note = _refund_order(uow, order, payment, row, for_order) if for_order > 0 else None
    if amount > for_order:
        _extra_given_back(uow, order, payment, amount - for_order)
    events.emit(
        uow,
        RenewalRefunded(
            account_id=order.account_id,
            order_id=order.id,
            amount=amount,
            currency=payment.currency,
            credit_note=note.display_number if note else "",
        ),
    )
    return amount


def held(uow: UnitOfWork, order: Order) -> int:
    """Money captured for the order beyond what it keeps (billing.order_states.held_amount)."""
    captures = uow.session.execute(
        select(Payment.captured_amount, Payment.refunded_amount).where(
            Payment.order_id == order.id, Payment.captured_at.is_not(None)
        )
    ).all()
    return held_amount(order.status, order.total_amount, order.refunded_amount, [(c, r) for c, r in captures])


def _not_yet_recorded(uow: UnitOfWork, payment: Payment, update: ProviderPayment | WebhookNotice) -> int:
    waiting = _pending(uow, payment)
    room = payment.captured_amount - payment.refunded_amount - waiting
    if isinstance(update, WebhookNotice) and update.refund_id is not None:  # one refund, named
        if _is_ours(uow, payment, update.refund_reference):
            return 0  # recorded by the request that asked for it
        seen = uow.session.scalar(
            select(Refund.id).where(Refund.payment_id == payment.id, Refund.provider_ref == update.refund_id)
        )
        amount = 0 if seen is not None else update.refund_amount or 0
    else:
        # The total so far; a payment reported refunded without an amount is refunded in full.
        # While a refund of ours is pending, a total that leaves it out (it was sent before the
        # provider made ours) is taken to include it: never counted twice, and any part left out
        # now is found by the next report, once ours is recorded (its own notice, a query).
        total = update.refunded_amount or (payment.captured_amount if update.status is PaymentStatus.REFUNDED else 0)
        amount = total - payment.refunded_amount - waiting
    return max(0, min(amount, room))


def _is_ours(uow: UnitOfWork, payment: Payment, reference: str | None) -> bool:
    found = _OURS.fullmatch(reference or "")
    if found is None:
        return False
    row = uow.session.get(Refund, int(found.group(1)))
    return (
        row is not None
        and row.payment_id == payment.id
        and row.status in (RefundStatus.PENDING, RefundStatus.SUCCEEDED)
    )


def _pending(uow: UnitOfWork, payment: Payment) -> int:
    return int(
        uow.session.scalar(
            select(func.coalesce(func.sum(Refund.amount), 0)).where(
                Refund.payment_id == payment.id, Refund.status == RefundStatus.PENDING
            )
        )
        or 0
    )


def _refund_order(uow: UnitOfWork, order: Order, payment: Payment, row: Refund, amount: int) -> Receipt:
    """As a refund through Duckline: state, credit note, a full refund takes back what is unused.
    Staff see a case: settled already when nothing is left to undo, open otherwise."""
    used = order.fulfilled_at is not None and _anything_used(uow, order)
    note = refunds.credit(uow, order, payment, row, amount, f"refund {row.id}: {row.reason}")
    if order.status is OrderStatus.REFUNDED:
        topic = case_texts.REFUNDED_AT_PROVIDER_AFTER_USE if used else case_texts.REFUNDED_AT_PROVIDER
        # Nothing is left to apply or refund for this order.
        tickets.settle_topics(
            uow, order.id, frozenset({case_texts.PAID_NOT_APPLIED}), case_texts.REFUNDED_AT_THE_PROVIDER
        )
    else:
        topic = case_texts.PARTLY_REFUNDED_AT_PROVIDER
    tickets.open_case(
        uow,
        tickets.RECONCILIATION,
        topic,
        {
            "order": order.id,
            "payment": payment.id,
            "provider": payment.provider,
            "amount": case_texts.money(amount, payment.currency),
            "credit_note": note.display_number,
        },
        order.account_id,
        order.id,
        resolution=case_texts.RECORDED_AUTOMATICALLY if topic == case_texts.REFUNDED_AT_PROVIDER else None,
    )
    return note


def _extra_given_back(uow: UnitOfWork, order: Order, payment: Payment, amount: int) -> None:
    """Money the order did not need went back: the case that asked for it is settled once none is left."""
    if held(uow, order) == 0:
        tickets.settle_topics(
            uow,
            order.id,
            frozenset({case_texts.SECOND_CAPTURE, case_texts.AMOUNT_MISMATCH}),
            case_texts.REFUNDED_AT_THE_PROVIDER,
        )
    tickets.open_case(
        uow,
        tickets.RECONCILIATION,
        case_texts.EXTRA_REFUNDED_AT_PROVIDER,
        {
            "order": order.id,
            "payment": payment.id,
            "provider": payment.provider,
            "amount": case_texts.money(amount, payment.currency),
        },
        order.account_id,
        order.id,
        resolution=case_texts.RECORDED_AUTOMATICALLY,
    )


def _anything_used(uow: UnitOfWork, order: Order) -> bool:
    """Whether the subscriber used any of what the order granted (a refund cannot take that back)."""
    used = uow.session.scalar(
        select(Bucket.id)
        .where(
            Bucket.line_id == order.line_id,
            # order:42 and its bonuses order:42:promotion:…, never order:420 (as fulfilment voids them)
            or_(Bucket.source_ref == f"order:{order.id}", Bucket.source_ref.like(f"order:{order.id}:%")),
            Bucket.remaining < Bucket.initial,
        )
        .limit(1)
    )
    return used is not None
