"""Drawing usage from balance buckets: soonest expiry first, never below zero, overage kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from duckline.catalog.rules import Unit, Zone


@dataclass
class Bucket:
    id: int
    unit: Unit
    zone: Zone
    remaining: int
    valid_from: datetime
    valid_until: datetime

    def usable_at(self, at: datetime) -> bool:
        return self.valid_from <= at < self.valid_until and self.remaining > 0


@dataclass(frozen=True)
class Draw:
    bucket_id: int
    amount: int


def draw(buckets: list[Bucket], unit: Unit, zone: Zone, quantity: int, at: datetime) -> tuple[list[Draw], int]:
    """Take `quantity` from the buckets that cover (unit, zone) at time `at`.

    Buckets expiring soonest go first (ties by age), so nothing is left to lapse that could have
    been used. Returns the draws, applied to `buckets` in place, and the overage not covered.
    """
    if quantity < 0:
        raise ValueError("usage quantities are never negative")
    eligible = sorted(
        (b for b in buckets if b.unit is unit and b.zone is zone and b.usable_at(at)),
        key=lambda b: (b.valid_until, b.id),
    )
    draws: list[Draw] = []
    left = quantity
    for bucket in eligible:
        if left == 0:
            break
        taken = min(bucket.remaining, left)
        bucket.remaining -= taken
        left -= taken
        draws.append(Draw(bucket.id, taken))
    return draws, left
