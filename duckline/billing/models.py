"""The billing tables. Rows are plain records; the rules that change them live beside them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from duckline.billing.order_states import (
    OrderKind,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    ReceiptKind,
    RefundStatus,
)
from duckline.db.base import Base
from duckline.db.types import BigId, enum_column


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"))
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"))
    kind: Mapped[OrderKind] = mapped_column(enum_column(OrderKind))
    status: Mapped[OrderStatus] = mapped_column(enum_column(OrderStatus))
    currency: Mapped[str] = mapped_column(String(3))
    list_amount: Mapped[int] = mapped_column(BigInteger)
    discount_amount: Mapped[int] = mapped_column(BigInteger)
    total_amount: Mapped[int] = mapped_column(BigInteger)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    quote: Mapped[dict[str, Any]]  # the priced breakdown the subscriber agreed to
    payment_method: Mapped[PaymentMethod] = mapped_column(enum_column(PaymentMethod))
    idempotency_key: Mapped[str | None] = mapped_column(String(100))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=False)
    period_start: Mapped[datetime | None]  # set when fulfilled
    period_end: Mapped[datetime | None]
    pay_by: Mapped[datetime]  # after this an unpaid order expires
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    fulfilled_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_orders_account_idempotency_key"),
        Index("ix_orders_account_created", "account_id", "created_at"),
        Index("ix_orders_line_created", "line_id", "created_at"),
        Index("ix_orders_status", "status", "updated_at"),
        CheckConstraint("total_amount >= 0", name="total_not_negative"),
        CheckConstraint("refunded_amount >= 0 AND refunded_amount <= total_amount", name="refund_in_range"),
    )


class OrderEvent(Base):
    __tablename__ = "order_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    from_status: Mapped[OrderStatus | None] = mapped_column(enum_column(OrderStatus))
    to_status: Mapped[OrderStatus] = mapped_column(enum_column(OrderStatus))
    reason: Mapped[str] = mapped_column(String(300))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    at: Mapped[datetime]


class Payment(Base):
    """One attempt with one provider. Only the provider's references are kept, never a card number."""

    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    # Ours, set when the row is inserted, before any provider call: the provider's idempotency key
    # (Stripe) or out_trade_no (Alipay, WeChat Pay), so a payment is found by it whatever happened.
    reference: Mapped[str] = mapped_column(String(40))
    provider: Mapped[str] = mapped_column(String(20))
    method: Mapped[PaymentMethod] = mapped_column(enum_column(PaymentMethod))
    provider_ref: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[PaymentStatus] = mapped_column(enum_column(PaymentStatus))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    captured_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    wallet_account: Mapped[str | None] = mapped_column(String(60))  # masked
    failure_code: Mapped[str | None] = mapped_column(String(60))
    failure_message: Mapped[str | None] = mapped_column(String(300))
    next_action: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    saved_method_id: Mapped[int | None] = mapped_column(ForeignKey("saved_payment_methods.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    captured_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("provider", "provider_ref", name="uq_payments_provider_ref"),
        UniqueConstraint("reference", name="uq_payments_reference"),
        Index("ix_payments_status", "status", "updated_at"),
    )


class WebhookEvent(Base):
    """Every verified notification from a provider; (provider, event_id) makes replays harmless."""

    __tablename__ = "webhook_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(120))
    event_type: Mapped[str] = mapped_column(String(60))
    provider_ref: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    outcome: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("provider", "event_id", name="uq_webhook_events_provider_event"),)


class SavedPaymentMethod(Base):
    __tablename__ = "saved_payment_methods"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    method: Mapped[PaymentMethod] = mapped_column(enum_column(PaymentMethod))
    token: Mapped[str] = mapped_column(String(200))  # the provider's reusable reference
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    card_expiry: Mapped[str | None] = mapped_column(String(7))  # "MM/YYYY", when the provider says
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ReceiptCounter(Base):
    """The next number of each series; its row lock makes numbering gapless under concurrency."""

    __tablename__ = "receipt_counters"
    series: Mapped[str] = mapped_column(String(20), primary_key=True)
    next_number: Mapped[int] = mapped_column(BigInteger)


class Receipt(Base):
    """Immutable: a receipt for a fulfilled order, or a credit note for a refund."""

    __tablename__ = "receipts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    series: Mapped[str] = mapped_column(String(20))
    number: Mapped[int] = mapped_column(BigInteger)
    display_number: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[ReceiptKind] = mapped_column(enum_column(ReceiptKind, 12))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    details: Mapped[dict[str, Any]]  # snapshot: plan names, period, adjustments, payment method (masked)
    issued_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("series", "number", name="uq_receipts_series_number"),)


class Refund(Base):
    __tablename__ = "refunds"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(300))
    status: Mapped[RefundStatus] = mapped_column(enum_column(RefundStatus, 12))
    provider_ref: Mapped[str | None] = mapped_column(String(100))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))  # None: reconciliation, or the provider
    created_at: Mapped[datetime]
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        # A refund the provider names is recorded once, however often its notice comes.
        UniqueConstraint("payment_id", "provider_ref", name="uq_refunds_payment_provider_ref"),
    )


class AutoRenewAttempt(Base):
    """One try to renew a line for one period; unique per (line, period, attempt) so a rerun is a no-op."""

    __tablename__ = "auto_renew_attempts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"))
    period_end: Mapped[datetime]  # the expiry being renewed
    attempt: Mapped[int] = mapped_column(Integer)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    # started, paid, declined, error, or else the payment's status (unknown: it may still capture, …)
    outcome: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("line_id", "period_end", "attempt", name="uq_auto_renew_attempts_cycle"),)


class SandboxPayment(Base):
    """State of Duckline's built-in sandbox provider (it plays the provider's side)."""

    __tablename__ = "sandbox_payments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ref: Mapped[str] = mapped_column(String(60), unique=True)
    reference: Mapped[str | None] = mapped_column(String(60))  # the merchant's (Duckline's) reference
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    customer_token: Mapped[str | None] = mapped_column(String(60))
    return_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]


class SandboxWebhook(Base):
    """Notifications the sandbox owes Duckline, delivered (and re-delivered) by its sender."""

    __tablename__ = "sandbox_webhooks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(60), unique=True)
    payload: Mapped[dict[str, Any]]
    deliveries: Mapped[int] = mapped_column(Integer, default=0)  # posts that were answered
    deliver_after: Mapped[datetime]  # when it is (next) due
    lost: Mapped[bool] = mapped_column(Boolean, default=False)  # simulate a webhook that never arrives
    # pending, sending, delivered, failed, lost: its place in the shared delivery (services/delivery.py)
    status: Mapped[str] = mapped_column(String(10), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_until: Mapped[datetime | None]
    claim: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    __table_args__ = (Index("ix_sandbox_webhooks_due", "status", "deliver_after", "id"),)
