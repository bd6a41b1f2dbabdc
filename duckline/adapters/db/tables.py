"""The schema. Rows are plain records; the rules that change them live in duckline.domain."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from duckline.adapters.db.types import BigId, UTCDateTime, enum_column
from duckline.domain.catalog import PlanKind, PlanStatus, Unit, Zone
from duckline.domain.charging import CreditSessionStatus
from duckline.domain.contacts import ContactKind
from duckline.domain.identity import DocumentType, KycStatus
from duckline.domain.lines import LineStatus, Suspension
from duckline.domain.messaging import NotificationStatus, WebhookDeliveryStatus
from duckline.domain.orders import OrderKind, OrderStatus, PaymentMethod, PaymentStatus, ReceiptKind, RefundStatus
from duckline.domain.pricing import PromotionKind, RedemptionStatus
from duckline.domain.roles import Role
from duckline.domain.support import LinkTarget, TicketKind, TicketStatus

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        list[str]: JSON(),
        list[dict[str, Any]]: JSON(),
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        dict[str, str]: JSON(),
    }


class Person(Base):
    """A real-name identity record; one per identity document, shared by its accounts' lines."""

    __tablename__ = "persons"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    document_type: Mapped[DocumentType] = mapped_column(enum_column(DocumentType))
    # Keyed hash of type + number: finds the same person without decrypting anything.
    document_hash: Mapped[str] = mapped_column(String(64), unique=True)
    document_cipher: Mapped[bytes] = mapped_column(LargeBinary)
    document_masked: Mapped[str] = mapped_column(String(40))
    name_en: Mapped[str | None] = mapped_column(String(100))
    name_zh: Mapped[str | None] = mapped_column(String(30))
    birth_date: Mapped[date] = mapped_column(Date)
    guardian_id: Mapped[int | None] = mapped_column(ForeignKey("guardians.id"))  # under the minimum age
    kyc_status: Mapped[KycStatus] = mapped_column(enum_column(KycStatus))
    kyc_reason: Mapped[str | None] = mapped_column(String(300))
    # Counted with a conditional UPDATE so concurrent registrations cannot pass the limit.
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    __table_args__ = (CheckConstraint("line_count >= 0", name="line_count_not_negative"),)


class Guardian(Base):
    """The adult named by a subscriber under the minimum age, one row per registration that names
    them. Not a Person: naming someone takes neither the identity place their own registration
    needs nor any of the lines their identity may hold. Protected as a person's identity is."""

    __tablename__ = "guardians"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    document_type: Mapped[DocumentType] = mapped_column(enum_column(DocumentType))
    # The same keyed hash as persons.document_hash: finds every minor one adult answers for.
    document_hash: Mapped[str] = mapped_column(String(64), index=True)
    document_cipher: Mapped[bytes] = mapped_column(LargeBinary)
    document_masked: Mapped[str] = mapped_column(String(40))
    name_en: Mapped[str | None] = mapped_column(String(100))
    name_zh: Mapped[str | None] = mapped_column(String(30))
    birth_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime]


class DocumentImage(Base):
    __tablename__ = "document_images"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    content_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    cipher: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted with the data key
    created_at: Mapped[datetime]


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)  # E.164
    phone_verified_at: Mapped[datetime | None]
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    # Wrong passwords since the last good one; enough of them lock sign-in until locked_until.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None]
    role: Mapped[Role] = mapped_column(enum_column(Role), default=Role.SUBSCRIBER)
    language: Mapped[str] = mapped_column(String(10), default="en")
    timezone: Mapped[str] = mapped_column(String(40), default="Asia/Hong_Kong")
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), index=True)
    # Per channel and category, e.g. {"email": {"marketing": true}}; absent means the default.
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    created_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]  # closed by its holder: no sign-in from then on (see AccountClosure)


class OtpChallenge(Base):
    __tablename__ = "otp_challenges"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(30))
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    consumed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    __table_args__ = (Index("ix_otp_challenges_phone_purpose", "phone", "purpose", "created_at"),)


