"""Lines: opening one (number + eSIM) within the identity's limit, activation, status, features."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from duckline.accounts.identity import KycStatus
from duckline.accounts.models import Account, Person
from duckline.accounts.roles import STAFF, may_see
from duckline.billing import payment_labels
from duckline.billing.models import Order, SavedPaymentMethod
from duckline.billing.order_states import OrderKind, OrderStatus
from duckline.catalog import service as catalog
from duckline.catalog.models import Plan
from duckline.catalog.rules import PlanKind, PlanStatus, Validity
from duckline.core import pagination
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db.types import is_id
from duckline.lines import esim, numbers
from duckline.lines.models import EsimProfile, Line, LineEvent
from duckline.lines.states import LineStatus, can_use_service, check_transition
from duckline.sip import accounts as sip_accounts
from duckline.sip.models import SipAccount
from duckline.staff import audit
from duckline.usage import alerts, balances, credit_signals
from duckline.usage import history as usage_history
from duckline.usage.models import Bucket


def open_line(uow: UnitOfWork, account: Account) -> Line:
    """Reserve a number and an eSIM profile for a verified account; the line starts pending."""
    if account.phone_verified_at is None:
        raise DomainError(ErrorCode.ACCOUNT_NOT_VERIFIED)
    if account.person_id is None:
        raise DomainError(ErrorCode.FORBIDDEN)
    limit = uow.settings.max_lines_per_identity
    # A conditional increment, not read-then-write: concurrent requests cannot both pass.
    counted = cast(
        CursorResult[Any],
        uow.session.execute(
            update(Person)
            .where(Person.id == account.person_id, Person.line_count < limit)
            .values(line_count=Person.line_count + 1)
        ),
    )
    if counted.rowcount != 1:
        raise DomainError(ErrorCode.LINE_LIMIT_REACHED, limit=limit)

    now = uow.now()
    line = Line(
        account_id=account.id,
        msisdn=numbers.take_number(uow),
        status=LineStatus.PENDING,
        voicemail=False,
        caller_id=True,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(line)
    uow.session.flush()
    uow.session.add(LineEvent(line_id=line.id, from_status=None, to_status=line.status, reason="opened", at=now))
    uow.session.add(
        EsimProfile(
            line_id=line.id,
            iccid=esim.make_iccid(uow.settings.iccid_prefix, line.id),
            smdp_address=uow.settings.smdp_address,
            matching_id=secrets.token_hex(10).upper(),
            created_at=now,
        )
    )
    audit.record(uow, account.id, "line.opened", f"line:{line.id}", msisdn=line.msisdn)
    return line


def transition(uow: UnitOfWork, line: Line, target: LineStatus, reason: str) -> None:
    """The only way a line changes status: checked by the state machine, recorded with why. A line
    leaving service (suspended, past expiry, recycled) has its open credit-control sessions
    aborted, each with an ASR to its network element. A line's SIP account is made when it is
    activated and deleted when its number is recycled (in between, Kamailio's view follows the
    status by itself: sip/models.py)."""
    check_transition(line.status, target)
    uow.session.add(LineEvent(line_id=line.id, from_status=line.status, to_status=target, reason=reason, at=uow.now()))
    line.status = target
    line.updated_at = uow.now()
    if not can_use_service(target):
        credit_signals.abort(uow, line.id)
    if target is LineStatus.ACTIVE:
        sip_accounts.ensure(uow, line)
    elif target is LineStatus.RECYCLED:
        sip_accounts.remove(uow, line)


def activate(uow: UnitOfWork, actor: Account, line: Line, plan: Plan) -> Line:
    """Start a first period on `plan`: status active, expiry set, plan allowances granted."""
    if plan.kind is not PlanKind.PLAN:
        raise DomainError(ErrorCode.PLAN_INVALID, field="plan_code", reason="an add-on cannot start a line")
    if plan.status is PlanStatus.RETIRED:
        raise DomainError(ErrorCode.PLAN_RETIRED, field="plan_code")
    account = uow.session.get(Account, line.account_id)
    person = uow.session.get(Person, account.person_id) if account and account.person_id else None
    if person is None or person.kyc_status is not KycStatus.VERIFIED:
        if person is not None and person.kyc_status is KycStatus.REJECTED:
            raise DomainError(ErrorCode.KYC_REJECTED, reason=person.kyc_reason or "")
        raise DomainError(ErrorCode.KYC_NOT_VERIFIED)
    start = uow.now()
    end = Validity(plan.validity_days, plan.validity_months).end_of_period(start, uow.settings.display_timezone)
    transition(uow, line, LineStatus.ACTIVE, f"activated on {plan.code}")
    line.plan_id, line.period_start, line.expires_at = plan.id, start, end
    balances.grant_plan_allowances(uow, line, plan, start, end, "plan", f"activation:{line.id}")
    audit.record(uow, actor.id, "line.activated", f"line:{line.id}", plan=plan.code)
    return line


def set_features(uow: UnitOfWork, actor: Account, line: Line, voicemail: bool | None, caller_id: bool | None) -> Line:
    before = {"voicemail": line.voicemail, "caller_id": line.caller_id}
    if voicemail is not None:
        line.voicemail = voicemail
    if caller_id is not None:
        line.caller_id = caller_id
    line.updated_at = uow.now()
    old, new = audit.changes(before, {"voicemail": line.voicemail, "caller_id": line.caller_id})
    audit.record(uow, actor.id, "line.features", f"line:{line.id}", old=old, new=new)
    return line


def visible_line(uow: UnitOfWork, viewer: Account, line_id: int) -> Line:
    """A line the viewer may see: their own, or any for staff. Others look like missing lines."""
    line = uow.session.get(Line, line_id) if is_id(line_id) else None
    if line is None or not may_see(viewer.role, viewer.id, line.account_id):
        raise DomainError(ErrorCode.NOT_FOUND)
    return line


def visible_line_by_msisdn(uow: UnitOfWork, viewer: Account, msisdn: str) -> Line:
    """Another subscriber's number answers exactly like a number nobody has."""
    line = uow.session.scalars(select(Line).where(Line.msisdn == msisdn)).first()
    if line is None or not may_see(viewer.role, viewer.id, line.account_id):
        raise DomainError(ErrorCode.NOT_FOUND, field="msisdn")
    return line


