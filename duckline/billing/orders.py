"""Quotes and orders: the exact price before paying, spending limits, idempotent creation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select

from duckline.accounts.identity import KycStatus
from duckline.accounts.models import Account, Person
from duckline.accounts.roles import STAFF, may_see
from duckline.billing import payment_labels
from duckline.billing.models import Order, OrderEvent, Payment
from duckline.billing.order_states import (
    CAPTURED,
    COMMITTED_SPEND,
    MAY_CAPTURE,
    OPEN_FOR_PAYMENT,
    OrderKind,
    OrderStatus,
    PaymentMethod,
    check_order_transition,
)
from duckline.billing.pricing import Price, price
from duckline.billing.renewal import Term, next_term, order_kind
from duckline.catalog import promotions
from duckline.catalog import service as catalog
from duckline.catalog.models import Plan
from duckline.catalog.rules import Allowance, PlanKind, PlanStatus, Validity
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.money import Money
from duckline.core.unit_of_work import UnitOfWork
from duckline.db.types import is_id
from duckline.lines import service as lines
from duckline.lines.models import Line


@dataclass(frozen=True)
class Quote:
    line: Line
    plan: Plan
    kind: OrderKind
    price: Price
    term: Term
    allowances: list[Allowance]


def quote(
    uow: UnitOfWork, account: Account, line_id: int, plan_code: str, promo_code: str | None, language: str = "en"
) -> Quote:
    """Price a renewal now: promotions applied, limits checked, the period it will buy."""
    line = lines.visible_line(uow, account, line_id)
    plan, allowances = catalog.plan_and_allowances(uow, plan_code)
    if plan.status is PlanStatus.RETIRED:
        raise DomainError(ErrorCode.PLAN_RETIRED, field="plan_code")
    kind = order_kind(line.status, line.plan_id, plan.id, plan.kind is PlanKind.ADDON)
    if kind is OrderKind.ACTIVATION:
        _check_identity_verified(uow, line)
    now = uow.now()
    validity = Validity(plan.validity_days, plan.validity_months)
    term = next_term(kind, line.status, line.expires_at, now, validity, uow.settings.display_timezone)
    history = _history(uow, line.id)
    first_purchase = kind is not OrderKind.ADDON and not history.bought_a_period
    code_rule = (
        promotions.code_rule(uow, account, promo_code, plan.code, first_purchase, language)
        if promo_code and promo_code.strip()
        else None
    )
    priced = price(
        Money(plan.price_amount, plan.currency),
        plan.code,
        promotions.automatic_rules(uow, now, language, account.id),
        code_rule,
        now,
        first_purchase,
    )
    _check_limits(uow, history.month_spend, priced)
    return Quote(line, plan, kind, priced, term, allowances)


def _check_identity_verified(uow: UnitOfWork, line: Line) -> None:
    account = uow.session.get(Account, line.account_id)
    person = uow.session.get(Person, account.person_id) if account and account.person_id else None
    if person is None or person.kyc_status is not KycStatus.VERIFIED:
        if person is not None and person.kyc_status is KycStatus.REJECTED:
            raise DomainError(ErrorCode.KYC_REJECTED, reason=person.kyc_reason or "")
        raise DomainError(ErrorCode.KYC_NOT_VERIFIED)


@dataclass(frozen=True)
class _History:
    bought_a_period: bool
    month_spend: int  # see month_spend


def _history(uow: UnitOfWork, line_id: int) -> _History:
    """What a quote needs of the line's orders, in one statement: whether it has had a period
    paid for and applied (its activation, a renewal or a plan change; a line started by staff,
    with no order, makes its first purchase at its first renewal), and `month_spend`."""
    bought = and_(
        Order.kind.in_((OrderKind.ACTIVATION, OrderKind.RENEWAL, OrderKind.CHANGE)),
        Order.status.in_((OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED)),
    )
    row = uow.session.execute(
        select(
            func.count(case((bought, 1))),
            func.coalesce(
                func.sum(
                    case((_spending(uow), Order.total_amount - Order.refunded_amount), else_=0),
                ),
                0,
            ),
        ).where(Order.line_id == line_id)
    ).one()
    return _History(int(row[0] or 0) > 0, int(row[1] or 0))


def _check_limits(uow: UnitOfWork, spent: int, priced: Price) -> None:
    """Hong Kong operators' top-up rules: a minimum on what is bought (so promotions never make
    an order unpayable), a maximum per order and per line per calendar month on what is paid."""
    settings, total = uow.settings, priced.total
    fmt = lambda amount: Money(amount, total.currency).format()  # noqa: E731
    if priced.list_price.amount < settings.order_minimum:
        raise DomainError(ErrorCode.ORDER_BELOW_MINIMUM, field="plan_code", minimum=fmt(settings.order_minimum))
    if total.amount > settings.order_maximum:
        raise DomainError(ErrorCode.ORDER_ABOVE_MAXIMUM, field="plan_code", maximum=fmt(settings.order_maximum))
    _check_month(uow, spent, total)


def _check_month(uow: UnitOfWork, spent: int, order_total: Money) -> None:
    limit = uow.settings.monthly_line_limit
    if spent + order_total.amount > limit:
        fmt = lambda value: Money(value, order_total.currency).format()  # noqa: E731
        raise DomainError(
            ErrorCode.MONTHLY_LIMIT_REACHED, field="plan_code", limit=fmt(limit), left=fmt(max(0, limit - spent))
        )


def month_spend(uow: UnitOfWork, line_id: int, except_order_id: int | None = None) -> int:
    """What the line has spent, or may still spend, in the current Hong Kong calendar month: orders
    paid or waiting to be, and any other order (failed, cancelled, expired) with a payment that may
    still capture. A declined order counts again only once it is paid again."""
    return _month_sum(uow, line_id, except_order_id, _counted())


def _counted() -> ColumnElement[bool]:
    """An order that counts in month_spend, whatever its month."""
    may_capture = exists().where(Payment.order_id == Order.id, Payment.status.in_(MAY_CAPTURE))
    return or_(Order.status.in_(COMMITTED_SPEND), may_capture)


def _spending(uow: UnitOfWork) -> ColumnElement[bool]:
    """An order that counts in month_spend: counted, and made this Hong Kong calendar month."""
    return and_(_counted(), Order.created_at >= _month_start(uow))


def _month_start(uow: UnitOfWork) -> datetime:
    local = uow.now().astimezone(ZoneInfo(uow.settings.display_timezone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def captured_spend(uow: UnitOfWork, line_id: int, except_order_id: int | None = None) -> int:
    """What the line has actually paid (and not had back) in the current Hong Kong calendar month."""
    return _month_sum(uow, line_id, except_order_id, Order.status.in_(CAPTURED))


def _month_sum(uow: UnitOfWork, line_id: int, except_order_id: int | None, counted: ColumnElement[bool]) -> int:
    query = select(func.coalesce(func.sum(Order.total_amount - Order.refunded_amount), 0)).where(
        Order.line_id == line_id, counted, Order.created_at >= _month_start(uow)
    )
    if except_order_id is not None:
        query = query.where(Order.id != except_order_id)
    return int(uow.session.scalar(query) or 0)


def check_month_before_paying(uow: UnitOfWork, order: Order) -> None:
    """Before a new payment attempt for an order (a retry after a decline): the order must still
    fit in the month beside everything else the line has spent or may still spend. Locks the line
    (after the order, as fulfilment does), so attempts on one line are checked one after the other."""
    uow.session.execute(select(Line.id).where(Line.id == order.line_id).with_for_update())
    _check_month(uow, month_spend(uow, order.line_id, order.id), Money(order.total_amount, order.currency))


def check_month_at_capture(uow: UnitOfWork, order: Order) -> None:
    """Money was captured for the order; before it is applied, it must fit in the month beside what
    the line has actually paid. Otherwise it is not applied, and reconciliation refunds it."""
    _check_month(uow, captured_spend(uow, order.line_id, order.id), Money(order.total_amount, order.currency))


@dataclass(frozen=True)
class OrderForm:
    line_id: int
    plan_code: str
    payment_method: PaymentMethod
    promo_code: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    auto_renew: bool = False


def create(uow: UnitOfWork, account: Account, form: OrderForm, language: str = "en") -> tuple[Order, bool]:
    """Create an order, or return the one already made with this idempotency key.

    The account and the line are locked first (in that order, always): two orders racing for
    one line are checked against the monthly limit one after the other, and a retried request
    finds the order the first one made.

    Automatic renewal is asked for with a card only (AUTO_RENEW_NEEDS_CARD otherwise): it charges
    a card saved at the provider, and a wallet payment saves nothing that could be charged later.
    Refused before anything is made, rather than dropped without a word.
    """
    check_auto_renew_method(form.auto_renew, form.payment_method)
    line = _locked_visible_line(uow, account, form.line_id)
    if form.idempotency_key:
        existing = uow.session.scalars(
            select(Order).where(Order.account_id == account.id, Order.idempotency_key == form.idempotency_key)
        ).first()
        if existing is not None:
            if existing.request_hash != form.request_hash:
                raise DomainError(ErrorCode.IDEMPOTENCY_KEY_REUSED)
            return existing, False
    priced = quote(uow, account, line.id, form.plan_code, form.promo_code, language)
    now = uow.now()
    order = Order(
        account_id=account.id,
        line_id=line.id,
        plan_id=priced.plan.id,
        kind=priced.kind,
        status=OrderStatus.CREATED,
        currency=priced.price.total.currency,
        list_amount=priced.price.list_price.amount,
        discount_amount=priced.price.discount,
        total_amount=priced.price.total.amount,
        refunded_amount=0,
        quote=snapshot(priced),
        payment_method=form.payment_method,
        idempotency_key=form.idempotency_key,
        request_hash=form.request_hash,
        auto_renew=form.auto_renew,
        pay_by=now + timedelta(minutes=uow.settings.order_payment_minutes),
        created_at=now,
        updated_at=now,
    )
    uow.session.add(order)
    uow.session.flush()
    uow.session.add(
        OrderEvent(
            order_id=order.id, from_status=None, to_status=order.status, reason="created", actor_id=account.id, at=now
        )
    )
    promotions.reserve(uow, order, priced.price.promotion_ids)
    return order, True


def check_auto_renew_method(auto_renew: bool, method: PaymentMethod) -> None:
    """Automatic renewal charges a saved card; only a card payment can save one."""
    if auto_renew and not payment_labels.is_card(method):
        raise DomainError(ErrorCode.AUTO_RENEW_NEEDS_CARD, field="auto_renew")


def snapshot(q: Quote) -> dict[str, object]:
    """What the subscriber was shown and agreed to pay, kept with the order."""
    return {
        "plan_code": q.plan.code,
        "plan_names": q.plan.names,
        "kind": q.kind.value,
        "previous_plan_id": q.line.plan_id,  # the plan the line was on: what a queued period follows
        "list_amount": q.price.list_price.amount,
        "currency": q.price.list_price.currency,
        "adjustments": [
            {"promotion_id": a.promotion_id, "name": a.name, "amount": a.amount} for a in q.price.adjustments
        ],
        "bonuses": [
            {
                "promotion_id": b.promotion_id,
                "name": b.name,
                "unit": b.allowance.unit.value,
                "zone": b.allowance.zone.value,
                "amount": b.allowance.amount,
            }
            for b in q.price.bonuses
        ],
        "total": q.price.total.amount,
        "term": {"start": q.term.start.isoformat(), "end": q.term.end.isoformat()},
        # What the period is made of, as sold: fulfilment grants this, even if staff edit the
        # plan before the payment arrives. (Orders from before these keys read the plan.)
        "allowances": [{"unit": a.unit.value, "zone": a.zone.value, "amount": a.amount} for a in q.allowances],
        "validity": {"days": q.plan.validity_days, "months": q.plan.validity_months},
    }


def move(uow: UnitOfWork, order: Order, target: OrderStatus, reason: str, actor_id: int | None = None) -> None:
    """The only way an order changes status: checked by the state machine, recorded with why."""
    check_order_transition(order.status, target)
    uow.session.add(
        OrderEvent(
            order_id=order.id,
            from_status=order.status,
            to_status=target,
            reason=reason[:300],
            actor_id=actor_id,
            at=uow.now(),
        )
    )
    order.status = target
    order.updated_at = uow.now()


def _locked_visible_line(uow: UnitOfWork, viewer: Account, line_id: int) -> Line:
    """The viewer's account and lines.visible_line locked (in that order: PostgreSQL locks the
    rows of a join in the order of its FROM list) and the line read, in one statement; another's
    line is neither locked nor shown."""
    query = (
        select(Line)
        .select_from(Account)
        .join(Line, Line.id == line_id)
        .where(Account.id == viewer.id)
        .with_for_update(of=(Account, Line))
        .execution_options(populate_existing=True)
    )
    if viewer.role not in STAFF:
        query = query.where(Line.account_id == viewer.id)
    line = uow.session.scalars(query).first() if is_id(line_id) else None
    if line is None:
        raise DomainError(ErrorCode.NOT_FOUND)
    return line


def visible_order(uow: UnitOfWork, viewer: Account, order_id: int, lock: bool = False) -> Order:
    order = uow.session.get(Order, order_id, with_for_update=lock) if is_id(order_id) else None
    if order is None or not may_see(viewer.role, viewer.id, order.account_id):
        raise DomainError(ErrorCode.NOT_FOUND)
    return order


def cancel(uow: UnitOfWork, order: Order, actor_id: int) -> None:
    """Give up on an unpaid order: no new attempt can start. Its promotion uses go back once no
    payment of it can still capture (checkout.cancel stops them at their providers); a payment
    that succeeds all the same is applied or refunded."""
    if order.status not in OPEN_FOR_PAYMENT:
        raise DomainError(ErrorCode.ORDER_NOT_PAYABLE)
    move(uow, order, OrderStatus.CANCELLED, "cancelled by the subscriber", actor_id)
    promotions.release_when_settled(uow, order)
