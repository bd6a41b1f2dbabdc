"""What happened, one class per kind of event, with its payload typed.

An event is stored as its kind (`renewal.succeeded`), its account and order, and the rest of its
fields as a JSON payload under the same names; integrators receive that payload as the `data` of
their webhooks, so a field's name is part of the API and never changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

# Stored in their own columns, not in the payload.
_COLUMNS = frozenset({"account_id", "order_id"})


@dataclass(frozen=True, kw_only=True)
class Event:
    event_type: ClassVar[str]
    account_id: int | None  # whose it is; None for an order whose account is gone

    @property
    def order_ref(self) -> int | None:
        """The order the event is about, if any."""
        order_id: int | None = getattr(self, "order_id", None)
        return order_id

    def payload(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _COLUMNS}


@dataclass(frozen=True, kw_only=True)
class RenewalSucceeded(Event):
    event_type = "renewal.succeeded"
    order_id: int
    receipt: str  # its display number
    kind: str  # the order's: activation, renewal, change or addon
    msisdn: str
    plan: str  # the plan's code
    amount: int  # minor units
    currency: str
    expires_at: str | None  # the line's new expiry, ISO 8601


@dataclass(frozen=True, kw_only=True)
class RenewalRefunded(Event):
    event_type = "renewal.refunded"
    order_id: int | None
    amount: int
    currency: str
    credit_note: str  # its display number, or "" when no credit note was issued


@dataclass(frozen=True, kw_only=True)
class PaymentFailed(Event):
    """The provider declined it: nothing was charged."""

    event_type = "payment.failed"
    order_id: int
    reason: str
    payment_id: int


@dataclass(frozen=True, kw_only=True)
class PaymentUnconfirmed(Event):
    """Sent, but the provider has not said yet whether it charged."""

    event_type = "payment.unconfirmed"
    order_id: int | None
    payment_id: int


@dataclass(frozen=True, kw_only=True)
class AutoRenewFailed(Event):
    event_type = "auto_renew.failed"
    order_id: int | None  # none when no order could be placed
    line_id: int
    msisdn: str
    attempt: int  # 1 for the first try of this period
    final: bool  # no further try is scheduled
    reason: str


@dataclass(frozen=True, kw_only=True)
class LineLapsed(Event):
    """A line moved on in its lifecycle after expiry (grace, expired, recycled)."""

    line_id: int
    msisdn: str
    expires_at: str | None


@dataclass(frozen=True, kw_only=True)
class LineGrace(LineLapsed):
    event_type = "line.grace"


@dataclass(frozen=True, kw_only=True)
class LineExpired(LineLapsed):
    event_type = "line.expired"


@dataclass(frozen=True, kw_only=True)
class LineRecycled(LineLapsed):
    event_type = "line.recycled"


# A lost or stolen phone, service back on, an eSIM moved (lines/care.py tells the holder).
@dataclass(frozen=True, kw_only=True)
class LineSuspended(Event):
    event_type = "line.suspended"
    line_id: int
    reason: str  # the suspension: lost, stolen


@dataclass(frozen=True, kw_only=True)
class LineResumed(Event):
    event_type = "line.resumed"
    line_id: int
    suspension: str  # the one lifted


@dataclass(frozen=True, kw_only=True)
class EsimMoved(Event):
    event_type = "line.esim_moved"
    line_id: int
    iccid: str  # the new profile's


KINDS: dict[str, type[Event]] = {
    cls.event_type: cls
    for cls in (
        RenewalSucceeded,
        RenewalRefunded,
        PaymentFailed,
        PaymentUnconfirmed,
        AutoRenewFailed,
        LineGrace,
        LineExpired,
        LineRecycled,
        LineSuspended,
        LineResumed,
        EsimMoved,
    )
}
# What integrators may subscribe to: every kind, and two that were announced but are never raised
# (a subscription naming them stays valid).
SUBSCRIBABLE = (*KINDS, "renewal.failed", "balance.low")


def from_stored(event_type: str, account_id: int | None, order_id: int | None, payload: Mapping[str, Any]) -> Event:
    """The event a stored row holds (fields it does not know are left out)."""
    cls = KINDS[event_type]
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in payload.items() if k in names and k not in _COLUMNS}
    if "order_id" in names:
        values["order_id"] = order_id
    return cls(account_id=account_id, **values)