def line_by_msisdn(uow: UnitOfWork, msisdn: str) -> Line:
    line = uow.session.scalars(select(Line).where(Line.msisdn == msisdn)).first()
    if line is None:
        raise DomainError(ErrorCode.NOT_FOUND, field="msisdn")
    return line


def esim_profile(uow: UnitOfWork, line: Line) -> EsimProfile:
    profile = uow.session.scalars(select(EsimProfile).where(EsimProfile.line_id == line.id)).one()
    return profile


@dataclass(frozen=True)
class AllowanceView:
    unit: str
    zone: str
    initial: int
    used: int
    remaining: int
    used_percent: int
    valid_until: datetime | None


@dataclass(frozen=True)
class Period:
    """A period of a line's plan: the one running now, or one paid for ahead and queued."""

    plan: Plan | None  # None only where it cannot be known (see `schedule`)
    start: datetime | None
    end: datetime
    order_id: int | None  # the order that bought it; None for a period started by staff


@dataclass(frozen=True)
class Schedule:
    """The period running now (or the last one, for a line past its expiry) and the periods
    renewed ahead that follow it, in order. The line's `expires_at` is the end of the last one."""

    current: Period | None
    queued: list[Period] = field(default_factory=list)


@dataclass(frozen=True)
class LineStatusView:
    line: Line
    plan: Plan | None
    allowances: list[AllowanceView]
    usage_warnings: list[alerts.UsageWarning] = field(default_factory=list)
    expiry_warning: alerts.ExpiryWarning | None = None
    schedule: Schedule = field(default_factory=lambda: Schedule(None))


