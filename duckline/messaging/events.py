"""Domain events (duckline/messaging/event_types.py), stored in the transaction that caused them; the
messages they trigger are queued in the same transaction, so a crash can lose neither."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from duckline.accounts.models import Account
from duckline.billing.models import Order
from duckline.billing.order_states import OrderKind
from duckline.core.money import Money
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines.models import Line
from duckline.messaging import notifications
from duckline.messaging.event_types import (
    AutoRenewFailed,
    Event,
    LineExpired,
    LineGrace,
    LineLapsed,
    LineRecycled,
    PaymentFailed,
    PaymentUnconfirmed,
    RenewalRefunded,
    RenewalSucceeded,
    from_stored,
)
from duckline.messaging.models import DomainEvent


def emit(uow: UnitOfWork, event: Event) -> DomainEvent:
    """Store the event and queue the message it brings its account, in the caller's transaction."""
    row = DomainEvent(
        type=event.event_type,
        account_id=event.account_id,
        order_id=event.order_ref,
        payload=event.payload(),
        created_at=uow.now(),
    )
    uow.session.add(row)
    account = uow.session.get(Account, event.account_id) if event.account_id is not None else None
    if account is not None:
        _message(uow, account, event)
    return row


def stored(row: DomainEvent) -> Event:
    return from_stored(row.type, row.account_id, row.order_id, row.payload)


def _message(uow: UnitOfWork, account: Account, event: Event) -> None:
    order = uow.session.get(Order, event.order_ref) if event.order_ref is not None else None
    line_id = order.line_id if order is not None else getattr(event, "line_id", None)
    line = uow.session.get(Line, line_id) if line_id is not None else None
    if line is None:
        return
    number = notifications.msisdn(line.msisdn)
    settings = uow.settings
    match event:
        case RenewalSucceeded() if order is not None:
            names = order.quote.get("plan_names") or {}  # the plan as sold
            # The first period of a new line is an activation, and its message says so.
            notifications.notify(
                uow,
                account,
                "activation_succeeded" if order.kind is OrderKind.ACTIVATION else "renewal_succeeded",
                msisdn=number,
                plan=names.get(account.language) or names.get("en", ""),
                amount=Money(order.total_amount, order.currency),
                expires=line.expires_at,
                receipt=event.receipt,
            )
        case PaymentFailed() if order is not None:
            notifications.notify(
                uow,
                account,
                "payment_failed",
                msisdn=number,
                amount=Money(order.total_amount, order.currency),
                url=f"{settings.base_url}/orders/{order.id}/result",  # the portal page with the retry button
            )
        case PaymentUnconfirmed() if order is not None:
            notifications.notify(
                uow, account, "payment_unconfirmed", msisdn=number, amount=Money(order.total_amount, order.currency)
            )
        case RenewalRefunded():
            notifications.notify(
                uow,
                account,
                "refund_issued",
                msisdn=number,
                amount=Money(event.amount, event.currency),
                credit_note=event.credit_note,
            )
        case AutoRenewFailed():
            notifications.notify(
                uow,
                account,
                "auto_renew_failed",
                msisdn=number,
                expires=line.expires_at,
                url=f"{settings.base_url}/lines/{line.id}/renew",
            )
        case LineLapsed() if line.expires_at is not None:
            grace_end = line.expires_at + timedelta(days=settings.grace_days)
            recycle_on = grace_end + timedelta(days=settings.retention_days)
            kind, until = {
                LineGrace.event_type: ("line_grace", grace_end),
                LineExpired.event_type: ("line_suspended", recycle_on),
                LineRecycled.event_type: ("line_recycled", recycle_on),
            }[event.event_type]
            notifications.notify(uow, account, kind, msisdn=number, expires=line.expires_at, until=until)


def as_dict(event: DomainEvent) -> dict[str, Any]:
    """The event as integrators receive it."""
    created: datetime = event.created_at
    return {
        "id": f"evt_{event.id}",
        "type": event.type,
        "created_at": created.isoformat(),
        "account_id": event.account_id,
        "order_id": event.order_id,
        "data": event.payload,
    }
