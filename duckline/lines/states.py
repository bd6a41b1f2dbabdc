"""The line lifecycle: one state machine, asked by everything else."""

from __future__ import annotations

from enum import StrEnum

from duckline.core.errors import DomainError, ErrorCode


class LineStatus(StrEnum):
    PENDING = "pending"  # number and eSIM reserved, no plan yet (or identity not yet verified)
    ACTIVE = "active"
    GRACE = "grace"  # past expiry: can be reclaimed by renewing, service limited
    SUSPENDED = "suspended"  # stopped by staff (fraud, failed verification); can be restored
    EXPIRED = "expired"  # past grace: retention period, renewable until the number is recycled
    RECYCLED = "recycled"  # number returned to the pool; terminal


_ALLOWED: dict[LineStatus, frozenset[LineStatus]] = {
    LineStatus.PENDING: frozenset({LineStatus.ACTIVE, LineStatus.RECYCLED}),
    LineStatus.ACTIVE: frozenset({LineStatus.GRACE, LineStatus.SUSPENDED}),
    LineStatus.GRACE: frozenset({LineStatus.ACTIVE, LineStatus.EXPIRED, LineStatus.SUSPENDED}),
    LineStatus.SUSPENDED: frozenset({LineStatus.ACTIVE, LineStatus.EXPIRED}),
    LineStatus.EXPIRED: frozenset({LineStatus.ACTIVE, LineStatus.RECYCLED}),
    LineStatus.RECYCLED: frozenset(),
}


def can_transition(current: LineStatus, target: LineStatus) -> bool:
    return target in _ALLOWED[current]


def check_transition(current: LineStatus, target: LineStatus) -> None:
    if not can_transition(current, target):
        raise DomainError(
            ErrorCode.LINE_TRANSITION_NOT_ALLOWED, field="status", current=current.value, target=target.value
        )


class Suspension(StrEnum):
    """Why the subscriber had service stopped on a line, whatever its status.

    Not a status: the line still lives its life (expiry, grace, recycling run as usual, and a
    renewal still extends it), but nothing goes through until the account holder, or staff,
    lifts the suspension. So a renewal bought meanwhile cannot silently bring a lost phone back.
    """

    LOST = "lost"
    STOLEN = "stolen"


def can_use_service(status: LineStatus, suspension: Suspension | None = None) -> bool:
    """Only an active line that nobody has suspended may draw down its allowances."""
    return status is LineStatus.ACTIVE and suspension is None


def can_suspend(status: LineStatus) -> bool:
    """A lost phone can be reported for any line that still has its number."""
    return status is not LineStatus.RECYCLED
