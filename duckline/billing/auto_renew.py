"""Auto-renew: lines due within N hours are renewed with their saved method; a declined charge
is retried on the dunning schedule; after the last failure the line is left to fall into grace.
Each attempt is a row unique per (line, period, attempt number), so rerunning the job — or two
schedulers at once — never charges twice. No attempt starts while an earlier one for the same
period may still capture (its outcome unknown — the provider's answer never came — or still
processing), or has captured: the job asks the provider about those first."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from duckline.accounts.models import Account
from duckline.billing import checkout, orders
from duckline.billing.checkout import App
from duckline.billing.models import AutoRenewAttempt, Payment, SavedPaymentMethod
from duckline.billing.order_states import MAY_CAPTURE, PaymentStatus
from duckline.billing.providers import ProviderError
from duckline.catalog.models import Plan
from duckline.core.errors import DomainError
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines.models import Line
from duckline.lines.states import LineStatus
from duckline.messaging import events
from duckline.messaging.event_types import AutoRenewFailed, PaymentUnconfirmed

log = logging.getLogger(__name__)
# An earlier attempt for the period in one of these blocks a new one: its money may still come, or came.
BLOCKING = MAY_CAPTURE | {PaymentStatus.SUCCEEDED, PaymentStatus.FLAGGED}


@dataclass
class Report:
    renewed: list[int] = field(default_factory=list)
    declined: list[int] = field(default_factory=list)
    gave_up: list[int] = field(default_factory=list)


def run(app: App) -> Report:
    report = Report()
    for line_id, attempt in _due(app):
        _attempt(app, line_id, attempt, report)
    return report


def _cannot_order(app: App, line_id: int, attempt: int, last: bool, error: DomainError, report: Report) -> None:
    """The renewal could not even be ordered (plan retired, monthly limit): count the attempt and
    tell the subscriber, as for a declined card."""
    with app.unit_of_work() as uow:
        line = uow.session.get(Line, line_id, with_for_update=True)
        if line is None or line.expires_at is None or _due_attempt(uow, line) != attempt:
            return
        uow.session.add(
            AutoRenewAttempt(
                line_id=line.id, period_end=line.expires_at, attempt=attempt, outcome="error", created_at=uow.now()
            )
        )
        events.emit(
            uow,
            AutoRenewFailed(
                account_id=line.account_id,
                order_id=None,
                line_id=line.id,
                msisdn=line.msisdn,
                attempt=attempt + 1,
                final=last,
                reason=error.code,
            ),
        )
    report.declined.append(line_id)
    if last:
        report.gave_up.append(line_id)


def _due(app: App) -> list[tuple[int, int]]:
    settings = app.settings
    with app.unit_of_work() as uow:
        now = uow.now()
        candidates = uow.session.scalars(
            select(Line)
            .where(
                Line.auto_renew.is_(True),
                Line.auto_renew_method_id.is_not(None),
                Line.status.in_((LineStatus.ACTIVE, LineStatus.GRACE)),
                Line.expires_at <= now + timedelta(hours=settings.auto_renew_hours_before),
            )
            .order_by(Line.id)
        ).all()
        return [(line.id, attempt) for line in candidates if (attempt := _due_attempt(uow, line)) is not None]


def _due_attempt(uow: UnitOfWork, line: Line) -> int | None:
    """The attempt number due now for the line's current period, if any."""
    settings = uow.settings
    if line.expires_at is None:
        return None
    tried = int(
        uow.session.scalar(
            select(func.count())
            .select_from(AutoRenewAttempt)
            .where(AutoRenewAttempt.line_id == line.id, AutoRenewAttempt.period_end == line.expires_at)
        )
        or 0
    )
    schedule = [timedelta(hours=h) for h in settings.auto_renew_retry_hours]
    first_try = line.expires_at - timedelta(hours=settings.auto_renew_hours_before)
    return tried if tried < len(schedule) and uow.now() >= first_try + schedule[tried] else None


def _earlier_payments(
    uow: UnitOfWork, line_id: int, period_end: datetime, statuses: frozenset[PaymentStatus]
) -> list[int]:
    """This period's earlier auto-renew payments in one of `statuses`."""
    return list(
        uow.session.scalars(
            select(Payment.id)
            .join(AutoRenewAttempt, AutoRenewAttempt.order_id == Payment.order_id)
            .where(
                AutoRenewAttempt.line_id == line_id,
                AutoRenewAttempt.period_end == period_end,
                Payment.status.in_(statuses),
            )
        )
    )