def status(uow: UnitOfWork, line: Line) -> LineStatusView:
    """Each allowance (summed over the buckets valid now), the expiry, and warnings."""
    now = uow.now()
    buckets = uow.session.scalars(
        select(Bucket)
        .where(Bucket.line_id == line.id, Bucket.valid_from <= now, Bucket.valid_until > now)
        .order_by(Bucket.unit, Bucket.zone, Bucket.valid_until)
    ).all()
    grouped: dict[tuple[str, str], list[Bucket]] = {}
    for bucket in buckets:
        grouped.setdefault((bucket.unit.value, bucket.zone.value), []).append(bucket)
    views, warnings = [], []
    thresholds = tuple(uow.settings.usage_alert_thresholds)
    for (unit, zone), group in grouped.items():
        initial = sum(b.initial for b in group)
        remaining = sum(b.remaining for b in group)
        views.append(
            AllowanceView(
                unit=unit,
                zone=zone,
                initial=initial,
                used=initial - remaining,
                remaining=remaining,
                used_percent=alerts.used_percent(initial, remaining),
                valid_until=max(b.valid_until for b in group),
            )
        )
        warning = alerts.usage_warning(unit, zone, initial, remaining, thresholds)
        if warning:
            warnings.append(warning)
    plan = uow.session.get(Plan, line.plan_id) if line.plan_id else None  # the plan last bought
    expiry = (
        alerts.expiry_warning(line.expires_at, now, tuple(uow.settings.expiry_warning_days))
        if line.expires_at and line.status is LineStatus.ACTIVE
        else None
    )
    return LineStatusView(line, plan, views, warnings, expiry, schedule(uow, line))


def schedule(uow: UnitOfWork, line: Line) -> Schedule:
    """The current period (its plan, start and end) and the periods renewed ahead after it.

    A renewal paid before expiry starts when the current period ends (billing/renewal.py), so
    the allowances in use now end at the first queued period's start, not at the line's expiry.
    The current plan is the one of the order whose period runs now; for a period started by
    staff (no order) see below. A plan that cannot be known is left None rather than shown wrong."""
    if line.expires_at is None:
        return Schedule(None)
    now = uow.now()
    bought = uow.session.execute(
        select(Order, Plan)
        .join(Plan, Plan.id == Order.plan_id)
        .where(
            Order.line_id == line.id,
            Order.kind.in_((OrderKind.ACTIVATION, OrderKind.RENEWAL, OrderKind.CHANGE)),
            Order.status.in_((OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED)),
            Order.period_end.is_not(None),
            Order.period_end > now,
        )
        .order_by(Order.period_start, Order.id)
    ).all()
    queued = [
        Period(plan, order.period_start, order.period_end, order.id)
        for order, plan in bought
        if order.period_start is not None and order.period_end is not None and order.period_start > now
    ]
    running = [(order, plan) for order, plan in bought if order.period_start is not None and order.period_start <= now]
    end = queued[0].start if queued and queued[0].start is not None else line.expires_at
    if running:
        order, plan = running[-1]
        return Schedule(Period(plan, order.period_start, end, order.id), queued)
    # No order runs now (staff started the period): its plan is the line's, or — with a period
    # queued — the one the first queued order was bought on top of (kept with the order since
    # it records it; older orders: the same plan again for a renewal, else unknown).
    plan_id: int | None = line.plan_id
    if queued:
        following, following_plan = bought[0]
        plan_id = following.quote.get("previous_plan_id")
        if plan_id is None and following.kind is OrderKind.RENEWAL:
            plan_id = following_plan.id
    current_plan = uow.session.get(Plan, plan_id) if plan_id else None
    return Schedule(Period(current_plan, line.period_start, end, None), queued)


def saved_methods(uow: UnitOfWork, account: Account) -> list[SavedPaymentMethod]:
    """The account's usable saved payment methods, newest first."""
    return list(
        uow.session.scalars(
            select(SavedPaymentMethod)
            .where(SavedPaymentMethod.account_id == account.id, SavedPaymentMethod.revoked_at.is_(None))
            .order_by(SavedPaymentMethod.id.desc())
        ).all()
    )


