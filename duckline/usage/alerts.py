"""Warnings shown with a line's status: allowances crossing thresholds, expiry coming close."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class UsageWarning:
    unit: str
    zone: str
    threshold: int  # percent used, e.g. 90
    used_percent: int


@dataclass(frozen=True)
class ExpiryWarning:
    days: int  # the smallest configured offset the expiry falls within
    expires_at: datetime


def used_percent(initial: int, remaining: int) -> int:
    if initial <= 0:
        return 0
    # Floor, so 89.99 % is not shown as having crossed 90 %.
    return math.floor((initial - remaining) * 100 / initial)


def usage_warning(
    unit: str, zone: str, initial: int, remaining: int, thresholds: tuple[int, ...]
) -> UsageWarning | None:
    percent = used_percent(initial, remaining)
    crossed = [t for t in sorted(thresholds) if percent >= t]
    if not crossed:
        return None
    return UsageWarning(unit, zone, crossed[-1], percent)


def expiry_warning(expires_at: datetime, now: datetime, offsets_days: tuple[int, ...]) -> ExpiryWarning | None:
    if expires_at <= now:
        return None
    left = expires_at - now
    within = [d for d in sorted(offsets_days) if left.total_seconds() <= d * 86400]
    return ExpiryWarning(within[0], expires_at) if within else None
