"""What a provider says about a payment, applied in one place: payment state, order state,
fulfilment. Webhooks, return URLs, reconciliation and auto-renew all come through here."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from duckline.billing import fulfilment, orders, payment_labels, provider_refunds
from duckline.billing.models import Order, Payment, SavedPaymentMethod
from duckline.billing.order_states import OPEN_FOR_PAYMENT, OrderStatus, PaymentStatus, payment_can_become
from duckline.billing.providers import ProviderPayment, WebhookNotice
from duckline.catalog import promotions
from duckline.core.errors import DomainError
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines.models import Line
from duckline.messaging import events
from duckline.messaging.event_types import PaymentFailed
from duckline.support import case_texts
from duckline.support import cases as tickets


@dataclass(frozen=True)
class Outcome:
    order_status: OrderStatus
    payment_status: PaymentStatus
    changed: bool
    note: str


def apply(uow: UnitOfWork, payment_id: int, update: ProviderPayment | WebhookNotice, source: str) -> Outcome:
    """Bring the payment (and its order) to what the provider says. Safe to repeat: a stale or
    duplicate update changes nothing. Locks the order, then the payment — always in that order."""
    # Both rows locked in one statement, fresh even if this session had loaded them before
    # (PostgreSQL takes the row locks of a join in the order of its FROM list: order, payment).
    order, payment = uow.session.execute(
        select(Order, Payment)
        .join(Payment, Payment.order_id == Order.id)
        .where(Payment.id == payment_id)
        .with_for_update(of=(Order, Payment))
        .execution_options(populate_existing=True)
    ).one()
    _copy_details(payment, update)
    if payment.captured_at is not None and provider_refunds.reports_refund(update):
        return _refunded(uow, order, payment, update, source)  # money we hold went back
    target = update.status
    if target is payment.status or not payment_can_become(payment.status, target):
        return Outcome(order.status, payment.status, False, f"{source}: no change ({target.value})")

    if target is PaymentStatus.SUCCEEDED:
        captured = _captured(uow, order, payment, update, source)
        if payment.captured_at is not None and provider_refunds.reports_refund(update):
            # Captured and already partly refunded by the time we hear of it (a status query).
            refunded = _refunded(uow, order, payment, update, captured.note)
            return refunded if refunded.changed else captured
        return captured
    payment.status, payment.updated_at = target, uow.now()
    if target is PaymentStatus.FAILED:
        payment.failure_code = update.failure_code or payment.failure_code
        if order.status in (OrderStatus.CREATED, OrderStatus.PAYMENT_PENDING) and _is_latest(uow, order, payment):
            orders.move(uow, order, OrderStatus.FAILED, f"payment {payment.id} failed ({source})")
            events.emit(
                uow,
                PaymentFailed(
                    account_id=order.account_id,
                    order_id=order.id,
                    reason=payment.failure_code or "declined",
                    payment_id=payment.id,
                ),
            )
    elif target is PaymentStatus.REFUNDED:
        # A refund can arrive before the success it refunds (out of order): the money went
        # back, so the order is never applied; the late success is then stale and ignored.
        # (A refund of money already captured is recorded by _refunded, above.)
        payment.refunded_amount = max(payment.refunded_amount, update.refunded_amount or payment.amount)
        if order.status in OPEN_FOR_PAYMENT:
            orders.move(uow, order, OrderStatus.CANCELLED, f"payment {payment.id} refunded before capture")
    promotions.release_when_settled(uow, order)
    return Outcome(order.status, payment.status, True, f"{source}: {target.value}")


def _refunded(
    uow: UnitOfWork, order: Order, payment: Payment, update: ProviderPayment | WebhookNotice, source: str
) -> Outcome:
    amount = provider_refunds.record(uow, order, payment, update)
    if amount == 0:
        return Outcome(order.status, payment.status, False, f"{source}: refund already recorded")
    return Outcome(order.status, payment.status, True, f"{source}: {amount} refunded at the provider")


def _captured(
    uow: UnitOfWork, order: Order, payment: Payment, update: ProviderPayment | WebhookNotice, source: str
) -> Outcome:
    payment.captured_amount = update.amount or 0
    payment.captured_at = payment.updated_at = uow.now()
    if update.amount != payment.amount or (update.currency or payment.currency) != payment.currency:
        payment.status = PaymentStatus.FLAGGED
        tickets.open_case(
            uow,
            tickets.PAYMENT_MISMATCH,
            case_texts.AMOUNT_MISMATCH,
            {
                "payment": payment.id,
                "order": order.id,
                "provider": payment.provider,
                "expected": case_texts.money(payment.amount, payment.currency),
                "captured": case_texts.money(update.amount, update.currency or payment.currency),
            },
            order.account_id,
            order.id,
        )
        return Outcome(order.status, payment.status, True, f"{source}: amount mismatch, flagged")
    payment.status = PaymentStatus.SUCCEEDED
    if update.saved_token and order.auto_renew and payment_labels.is_card(payment.method):
        _save_method(uow, order, payment, update.saved_token, update.card_expiry)
    if order.status in (OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED):
        # A second attempt captured money for an order already paid: never apply it twice.
        tickets.open_case(
            uow,
            tickets.RECONCILIATION,
            case_texts.SECOND_CAPTURE,
            {"order": order.id, "payment": payment.id},
            order.account_id,
            order.id,
        )
        return Outcome(order.status, payment.status, True, f"{source}: duplicate capture, ticket opened")
    orders.move(uow, order, OrderStatus.PAID, f"payment {payment.id} captured ({source})")
    try:
        with uow.session.begin_nested():
            fulfilment.fulfil(uow, order, payment)
    except DomainError as error:
        # Paid but cannot be applied (e.g. the number was recycled meanwhile): support decides.
        tickets.open_case(
            uow,
            tickets.RECONCILIATION,
            case_texts.PAID_NOT_APPLIED,
            {"order": order.id, "reason": case_texts.error(error)},
            order.account_id,
            order.id,
        )
        return Outcome(order.status, payment.status, True, f"{source}: paid, not applied ({error.code})")
    return Outcome(order.status, payment.status, True, f"{source}: fulfilled")


def _copy_details(payment: Payment, update: ProviderPayment | WebhookNotice) -> None:
    # The create answer, or — for an attempt whose create answer was never recorded — whatever
    # found it by our reference (a webhook, a query), gives the provider's id and the payer's step.
    payment.provider_ref = payment.provider_ref or update.provider_ref or None
    if isinstance(update, ProviderPayment) and payment.next_action is None:
        payment.next_action = update.next_action
    # Card details for a card payment, the wallet's account for a wallet payment: a provider that
    # plays several methods (the sandbox) may report a card for a wallet, which the payer never chose.
    if payment_labels.is_card(payment.method):
        payment.card_brand = update.card_brand or payment.card_brand
        payment.card_last4 = update.card_last4 or payment.card_last4
    else:
        payment.wallet_account = update.wallet_account or payment.wallet_account


def _is_latest(uow: UnitOfWork, order: Order, payment: Payment) -> bool:
    latest = uow.session.scalar(select(Payment.id).where(Payment.order_id == order.id).order_by(Payment.id.desc()))
    return latest == payment.id


def _save_method(uow: UnitOfWork, order: Order, payment: Payment, token: str, expiry: str | None) -> None:
    saved = SavedPaymentMethod(
        account_id=order.account_id,
        provider=payment.provider,
        method=payment.method,
        token=token,
        card_brand=payment.card_brand,
        card_last4=payment.card_last4,
        card_expiry=expiry,
        created_at=uow.now(),
    )
    uow.session.add(saved)
    uow.session.flush()
    line = uow.session.get(Line, order.line_id)
    if line is not None:
        line.auto_renew, line.auto_renew_method_id = True, saved.id
    payment.saved_method_id = saved.id
