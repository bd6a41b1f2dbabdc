"""Pricing a renewal: the list price, promotions by explicit stacking rules, the amount to pay.

Stacking rules (shown to staff and subscribers alike):
1. At most one automatic discount applies: the one worth most to the subscriber.
2. A promo code's discount applies after it, on what is left to pay — unless the code is
   exclusive, in which case the automatic discount is dropped and only the code applies.
3. Percentages are taken before fixed amounts, rounded half up to the minor unit; the total
   never goes below zero.
4. Bonus gifts ("buy X, get bonus data") are not discounts: every eligible one is given.

A promotion marked `first_renewal_only` (the name is kept for the API and the table) is for a
line's first purchase: the first period paid for on the line, whether it is the activation of a
new line or, on a line started without an order (by staff, with a voucher), its first renewal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from duckline.catalog.rules import Allowance
from duckline.core.money import Money


class PromotionKind(StrEnum):
    PERCENT_OFF = "percent_off"
    AMOUNT_OFF = "amount_off"
    BONUS = "bonus"


class RedemptionStatus(StrEnum):
    """A promotion use taken by an order: held while it may be paid, kept once paid."""

    RESERVED = "reserved"
    CONFIRMED = "confirmed"
    RELEASED = "released"


@dataclass(frozen=True)
class PromotionRule:
    id: int
    name: str
    kind: PromotionKind
    percent_off: int = 0
    amount_off: int = 0
    bonus: tuple[Allowance, ...] = ()
    code: str | None = None
    plan_codes: frozenset[str] | None = None
    first_renewal_only: bool = False  # for a line's first purchase only (see the module's docstring)
    exclusive: bool = False
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    def applies(self, plan_code: str, now: datetime, first_purchase: bool) -> bool:
        in_window = (self.starts_at is None or self.starts_at <= now) and (self.ends_at is None or now < self.ends_at)
        for_plan = self.plan_codes is None or plan_code in self.plan_codes
        return in_window and for_plan and (first_purchase or not self.first_renewal_only)

    def discount_on(self, amount: int) -> int:
        if self.kind is PromotionKind.PERCENT_OFF:
            return min(amount, (amount * self.percent_off + 50) // 100)
        if self.kind is PromotionKind.AMOUNT_OFF:
            return min(amount, self.amount_off)
        return 0


@dataclass(frozen=True)
class Adjustment:
    promotion_id: int
    name: str
    amount: int  # minor units taken off (positive)


@dataclass(frozen=True)
class Bonus:
    promotion_id: int
    name: str
    allowance: Allowance


@dataclass(frozen=True)
class Price:
    list_price: Money
    adjustments: list[Adjustment] = field(default_factory=list)
    bonuses: list[Bonus] = field(default_factory=list)

    @property
    def discount(self) -> int:
        return sum(a.amount for a in self.adjustments)

    @property
    def total(self) -> Money:
        return Money(self.list_price.amount - self.discount, self.list_price.currency)

    @property
    def promotion_ids(self) -> list[int]:
        return sorted({a.promotion_id for a in self.adjustments} | {b.promotion_id for b in self.bonuses})


def price(
    list_price: Money,
    plan_code: str,
    automatic: list[PromotionRule],
    code: PromotionRule | None,
    now: datetime,
    first_purchase: bool,
) -> Price:
    """Apply the stacking rules above. `code` must already be known valid for this plan."""
    eligible = [p for p in automatic if p.code is None and p.applies(plan_code, now, first_purchase)]
    discounts = [p for p in eligible if p.kind is not PromotionKind.BONUS]
    chosen: list[PromotionRule] = []
    if discounts and not (code and code.exclusive):
        chosen.append(max(discounts, key=lambda p: (p.discount_on(list_price.amount), -p.id)))
    if code and code.kind is not PromotionKind.BONUS:
        chosen.append(code)
    chosen.sort(key=lambda p: 0 if p.kind is PromotionKind.PERCENT_OFF else 1)

    left, adjustments = list_price.amount, []
    for promotion in chosen:
        taken = promotion.discount_on(left)
        if taken:
            adjustments.append(Adjustment(promotion.id, promotion.name, taken))
            left -= taken
    gifts = [p for p in eligible if p.kind is PromotionKind.BONUS] + (
        [code] if code and code.kind is PromotionKind.BONUS else []
    )
    bonuses = [Bonus(p.id, p.name, allowance) for p in gifts for allowance in p.bonus]
    return Price(list_price, adjustments, bonuses)