def renewal_method(uow: UnitOfWork, account: Account, line: Line) -> SavedPaymentMethod | None:
    """The line's own saved card if still usable, else the newest card the account saved (only a
    card can be charged automatically: a wallet saved by an older version is never used)."""
    methods = [m for m in saved_methods(uow, account) if payment_labels.is_card(m.method)]
    own = next((m for m in methods if m.id == line.auto_renew_method_id), None)
    return own or (methods[0] if methods else None)


def set_auto_renew(uow: UnitOfWork, actor: Account, line: Line, enabled: bool) -> Line:
    """Turning it on needs a method saved with an earlier payment (Duckline never holds a card)."""
    before = line.auto_renew
    if enabled:
        owner = uow.session.get(Account, line.account_id)
        method = renewal_method(uow, owner, line) if owner else None
        if method is None:
            raise DomainError(ErrorCode.SAVED_METHOD_REQUIRED, field="auto_renew")
        line.auto_renew_method_id = method.id
    line.auto_renew = enabled
    line.updated_at = uow.now()
    audit.record(
        uow,
        actor.id,
        "line.auto_renew",
        f"line:{line.id}",
        old=before,
        new=enabled,
        payment_method=line.auto_renew_method_id,
    )
    return line


# --- Flows: each owns its transaction and returns what the API and the pages show ----------------


@dataclass(frozen=True)
class LineView:
    """A line as answers and pages show it, read in the transaction that loaded or changed it.
    `schedule` None: a line with nothing queued (one just opened or activated by staff)."""

    line: Line
    schedule: Schedule | None = None
    plan_code: str | None = None


@dataclass(frozen=True)
class LinesPage:
    items: list[LineView]
    next_cursor: str | None


def list_lines(
    transactions: Transactions, viewer: Account, account_id: int | None, cursor: str | None, limit: int
) -> LinesPage:
    """The viewer's lines; staff may list any account's lines."""
    owner = viewer.id
    if account_id is not None and account_id != viewer.id:
        if viewer.role not in STAFF:
            raise DomainError(ErrorCode.FORBIDDEN)
        if not is_id(account_id):
            raise DomainError(ErrorCode.NOT_FOUND, field="account_id")
        owner = account_id
    with transactions() as uow:
        query = select(Line).where(Line.account_id == owner)
        rows, next_cursor = pagination.page(uow.session, query, Line.id, cursor, limit)
        return LinesPage([LineView(r, schedule(uow, r)) for r in rows], next_cursor)


def open_another(transactions: Transactions, viewer: Account) -> LineView:
    """Another line for the viewer, within the per-identity limit."""
    with transactions() as uow:
        return LineView(open_line(uow, viewer))


@dataclass(frozen=True)
class StatusAnswer:
    view: LineStatusView
    plan: catalog.PlanView | None  # the plan last bought, as offered


def line_status(transactions: Transactions, viewer: Account, line_id: int, language: str) -> StatusAnswer:
    """A visible line's allowances, expiry and warnings."""
    with transactions() as uow:
        return _status_answer(uow, visible_line(uow, viewer, line_id), language)


def number_status(transactions: Transactions, viewer: Account, msisdn: str, language: str) -> StatusAnswer:
    """As `line_status`, for the line with this number."""
    with transactions() as uow:
        return _status_answer(uow, visible_line_by_msisdn(uow, viewer, msisdn), language)


def _status_answer(uow: UnitOfWork, line: Line, language: str) -> StatusAnswer:
    view = status(uow, line)
    return StatusAnswer(view, catalog.plan_views(uow, [view.plan], language)[0] if view.plan else None)


@dataclass(frozen=True)
class Esim:
    line_id: int
    profile: EsimProfile


def esim_of(transactions: Transactions, viewer: Account, line_id: int) -> Esim:
    with transactions() as uow:
        return Esim(line_id, esim_profile(uow, visible_line(uow, viewer, line_id)))


def change_features(
    transactions: Transactions, viewer: Account, line_id: int, voicemail: bool | None, caller_id: bool | None
) -> LineView:
    """Voicemail and caller ID on or off."""
    with transactions() as uow:
        changed = set_features(uow, viewer, visible_line(uow, viewer, line_id), voicemail, caller_id)
        return LineView(changed, schedule(uow, changed))


