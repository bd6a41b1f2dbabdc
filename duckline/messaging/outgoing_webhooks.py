"""Webhooks for integrators: each stored domain event goes to every subscription that wants
it, HMAC-signed with a timestamp, retried with back-off, logged per delivery, replayable."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from duckline.accounts.models import Account
from duckline.core import pagination
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.signing import sign
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db.types import is_id
from duckline.messaging import delivery, events
from duckline.messaging.event_types import SUBSCRIBABLE
from duckline.messaging.models import DomainEvent, WebhookDelivery, WebhookSubscription
from duckline.messaging.states import WebhookDeliveryStatus
from duckline.staff import audit

log = logging.getLogger(__name__)
POLICY = delivery.Policy(max_attempts=8, base_delay=timedelta(seconds=30), lease=timedelta(minutes=2))
SIGNATURE_HEADER = "Duckline-Signature"


def subscribe(uow: UnitOfWork, actor: Account, url: str, event_types: list[str]) -> WebhookSubscription:
    unknown = [t for t in event_types if t != "*" and t not in SUBSCRIBABLE]
    if not event_types or unknown:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="event_types")
    if not url.startswith(("https://", "http://")):
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="url")
    subscription = WebhookSubscription(
        url=url,
        secret=f"whsec_{secrets.token_urlsafe(24)}",
        event_types=event_types,
        active=True,
        created_by=actor.id,
        created_at=uow.now(),
    )
    uow.session.add(subscription)
    uow.session.flush()
    audit.record(uow, actor.id, "webhook.subscribed", f"webhook_subscription:{subscription.id}", url=url)
    return subscription


def fan_out(uow: UnitOfWork, limit: int = 500) -> int:
    """Turn new events into one delivery per interested subscription (unique: queued once)."""
    pending = uow.session.scalars(
        select(DomainEvent)
        .where(DomainEvent.processed_at.is_(None))
        .order_by(DomainEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not pending:
        return 0
    subscriptions = uow.session.scalars(select(WebhookSubscription).where(WebhookSubscription.active.is_(True))).all()
    queued = 0
    for event in pending:
        for subscription in subscriptions:
            if "*" in subscription.event_types or event.type in subscription.event_types:
                try:
                    with uow.session.begin_nested():
                        uow.session.add(
                            WebhookDelivery(
                                subscription_id=subscription.id,
                                event_id=event.id,
                                status=WebhookDeliveryStatus.PENDING,
                                attempts=0,
                                next_attempt_at=uow.now(),
                                created_at=uow.now(),
                            )
                        )
                        uow.session.flush()
                    queued += 1
                except IntegrityError:
                    pass
        event.processed_at = uow.now()
    return queued


@dataclass(frozen=True)
class _Outgoing:
    id: int
    attempts: int
    url: str
    secret: str
    event_type: str
    body: bytes


def _load(session: Session, ids: list[int]) -> list[_Outgoing]:
    rows = session.execute(
        select(WebhookDelivery.id, WebhookDelivery.attempts, WebhookSubscription.url, WebhookSubscription.secret)
        .add_columns(DomainEvent)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .join(DomainEvent, DomainEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.id.in_(ids))
        .order_by(WebhookDelivery.id)
    )
    return [
        _Outgoing(id, attempts, url, secret, event.type, json.dumps(events.as_dict(event), sort_keys=True).encode())
        for id, attempts, url, secret, event in rows
    ]


_QUEUE = delivery.Queue(
    subject="webhook",
    table=WebhookDelivery,
    due_at=WebhookDelivery.next_attempt_at,
    waiting=WebhookDeliveryStatus.PENDING,
    sent=WebhookDeliveryStatus.DELIVERED,
    order_by=(WebhookDelivery.id,),
    policy=POLICY,
    load=_load,
)


def deliver_due(transactions: Transactions, client: httpx.Client, limit: int = 100) -> int:
    """Post what is due, signed afresh at each try; returns how many were delivered."""
    with transactions() as uow:
        clock = uow.clock

    @contextmanager
    def transaction() -> Iterator[Session]:
        with transactions() as uow:
            yield uow.session

    def send(outgoing: _Outgoing) -> delivery.Outcome:
        headers = {
            "content-type": "application/json",
            "Duckline-Event": outgoing.event_type,
            "Duckline-Delivery": str(outgoing.id),
            SIGNATURE_HEADER: sign(outgoing.secret, outgoing.body, int(clock.now().timestamp())),
        }
        code, error = _post(client, outgoing.url, outgoing.body, headers)
        if code is not None and 200 <= code < 300:
            values = {"last_status_code": code, "delivered_at": clock.now()}
            return delivery.Outcome("sent", status_code=code, values=values)
        return delivery.Outcome("error", error, status_code=code, values={"last_status_code": code})

    return delivery.deliver(delivery.Store(transaction, clock.now), _QUEUE, send, limit).sent


def _post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, repr(exc)[:500]
    return response.status_code, None if response.is_success else response.text[:500]


def replay(uow: UnitOfWork, actor: Account, delivery_id: int) -> WebhookDelivery:
    """Send a delivery again (after the integrator fixed their endpoint), from attempt one."""
    row = uow.session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if row is None:
        raise DomainError(ErrorCode.NOT_FOUND)
    row.status, row.attempts, row.next_attempt_at = WebhookDeliveryStatus.PENDING, 0, uow.now()
    row.claim = row.lease_until = None  # a round still sending it no longer records its outcome
    audit.record(uow, actor.id, "webhook.replayed", f"webhook_delivery:{row.id}")
    return row


def run(transactions: Transactions, client: httpx.Client | None = None) -> dict[str, Any]:
    """The webhooks job: queue a delivery per subscription for new events, then post what is due."""
    with transactions() as uow:
        queued = fan_out(uow)
    own = client is None
    client = client or httpx.Client(timeout=10)
    try:
        return {"queued": queued, "delivered": deliver_due(transactions, client)}
    finally:
        if own:
            client.close()


# --- Flows for the integrations API: each owns its transaction --------------------------------------


def add_subscription(
    transactions: Transactions, actor: Account, url: str, event_types: list[str]
) -> WebhookSubscription:
    """`subscribe`; the row carries the signing secret, which only this answer shows."""
    with transactions() as uow:
        return subscribe(uow, actor, url, event_types)


def subscriptions(transactions: Transactions, viewer: Account) -> list[WebhookSubscription]:
    with transactions() as uow:
        return list(uow.session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id)).all())


def deliveries(
    transactions: Transactions, viewer: Account, subscription_id: int, cursor: str | None, limit: int
) -> tuple[list[WebhookDelivery], str | None]:
    """A subscription's delivery log, newest first, and the next page's cursor."""
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    with transactions() as uow:
        return pagination.page(uow.session, query, WebhookDelivery.id, cursor, limit)


def replay_delivery(transactions: Transactions, actor: Account, delivery_id: int) -> WebhookDelivery:
    if not is_id(delivery_id):
        raise DomainError(ErrorCode.NOT_FOUND)
    with transactions() as uow:
        return replay(uow, actor, delivery_id)
