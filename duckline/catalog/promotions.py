"""Promotions: staff define them; orders reserve their use, exactly once, and release it if unpaid."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from duckline.accounts.models import Account
from duckline.billing.models import Order, Payment
from duckline.billing.order_states import MAY_CAPTURE, OrderStatus
from duckline.billing.pricing import PromotionKind, PromotionRule, RedemptionStatus
from duckline.catalog import service as catalog
from duckline.catalog.models import Promotion, PromotionRedemption
from duckline.catalog.rules import Allowance, Unit, Zone, check_texts
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db.types import is_id
from duckline.staff import audit

RESERVED, CONFIRMED, RELEASED = RedemptionStatus.RESERVED, RedemptionStatus.CONFIRMED, RedemptionStatus.RELEASED


@dataclass(frozen=True)
class PromotionInput:
    name: dict[str, str]
    kind: PromotionKind
    starts_at: datetime
    ends_at: datetime | None = None
    percent_off: int = 0
    amount_off: int = 0
    currency: str = "HKD"
    bonus: tuple[Allowance, ...] = ()
    code: str | None = None
    plan_codes: tuple[str, ...] | None = None
    first_renewal_only: bool = False
    exclusive: bool = False
    max_uses: int | None = None
    max_uses_per_account: int | None = None


def create(uow: UnitOfWork, actor: Account, form: PromotionInput) -> Promotion:
    if any(not (form.name.get(language) or "").strip() for language in ("en", "zh_Hant", "zh_Hans")):
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="name")
    if form.kind is PromotionKind.PERCENT_OFF and not 0 < form.percent_off <= 100:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="percent_off")
    if form.kind is PromotionKind.AMOUNT_OFF and form.amount_off <= 0:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="amount_off")
    if form.kind is PromotionKind.BONUS and not form.bonus:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="bonus")
    if form.ends_at is not None and form.ends_at <= form.starts_at:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="ends_at")
    promotion = Promotion(
        name=check_texts(form.name, "name"),
        kind=form.kind,
        percent_off=form.percent_off,
        amount_off=form.amount_off,
        currency=form.currency,
        bonus=[{"unit": a.unit.value, "zone": a.zone.value, "amount": a.amount} for a in form.bonus],
        code=form.code.strip().upper() if form.code else None,
        plan_codes=list(form.plan_codes) if form.plan_codes is not None else None,
        first_renewal_only=form.first_renewal_only,
        exclusive=form.exclusive,
        starts_at=form.starts_at,
        ends_at=form.ends_at,
        max_uses=form.max_uses,
        max_uses_per_account=form.max_uses_per_account,
        uses=0,
        active=True,
        created_at=uow.now(),
    )
    try:
        with uow.session.begin_nested():
            uow.session.add(promotion)
            uow.session.flush()
    except IntegrityError as exc:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="code") from exc
    audit.record(uow, actor.id, "promotion.created", f"promotion:{promotion.id}", code=promotion.code)
    return promotion


def deactivate(uow: UnitOfWork, actor: Account, promotion_id: int) -> Promotion:
    promotion = uow.session.get(Promotion, promotion_id)
    if promotion is None:
        raise DomainError(ErrorCode.NOT_FOUND)
    before = "active" if promotion.active else "inactive"
    promotion.active = False
    audit.record(uow, actor.id, "promotion.deactivated", f"promotion:{promotion.id}", old=before, new="inactive")
    return promotion


def rule(promotion: Promotion, language: str = "en") -> PromotionRule:
    return PromotionRule(
        id=promotion.id,
        name=promotion.name.get(language) or promotion.name["en"],
        kind=promotion.kind,
        percent_off=promotion.percent_off,
        amount_off=promotion.amount_off,
        bonus=tuple(Allowance(Unit(b["unit"]), Zone(b["zone"]), int(b["amount"])) for b in promotion.bonus),
        code=promotion.code,
        plan_codes=frozenset(promotion.plan_codes) if promotion.plan_codes is not None else None,
        first_renewal_only=promotion.first_renewal_only,
        exclusive=promotion.exclusive,
        starts_at=promotion.starts_at,
        ends_at=promotion.ends_at,
    )


def current(uow: UnitOfWork, now: datetime) -> list[Promotion]:
    """Active promotions in their time window (automatic and code ones)."""
    return list(
        uow.session.scalars(
            select(Promotion)
            .where(
                Promotion.active.is_(True),
                Promotion.starts_at <= now,
                or_(Promotion.ends_at.is_(None), Promotion.ends_at > now),
            )
            .order_by(Promotion.id)
        ).all()
    )


def automatic_rules(
    uow: UnitOfWork, now: datetime, language: str, account_id: int | None = None
) -> list[PromotionRule]:
    """Automatic promotions running now that still have a use left (for this account too)."""
    return [
        rule(p, language)
        for p in current(uow, now)
        if p.code is None
        and (p.max_uses is None or p.uses < p.max_uses)
        and (
            p.max_uses_per_account is None
            or account_id is None
            or used_by(uow, p.id, account_id) < p.max_uses_per_account
        )
    ]


def code_rule(
    uow: UnitOfWork, account: Account, code: str, plan_code: str, first_purchase: bool, language: str
) -> PromotionRule:
    """The promotion behind a code, if this account may use it on this plan now. A code this
    account has used up is refused as already used (PROMO_CODE_ALREADY_USED) before any other
    condition: that is what the subscriber needs to hear, whatever else would also stop it."""
    now = uow.now()
    promotion = uow.session.scalars(
        select(Promotion).where(Promotion.code == code.strip().upper(), Promotion.active.is_(True))
    ).first()
    if promotion is None or promotion.starts_at > now:
        raise DomainError(ErrorCode.PROMO_CODE_INVALID, field="promo_code")
    if promotion.ends_at is not None and promotion.ends_at <= now:
        raise DomainError(ErrorCode.PROMO_CODE_EXPIRED, field="promo_code")
    if promotion.max_uses_per_account is not None and used_by(uow, promotion.id, account.id) >= (
        promotion.max_uses_per_account
    ):
        raise DomainError(ErrorCode.PROMO_CODE_ALREADY_USED, field="promo_code")
    if promotion.max_uses is not None and promotion.uses >= promotion.max_uses:
        raise DomainError(ErrorCode.PROMO_CODE_USED_UP, field="promo_code")
    found = rule(promotion, language)
    if found.first_renewal_only and not first_purchase:
        raise DomainError(ErrorCode.PROMO_CODE_FIRST_RENEWAL_ONLY, field="promo_code")
    if not found.applies(plan_code, now, first_purchase):
        raise DomainError(ErrorCode.PROMO_CODE_NOT_APPLICABLE, field="promo_code")
    return found


def used_by(uow: UnitOfWork, promotion_id: int, account_id: int) -> int:
    return int(
        uow.session.scalar(
            select(func.count())
            .select_from(PromotionRedemption)
            .where(
                PromotionRedemption.promotion_id == promotion_id,
                PromotionRedemption.account_id == account_id,
                PromotionRedemption.status.in_((RESERVED, CONFIRMED)),
            )
        )
        or 0
    )


def reserve(uow: UnitOfWork, order: Order, promotion_ids: list[int]) -> None:
    """Count one use of each promotion for this order. The global limit is a conditional UPDATE;
    the per-account limit is safe because the caller holds the account's row lock."""
    for promotion_id in promotion_ids:
        promotion = uow.session.get(Promotion, promotion_id)
        assert promotion is not None
        if promotion.max_uses_per_account is not None and used_by(uow, promotion_id, order.account_id) >= (
            promotion.max_uses_per_account
        ):
            raise DomainError(ErrorCode.PROMO_CODE_ALREADY_USED, field="promo_code")
        counted = cast(
            CursorResult[Any],
            uow.session.execute(
                update(Promotion)
                .where(
                    Promotion.id == promotion_id, or_(Promotion.max_uses.is_(None), Promotion.uses < Promotion.max_uses)
                )
                .values(uses=Promotion.uses + 1)
            ),
        )
        if counted.rowcount != 1:
            raise DomainError(ErrorCode.PROMO_CODE_USED_UP, field="promo_code")
        existing = uow.session.scalars(
            select(PromotionRedemption).where(
                PromotionRedemption.promotion_id == promotion_id, PromotionRedemption.order_id == order.id
            )
        ).first()
        if existing is None:
            uow.session.add(
                PromotionRedemption(
                    promotion_id=promotion_id,
                    account_id=order.account_id,
                    order_id=order.id,
                    status=RESERVED,
                    created_at=uow.now(),
                )
            )
        else:
            existing.status = RESERVED
    uow.session.flush()


