"""API bodies for quotes, orders, payments, receipts, promotions and reconciliation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, Field

from duckline.billing.models import Order, Payment, Receipt
from duckline.billing.order_states import PaymentMethod
from duckline.billing.orders import Quote
from duckline.billing.pricing import PromotionKind
from duckline.catalog.models import Promotion
from duckline.catalog.rules import Unit, Zone
from duckline.catalog.schemas import AllowanceIn
from duckline.core import i18n
from duckline.core.money import Money
from duckline.support import cases as tickets
from duckline.support.models import Ticket
from duckline.web.fields import Amount, Count, Currency, MinorUnits, PositiveMinorUnits, RowId, Texts


def shown(amount: int, currency: str, language: str) -> str:
    return Money(amount, currency).format(i18n.babel_locale(language))


class QuoteIn(BaseModel):
    line_id: RowId
    plan_code: str = Field(max_length=40)
    promo_code: str | None = Field(default=None, max_length=40)


class AdjustmentOut(BaseModel):
    promotion_id: int
    name: str
    amount: int
    amount_display: str


class BonusOut(BaseModel):
    promotion_id: int
    name: str
    unit: str
    zone: str
    amount: int


class QuoteOut(BaseModel):
    line_id: int
    plan_code: str
    kind: str
    currency: str
    list_amount: int
    list_display: str
    adjustments: list[AdjustmentOut]
    total_amount: int
    total_display: str
    period_start: datetime
    period_end: datetime
    allowances: list[AllowanceIn]
    bonuses: list[BonusOut]
    payment_methods: list[str]

    @classmethod
    def of(cls, q: Quote, language: str, methods: list[PaymentMethod]) -> QuoteOut:
        currency = q.price.total.currency
        return cls(
            line_id=q.line.id,
            plan_code=q.plan.code,
            kind=q.kind.value,
            currency=currency,
            list_amount=q.price.list_price.amount,
            list_display=shown(q.price.list_price.amount, currency, language),
            adjustments=[
                AdjustmentOut(
                    promotion_id=a.promotion_id,
                    name=a.name,
                    amount=a.amount,
                    amount_display=shown(a.amount, currency, language),
                )
                for a in q.price.adjustments
            ],
            total_amount=q.price.total.amount,
            total_display=shown(q.price.total.amount, currency, language),
            period_start=q.term.start,
            period_end=q.term.end,
            allowances=[AllowanceIn(unit=a.unit, zone=a.zone, amount=a.amount) for a in q.allowances],
            bonuses=[
                BonusOut(
                    promotion_id=b.promotion_id,
                    name=b.name,
                    unit=b.allowance.unit.value,
                    zone=b.allowance.zone.value,
                    amount=b.allowance.amount,
                )
                for b in q.price.bonuses
            ],
            payment_methods=[m.value for m in methods if m is not PaymentMethod.SANDBOX],
        )


class OrderIn(QuoteIn):
    payment_method: PaymentMethod
    auto_renew: bool = Field(
        default=False,
        description="save the card with the provider and renew automatically before expiry; card payments only:"
        " with alipay or wechatpay the order is refused (422 auto_renew_needs_card) and nothing is created",
    )


class RetryIn(BaseModel):
    payment_method: PaymentMethod


class PaymentOut(BaseModel):
    id: int
    provider: str
    method: str
    status: str
    amount: int
    currency: str
    card_brand: str | None
    card_last4: str | None
    wallet_account: str | None
    failure_code: str | None
    next_action: dict[str, Any] | None

    @classmethod
    def of(cls, p: Payment) -> PaymentOut:
        return cls(
            id=p.id,
            provider=p.provider,
            method=p.method.value,
            status=p.status.value,
            amount=p.amount,
            currency=p.currency,
            card_brand=p.card_brand,
            card_last4=p.card_last4,
            wallet_account=p.wallet_account,
            failure_code=p.failure_code,
            next_action=p.next_action if p.status.value in ("pending", "requires_action") else None,
        )


class OrderOut(BaseModel):
    id: int
    line_id: int
    kind: str
    status: str
    plan_code: str
    currency: str
    list_amount: int
    discount_amount: int
    total_amount: int
    total_display: str
    refunded_amount: int
    period_start: datetime | None
    period_end: datetime | None
    created_at: datetime
    receipt_number: str | None
    payments: list[PaymentOut]

    @classmethod
    def of(cls, o: Order, payments: list[Payment], receipt: Receipt | None, language: str) -> OrderOut:
        return cls(
            id=o.id,
            line_id=o.line_id,
            kind=o.kind.value,
            status=o.status.value,
            plan_code=str(o.quote["plan_code"]),
            currency=o.currency,
            list_amount=o.list_amount,
            discount_amount=o.discount_amount,
            total_amount=o.total_amount,
            total_display=shown(o.total_amount, o.currency, language),
            refunded_amount=o.refunded_amount,
            period_start=o.period_start,
            period_end=o.period_end,
            created_at=o.created_at,
            receipt_number=receipt.display_number if receipt else None,
            payments=[PaymentOut.of(p) for p in payments],
        )


class ReceiptOut(BaseModel):
    id: int
    number: str
    kind: str
    order_id: int
    amount: int
    currency: str
    amount_display: str
    issued_at: datetime
    details: dict[str, Any]
    pdf: str

    @classmethod
    def of(cls, r: Receipt, language: str) -> ReceiptOut:
        return cls(
            id=r.id,
            number=r.display_number,
            kind=r.kind,
            order_id=r.order_id,
            amount=r.amount,
            currency=r.currency,
            amount_display=shown(r.amount, r.currency, language),
            issued_at=r.issued_at,
            details=r.details,
            pdf=f"/api/v1/receipts/{r.id}/pdf",
        )


class RefundIn(BaseModel):
    amount: PositiveMinorUnits | None = Field(default=None, description="minor units; default: all that is left")
    reason: str = Field(min_length=1, max_length=300)


class RefundOut(BaseModel):
    id: int
    order_id: int
    amount: int
    currency: str
    status: str
    reason: str


class MonthTotal(BaseModel):
    month: str
    paid: int
    refunded: int
    net: int
    currency: str


class BonusIn(BaseModel):
    unit: Unit
    zone: Zone
    amount: Amount


class PromotionIn(BaseModel):
    name: Texts
    kind: PromotionKind
    percent_off: int = Field(default=0, ge=0, le=100)
    amount_off: MinorUnits = 0
    currency: Currency = "HKD"
    bonus: list[BonusIn] = Field(default_factory=list, max_length=10)
    code: str | None = Field(default=None, min_length=3, max_length=40, pattern=r"^[A-Za-z0-9\-]+$")
    plan_codes: list[Annotated[str, Field(max_length=40)]] | None = Field(default=None, max_length=100)
    first_renewal_only: bool = False
    exclusive: bool = False
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    max_uses: Count | None = None
    max_uses_per_account: Count | None = None


class PromotionOut(BaseModel):
    id: int
    name: dict[str, str]
    kind: str
    percent_off: int
    amount_off: int
    currency: str
    bonus: list[dict[str, Any]]
    code: str | None
    plan_codes: list[str] | None
    first_renewal_only: bool
    exclusive: bool
    starts_at: datetime
    ends_at: datetime | None
    max_uses: int | None
    max_uses_per_account: int | None
    uses: int
    active: bool

    @classmethod
    def of(cls, p: Promotion) -> PromotionOut:
        return cls(
            id=p.id,
            name=p.name,
            kind=p.kind.value,
            percent_off=p.percent_off,
            amount_off=p.amount_off,
            currency=p.currency,
            bonus=p.bonus,
            code=p.code,
            plan_codes=p.plan_codes,
            first_renewal_only=p.first_renewal_only,
            exclusive=p.exclusive,
            starts_at=p.starts_at,
            ends_at=p.ends_at,
            max_uses=p.max_uses,
            max_uses_per_account=p.max_uses_per_account,
            uses=p.uses,
            active=p.active,
        )


class CaseOut(BaseModel):
    id: int
    kind: str
    status: str
    topic: str | None = Field(description="What the case is about, for machines (amount_mismatch, paid_not_applied, …)")
    params: dict[str, Any] = Field(description="The topic's values: ids, amounts in minor units, error codes")
    subject: str = Field(description="In the caller's language")
    body: str = Field(description="In the caller's language")
    order_id: int | None
    account_id: int | None
    order_status: str | None
    resolution: str | None
    created_at: datetime

    @classmethod
    def of(cls, t: Ticket, order: Order | None, language: str) -> CaseOut:
        subject, body, resolution = tickets.describe(t, language)
        return cls(
            id=t.id,
            kind=t.kind,
            status=t.status,
            topic=t.topic,
            params=t.params or {},
            subject=subject,
            body=body,
            order_id=t.order_id,
            account_id=t.account_id,
            order_status=order.status.value if order else None,
            resolution=resolution,
            created_at=t.created_at,
        )


class ResolveIn(BaseModel):
    action: str = Field(pattern="^(apply|refund|close)$")
    reason: str = Field(min_length=1, max_length=500)


class AutoRenewIn(BaseModel):
    enabled: bool
    saved_method_id: RowId | None = None
