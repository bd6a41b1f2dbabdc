"""Webhooks for integrators: each stored domain event goes to every subscription that wants
it, HMAC-signed with a timestamp, retried with back-off, logged per delivery, replayable."""

from __future__ import annotations

import json
import logging
import secrets
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from duckline.adapters.db.tables import Account, DomainEvent, WebhookDelivery, WebhookSubscription
from duckline.adapters.db.types import is_id
from duckline.adapters.signing import sign
from duckline.errors import DomainError, ErrorCode
from duckline.services import audit, events, pagination
from duckline.services.checkout import App
from duckline.services.unit_of_work import Transactions, UnitOfWork

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
BASE_DELAY = timedelta(seconds=30)
LEASE = timedelta(minutes=2)
SIGNATURE_HEADER = "Duckline-Signature"


def subscribe(uow: UnitOfWork, actor: Account, url: str, event_types: list[str]) -> WebhookSubscription:
    unknown = [t for t in event_types if t != "*" and t not in events.ALL]
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
                                status="pending",
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


def deliver_due(app: App, client: httpx.Client, limit: int = 100) -> int:
    with app.unit_of_work() as uow:
        now = uow.now()
        ids = list(
            uow.session.scalars(
                select(WebhookDelivery.id)
                .where(
                    or_(
                        (WebhookDelivery.status == "pending") & (WebhookDelivery.next_attempt_at <= now),
                        (WebhookDelivery.status == "sending") & (WebhookDelivery.lease_until < now),
                    )
                )
                .order_by(WebhookDelivery.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
        )
        if ids:
            uow.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids))
                .values(status="sending", lease_until=now + LEASE, attempts=WebhookDelivery.attempts + 1)
            )
    delivered = 0
    for delivery_id in ids:
        with app.unit_of_work() as uow:
            delivery = uow.session.get(WebhookDelivery, delivery_id)
            assert delivery is not None
            subscription = uow.session.get(WebhookSubscription, delivery.subscription_id)
            event = uow.session.get(DomainEvent, delivery.event_id)
            assert subscription is not None and event is not None
            body = json.dumps(events.as_dict(event), sort_keys=True).encode()
            url, secret, attempts, now = subscription.url, subscription.secret, delivery.attempts, uow.now()
        headers = {
            "content-type": "application/json",
            "Duckline-Event": event.type,
            "Duckline-Delivery": str(delivery_id),
            SIGNATURE_HEADER: sign(secret, body, int(now.timestamp())),
        }
        code, error = _post(client, url, body, headers)
        with app.unit_of_work() as uow:
            delivery = uow.session.get(WebhookDelivery, delivery_id)
            assert delivery is not None
            delivery.last_status_code, delivery.last_error, delivery.lease_until = code, error, None
            if code is not None and 200 <= code < 300:
                delivery.status, delivery.delivered_at = "delivered", uow.now()
                delivered += 1
            elif attempts >= MAX_ATTEMPTS:
                delivery.status = "failed"
            else:
                delivery.status = "pending"
                delivery.next_attempt_at = uow.now() + BASE_DELAY * (2 ** (attempts - 1))
    return delivered


def _post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, repr(exc)[:500]
    return response.status_code, None if response.is_success else response.text[:500]


def replay(uow: UnitOfWork, actor: Account, delivery_id: int) -> WebhookDelivery:
    """Send a delivery again (after the integrator fixed their endpoint), from attempt one."""
    delivery = uow.session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None:
        raise DomainError(ErrorCode.NOT_FOUND)
    delivery.status, delivery.attempts, delivery.next_attempt_at = "pending", 0, uow.now()
    audit.record(uow, actor.id, "webhook.replayed", f"webhook_delivery:{delivery.id}")
    return delivery


def run(app: App, client: httpx.Client | None = None) -> dict[str, Any]:
    with app.unit_of_work() as uow:
        queued = fan_out(uow)
    own = client is None
    client = client or httpx.Client(timeout=10)
    try:
        return {"queued": queued, "delivered": deliver_due(app, client)}
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
