"""Domain events, stored in the transaction that caused them; the notifier turns them into messages."""

from __future__ import annotations

from typing import Any

from duckline.adapters.db.tables import DomainEvent
from duckline.services.unit_of_work import UnitOfWork

RENEWAL_SUCCEEDED = "renewal.succeeded"
RENEWAL_FAILED = "renewal.failed"
RENEWAL_REFUNDED = "renewal.refunded"
PAYMENT_FAILED = "payment.failed"
AUTO_RENEW_FAILED = "auto_renew.failed"
LINE_GRACE = "line.grace"
LINE_EXPIRED = "line.expired"
LINE_RECYCLED = "line.recycled"


def raise_event(
    uow: UnitOfWork, event_type: str, account_id: int | None, order_id: int | None = None, **payload: Any
) -> None:
    uow.session.add(
        DomainEvent(type=event_type, account_id=account_id, order_id=order_id, payload=payload, created_at=uow.now())
    )
