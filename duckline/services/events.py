"""Domain events, stored in the transaction that caused them; the messages they trigger are
queued in the same transaction, so a crash can lose neither."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from duckline.adapters.db.tables import Account, DomainEvent, Line, Order, Plan
from duckline.domain.orders import OrderKind
from duckline.money import Money
from duckline.services import notifications
from duckline.services.unit_of_work import UnitOfWork

RENEWAL_SUCCEEDED = "renewal.succeeded"
RENEWAL_FAILED = "renewal.failed"
RENEWAL_REFUNDED = "renewal.refunded"
PAYMENT_FAILED = "payment.failed"  # the provider declined it: nothing was charged
PAYMENT_UNCONFIRMED = "payment.unconfirmed"  # sent, but the provider has not said yet whether it charged
AUTO_RENEW_FAILED = "auto_renew.failed"
LINE_GRACE = "line.grace"
LINE_EXPIRED = "line.expired"
LINE_RECYCLED = "line.recycled"
BALANCE_LOW = "balance.low"
# A lost or stolen phone, service back on, an eSIM moved (services/line_care.py tells the holder).
LINE_SUSPENDED = "line.suspended"
LINE_RESUMED = "line.resumed"
ESIM_MOVED = "line.esim_moved"
ALL = (
    RENEWAL_SUCCEEDED,
    RENEWAL_FAILED,
    RENEWAL_REFUNDED,
    PAYMENT_FAILED,
    PAYMENT_UNCONFIRMED,
    AUTO_RENEW_FAILED,
    LINE_GRACE,
    LINE_EXPIRED,
    LINE_RECYCLED,
    BALANCE_LOW,
    LINE_SUSPENDED,
    LINE_RESUMED,
    ESIM_MOVED,
)


def raise_event(
    uow: UnitOfWork, event_type: str, account_id: int | None, order_id: int | None = None, **payload: Any
) -> DomainEvent:
    event = DomainEvent(
        type=event_type, account_id=account_id, order_id=order_id, payload=payload, created_at=uow.now()
    )
    uow.session.add(event)
    account = uow.session.get(Account, account_id) if account_id is not None else None
    if account is not None:
        _message(uow, account, event_type, order_id, payload)
    return event


def _message(uow: UnitOfWork, account: Account, event_type: str, order_id: int | None, payload: dict[str, Any]) -> None:
    order = uow.session.get(Order, order_id) if order_id is not None else None
    line = uow.session.get(Line, order.line_id if order else payload.get("line_id"))
    if line is None:
        return
    number = notifications.msisdn(line.msisdn)
    settings = uow.settings
    if event_type == RENEWAL_SUCCEEDED and order is not None:
        plan = uow.session.get(Plan, order.plan_id)
        names = plan.names if plan else {}
        # The first period of a new line is an activation, and its message says so.
        notifications.notify(
            uow,
            account,
            "activation_succeeded" if order.kind is OrderKind.ACTIVATION else "renewal_succeeded",
            msisdn=number,
            plan=names.get(account.language) or names.get("en", ""),
            amount=Money(order.total_amount, order.currency),
            expires=line.expires_at,
            receipt=payload.get("receipt", ""),
        )
    elif event_type == PAYMENT_FAILED and order is not None:
        notifications.notify(
            uow,
            account,
            "payment_failed",
            msisdn=number,
            amount=Money(order.total_amount, order.currency),
            url=f"{settings.base_url}/orders/{order.id}/result",  # the portal page with the retry button
        )
    elif event_type == PAYMENT_UNCONFIRMED and order is not None:
        notifications.notify(
            uow, account, "payment_unconfirmed", msisdn=number, amount=Money(order.total_amount, order.currency)
        )
    elif event_type == RENEWAL_REFUNDED:
        notifications.notify(
            uow,
            account,
            "refund_issued",
            msisdn=number,
            amount=Money(int(payload["amount"]), str(payload["currency"])),
            credit_note=payload.get("credit_note", ""),
        )
    elif event_type == AUTO_RENEW_FAILED:
        notifications.notify(
            uow,
            account,
            "auto_renew_failed",
            msisdn=number,
            expires=line.expires_at,
            url=f"{settings.base_url}/lines/{line.id}/renew",
        )
    elif event_type in (LINE_GRACE, LINE_EXPIRED, LINE_RECYCLED) and line.expires_at is not None:
        grace_end = line.expires_at + timedelta(days=settings.grace_days)
        recycle_on = grace_end + timedelta(days=settings.retention_days)
        kind, until = {
            LINE_GRACE: ("line_grace", grace_end),
            LINE_EXPIRED: ("line_suspended", recycle_on),
            LINE_RECYCLED: ("line_recycled", recycle_on),
        }[event_type]
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
