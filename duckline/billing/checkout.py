"""Paying for an order: the steps that talk to a payment provider.

No provider is ever called inside a database transaction (a slow provider must not hold row
locks). Each step is: a short transaction that records the intent, the call, a short
transaction that records the answer. Every step can be repeated: the provider call is
idempotent on our payment reference, and the answer is applied through `payments.apply`.

An attempt is recorded with its reference and the status UNKNOWN before the provider hears of
it, and stays UNKNOWN until the provider's answer is recorded. If the answer never comes (a
time-out, a process that died), money may have moved: nothing says the attempt failed, no new
attempt starts beside it, its order neither expires nor gives back its promotion uses, and it is
settled by asking the provider about our reference (`refresh`), or by the provider's webhook,
which names the reference too. Only a provider that has no payment under it, long enough after
it was sent, makes it FAILED ("not_received").
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from duckline.accounts.models import Account
from duckline.accounts.roles import may_see
from duckline.billing import fulfilment, orders, payment_labels, payments, receipts
from duckline.billing.models import Order, Payment, Receipt, SavedPaymentMethod, WebhookEvent
from duckline.billing.order_states import (
    MAY_CAPTURE,
    MAY_HAVE_RECEIPT,
    OPEN_FOR_PAYMENT,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
)
from duckline.billing.providers import InvalidSignature, PaymentRequest, ProviderError, ProviderPayment, WebhookAck
from duckline.billing.providers.gateway import Payments
from duckline.catalog import promotions
from duckline.core.config import Settings
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.money import Money
from duckline.core.pagination import page
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db.held import holding
from duckline.db.types import is_id

log = logging.getLogger(__name__)
NOT_RECEIVED = "not_received"  # failure code: the provider has no payment under our reference


class App(Protocol):
    settings: Settings
    payments: Payments

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]: ...

    def reads(self) -> AbstractContextManager[UnitOfWork]: ...


@dataclass(frozen=True)
class Checkout:
    order_id: int
    payment_id: int | None
    created: bool


def order_renewal(
    app: App, viewer: Account, form: orders.OrderForm, language: str, return_url: str
) -> tuple[OrderState, bool]:
    """POST /orders: the order (or the one this idempotency key made), its attempt sent to the
    provider, and the order as it then stands; True if this request created it. Two transactions
    around the provider's call: the order, its attempt and what the provider is sent; then the
    answer and the order as shown."""
    checkout, state = _place(app, viewer, form, language, return_url, _shown(viewer))
    assert state is not None
    return state, checkout.created


def _place(
    app: App,
    caller: int | Account,
    form: orders.OrderForm,
    language: str,
    return_url: str,
    show: Callable[[UnitOfWork, int], OrderState] | None,
) -> tuple[Checkout, OrderState | None]:
    with app.unit_of_work() as uow:
        if isinstance(caller, Account):
            # Read by this request's authentication a moment ago: taken as is, no second read
            # (orders.create locks its row first thing).
            account = uow.session.merge(caller, load=False)
        else:
            found = uow.session.get(Account, caller)
            assert found is not None
            account = found
        order, created = orders.create(uow, account, form, language)
        if not created:
            latest = _latest_payment(uow, order)
            if latest is None or latest.status is not PaymentStatus.UNKNOWN:
                placed = Checkout(order.id, latest.id if latest else None, False)
                return placed, show(uow, order.id) if show else None
            # Not answered yet: another request is sending it, or one stopped before the answer.
            # Sending it again is safe (idempotent on its reference) and gives this request the
            # same answer as the first.
            payment_id = latest.id
        elif order.total_amount == 0:
            orders.move(uow, order, OrderStatus.PAID, "nothing to pay (fully discounted)")
            fulfilment.fulfil(uow, order)
            return Checkout(order.id, None, True), show(uow, order.id) if show else None
        else:
            # Held, so that _payment_request finds it in the session (which holds only what is
            # referenced) instead of reading it again.
            attempt = new_attempt(uow, app.payments, order, form.payment_method)
            payment_id = attempt.id
        sending = _payment_request(uow, app, payment_id, return_url, language)
        order_id = order.id
    state = _send(app, payment_id, sending, (lambda uow: show(uow, order_id)) if show else None)
    return Checkout(order_id, payment_id, created), state


def _shown(viewer: Account) -> Callable[[UnitOfWork, int], OrderState]:
    def show(uow: UnitOfWork, order_id: int) -> OrderState:
        return order_state(uow, orders.visible_order(uow, viewer, order_id))

    return show


@dataclass(frozen=True)
class OrderState:
    """An order as the API shows it, with its attempts and receipt, all read before commit."""

    order: Order
    payments: tuple[Payment, ...]
    receipt: Receipt | None


def quote(
    transactions: Transactions, viewer: Account, line_id: int, plan_code: str, promo_code: str | None, language: str
) -> orders.Quote:
    """POST /quotes: the exact price before paying."""
    with transactions() as uow:
        return orders.quote(uow, viewer, line_id, plan_code, promo_code, language)


def order_page(
    transactions: Transactions, viewer: Account, owner: int, cursor: str | None, limit: int
) -> tuple[list[OrderState], str | None]:
    """`owner`'s orders as shown, a page at a time (the caller decides whose it may list)."""
    with transactions() as uow:
        rows, next_cursor = page(uow.session, select(Order).where(Order.account_id == owner), Order.id, cursor, limit)
        return [order_state(uow, o) for o in rows], next_cursor


