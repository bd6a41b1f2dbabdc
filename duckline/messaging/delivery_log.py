"""What staff read of the delivery attempts (`delivery_attempts`, one row per try of a message to a
subscriber, an integrator's webhook or the sandbox's webhook): the latest tries a page at a time,
filtered by kind and outcome, and every try at one item of an outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select

from duckline.accounts.models import Account
from duckline.accounts.roles import DELIVERY_READERS
from duckline.core import pagination
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db.types import is_id
from duckline.messaging.models import DeliveryAttempt, Notification, WebhookDelivery

# What a try delivered, as the filter names it: a notification by its channel, else its queue.
KINDS = ("sms", "email", "webhook", "sandbox_webhook")
SUBJECTS = ("notification", "webhook", "sandbox_webhook")  # delivery_attempts.subject
# How a try ended; "open": no outcome recorded, the try is under way or its worker died.
OUTCOMES = ("sent", "refused", "error", "expired", "open")
PAGE = 50


@dataclass(frozen=True)
class Filters:
    kind: str = ""  # one of KINDS, or any
    outcome: str = ""  # one of OUTCOMES, or any


@dataclass(frozen=True)
class Attempt:
    id: int
    kind: str  # one of KINDS ("notification" when its notification is gone)
    subject: str
    subject_id: int
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    error: str | None
    status_code: int | None


@dataclass(frozen=True)
class AttemptPage:
    attempts: list[Attempt]  # newest first
    next_cursor: str | None


@dataclass(frozen=True)
class ItemAttempts:
    subject: str
    subject_id: int
    kind: str
    status: str | None  # where the item stands in its queue (None: not a messaging outbox)
    attempts: list[Attempt]  # first first


def attempt_page(
    transactions: Transactions, viewer: Account, filters: Filters, cursor: str | None, limit: int = PAGE
) -> AttemptPage:
    """The latest tries matching `filters`, newest first, and the next page's cursor."""
    _may_read(viewer)
    query = _filtered(select(DeliveryAttempt), filters)
    with transactions() as uow:
        rows, next_cursor = pagination.page(uow.session, query, DeliveryAttempt.id, cursor, limit)
        return AttemptPage(_described(uow, rows), next_cursor)


def item_attempts(transactions: Transactions, viewer: Account, subject: str, subject_id: int) -> ItemAttempts:
    """Every try at one item of an outbox, first first; NOT_FOUND when it was never tried."""
    _may_read(viewer)
    if subject not in SUBJECTS or not is_id(subject_id):
        raise DomainError(ErrorCode.NOT_FOUND)
    with transactions() as uow:
        rows = list(
            uow.session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.subject == subject, DeliveryAttempt.subject_id == subject_id)
                .order_by(DeliveryAttempt.id)
            ).all()
        )
        if not rows:
            raise DomainError(ErrorCode.NOT_FOUND)
        attempts = _described(uow, rows)
        return ItemAttempts(subject, subject_id, attempts[0].kind, _status(uow, subject, subject_id), attempts)


def _may_read(viewer: Account) -> None:
    # The console checks the role too; this keeps the rule where the data is read.
    if viewer.role not in DELIVERY_READERS:
        raise DomainError(ErrorCode.FORBIDDEN)


def _filtered(query: Select[Any], filters: Filters) -> Select[Any]:
    if filters.kind and filters.kind not in KINDS:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="kind")
    if filters.outcome and filters.outcome not in OUTCOMES:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="outcome")
    if filters.kind in ("sms", "email"):
        channel = select(Notification.id).where(Notification.channel == filters.kind)
        query = query.where(DeliveryAttempt.subject == "notification", DeliveryAttempt.subject_id.in_(channel))
    elif filters.kind:
        query = query.where(DeliveryAttempt.subject == filters.kind)
    if filters.outcome == "open":
        query = query.where(DeliveryAttempt.outcome.is_(None))
    elif filters.outcome:
        query = query.where(DeliveryAttempt.outcome == filters.outcome)
    return query


def _described(uow: UnitOfWork, rows: list[DeliveryAttempt]) -> list[Attempt]:
    """The rows with their kinds: a notification's channel is read once for the whole page."""
    notification_ids = {r.subject_id for r in rows if r.subject == "notification"}
    channels: dict[int, str] = {}
    if notification_ids:
        query = select(Notification.id, Notification.channel).where(Notification.id.in_(notification_ids))
        channels = {id: channel for id, channel in uow.session.execute(query)}
    return [
        Attempt(
            id=r.id,
            kind=channels.get(r.subject_id, r.subject) if r.subject == "notification" else r.subject,
            subject=r.subject,
            subject_id=r.subject_id,
            attempt=r.attempt,
            started_at=r.started_at,
            finished_at=r.finished_at,
            outcome=r.outcome,
            error=r.error,
            status_code=r.status_code,
        )
        for r in rows
    ]


def _status(uow: UnitOfWork, subject: str, subject_id: int) -> str | None:
    # The sandbox's webhooks belong to the billing sandbox provider: their tries are shown, not their row.
    status: str | None
    if subject == "notification":
        status = uow.session.scalar(select(Notification.status).where(Notification.id == subject_id))
    elif subject == "webhook":
        status = uow.session.scalar(select(WebhookDelivery.status).where(WebhookDelivery.id == subject_id))
    else:
        return None
    return str(status) if status is not None else None