def release(uow: UnitOfWork, order: Order) -> None:
    """Give back the uses an unpaid order reserved (failed, expired or cancelled payment)."""
    reserved = uow.session.scalars(
        select(PromotionRedemption).where(
            PromotionRedemption.order_id == order.id, PromotionRedemption.status == RESERVED
        )
    ).all()
    for redemption in reserved:
        redemption.status = RELEASED
        uow.session.execute(
            update(Promotion).where(Promotion.id == redemption.promotion_id).values(uses=Promotion.uses - 1)
        )


def ensure_reserved(uow: UnitOfWork, order: Order) -> None:
    """Before a new payment attempt: take back any use released by the previous failure."""
    released = uow.session.scalars(
        select(PromotionRedemption.promotion_id).where(
            PromotionRedemption.order_id == order.id, PromotionRedemption.status == RELEASED
        )
    ).all()
    if released:
        reserve(uow, order, list(released))


def release_when_settled(uow: UnitOfWork, order: Order) -> None:
    """Give back the uses of an order that failed, expired or was cancelled — once none of its
    payments can still capture: until then its money, and the use with it, may still come."""
    if order.status not in (OrderStatus.FAILED, OrderStatus.EXPIRED, OrderStatus.CANCELLED):
        return
    still_open = uow.session.scalar(
        select(Payment.id).where(Payment.order_id == order.id, Payment.status.in_(MAY_CAPTURE)).limit(1)
    )
    if still_open is None:
        release(uow, order)


