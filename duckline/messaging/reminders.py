"""Scheduled reminders: low balance once per threshold crossing, expiry at set offsets, and the
warning before a number is recycled — each once, however often (or in how many workers) it runs.
Once is a unique dedupe key on the outbox row, not a flag someone has to remember to check."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from sqlalchemy import select

from duckline.accounts.models import Account
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines.models import Line
from duckline.lines.states import LineStatus
from duckline.messaging import notifications
from duckline.usage import alerts
from duckline.usage.models import Bucket

RECYCLE_WARNING_DAYS = 7


def run(uow: UnitOfWork) -> dict[str, int]:
    return {
        "balance_low": balance_low(uow),
        "plan_expiring": plan_expiring(uow),
        "recycle_warning": recycle_warning(uow),
    }


def balance_low(uow: UnitOfWork) -> int:
    """For each active line and allowance, the highest threshold crossed in the current period,
    announced once (a new period — new buckets — starts the thresholds again)."""
    now, sent = uow.now(), 0
    rows = uow.session.execute(
        select(Bucket.line_id, Bucket.unit, Bucket.zone, Bucket.initial, Bucket.remaining, Bucket.valid_until)
        .join(Line, Line.id == Bucket.line_id)
        .where(Line.status == LineStatus.ACTIVE, Bucket.valid_from <= now, Bucket.valid_until > now)
    ).all()
    totals: dict[tuple[int, str, str], list[int]] = defaultdict(lambda: [0, 0])
    period: dict[tuple[int, str, str], str] = {}
    for row in rows:
        group = (row.line_id, row.unit.value, row.zone.value)
        totals[group][0] += row.initial
        totals[group][1] += row.remaining
        period[group] = max(period.get(group, ""), row.valid_until.isoformat())
    thresholds = tuple(uow.settings.usage_alert_thresholds)
    for (line_id, unit_name, zone_name), (initial, left) in totals.items():
        warning = alerts.usage_warning(unit_name, zone_name, initial, left, thresholds)
        if warning is None:
            continue
        line, account = _line_and_account(uow, line_id)
        ends = period[(line_id, unit_name, zone_name)]
        sent += len(
            notifications.notify(
                uow,
                account,
                "balance_low",
                dedupe_key=f"balance_low:{line_id}:{unit_name}:{zone_name}:{ends}:{warning.threshold}",
                percent=warning.used_percent,
                allowance=notifications.unit_name(unit_name, account.language),
                msisdn=notifications.msisdn(line.msisdn),
                remaining=_amount(unit_name, left),
            )
        )
    return sent


def plan_expiring(uow: UnitOfWork) -> int:
    """At each configured offset (7, 3, 1 days), once. When several are due at once (a line
    first seen with 2 days left) only the nearest is sent; the wider ones never become due later,
    since the time left only shrinks."""
    now, sent = uow.now(), 0
    offsets = sorted(uow.settings.expiry_warning_days)
    horizon = now + timedelta(days=max(offsets))
    lines = uow.session.scalars(
        select(Line).where(Line.status == LineStatus.ACTIVE, Line.expires_at > now, Line.expires_at <= horizon)
    ).all()
    for line in lines:
        assert line.expires_at is not None
        left = line.expires_at - now
        due = [d for d in offsets if left <= timedelta(days=d)]
        if not due:
            continue
        _, account = _line_and_account(uow, line.id)
        base = f"plan_expiring:{line.id}:{line.expires_at.isoformat()}"
        sent += len(
            notifications.notify(
                uow,
                account,
                "plan_expiring",
                dedupe_key=f"{base}:{due[0]}",
                msisdn=notifications.msisdn(line.msisdn),
                expires=line.expires_at,
            )
        )
    return sent


def recycle_warning(uow: UnitOfWork) -> int:
    """A week before an expired line's number is recycled, once."""
    now, settings, sent = uow.now(), uow.settings, 0
    after = timedelta(days=settings.grace_days + settings.retention_days)
    lines = uow.session.scalars(select(Line).where(Line.status == LineStatus.EXPIRED)).all()
    for line in lines:
        if line.expires_at is None:
            continue
        recycle_on = line.expires_at + after
        if now < recycle_on <= now + timedelta(days=RECYCLE_WARNING_DAYS):
            _, account = _line_and_account(uow, line.id)
            sent += len(
                notifications.notify(
                    uow,
                    account,
                    "recycle_warning",
                    dedupe_key=f"recycle_warning:{line.id}:{line.expires_at.isoformat()}",
                    msisdn=notifications.msisdn(line.msisdn),
                    until=recycle_on,
                )
            )
    return sent


def _line_and_account(uow: UnitOfWork, line_id: int) -> tuple[Line, Account]:
    line = uow.session.get(Line, line_id)
    assert line is not None
    account = uow.session.get(Account, line.account_id)
    assert account is not None
    return line, account


def _amount(unit: str, remaining: int) -> str:
    if unit == "voice_seconds":
        return f"{remaining // 60} min"
    if unit == "data_bytes":
        return f"{remaining / 1024**3:.1f} GB" if remaining >= 1024**3 else f"{remaining // 1024**2} MB"
    return str(remaining)
