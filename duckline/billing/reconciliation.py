"""Finding money and plans that disagree, and putting them right: nothing lost, nothing twice.

- A payment still open after a while is asked about — by our reference when its create was
  never answered (the process died, the provider's answer came too late): captured → applied
  now (the webhook was lost); still unpaid after the order's deadline, or its order cancelled →
  stopped at the provider, and the order expires. An order with an attempt whose outcome is
  unknown never expires before the provider has said what became of it.
- An order paid but not applied is applied, or, when it cannot be (number recycled), refunded.
Every case it handles or cannot handle becomes a ticket, so support sees it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select

from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.billing import checkout, fulfilment, orders, refunds
from duckline.billing.checkout import App
from duckline.billing.models import Order, Payment
from duckline.billing.order_states import MAY_CAPTURE, OPEN_FOR_PAYMENT, OrderStatus, PaymentStatus
from duckline.billing.providers import ProviderError
from duckline.catalog import promotions
from duckline.core import pagination
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions
from duckline.db.types import is_id
from duckline.lines.models import Line
from duckline.staff import audit
from duckline.support import case_texts
from duckline.support import cases as tickets
from duckline.support import desk as support_desk
from duckline.support.models import Ticket

log = logging.getLogger(__name__)
# What a person's resolution of a case is called in the audit log.
AUDITED = {"apply": "reconciliation.apply", "refund": "reconciliation.refund", "close": "reconciliation.close"}


@dataclass
class Report:
    applied: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    refunded: list[int] = field(default_factory=list)
    unreachable: list[int] = field(default_factory=list)


def run(app: App) -> Report:
    report = Report()
    with app.unit_of_work() as uow:
        cutoff = uow.now() - timedelta(minutes=app.settings.reconcile_after_minutes)
        open_payments = uow.session.scalars(
            select(Payment.id).where(Payment.status.in_(MAY_CAPTURE), Payment.created_at <= cutoff).order_by(Payment.id)
        ).all()
        stuck_paid = uow.session.scalars(
            select(Order.id).where(Order.status == OrderStatus.PAID, Order.updated_at <= cutoff).order_by(Order.id)
        ).all()
    for payment_id in open_payments:
        _check_payment(app, payment_id, report)
    for order_id in stuck_paid:
        _apply_or_refund(app, order_id, report)
    with app.unit_of_work() as uow:  # unpaid orders past their deadline, with no payment to ask about
        overdue = uow.session.scalars(
            select(Order).where(Order.status.in_(tuple(OPEN_FOR_PAYMENT)), Order.pay_by <= uow.now()).with_for_update()
        ).all()
        for order in overdue:
            if not _has_open_payment(uow, order):
                _expire(uow, order)
                report.expired.append(order.id)
    return report


def _check_payment(app: App, payment_id: int, report: Report) -> None:
    try:
        outcome = checkout.refresh(app, payment_id)
    except ProviderError:
        report.unreachable.append(payment_id)
        return
    with app.unit_of_work() as uow:
        payment, order = _locked(uow, payment_id)
        if outcome and outcome.changed and order.status is OrderStatus.FULFILLED:
            tickets.settle_open(uow, order.id, case_texts.APPLIED_AUTOMATICALLY)
            tickets.open_case(
                uow,
                tickets.RECONCILIATION,
                case_texts.APPLIED_WITHOUT_CONFIRMATION,
                {"order": order.id, "payment": payment.id, "provider": payment.provider},
                order.account_id,
                order.id,
                resolution=case_texts.APPLIED_AUTOMATICALLY,
            )
            report.applied.append(order.id)
            return
        waiting = payment.status in (PaymentStatus.PENDING, PaymentStatus.REQUIRES_ACTION)
        if not waiting or (order.status in OPEN_FOR_PAYMENT and order.pay_by > uow.now()):
            return  # settled, unknown still, or the payer still has time
    _stop(app, payment_id, report)


def _stop(app: App, payment_id: int, report: Report) -> None:
    """Not paid by the order's deadline, or its order was cancelled: stop it at the provider."""
    try:
        checkout.stop(app, payment_id)
    except ProviderError:
        report.unreachable.append(payment_id)
        return
    with app.unit_of_work() as uow:
        payment, order = _locked(uow, payment_id)
        if payment.status in (PaymentStatus.PENDING, PaymentStatus.REQUIRES_ACTION) and order.pay_by <= uow.now():
            # The provider cannot stop it: a wallet page the payer never opened is no trade yet
            # (and the wallet was told to refuse it after the deadline: expires_at), or a card
            # payment is still processing. Given up here; money that comes all the same is
            # applied or refunded.
            payment.status, payment.updated_at = PaymentStatus.CANCELLED, uow.now()
        if order.status in OPEN_FOR_PAYMENT and order.pay_by <= uow.now() and not _has_open_payment(uow, order):
            _expire(uow, order)
            report.expired.append(order.id)
        else:
            promotions.release_when_settled(uow, order)


