"""The messaging tables. Rows are plain records; the rules that change them live beside them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from duckline.db.base import Base
from duckline.db.types import BigId, enum_column
from duckline.messaging.states import NotificationStatus, WebhookDeliveryStatus


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
