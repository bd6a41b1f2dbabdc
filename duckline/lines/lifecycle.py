"""Lines over time: active → grace after expiry → expired after the grace period → number
recycled after retention. Every step warns first (events the notifier sends)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from duckline.core.unit_of_work import UnitOfWork
from duckline.lines import numbers
from duckline.lines import service as lines
from duckline.lines.models import Line
from duckline.lines.states import LineStatus
from duckline.messaging import events
from duckline.messaging.event_types import LineExpired, LineGrace, LineRecycled


def advance(uow: UnitOfWork) -> dict[str, int]:
    """Move every line whose time has come one step on. Safe to run as often as wanted."""
    settings = uow.settings
    grace, retention = timedelta(days=settings.grace_days), timedelta(days=settings.retention_days)
    moved = {"grace": 0, "expired": 0, "recycled": 0}
    steps = [
        (LineStatus.ACTIVE, LineStatus.GRACE, timedelta(0), LineGrace, "grace"),
        (LineStatus.GRACE, LineStatus.EXPIRED, grace, LineExpired, "expired"),
        (LineStatus.EXPIRED, LineStatus.RECYCLED, grace + retention, LineRecycled, "recycled"),
    ]
    for current, target, after, event, key in steps:
        due = _due(uow, current, after)
        for line in due:
            lines.transition(
                uow, line, target, f"{key}: expired {line.expires_at.isoformat() if line.expires_at else ''}"
            )
            if target is LineStatus.RECYCLED:
                numbers.release_number(uow, line.msisdn)
            events.emit(
                uow,
                event(
                    account_id=line.account_id,
                    line_id=line.id,
                    msisdn=line.msisdn,
                    expires_at=line.expires_at.isoformat() if line.expires_at else None,
                ),
            )
            moved[key] += 1
    return moved


def _due(uow: UnitOfWork, status: LineStatus, after: timedelta) -> list[Line]:
    candidates = uow.session.scalars(
        select(Line)
        .where(
            Line.status == status,
            Line.expires_at.is_not(None),
            Line.expires_at <= uow.now() - after,
        )
        .order_by(Line.id)
        .with_for_update(skip_locked=True)
    ).all()
    return list(candidates)