def shown_order(transactions: Transactions, viewer: Account, order_id: int) -> OrderState:
    """An order the viewer may see, as it stands."""
    with transactions() as uow:
        return order_state(uow, orders.visible_order(uow, viewer, order_id))


def order_state(uow: UnitOfWork, order: Order) -> OrderState:
    attempts = tuple(uow.session.scalars(select(Payment).where(Payment.order_id == order.id).order_by(Payment.id)))
    receipt = None
    if order.status in MAY_HAVE_RECEIPT:  # issued by this transaction, or read
        receipt = (
            receipts.issued_now(uow).get((order.id, receipts.RECEIPT))
            or uow.session.scalars(
                select(Receipt).where(Receipt.order_id == order.id, Receipt.kind == receipts.RECEIPT)
            ).first()
        )
    return OrderState(order, attempts, receipt)


def new_reference() -> str:
    """Our reference for one attempt, chosen before any provider hears of it. Random rather than
    derived from the row id: providers keep an out_trade_no or an idempotency key for a long time,
    and ids start again from 1 in a new database (a demo, a staging copy on the same merchant)."""
    return f"pay_{secrets.token_hex(12)}"


def new_attempt(
    uow: UnitOfWork, gateway: Payments, order: Order, method: PaymentMethod, saved: SavedPaymentMethod | None = None
) -> Payment:
    """Record a new attempt (UNKNOWN, with its reference) for an order open for payment. Refused
    while an earlier attempt of the order has an unknown outcome, or when the order no longer fits
    in the month's spending limit beside everything else that may still capture."""
    if order.status not in OPEN_FOR_PAYMENT:
        raise DomainError(ErrorCode.ORDER_NOT_PAYABLE)
    # A CREATED order was made by this transaction (it leaves it PAYMENT_PENDING): it has no
    # attempt yet, fits in the month and holds its promotions' uses, all checked as it was made.
    if order.status is not OrderStatus.CREATED:
        if _unknown_attempts(uow, order.id):
            raise DomainError(ErrorCode.PAYMENT_OUTCOME_PENDING)
        orders.check_month_before_paying(uow, order)  # the line's lock before a promotion's, as orders.create
        promotions.ensure_reserved(uow, order)
    provider = saved.provider if saved else gateway.provider_name(method)
    now = uow.now()
    payment = Payment(
        order_id=order.id,
        reference=new_reference(),
        provider=provider,
        method=method,
        status=PaymentStatus.UNKNOWN,
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
    """Send a recorded attempt to its provider and record the answer. A provider that does not
    answer (ProviderError) leaves the attempt UNKNOWN — it may have charged — never failed."""
    with app.unit_of_work() as uow:
        sending = _payment_request(uow, app, payment_id, return_url, language)
    _send(app, payment_id, sending, None)


def _payment_request(
    uow: UnitOfWork, app: App, payment_id: int, return_url: str, language: str
) -> tuple[str, PaymentRequest] | None:
    """(provider, what it is sent) for an attempt still unanswered; None once it was answered
    (by another request sending the same attempt)."""
    payment = uow.session.get(Payment, payment_id)
    assert payment is not None
    if payment.status is not PaymentStatus.UNKNOWN:
        return None
    order = uow.session.get(Order, payment.order_id)
    assert order is not None
    saved = uow.session.get(SavedPaymentMethod, payment.saved_method_id) if payment.saved_method_id else None
    return payment.provider, PaymentRequest(
        reference=payment.reference,
        amount=Money(payment.amount, payment.currency),
        description=f"Duckline order {order.id}: {order.quote['plan_names'].get('en', order.quote['plan_code'])}",
        method=payment.method,
        return_url=return_url.format(payment_id=payment.id),
        notify_url=f"{app.settings.base_url}/api/v1/webhooks/{payment.provider}",
        language=language,
        saved_token=saved.token if saved else None,
        # Only a card can be saved for automatic renewal (orders.check_auto_renew_method); an
        # auto-renew order retried with a wallet is paid without saving anything.
        save_method=order.auto_renew and saved is None and payment_labels.is_card(payment.method),
        expires_at=order.pay_by,
    )


def _send(
    app: App,
    payment_id: int,
    sending: tuple[str, PaymentRequest] | None,
    show: Callable[[UnitOfWork], OrderState] | None,
) -> OrderState | None:
    """The provider's call (outside any transaction), then one transaction: its answer applied,
    and the order as it then stands when `show` is given."""
    answer = None
    if sending is not None:
        provider = app.payments.by_name(sending[0])
        try:
            answer = provider.create_payment(sending[1])
        except ProviderError as exc:
            log.warning("payment %s: no answer from %s, outcome unknown: %s", payment_id, provider.name, exc)
    if answer is None and show is None:
        return None
    with app.unit_of_work() as uow, holding(uow.session):  # the order apply locks is the one shown
        if answer is not None:
            payments.apply(uow, payment_id, answer, "create")
        return show(uow) if show else None


def retry(app: App, account_id: int, order_id: int, method: PaymentMethod, language: str, return_url: str) -> int:
    """A new payment attempt for an order whose last one failed (or is still open)."""
    settle_unknown(app, _visible_order_id(app, account_id, order_id))
    with app.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        assert account is not None
        order = orders.visible_order(uow, account, order_id, lock=True)
        payment_id = new_attempt(uow, app.payments, order, method).id
    start_attempt(app, payment_id, return_url, language)
    return payment_id


def cancel(app: App, account_id: int, order_id: int) -> None:
    """The subscriber gives up an unpaid order. From now no attempt can start; each open attempt is
    stopped at its provider (one that cannot be reached now is stopped by reconciliation later),
    and the order's promotion uses go back once none of its payments can still capture."""
    settle_unknown(app, _visible_order_id(app, account_id, order_id))
    with app.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        assert account is not None
        order = orders.visible_order(uow, account, order_id, lock=True)
        orders.cancel(uow, order, account.id)
        open_ids = _open_attempts(uow, order.id)
    for payment_id in open_ids:
        try:
            stop(app, payment_id)
        except ProviderError as exc:
            log.warning("payment %s of cancelled order %s not stopped yet: %s", payment_id, order_id, exc)


def stop(app: App, payment_id: int) -> payments.Outcome | None:
    """Stop one open attempt at its provider, so it can no longer be paid, and apply where it then
    stands (cancelled; or paid, if the payer was quicker). ProviderError: not stopped yet."""
    with app.unit_of_work() as uow:
        payment = uow.session.get(Payment, payment_id)
        unknown = payment is not None and payment.status is PaymentStatus.UNKNOWN
    if unknown:
        refresh(app, payment_id)  # never answered: found by our reference first
    with app.unit_of_work() as uow:
        payment = uow.session.get(Payment, payment_id)
        if payment is None or payment.status not in MAY_CAPTURE or payment.provider_ref is None:
            return None
        provider, ref = payment.provider, payment.provider_ref
    answer = app.payments.by_name(provider).cancel(ref)
    with app.unit_of_work() as uow:
        return payments.apply(uow, payment_id, answer, "cancel")


def refresh(app: App, payment_id: int) -> payments.Outcome | None:
    """Ask the provider where a payment stands and apply it (return URL, reconciliation). An
    attempt whose create was never answered is asked about by our reference."""
    with app.unit_of_work() as uow:
        facts = _asked_about(uow, payment_id)
    if facts is None:
        return None
    return _ask(app, payment_id, facts, None)[0]


def payment_returned(app: App, viewer: Account, payment_id: int) -> OrderState:
    """The return URL: the viewer's payment asked about at its provider now (rather than wait for
    the webhook), and its order as it then stands. Two transactions around the provider's call."""
    with app.reads() as uow:  # one statement: no transaction of its own
        found = (
            uow.session.execute(
                select(Payment, Order.account_id)
                .join(Order, Order.id == Payment.order_id)
                .where(Payment.id == payment_id)
            ).first()
            if is_id(payment_id)
            else None
        )
        if found is None or not may_see(viewer.role, viewer.id, found.account_id):
            raise DomainError(ErrorCode.NOT_FOUND)
        order_id = found.Payment.order_id
        facts = _facts(found.Payment)

    def show(uow: UnitOfWork) -> OrderState:
        return order_state(uow, orders.visible_order(uow, viewer, order_id))

    state = _ask(app, payment_id, facts, show)[1]
    assert state is not None
    return state


@dataclass(frozen=True)
class _Asked:
    provider: str
    provider_ref: str | None
    reference: str
    sent_at: datetime
    unknown: bool


def _asked_about(uow: UnitOfWork, payment_id: int) -> _Asked | None:
    payment = uow.session.get(Payment, payment_id)
    return _facts(payment) if payment is not None else None


def _facts(payment: Payment) -> _Asked:
    return _Asked(
        payment.provider,
        payment.provider_ref,
        payment.reference,
        payment.created_at,
        payment.status is PaymentStatus.UNKNOWN,
    )


def _ask(
    app: App, payment_id: int, facts: _Asked, show: Callable[[UnitOfWork], OrderState] | None
) -> tuple[payments.Outcome | None, OrderState | None]:
    """The provider asked (outside any transaction), then one transaction: its answer applied,
    and the order as it then stands when `show` is given."""

    def shown(uow: UnitOfWork) -> OrderState | None:
        return show(uow) if show else None

    provider = app.payments.by_name(facts.provider)
    if facts.provider_ref is not None:
        answer = provider.query(facts.provider_ref)
        with app.unit_of_work() as uow, holding(uow.session):  # the order apply locks is the one shown
            return payments.apply(uow, payment_id, answer, "query"), shown(uow)
    if not facts.unknown:  # it never reached a provider ("not_received"): there is nothing to ask
        if show is None:
            return None, None
        with app.unit_of_work() as uow:
            return None, shown(uow)
    found = provider.find(facts.reference)
    with app.unit_of_work() as uow:
        if found is not None:
            return payments.apply(uow, payment_id, found, f"query by reference {facts.reference}"), shown(uow)
        if uow.now() < facts.sent_at + _settle_time(app, facts.provider):
            return None, shown(uow)  # the call may still be on its way, or the provider's index behind: ask later
        payment = uow.session.get(Payment, payment_id)
        assert payment is not None
        never = ProviderPayment("", PaymentStatus.FAILED, payment.amount, payment.currency, failure_code=NOT_RECEIVED)
        return payments.apply(uow, payment_id, never, f"no payment {facts.reference} at {facts.provider}"), shown(uow)


def settle_unknown(app: App, order_id: int) -> None:
    """Ask about the order's attempts whose outcome is unknown (best effort: a provider that
    cannot be reached leaves them unknown, and whatever needed them settled refuses)."""
    with app.unit_of_work() as uow:
        unknown = _unknown_attempts(uow, order_id)
    for payment_id in unknown:
        with suppress(ProviderError):
            refresh(app, payment_id)


def _settle_time(app: App, provider: str) -> timedelta:
    """How long after an attempt was sent a provider's "no such payment" is believed: past any
    request still in flight (reconcile_after_minutes) and past the provider's own lookup lag."""
    return max(timedelta(minutes=app.settings.reconcile_after_minutes), app.payments.by_name(provider).lookup_lag)


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
        # By the provider's id, or by our reference: a payment whose create answer we never
        # recorded has no provider id yet, and this notice is how it learns it.
        matches = Payment.provider_ref == notice.provider_ref
        if notice.reference:
            matches = or_(matches, Payment.reference == notice.reference)
        payment = uow.session.scalars(select(Payment).where(Payment.provider == provider_name, matches)).first()
        event = uow.session.get(WebhookEvent, recorded)
        assert event is not None
        if payment is None:
            event.outcome = "no such payment"
        else:
            event.outcome = payments.apply(uow, payment.id, notice, f"webhook {notice.event_id}").note[:200]
    return provider.ack()


def _visible_order_id(app: App, account_id: int, order_id: int) -> int:
    with app.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        assert account is not None
        return orders.visible_order(uow, account, order_id).id


def _latest_payment(uow: UnitOfWork, order: Order) -> Payment | None:
    return uow.session.scalars(select(Payment).where(Payment.order_id == order.id).order_by(Payment.id.desc())).first()


def _unknown_attempts(uow: UnitOfWork, order_id: int) -> list[int]:
    return list(
        uow.session.scalars(
            select(Payment.id).where(Payment.order_id == order_id, Payment.status == PaymentStatus.UNKNOWN)
        )
    )


def _open_attempts(uow: UnitOfWork, order_id: int) -> list[int]:
    return list(
        uow.session.scalars(
            select(Payment.id).where(Payment.order_id == order_id, Payment.status.in_(MAY_CAPTURE)).order_by(Payment.id)
        )
    )


__all__ = [
    "App",
    "Checkout",
    "InvalidSignature",
    "OrderState",
    "cancel",
    "handle_webhook",
    "new_attempt",
    "order_renewal",
    "order_state",
    "payment_returned",
    "refresh",
    "retry",
    "settle_unknown",
    "stop",
]