def change_auto_renew(transactions: Transactions, viewer: Account, line_id: int, enabled: bool) -> LineView:
    with transactions() as uow:
        changed = set_auto_renew(uow, viewer, visible_line(uow, viewer, line_id), enabled)
        return LineView(changed, schedule(uow, changed))


def start_line(transactions: Transactions, actor: Account, line_id: int, plan_code: str) -> LineView:
    """Staff: start a pending line on a plan."""
    with transactions() as uow:
        line = visible_line(uow, actor, line_id)
        plan = catalog.get_plan(uow, plan_code)
        return LineView(activate(uow, actor, line, plan), plan_code=plan.code)


# --- The subscriber's pages -----------------------------------------------------------------------


@dataclass(frozen=True)
class Countdown:
    days: int
    hours: int


@dataclass(frozen=True)
class QueuedPeriod:
    plan_name: str | None
    start: datetime | None
    end: datetime


@dataclass(frozen=True)
class LineSummary:
    line: Line
    plan_name: str | None  # the current period's plan
    status: LineStatusView
    left: Countdown | None  # until the current period ends, if it is still ahead
    period_end: datetime | None = None  # the current period's end: the line's expiry unless renewed ahead
    queued: list[QueuedPeriod] = field(default_factory=list)  # renewed ahead, after the current period


def summary(uow: UnitOfWork, line: Line, language: str) -> LineSummary:
    view = status(uow, line)
    current, queued = view.schedule.current, view.schedule.queued

    def name(plan: Plan | None) -> str | None:
        return (plan.names.get(language) or plan.code) if plan else None

    plan_name = name(current.plan) if current else name(view.plan)
    period_end = current.end if current else line.expires_at
    left = None
    if period_end is not None and period_end > uow.now():
        remaining = period_end - uow.now()
        left = Countdown(remaining.days, remaining.seconds // 3600)
    later = [QueuedPeriod(name(p.plan), p.start, p.end) for p in queued]
    return LineSummary(line, plan_name, view, left, period_end, later)


@dataclass(frozen=True)
class Home:
    summaries: list[LineSummary]
    person: Person | None


def home(transactions: Transactions, viewer: Account, language: str) -> Home:
    """The viewer's lines, each summarised, and their identity record."""
    with transactions() as uow:
        owned = uow.session.scalars(select(Line).where(Line.account_id == viewer.id).order_by(Line.id)).all()
        summaries = [summary(uow, line, language) for line in owned]
        person = uow.session.get(Person, viewer.person_id) if viewer.person_id else None
        return Home(summaries, person)


@dataclass(frozen=True)
class Dashboard:
    summary: LineSummary
    profile: EsimProfile
    person: Person | None  # the line owner's identity record
    sip: SipAccount | None = None  # None before the line's first activation and once recycled


def dashboard(transactions: Transactions, viewer: Account, line_id: int, language: str) -> Dashboard:
    """A line's dashboard: plan, expiry, allowances, warnings, eSIM, SIP account, and its owner's identity."""
    with transactions() as uow:
        line = visible_line(uow, viewer, line_id)
        shown = summary(uow, line, language)
        profile = esim_profile(uow, line)
        owner = uow.session.get(Account, line.account_id)
        person = uow.session.get(Person, owner.person_id) if owner and owner.person_id else None
        return Dashboard(shown, profile, person, sip_accounts.account_of(uow, line))


def shown_line(transactions: Transactions, viewer: Account, line_id: int) -> Line:
    """A line the viewer may see, for a page about it."""
    with transactions() as uow:
        return visible_line(uow, viewer, line_id)


@dataclass(frozen=True)
class UsageMonth:
    line: Line
    history: usage_history.MonthUsage


def usage_month(
    transactions: Transactions, viewer: Account, line_id: int, month: usage_history.Month, tz: str
) -> UsageMonth:
    """A visible line's usage by day in `month` (in `tz`) and the month's records with their charges."""
    with transactions() as uow:
        line = visible_line(uow, viewer, line_id)
        return UsageMonth(line, usage_history.month_usage(uow, line, month, tz))