def _settle_earlier(app: App, line_id: int) -> None:
    """Ask the providers about this period's earlier attempts that may still capture (best effort)."""
    with app.unit_of_work() as uow:
        line = uow.session.get(Line, line_id)
        if line is None or line.expires_at is None:
            return
        open_ids = _earlier_payments(uow, line.id, line.expires_at, MAY_CAPTURE)
    for payment_id in open_ids:
        try:
            checkout.refresh(app, payment_id)
        except ProviderError as exc:
            log.warning("auto-renew: payment %s of line %s could not be asked about: %s", payment_id, line_id, exc)


def _attempt(app: App, line_id: int, attempt: int, report: Report) -> None:
    last = attempt == len(app.settings.auto_renew_retry_hours) - 1
    _settle_earlier(app, line_id)
    try:
        with app.unit_of_work() as uow:
            line = uow.session.get(Line, line_id, with_for_update=True)
            assert line is not None and line.expires_at is not None
            # Asked again under the line's lock: another scheduler may have renewed it since the
            # due list was made, and then nothing is due for the new period yet.
            if _due_attempt(uow, line) != attempt:
                return
            period_end = line.expires_at
            if _earlier_payments(uow, line.id, period_end, BLOCKING):
                log.warning("auto-renew of line %s waits: an earlier attempt may have been charged", line_id)
                return
            with uow.session.begin_nested():
                row = AutoRenewAttempt(
                    line_id=line.id, period_end=period_end, attempt=attempt, outcome="started", created_at=uow.now()
                )
                uow.session.add(row)
                uow.session.flush()
            account = uow.session.get(Account, line.account_id)
            saved = uow.session.get(SavedPaymentMethod, line.auto_renew_method_id)
            plan = uow.session.get(Plan, line.plan_id)
            assert account is not None and saved is not None and plan is not None
            order, _ = orders.create(
                uow,
                account,
                orders.OrderForm(
                    line_id=line.id,
                    plan_code=plan.code,
                    payment_method=saved.method,
                    idempotency_key=f"auto-renew:{line.id}:{period_end.isoformat()}:{attempt}",
                    request_hash="auto-renew",
                ),
                account.language,
            )
            row.order_id = order.id
            payment_id = checkout.new_attempt(uow, app.payments, order, saved.method, saved).id
            attempt_id = row.id
    except IntegrityError:
        return  # another scheduler took this attempt
    except DomainError as error:
        log.warning("auto-renew of line %s not possible: %s", line_id, error)
        _cannot_order(app, line_id, attempt, last, error, report)
        return
    # A provider that does not answer leaves the attempt UNKNOWN: asked about by its reference
    # (reconciliation, or this job before the next attempt), never taken as declined.
    checkout.start_attempt(app, payment_id, f"{app.settings.base_url}/api/v1/payments/{{payment_id}}/return")
    with app.unit_of_work() as uow:
        payment = uow.session.get(Payment, payment_id)
        attempt_row = uow.session.get(AutoRenewAttempt, attempt_id)
        line = uow.session.get(Line, line_id)
        assert payment is not None and attempt_row is not None and line is not None
        row = attempt_row
        if payment.status is PaymentStatus.SUCCEEDED:
            row.outcome = "paid"
            report.renewed.append(line_id)
            return
        if payment.status in MAY_CAPTURE:
            # No answer yet (or still processing): it may have been charged. Neither "failed" nor
            # "renew in the app" (that could make them pay twice); the provider will tell.
            row.outcome = payment.status.value
            unconfirmed = PaymentUnconfirmed(account_id=line.account_id, order_id=row.order_id, payment_id=payment.id)
            events.emit(uow, unconfirmed)
            return
        row.outcome = "declined" if payment.status is PaymentStatus.FAILED else payment.status.value
        report.declined.append(line_id)
        if last:
            report.gave_up.append(line_id)
        events.emit(
            uow,
            AutoRenewFailed(
                account_id=line.account_id,
                order_id=row.order_id,
                line_id=line_id,
                msisdn=line.msisdn,
                attempt=attempt + 1,
                final=last,
                reason=payment.failure_code or "declined",
            ),
        )