def _locked(uow: checkout.UnitOfWork, payment_id: int) -> tuple[Payment, Order]:
    """The payment and its order, locked as `payments.apply` locks them: the order, then the payment."""
    payment = uow.session.get(Payment, payment_id)
    assert payment is not None
    order = uow.session.get(Order, payment.order_id, with_for_update=True)
    assert order is not None
    uow.session.refresh(payment, with_for_update=True)
    return payment, order


def _expire(uow: checkout.UnitOfWork, order: Order) -> None:
    orders.move(uow, order, OrderStatus.EXPIRED, "not paid in time")
    promotions.release_when_settled(uow, order)


def _has_open_payment(uow: checkout.UnitOfWork, order: Order) -> bool:
    return (
        uow.session.scalar(
            select(Payment.id).where(Payment.order_id == order.id, Payment.status.in_(MAY_CAPTURE)).limit(1)
        )
        is not None
    )


def _apply_or_refund(app: App, order_id: int, report: Report) -> None:
    with app.unit_of_work() as uow:
        order = uow.session.get(Order, order_id, with_for_update=True)
        if order is None or order.status is not OrderStatus.PAID:
            return
        try:
            with uow.session.begin_nested():
                fulfilment.fulfil(uow, order)
            tickets.settle_open(uow, order.id, case_texts.APPLIED_AUTOMATICALLY)
            tickets.open_case(
                uow,
                tickets.RECONCILIATION,
                case_texts.APPLIED_LATE,
                {"order": order.id},
                order.account_id,
                order.id,
                resolution=case_texts.APPLIED_AUTOMATICALLY,
            )
            report.applied.append(order.id)
            return
        except DomainError as error:
            failure = error
    try:
        refunds.refund(app, None, order_id, None, f"paid but cannot be applied: {failure.code}")
        report.refunded.append(order_id)
        with app.unit_of_work() as uow:
            order = uow.session.get(Order, order_id)
            assert order is not None
            tickets.settle_open(uow, order_id, case_texts.REFUNDED_AUTOMATICALLY)
            tickets.open_case(
                uow,
                tickets.RECONCILIATION,
                case_texts.REFUNDED_UNAPPLIABLE,
                {"order": order_id, "reason": case_texts.error(failure)},
                order.account_id,
                order_id,
                resolution=case_texts.REFUNDED_AUTOMATICALLY,
            )
    except (DomainError, ProviderError) as error:
        log.warning("reconciliation could not refund order %s: %s", order_id, error)
        report.unreachable.append(order_id)


def resolve(app: App, actor: Account, ticket_id: int, action: str, reason: str) -> Ticket:
    """Staff settle a case: apply the paid order, refund it (to the original method), or close it."""
    if not reason.strip():
        raise DomainError(ErrorCode.REASON_REQUIRED, field="reason")
    with app.unit_of_work() as uow:
        ticket = uow.session.get(Ticket, ticket_id)
        if ticket is None:
            raise DomainError(ErrorCode.NOT_FOUND)
        if ticket.status == "resolved":
            raise DomainError(ErrorCode.CASE_ALREADY_RESOLVED)
        order_id = ticket.order_id
        order = uow.session.get(Order, order_id) if order_id else None
        stray = refunds.stray_payment(uow, order_id) if order_id else None
    if action == "refund":
        if order is None:
            raise DomainError(ErrorCode.NOT_FOUND)
        if stray is not None:  # a flagged or duplicate capture: give that money back
            refunds.refund_payment(app, actor.id, stray, reason)
        else:
            refunds.refund(app, actor.id, order.id, None, reason)
    with app.unit_of_work() as uow:
        ticket = uow.session.get(Ticket, ticket_id, with_for_update=True)
        if ticket is None:
            raise DomainError(ErrorCode.NOT_FOUND)
        if action == "apply":
            order = uow.session.get(Order, ticket.order_id, with_for_update=True) if ticket.order_id else None
            if order is None or order.status is not OrderStatus.PAID:
                raise DomainError(
                    ErrorCode.ORDER_TRANSITION_NOT_ALLOWED,
                    current=order.status.value if order else "-",
                    target=OrderStatus.FULFILLED.value,
                )
            fulfilment.fulfil(uow, order)
        audit.record(
            uow,
            actor.id,
            AUDITED[action],
            f"ticket:{ticket.id}",
            order=ticket.order_id,
            reason=reason,
        )
        return tickets.resolve(uow, actor, ticket, f"{action}: {reason}")


# --- Flows for the API and the console: each owns its transactions --------------------------------

CASE_KINDS = ("reconciliation", "payment_mismatch")
RESOLVED_SHOWN = 50
REFUNDERS = frozenset({Role.FINANCE, Role.ADMIN})