class ApiToken(Base):
    """Bearer tokens for API clients and network elements; only a hash is kept."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # For the owner's list of sessions: when it was last used (to the minute, not every request)
    # and the browser or client that signed in.
    last_used_at: Mapped[datetime | None]
    user_agent: Mapped[str | None] = mapped_column(String(200))
    # A fresh proof of the account holder (password or code) given in this session: risky
    # changes (phone, email, password) need one younger than `step_up_ttl_seconds`.
    reauthenticated_at: Mapped[datetime | None]


class PoolNumber(Base):
    __tablename__ = "pool_numbers"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    msisdn: Mapped[str] = mapped_column(String(20), unique=True)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    allocated_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_pool_numbers_available", "available", "id"),)


class Plan(Base):
    __tablename__ = "plans"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[PlanKind] = mapped_column(enum_column(PlanKind))
    status: Mapped[PlanStatus] = mapped_column(enum_column(PlanStatus), default=PlanStatus.ACTIVE)
    names: Mapped[dict[str, str]]
    descriptions: Mapped[dict[str, str]]
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    validity_days: Mapped[int] = mapped_column(Integer, default=0)
    validity_months: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    __table_args__ = (CheckConstraint("price_amount >= 0", name="price_not_negative"),)


class PlanAllowance(Base):
    __tablename__ = "plan_allowances"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"), index=True)
    unit: Mapped[Unit] = mapped_column(enum_column(Unit))
    zone: Mapped[Zone] = mapped_column(enum_column(Zone, 4))
    amount: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (UniqueConstraint("plan_id", "unit", "zone"),)


class Line(Base):
    __tablename__ = "lines"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    msisdn: Mapped[str] = mapped_column(String(20), unique=True)
    status: Mapped[LineStatus] = mapped_column(enum_column(LineStatus))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id"))
    period_start: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    voicemail: Mapped[bool] = mapped_column(Boolean, default=False)
    caller_id: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    auto_renew_method_id: Mapped[int | None] = mapped_column(ForeignKey("saved_payment_methods.id"))
    # Service stopped at the subscriber's request (a lost or stolen phone), over any status.
    suspension: Mapped[Suspension | None] = mapped_column(enum_column(Suspension, 10))
    suspended_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class LineEvent(Base):
    """Every status change of a line, with why."""

    __tablename__ = "line_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), index=True)
    from_status: Mapped[LineStatus | None] = mapped_column(enum_column(LineStatus))
    to_status: Mapped[LineStatus] = mapped_column(enum_column(LineStatus))
    reason: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]


class EsimProfile(Base):
    __tablename__ = "esim_profiles"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), unique=True)
    iccid: Mapped[str] = mapped_column(String(20), unique=True)
    smdp_address: Mapped[str] = mapped_column(String(200))
    matching_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class Bucket(Base):
    """An allowance of one unit in one zone. `remaining` is a projection of the ledger."""

    __tablename__ = "buckets"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"))
    unit: Mapped[Unit] = mapped_column(enum_column(Unit))
    zone: Mapped[Zone] = mapped_column(enum_column(Zone, 4))
    initial: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(20))  # plan, addon, promotion (a bonus)
    source_ref: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    __table_args__ = (
        Index("ix_buckets_line_valid", "line_id", "valid_until"),
        CheckConstraint("remaining >= 0 AND remaining <= initial", name="remaining_in_range"),
    )


class LedgerEntry(Base):
    """Append-only: every change to an allowance, from which buckets can be rebuilt."""

    __tablename__ = "ledger_entries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign keys on line_id and usage_record_id (migration 0005): on the usage hot path each
    # would cost a check per row. A ledger row's line is its bucket's line, and its usage record is
    # inserted in the same transaction.
    line_id: Mapped[int] = mapped_column(BigId, index=True)
    bucket_id: Mapped[int | None] = mapped_column(ForeignKey("buckets.id"), index=True)
    unit: Mapped[Unit] = mapped_column(enum_column(Unit))
    zone: Mapped[Zone] = mapped_column(enum_column(Zone, 4))
    delta: Mapped[int] = mapped_column(BigInteger)  # + grant, - usage; overage rows have no bucket
    reason: Mapped[str] = mapped_column(String(20))  # grant, usage, overage, refund (what was left is taken back)
    usage_record_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime]


class UsageRecord(Base):
    """A CDR from a network element; (source, record_id) makes a retried report harmless."""

    __tablename__ = "usage_records"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(60))
    record_id: Mapped[str] = mapped_column(String(100))
    # No foreign key (migration 0005): usage.ingest takes the line id from `lines` in the same
    # transaction (lines are never deleted), and a check per row is costly on the hot path.
    line_id: Mapped[int] = mapped_column(BigId)
    unit: Mapped[Unit] = mapped_column(enum_column(Unit))
    zone: Mapped[Zone] = mapped_column(enum_column(Zone, 4))
    quantity: Mapped[int] = mapped_column(BigInteger)  # what was charged and what was overage: the ledger
    started_at: Mapped[datetime]
    received_at: Mapped[datetime]
    __table_args__ = (
        UniqueConstraint("source", "record_id", name="uq_usage_records_source_record"),
        Index("ix_usage_records_line_started", "line_id", "started_at"),
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
    )


class CreditSession(Base):
    """A Diameter credit-control session (online charging): units reserved on a line until the
    network element reports them used; its last answer, for a retransmitted request."""

    __tablename__ = "credit_sessions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(255), unique=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"))
    unit: Mapped[Unit] = mapped_column(enum_column(Unit))
    zone: Mapped[Zone] = mapped_column(enum_column(Zone, 4))
    status: Mapped[CreditSessionStatus] = mapped_column(enum_column(CreditSessionStatus, 10))
    reserved: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime]  # a reservation holds nothing after this
    last_request_number: Mapped[int] = mapped_column(Integer)
    last_answer: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    __table_args__ = (
        Index("ix_credit_sessions_line_open", "line_id", "status", "unit", "zone"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    )


class Notification(Base):
    """Outbox: written in the same transaction as its cause, delivered by the worker afterwards.

    A worker claims rows (status sending, its `claim` token, a short lease it renews while it makes
    progress) so two workers never send one message; a claim whose worker died is taken back when
    its lease runs out. Every attempt at a message carries its `reference`, so a gateway can drop a
    repeat. `dedupe_key` makes reminders happen once however often the scheduler runs. A one-time
    code is kept (in the texts and `one_time_code`) only until the message is sent, fails for good
    or expires, then struck out.
    """

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    channel: Mapped[str] = mapped_column(String(10))  # sms, email
    recipient: Mapped[str] = mapped_column(String(254))
    template: Mapped[str] = mapped_column(String(60))
    language: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[NotificationStatus] = mapped_column(
        enum_column(NotificationStatus, 10), default=NotificationStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    claim: Mapped[str | None] = mapped_column(String(32))  # the worker round holding the lease
    priority: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # 0 first: codes
    reference: Mapped[str] = mapped_column(String(64))  # ours, the same on every attempt
    one_time_code: Mapped[str | None] = mapped_column(String(32))  # struck from the texts once settled
    expires_at: Mapped[datetime | None]  # not worth sending after this (its code no longer works)
    last_error: Mapped[str | None] = mapped_column(String(500))
    provider_ref: Mapped[str | None] = mapped_column(String(200))
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_notifications_due", "status", "next_attempt_at", "id"),)


class ContactChange(Base):
    """A new email or phone waiting for its code; applied only once the new contact proves itself."""

    __tablename__ = "contact_changes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[ContactKind] = mapped_column(enum_column(ContactKind, 10))
    new_value: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime]
    consumed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class WebhookSubscription(Base):
    """An integrator's endpoint for Duckline's events."""

    __tablename__ = "webhook_subscriptions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    url: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(100))  # HMAC key, shown once at creation
    event_types: Mapped[list[str]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    """One event for one subscription, with its attempts; unique so an event is queued once."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id"))
    event_id: Mapped[int] = mapped_column(ForeignKey("domain_events.id"))
    status: Mapped[WebhookDeliveryStatus] = mapped_column(enum_column(WebhookDeliveryStatus, 10))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    claim: Mapped[str | None] = mapped_column(String(32))  # the worker round holding the lease
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_webhook_deliveries_subscription_event"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at", "id"),
    )


