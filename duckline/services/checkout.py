"""Paying for an order: the steps that talk to a payment provider.

No provider is ever called inside a database transaction (a slow provider must not hold row
locks). Each step is: a short transaction that records the intent, the call, a short
transaction that records the answer. Every step can be repeated: the provider call is
idempotent on our payment reference, and the answer is applied through `payments.apply`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from duckline.adapters.db.tables import Account, Order, Payment, SavedPaymentMethod, WebhookEvent
from duckline.adapters.payments import InvalidSignature, PaymentRequest, ProviderError, WebhookAck
from duckline.adapters.payments.gateway import Payments
from duckline.config import Settings
from duckline.domain.orders import OPEN_FOR_PAYMENT, OrderStatus, PaymentMethod, PaymentStatus
from duckline.errors import DomainError, ErrorCode
from duckline.money import Money
from duckline.services import events, fulfilment, orders, payments, promotions
from duckline.services.unit_of_work import UnitOfWork


class App(Protocol):
    settings: Settings
    payments: Payments

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]: ...


@dataclass(frozen=True)
class Checkout:
    order_id: int
    payment_id: int | None
    created: bool


def place_order(app: App, account_id: int, form: orders.OrderForm, language: str, return_url: str) -> Checkout:
    """Create the order (or find the one this idempotency key made) and start paying for it."""
    with app.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        assert account is not None
        order, created = orders.create(uow, account, form, language)
        if not created:
            latest = _latest_payment(uow, order)
            if latest is None or latest.provider_ref is not None:
                return Checkout(order.id, latest.id if latest else None, False)
            payment_id = latest.id  # the earlier request stopped before reaching the provider
        elif order.total_amount == 0:
            orders.move(uow, order, OrderStatus.PAID, "nothing to pay (fully discounted)")
            fulfilment.fulfil(uow, order)
            return Checkout(order.id, None, True)
        else:
            payment_id = new_attempt(uow, app.payments, order, form.payment_method).id
    start_attempt(app, payment_id, return_url, language)
    return Checkout(order.id, payment_id, created)


def new_attempt(
    uow: UnitOfWork, gateway: Payments, order: Order, method: PaymentMethod, saved: SavedPaymentMethod | None = None
) -> Payment:
    if order.status not in OPEN_FOR_PAYMENT:
        raise DomainError(ErrorCode.ORDER_NOT_PAYABLE)
    provider = saved.provider if saved else gateway.provider_name(method)
    promotions.ensure_reserved(uow, order)
    now = uow.now()
    payment = Payment(
        order_id=order.id,
        provider=provider,
        method=method,
        status=PaymentStatus.PENDING,
        amount=order.total_amount,
        currency=order.currency,
        captured_amount=0,
        refunded_amount=0,
        saved_method_id=saved.id if saved else None,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(payment)
    uow.session.flush()
    if order.status is not OrderStatus.PAYMENT_PENDING:
        orders.move(uow, order, OrderStatus.PAYMENT_PENDING, f"payment {payment.id} started with {provider}")
    order.payment_method = method
    return payment


def start_attempt(app: App, payment_id: int, return_url: str, language: str = "en") -> None:
    with app.unit_of_work() as uow:
        payment = uow.session.get(Payment, payment_id)
        assert payment is not None
        order = uow.session.get(Order, payment.order_id)
        assert order is not None
        saved = uow.session.get(SavedPaymentMethod, payment.saved_method_id) if payment.saved_method_id else None
        request = PaymentRequest(
            reference=f"pay_{payment.id:010d}",
            amount=Money(payment.amount, payment.currency),
            description=f"Duckline order {order.id}: {order.quote['plan_names'].get('en', order.quote['plan_code'])}",
            method=payment.method,
            return_url=return_url.format(payment_id=payment.id),
            notify_url=f"{app.settings.base_url}/api/v1/webhooks/{payment.provider}",
            language=language,
            saved_token=saved.token if saved else None,
            save_method=order.auto_renew and saved is None,
        )
    provider = app.payments.by_name(payment.provider)
    try:
        answer = provider.create_payment(request)
    except ProviderError as exc:
        with app.unit_of_work() as uow:
            _provider_down(uow, payment_id)
        raise DomainError(ErrorCode.PAYMENT_PROVIDER_ERROR) from exc
    with app.unit_of_work() as uow:
        payment = uow.session.get(Payment, payment_id)
        assert payment is not None
        payment.provider_ref, payment.next_action = answer.provider_ref, answer.next_action
        payments.apply(uow, payment.id, answer, "create")


def _provider_down(uow: UnitOfWork, payment_id: int) -> None:
    payment = uow.session.get(Payment, payment_id)
    order = uow.session.get(Order, payment.order_id, with_for_update=True) if payment else None
    if payment is None or order is None or payment.status is not PaymentStatus.PENDING:
        return
    payment.status, payment.failure_code = PaymentStatus.FAILED, "provider_unavailable"
    payment.updated_at = uow.now()
    if order.status is OrderStatus.PAYMENT_PENDING:
        orders.move(uow, order, OrderStatus.FAILED, f"provider {payment.provider} unavailable")
        promotions.release(uow, order)
        events.raise_event(
            uow, events.PAYMENT_FAILED, order.account_id, order.id, reason="provider_unavailable", payment_id=payment.id
        )


def retry(app: App, account_id: int, order_id: int, method: PaymentMethod, language: str, return_url: str) -> int:
    """A new payment attempt for an order whose last one failed (or is still open)."""
    with app.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        assert account is not None
        order = orders.visible_order(uow, account, order_id, lock=True)
        payment_id = new_attempt(uow, app.payments, order, method).id
    start_attempt(app, payment_id, return_url, language)
    return payment_id


def refresh(app: App, payment_id: int) -> payments.Outcome | None:
    """Ask the provider where a payment stands and apply it (return URL, reconciliation)."""
    with app.unit_of_work() as uow:
        payment = uow.session.get(Payment, payment_id)
        if payment is None or payment.provider_ref is None:
            return None
        provider, ref = payment.provider, payment.provider_ref
    answer = app.payments.by_name(provider).query(ref)
    with app.unit_of_work() as uow:
        return payments.apply(uow, payment_id, answer, "query")


def handle_webhook(app: App, provider_name: str, headers: Mapping[str, str], body: bytes) -> WebhookAck:
    """Verify first (InvalidSignature propagates: the web layer answers 400 and logs it), then
    record the event under its unique id — a replay stops there — then apply it."""
    provider = app.payments.by_name(provider_name)
    notice = provider.parse_webhook(headers, body)
    with app.unit_of_work() as uow:
        insert = pg_insert if uow.session.bind.dialect.name == "postgresql" else sqlite_insert  # type: ignore[union-attr]
        recorded = uow.session.execute(
            insert(WebhookEvent)
            .values(
                provider=provider_name,
                event_id=notice.event_id,
                event_type=notice.event_type,
                provider_ref=notice.provider_ref,
                payload=notice.payload,
                received_at=uow.now(),
            )
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
            .returning(WebhookEvent.id)
        ).scalar_one_or_none()
        if recorded is None:
            return provider.ack()  # seen before: harmless
        payment = uow.session.scalars(
            select(Payment).where(Payment.provider == provider_name, Payment.provider_ref == notice.provider_ref)
        ).first()
        event = uow.session.get(WebhookEvent, recorded)
        assert event is not None
        if payment is None:
            event.outcome = "no such payment"
        else:
            event.outcome = payments.apply(uow, payment.id, notice, f"webhook {notice.event_id}").note[:200]
    return provider.ack()


def _latest_payment(uow: UnitOfWork, order: Order) -> Payment | None:
    return uow.session.scalars(select(Payment).where(Payment.order_id == order.id).order_by(Payment.id.desc())).first()


__all__ = ["App", "Checkout", "InvalidSignature", "handle_webhook", "new_attempt", "place_order", "refresh", "retry"]