@dataclass(frozen=True)
class Case:
    ticket: Ticket
    order: Order | None


@dataclass(frozen=True)
class CasesPage:
    items: list[Case]
    next_cursor: str | None


def cases(transactions: Transactions, viewer: Account, state: str, cursor: str | None, limit: int) -> CasesPage:
    """Renewals that went wrong (open, resolved or all), newest first, with their orders."""
    query = select(Ticket).where(Ticket.kind.in_(CASE_KINDS))
    if state != "all":
        query = query.where(Ticket.status == state)
    with transactions() as uow:
        rows, next_cursor = pagination.page(uow.session, query, Ticket.id, cursor, limit)
        return CasesPage(
            [Case(t, uow.session.get(Order, t.order_id) if t.order_id else None) for t in rows], next_cursor
        )


def settle(app: App, actor: Account, ticket_id: int, action: str, reason: str, console: bool = False) -> Case:
    """`resolve` for a staff member: a refund needs finance or an admin. From the console, only a
    reconciliation case that is still open may be settled (an API caller may settle any ticket and
    learns of a settled one from `resolve`)."""
    if not console and not is_id(ticket_id):
        raise DomainError(ErrorCode.NOT_FOUND)
    if action == "refund" and actor.role not in REFUNDERS:
        raise DomainError(ErrorCode.FORBIDDEN)
    if console:
        with app.unit_of_work() as uow:
            ticket = uow.session.get(Ticket, ticket_id) if is_id(ticket_id) else None
            if ticket is None or ticket.kind not in CASE_KINDS:
                raise DomainError(ErrorCode.NOT_FOUND)
            if ticket.status != "open":  # a settled case keeps its first resolution
                raise DomainError(ErrorCode.CASE_ALREADY_RESOLVED)
    resolved = resolve(app, actor, ticket_id, action, reason)
    with app.unit_of_work() as uow:
        return Case(resolved, uow.session.get(Order, resolved.order_id) if resolved.order_id else None)


@dataclass(frozen=True)
class Queue:
    """The console's reconciliation page: open cases oldest first, the latest resolved ones, and
    what the page shows beside each (payments, the line's number, the subscriber's phone)."""

    open_cases: list[Case]
    resolved_cases: list[Case]
    refundable: frozenset[int]  # order ids
    payments: dict[int, list[Payment]]  # by order id
    msisdns: dict[int, str | None]  # by order id
    phones: dict[int, str]  # by account id
    mentions: dict[tuple[str, int], list[int]]  # support-desk tickets mentioning each case


def queue(transactions: Transactions) -> Queue:
    with transactions() as uow:
        s = uow.session
        open_cases = s.scalars(
            select(Ticket).where(Ticket.kind.in_(CASE_KINDS), Ticket.status == "open").order_by(Ticket.id)
        ).all()
        resolved = s.scalars(
            select(Ticket)
            .where(Ticket.kind.in_(CASE_KINDS), Ticket.status == "resolved")
            .order_by(Ticket.id.desc())
            .limit(RESOLVED_SHOWN)
        ).all()
        order_ids = {t.order_id for t in [*open_cases, *resolved] if t.order_id}
        orders = {o.id: o for o in s.scalars(select(Order).where(Order.id.in_(order_ids)))} if order_ids else {}
        payments: dict[int, list[Payment]] = {order_id: [] for order_id in orders}
        for payment in s.scalars(select(Payment).where(Payment.order_id.in_(order_ids)).order_by(Payment.id)):
            payments[payment.order_id].append(payment)
        line_ids = {o.line_id for o in orders.values()}
        msisdns = dict(s.execute(select(Line.id, Line.msisdn).where(Line.id.in_(line_ids))).all()) if line_ids else {}
        account_ids = {t.account_id for t in open_cases if t.account_id}
        phones = (
            dict(s.execute(select(Account.id, Account.phone).where(Account.id.in_(account_ids))).all())
            if account_ids
            else {}
        )
        # A refund is offered when the order can be refunded, or when money was captured that the
        # order does not account for (a wrong amount, a second capture): the service refunds that.
        refundable = frozenset(
            o.id
            for o in orders.values()
            if o.status in refunds.REFUNDABLE or refunds.stray_payment(uow, o.id) is not None
        )
        return Queue(
            open_cases=[Case(t, orders.get(t.order_id or 0)) for t in open_cases],
            resolved_cases=[Case(t, orders.get(t.order_id or 0)) for t in resolved],
            refundable=refundable,
            payments=payments,
            msisdns={order_id: msisdns.get(o.line_id) for order_id, o in orders.items()},
            phones=phones,
            mentions=support_desk.mentioning(uow, cases=[t.id for t in [*open_cases, *resolved]]),
        )