def confirm(uow: UnitOfWork, order: Order) -> None:
    """The order is being applied: its reserved uses become final. A use it gave back meanwhile
    (it failed, expired or was cancelled, then was paid after all) is taken again only within the
    promotion's limits: if someone else has it now, the order cannot be applied (PROMO_CODE_USED_UP)
    and its money goes back."""
    if not _priced_with_promotions(order):
        return  # uses are reserved only for the promotions its quote lists: none to confirm
    ensure_reserved(uow, order)
    uow.session.execute(
        update(PromotionRedemption)
        .where(PromotionRedemption.order_id == order.id, PromotionRedemption.status == RESERVED)
        .values(status=CONFIRMED)
    )


def _priced_with_promotions(order: Order) -> bool:
    """The order's quote names a promotion (orders.create reserves a use of each one it names);
    a quote without those lists at all is taken to name some."""
    quote = order.quote or {}
    if "adjustments" not in quote or "bonuses" not in quote:
        return True
    return bool(quote["adjustments"] or quote["bonuses"])


# --- Flows: each owns its transaction and returns what the API and the console show ---------------


@dataclass(frozen=True)
class Board:
    """Every promotion, newest first, which of them run now, and the plan codes one may target."""

    promotions: list[Promotion]
    running: frozenset[int]
    plan_codes: list[str]


def board(transactions: Transactions) -> Board:
    with transactions() as uow:
        rows = list(uow.session.scalars(select(Promotion).order_by(Promotion.id.desc())).all())
        now = uow.now()
        running = frozenset(
            p.id for p in rows if p.active and p.starts_at <= now and (p.ends_at is None or p.ends_at > now)
        )
        codes = [p.code for p in catalog.list_plans(uow, include_retired=False)]
    return Board(rows, running, codes)


def every_promotion(transactions: Transactions) -> list[Promotion]:
    with transactions() as uow:
        return list(uow.session.scalars(select(Promotion).order_by(Promotion.id.desc())).all())


def running_without_code(transactions: Transactions) -> list[Promotion]:
    """Promotions running now that apply without a code (codes are not listed)."""
    with transactions() as uow:
        return [p for p in current(uow, uow.now()) if p.code is None]


def add(transactions: Transactions, actor: Account, form: PromotionInput) -> Promotion:
    with transactions() as uow:
        return create(uow, actor, form)


def end(transactions: Transactions, actor: Account, promotion_id: int) -> Promotion:
    if not is_id(promotion_id):
        raise DomainError(ErrorCode.NOT_FOUND)
    with transactions() as uow:
        return deactivate(uow, actor, promotion_id)
