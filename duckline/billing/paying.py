"""What the payer sees of a renewal in the portal: the renewal form's reads, the attempt a page
is about, its next step, the order's result.

Each flow owns its transaction(s) and returns what it read, loaded before commit. The steps
that talk to a provider are checkout's (`checkout.refresh`); `ask_open_attempt` only decides
whether to call it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from duckline.accounts.models import Account
from duckline.billing import checkout, orders
from duckline.billing.models import Order, Payment, Receipt
from duckline.billing.order_states import MAY_CAPTURE, PaymentStatus
from duckline.billing.providers import ProviderError
from duckline.catalog import promotions
from duckline.catalog import service as catalog
from duckline.catalog.models import Plan, Promotion
from duckline.catalog.rules import Allowance, PlanKind
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db.types import is_id
from duckline.lines import service as lines
from duckline.lines.models import Line

OPEN = (PaymentStatus.PENDING, PaymentStatus.REQUIRES_ACTION)  # the payer still has a step to take


# --- the renewal form ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RenewalForm:
    line: Line
    current_plan: Plan | None
    chosen_plan: str  # the plan named, else the line's current plan (ticked on arrival)
    plans: tuple[Plan, ...]
    allowances: dict[int, list[Allowance]]
    promotions: tuple[Promotion, ...]  # automatic ones (no code), current now
    quote: orders.Quote | None
    quote_error: DomainError | None  # what stops the quote asked for


def renewal_form(
    transactions: Transactions,
    viewer: Account,
    line_id: int,
    plan_code: str,
    promo_code: str,
    language: str,
    quoting: bool,
) -> RenewalForm:
    """The line, the catalogue, current automatic promotions and, when asked, the exact quote of
    the chosen plan (or the error that stops it). A line not the viewer's raises NOT_FOUND."""
    with transactions() as uow:
        line = lines.visible_line(uow, viewer, line_id)
        plans = catalog.list_plans(uow)
        current = uow.session.get(Plan, line.plan_id) if line.plan_id else None
        chosen = plan_code
        if not chosen and current is not None and current.kind is PlanKind.PLAN:
            chosen = current.code
        allowances = catalog.allowances_of(uow, [p.id for p in plans])
        automatic = tuple(p for p in promotions.current(uow, uow.now()) if p.code is None)
        quote, error = None, None
        if quoting and chosen:
            try:
                quote = orders.quote(uow, viewer, line.id, chosen, promo_code or None, language)
            except DomainError as exc:
                error = exc
        return RenewalForm(line, current, chosen, tuple(plans), allowances, automatic, quote, error)


# --- attempts and results ------------------------------------------------------------------------


def attempt_of(uow: UnitOfWork, order: Order, payment_id: int | None) -> Payment | None:
    """The attempt a page is about: the one named (if it is this order's), else the latest."""
    if payment_id is not None and is_id(payment_id):
        named = uow.session.get(Payment, payment_id)
        if named is not None and named.order_id == order.id:
            return named
    return uow.session.scalars(select(Payment).where(Payment.order_id == order.id).order_by(Payment.id.desc())).first()


def next_action(transactions: Transactions, payment_id: int) -> dict[str, Any] | None:
    """What the payer still has to do for this attempt (the provider's page, a QR code, a card
    confirmation); None once it is no longer open."""
    with transactions() as uow:
        payment = uow.session.get(Payment, payment_id)
        return payment.next_action if payment is not None and payment.status in OPEN else None


def order_of_payment(transactions: Transactions, viewer: Account, payment_id: int) -> int:
    """The viewer's order an attempt belongs to; anyone else's looks like none (NOT_FOUND)."""
    with transactions() as uow:
        payment = uow.session.get(Payment, payment_id) if is_id(payment_id) else None
        if payment is None:
            raise DomainError(ErrorCode.NOT_FOUND)
        return orders.visible_order(uow, viewer, payment.order_id).id


def ask_open_attempt(app: checkout.App, viewer: Account, order_id: int, payment_id: int | None) -> None:
    """Ask the provider now rather than wait for the webhook (as the API's return URL does);
    only while the attempt is open (or its outcome unknown: then it is asked about by our
    reference). A provider that does not answer leaves the order as it was."""
    with app.unit_of_work() as uow:
        order = orders.visible_order(uow, viewer, order_id)
        payment = attempt_of(uow, order, payment_id)
        open_id = payment.id if payment is not None and payment.status in MAY_CAPTURE else None
    if open_id is not None:
        with contextlib.suppress(ProviderError):
            checkout.refresh(app, open_id)


@dataclass(frozen=True)
class OrderResult:
    order: Order
    latest: Payment | None  # its latest attempt
    receipt: Receipt | None
    line: Line | None


def order_result(transactions: Transactions, viewer: Account, order_id: int) -> OrderResult:
    """The viewer's order with its latest attempt, its receipt and its line."""
    with transactions() as uow:
        order = orders.visible_order(uow, viewer, order_id)
        latest = attempt_of(uow, order, None)
        receipt = uow.session.scalars(
            select(Receipt).where(Receipt.order_id == order.id, Receipt.kind == "receipt")
        ).first()
        return OrderResult(order, latest, receipt, uow.session.get(Line, order.line_id))


def latest_attempt(transactions: Transactions, viewer: Account, order_id: int) -> Payment | None:
    """The viewer's order's latest attempt (NOT_FOUND if the order is not the viewer's)."""
    with transactions() as uow:
        return attempt_of(uow, orders.visible_order(uow, viewer, order_id), None)


@dataclass(frozen=True)
class PayerStep:
    order: Order
    attempt: Payment | None
    action: dict[str, Any] | None  # what the payer still has to do: None once it has settled


def payer_step(app: checkout.App, viewer: Account, order_id: int, payment_id: int | None) -> PayerStep:
    """The order, the attempt a payment page is about (asked about at its provider once first),
    and what the payer still has to do for it."""
    ask_open_attempt(app, viewer, order_id, payment_id)
    with app.unit_of_work() as uow:
        order = orders.visible_order(uow, viewer, order_id)
        attempt = attempt_of(uow, order, payment_id)
    return PayerStep(order, attempt, attempt.next_action if attempt is not None and attempt.status in OPEN else None)


__all__ = [
    "OPEN",
    "OrderResult",
    "PayerStep",
    "RenewalForm",
    "ask_open_attempt",
    "attempt_of",
    "latest_attempt",
    "next_action",
    "order_of_payment",
    "order_result",
    "payer_step",
    "renewal_form",
]