class DeliveryAttempt(Base):
    """One try at delivering one outbox row (a notification, a webhook delivery, a sandbox webhook),
    written when the try is claimed and completed when its outcome is recorded: a try whose worker
    died keeps no outcome. Never the message itself: its error text has any one-time code struck."""

    __tablename__ = "delivery_attempts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subject: Mapped[str] = mapped_column(String(20))  # notification, webhook, sandbox_webhook
    subject_id: Mapped[int] = mapped_column(BigInteger)
    attempt: Mapped[int] = mapped_column(Integer)  # the row's attempt count at this try
    claim: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(10))  # sent, refused, error, expired
    error: Mapped[str | None] = mapped_column(String(500))
    status_code: Mapped[int | None] = mapped_column(Integer)  # the receiver's HTTP answer, where there is one
    __table_args__ = (Index("ix_delivery_attempts_subject", "subject", "subject_id", "id"),)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    # The audit page filters by who, subject, action and time, newest first.
    __table_args__ = (
        Index("ix_audit_log_actor", "actor_id", "id"),
        Index("ix_audit_log_target", "target", "id"),
        Index("ix_audit_log_action", "action", "id"),
        Index("ix_audit_log_at", "at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]]
    at: Mapped[datetime]


# --- Renewal and payments -------------------------------------------------------------------


class Promotion(Base):
    """A pricing rule: a discount (percent or fixed) or a bonus gift, automatic or by code."""

    __tablename__ = "promotions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[dict[str, str]]
    kind: Mapped[PromotionKind] = mapped_column(enum_column(PromotionKind))
    percent_off: Mapped[int] = mapped_column(Integer, default=0)
    amount_off: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    bonus: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    code: Mapped[str | None] = mapped_column(String(40), unique=True)
    plan_codes: Mapped[list[str] | None] = mapped_column(JSON)  # None: every plan
    first_renewal_only: Mapped[bool] = mapped_column(Boolean, default=False)
    exclusive: Mapped[bool] = mapped_column(Boolean, default=False)  # a code that replaces automatic discounts
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]
    max_uses: Mapped[int | None] = mapped_column(Integer)
    max_uses_per_account: Mapped[int | None] = mapped_column(Integer)
    # Reserved at order creation by a conditional UPDATE, released if the order is not paid.
    uses: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    __table_args__ = (
        CheckConstraint("uses >= 0", name="uses_not_negative"),
        CheckConstraint("percent_off >= 0 AND percent_off <= 100", name="percent_in_range"),
    )


class PromotionRedemption(Base):
    __tablename__ = "promotion_redemptions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    promotion_id: Mapped[int] = mapped_column(ForeignKey("promotions.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    status: Mapped[RedemptionStatus] = mapped_column(enum_column(RedemptionStatus, 10))
    created_at: Mapped[datetime]
    __table_args__ = (
        UniqueConstraint("promotion_id", "order_id", name="uq_promotion_redemptions_promotion_order"),
        Index("ix_promotion_redemptions_account", "promotion_id", "account_id", "status"),
    )


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


class Ticket(Base):
    """A support case, opened by a subscriber or by reconciliation."""

    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    kind: Mapped[TicketKind] = mapped_column(enum_column(TicketKind, 30))
    status: Mapped[TicketStatus] = mapped_column(enum_column(TicketStatus, 10))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    # Cases that Duckline opens keep what they say as a topic and its parameters, so each reader
    # sees them in their own language (subject and body keep the English text); see case_texts.
    topic: Mapped[str | None] = mapped_column(String(40))
    params: Mapped[dict[str, Any] | None]
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    # The support desk: who is on it, and why it was closed (answered, duplicate, …; see support_desk).
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    close_reason: Mapped[str | None] = mapped_column(String(30))
    __table_args__ = (Index("ix_tickets_status", "status", "kind", "id"),)


class DomainEvent(Base):
    """renewal.succeeded, payment.failed, …: kept so a notifier that runs later loses nothing."""

    __tablename__ = "domain_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[str] = mapped_column(String(60))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_domain_events_unprocessed", "processed_at", "id"),)


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


