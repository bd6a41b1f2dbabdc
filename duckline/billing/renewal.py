"""When a renewal's period starts and ends, given the line's state.

- An active line is extended from its current expiry: no day already paid for is lost.
- A line in grace, or expired but not yet recycled, restarts from now and is reactivated.
- A pending line starts its first period now.
- A recycled number cannot be renewed; a suspended line must be restored by staff first.
- Changing plan at renewal takes effect at the next period: the new plan's allowances are
  valid from the current expiry, the current ones stay until then. (One rule for all renewals,
  and nobody loses what they already paid for.)
- Add-on packs add allowances valid until the current expiry and never change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from duckline.billing.order_states import OrderKind
from duckline.catalog.rules import Validity
from duckline.core.errors import DomainError, ErrorCode
from duckline.lines.states import LineStatus


@dataclass(frozen=True)
class Term:
    start: datetime
    end: datetime
    reactivates: bool  # the line goes (back) to active


def next_term(
    kind: OrderKind, status: LineStatus, expires_at: datetime | None, now: datetime, validity: Validity, tz: str
) -> Term:
    if status is LineStatus.RECYCLED:
        raise DomainError(ErrorCode.LINE_RECYCLED)
    if status is LineStatus.SUSPENDED:
        raise DomainError(ErrorCode.LINE_NOT_RENEWABLE)
    if kind is OrderKind.ADDON:
        if status is not LineStatus.ACTIVE or expires_at is None or expires_at <= now:
            raise DomainError(ErrorCode.ADDON_NEEDS_ACTIVE_LINE)
        return Term(now, expires_at, reactivates=False)
    if status is LineStatus.ACTIVE and expires_at is not None and expires_at > now:
        return Term(expires_at, validity.end_of_period(expires_at, tz), reactivates=False)
    return Term(now, validity.end_of_period(now, tz), reactivates=status is not LineStatus.ACTIVE)


def order_kind(status: LineStatus, current_plan_id: int | None, plan_id: int, is_addon: bool) -> OrderKind:
    if is_addon:
        return OrderKind.ADDON
    if status is LineStatus.PENDING or current_plan_id is None:
        return OrderKind.ACTIVATION
    return OrderKind.RENEWAL if plan_id == current_plan_id else OrderKind.CHANGE