class TicketMessage(Base):
    """One reply in a support ticket's conversation (the ticket's body is its opening message)."""

    __tablename__ = "ticket_messages"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    body: Mapped[str] = mapped_column(Text)
    staff: Mapped[bool] = mapped_column(Boolean, default=False)  # written by support, not the subscriber
    # A note between staff: never shown to the subscriber, never notified.
    internal: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime]
    __table_args__ = (Index("ix_ticket_messages_ticket", "ticket_id", "id"),)


class RetiredEsimProfile(Base):
    """An eSIM profile replaced by a new one (the eSIM moved to another phone): its ICCID and
    activation code are refused from then on. The line's current profile is in esim_profiles."""

    __tablename__ = "retired_esim_profiles"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), index=True)
    iccid: Mapped[str] = mapped_column(String(20), unique=True)
    smdp_address: Mapped[str] = mapped_column(String(200))
    matching_id: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime]
    retired_at: Mapped[datetime]
    retired_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))


class AccountClosure(Base):
    """A closed account: when what it leaves behind is erased (the retention its closure page
    stated), and when it was. Money records (orders, payments, receipts, the ledger) are kept."""

    __tablename__ = "account_closures"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    closed_at: Mapped[datetime]
    erase_contact_at: Mapped[datetime]
    erase_identity_at: Mapped[datetime]
    contact_erased_at: Mapped[datetime | None]
    identity_erased_at: Mapped[datetime | None]


class TicketLink(Base):
    """What a ticket concerns: an order, a payment or a reconciliation case (a ticket), added by staff."""

    __tablename__ = "ticket_links"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    target: Mapped[LinkTarget] = mapped_column(enum_column(LinkTarget, 10))
    target_id: Mapped[int] = mapped_column(BigId)
    created_by: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime]
    __table_args__ = (
        UniqueConstraint("ticket_id", "target", "target_id"),
        Index("ix_ticket_links_target", "target", "target_id"),
    )
