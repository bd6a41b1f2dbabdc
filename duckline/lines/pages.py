"""Subscriber pages: registration and phone verification, password reset, the lines list, a
line's dashboard (balances, expiry, eSIM) and its usage history.

Each page calls the same services as the API (registration.py, password.py, lines.py) and holds
no rule of its own; what it shows is formatted here only as numbers — every word comes from
the templates, through gettext.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from babel.dates import format_skeleton, format_time
from babel.numbers import format_decimal
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from duckline.accounts import registration
from duckline.accounts import service as accounts
from duckline.accounts.identity import DocumentType
from duckline.accounts.models import Account
from duckline.accounts.roles import STAFF
from duckline.core import i18n
from duckline.core.errors import DomainError, ErrorCode
from duckline.lines import service as lines
from duckline.lines.esim import activation_code
from duckline.runtime import Runtime
from duckline.usage import history as usage_history
from duckline.web.deps import PUBLIC, SESSION_COOKIE, RuntimeDep, checking_code, sending_code, session_signer
from duckline.web.errors import STATUS
from duckline.web.portal.rendering import check_csrf, error_text, page_language, redirect, render
from duckline.web.portal.session import SignedIn, SubscriberOrStaff, Viewer

router = APIRouter(include_in_schema=False)

DOCUMENT_TYPES = tuple(t.value for t in DocumentType)
REGISTRATION_FIELDS = (
    "phone",
    "document_type",
    "document_number",
    "name_en",
    "name_zh",
    "birth_date",
    "guardian_document_type",
    "guardian_document_number",
    "guardian_name_en",
    "guardian_name_zh",
    "guardian_birth_date",
)
# Fields an error can point at on each form (others are shown at the top of the page).
REGISTRATION_ERROR_FIELDS = {*REGISTRATION_FIELDS, "password", "document_image", "guardian"}
CODE_ERROR_FIELDS = {"phone", "code", "password"}
_SIX_DIGITS = re.compile(r"^\d{6}$")
KIB, MIB, GIB = 1024, 1024**2, 1024**3


# --- Sessions ---------------------------------------------------------------------------------


def signed_in_redirect(runtime: Runtime, token: str, target: str) -> Response:
    """Redirect to `target` carrying the signed session cookie for `token`."""
    settings = runtime.settings
    response = redirect(target)
    response.set_cookie(
        SESSION_COOKIE,
        session_signer(runtime).sign(token).decode(),
        max_age=settings.session_max_age_seconds,
        httponly=True,
        secure=settings.environment == "production",
        samesite="lax",
        path="/",
    )
    return response


def _errors(language: str, error: DomainError, fields: set[str]) -> dict[str, str]:
    """{form field: message}; "" holds an error that belongs to no field on the form."""
    field = (error.field or "").replace(".", "_")
    return {field if field in fields else "": error_text(language, error)}


def _refused(response: Response, error: DomainError) -> Response:
    """The page that answers a refusal; one that passes with time (429) says when (Retry-After)."""
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


# --- Registration -----------------------------------------------------------------------------


@router.get("/register")
def register_page(request: Request, runtime: RuntimeDep, account: Viewer) -> Response:
    if account is not None:
        return redirect("/")
    return _register_form(request, runtime, {}, {})


def _register_form(
    request: Request, runtime: RuntimeDep, form: dict[str, str], errors: dict[str, str], status_code: int = 200
) -> Response:
    return render(
        request,
        runtime,
        "portal/register.html",
        None,
        status_code=status_code,
        form=form,
        errors=errors,
        document_types=DOCUMENT_TYPES,
        guardian_age=runtime.settings.min_age_without_guardian,
        max_mb=runtime.settings.document_max_bytes // (1024 * 1024),
        min_password=accounts.MIN_PASSWORD_LENGTH,
        today=runtime.clock.now().astimezone(ZoneInfo(runtime.settings.display_timezone)).date().isoformat(),
    )


@router.post("/register", dependencies=[PUBLIC])
def register(
    request: Request,
    runtime: RuntimeDep,
    csrf_token: Annotated[str, Form()] = "",
    phone: Annotated[str, Form(max_length=30)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    document_type: Annotated[str, Form(max_length=30)] = "",
    document_number: Annotated[str, Form(max_length=40)] = "",
    name_en: Annotated[str, Form(max_length=100)] = "",
    name_zh: Annotated[str, Form(max_length=30)] = "",
    birth_date: Annotated[str, Form(max_length=10)] = "",
    document_image: Annotated[UploadFile | None, File()] = None,
    guardian_document_type: Annotated[str, Form(max_length=30)] = "",
    guardian_document_number: Annotated[str, Form(max_length=40)] = "",
    guardian_name_en: Annotated[str, Form(max_length=100)] = "",
    guardian_name_zh: Annotated[str, Form(max_length=30)] = "",
    guardian_birth_date: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """As POST /api/v1/registrations; the errors come back next to their fields."""
    check_csrf(request, runtime, csrf_token)
    language = page_language(request, None)
    typed = {
        "phone": phone,
        "document_type": document_type,
        "document_number": document_number,
        "name_en": name_en,
        "name_zh": name_zh,
        "birth_date": birth_date,
        "guardian_document_type": guardian_document_type,
        "guardian_document_number": guardian_document_number,
        "guardian_name_en": guardian_name_en,
        "guardian_name_zh": guardian_name_zh,
        "guardian_birth_date": guardian_birth_date,
    }
    try:
        guardian = None
        if guardian_document_type or guardian_document_number:
            if not (guardian_document_type and guardian_document_number and guardian_birth_date):
                raise DomainError(
                    ErrorCode.GUARDIAN_REQUIRED, field="guardian", age=runtime.settings.min_age_without_guardian
                )
            guardian = accounts.IdentityInput(
                guardian_document_type,
                guardian_document_number,
                guardian_name_en or None,
                guardian_name_zh or None,
                _parse_date(guardian_birth_date),
            )
        image = document_image.file.read(runtime.settings.document_max_bytes + 1) if document_image else b""
        form = accounts.Registration(
            phone=phone,
            password=password,
            identity=accounts.IdentityInput(
                document_type, document_number, name_en or None, name_zh or None, _parse_date(birth_date)
            ),
            document_image=image,
            language=language,
            guardian=guardian,
        )
        with sending_code(request, runtime):
            registered_phone = registration.start(runtime.unit_of_work, form)
    except DomainError as error:
        errors = _errors(language, error, REGISTRATION_ERROR_FIELDS)
        return _refused(_register_form(request, runtime, typed, errors, status_code=STATUS[error.error.kind]), error)
    # A taken number or identity lands here too: the page must not tell who is a customer.
    return redirect("/register/verify?" + urlencode({"phone": registered_phone}))


def _parse_date(text: str) -> date:
    """A date from an <input type=date>. One that cannot be read goes to the service as a date in
    the future, which it refuses (BIRTH_DATE_INVALID on that field) in its usual order, so the
    errors come in the same order as the form's fields."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return date.max


@router.get("/register/verify", dependencies=[PUBLIC])
def verify_page(request: Request, runtime: RuntimeDep, phone: str = "") -> Response:
    return _verify_form(request, runtime, phone[:30], {})


def _verify_form(
    request: Request, runtime: RuntimeDep, phone: str, errors: dict[str, str], status_code: int = 200, **extra: object
) -> Response:
    return render(
        request,
        runtime,
        "portal/register_verify.html",
        None,
        status_code=status_code,
        phone=phone,
        errors=errors,
        minutes=runtime.settings.otp_ttl_seconds // 60,
        **extra,
    )


@router.post("/register/verify", dependencies=[PUBLIC])
def verify(
    request: Request,
    runtime: RuntimeDep,
    csrf_token: Annotated[str, Form()] = "",
    phone: Annotated[str, Form(max_length=30)] = "",
    code: Annotated[str, Form(max_length=20)] = "",
    action: Annotated[str, Form(max_length=10)] = "verify",
) -> Response:
    """As POST /api/v1/registrations/verify (or /resend): the code opens the first line, and
    the new subscriber is signed in on the line's page."""
    check_csrf(request, runtime, csrf_token)
    language = page_language(request, None)
    if action == "resend":
        try:
            with sending_code(request, runtime):
                registration.resend(runtime.unit_of_work, phone)
        except DomainError as error:
            errors = _errors(language, error, CODE_ERROR_FIELDS)
            return _refused(_verify_form(request, runtime, phone, errors, STATUS[error.error.kind]), error)
        return _verify_form(request, runtime, phone, {}, sent=True)
    try:
        checking_code(request, runtime)
        if not _SIX_DIGITS.match(code.strip()):
            raise DomainError(ErrorCode.OTP_INVALID, field="code")
        session_length = timedelta(seconds=runtime.settings.session_max_age_seconds)
        verified = registration.verify(runtime.unit_of_work, phone, code.strip(), portal_session=session_length)
    except DomainError as error:
        errors = _errors(language, error, CODE_ERROR_FIELDS)
        return _refused(_verify_form(request, runtime, phone, errors, STATUS[error.error.kind]), error)
    assert verified.session_token is not None
    return signed_in_redirect(runtime, verified.session_token, f"/lines/{verified.line.id}")


# --- Password reset ---------------------------------------------------------------------------


@router.get("/password-reset")
def password_reset_page(request: Request, runtime: RuntimeDep, account: Viewer) -> Response:
    return _reset_form(request, runtime, account, "request", "", {})


def _reset_form(
    request: Request,
    runtime: RuntimeDep,
    account: Account | None,
    step: str,
    phone: str,
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    return render(
        request,
        runtime,
        "portal/password_reset.html",
        account,
        status_code=status_code,
        step=step,
        phone=phone,
        errors=errors,
        min_password=accounts.MIN_PASSWORD_LENGTH,
        minutes=runtime.settings.otp_ttl_seconds // 60,
    )


@router.post("/password-reset")
def password_reset(
    request: Request,
    runtime: RuntimeDep,
    account: Viewer,
    csrf_token: Annotated[str, Form()] = "",
    step: Annotated[str, Form(max_length=10)] = "request",
    phone: Annotated[str, Form(max_length=30)] = "",
    code: Annotated[str, Form(max_length=20)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    action: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Step "request" (or the confirm step's resend button) as POST /api/v1/auth/password-reset,
    step "confirm" as …/password-reset/confirm."""
    check_csrf(request, runtime, csrf_token)
    language = page_language(request, account)
    if step != "confirm" or action == "resend":
        try:
            with sending_code(request, runtime):
                accounts.send_password_reset(runtime.unit_of_work, phone)
        except DomainError as error:
            errors = _errors(language, error, CODE_ERROR_FIELDS)
            refused = _reset_form(request, runtime, account, "request", phone, errors, STATUS[error.error.kind])
            return _refused(refused, error)
        return _reset_form(request, runtime, account, "confirm", phone, {})
    try:
        checking_code(request, runtime)
        if not _SIX_DIGITS.match(code.strip()):
            raise DomainError(ErrorCode.OTP_INVALID, field="code")
        accounts.finish_password_reset(runtime.unit_of_work, phone, code.strip(), password)
    except DomainError as error:
        errors = _errors(language, error, CODE_ERROR_FIELDS)
        refused = _reset_form(request, runtime, account, "confirm", phone, errors, STATUS[error.error.kind])
        return _refused(refused, error)
    # Every session of the account was revoked, this browser's too.
    response = _reset_form(request, runtime, None, "done", phone, {})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- Lines ------------------------------------------------------------------------------------


@router.get("/")
def home(request: Request, runtime: RuntimeDep, account: SubscriberOrStaff) -> Response:
    """The subscriber's lines; staff go to the console (visitors are sent to the login page)."""
    if account.role in STAFF:
        return redirect("/console")
    language = page_language(request, account)
    shown = lines.home(runtime.unit_of_work, account, language)
    formatters = _formatters(language, account.timezone)
    return render(
        request, runtime, "portal/lines.html", account, summaries=shown.summaries, person=shown.person, **formatters
    )


@router.get("/lines/{line_id}")
def line_page(line_id: int, request: Request, runtime: RuntimeDep, account: SignedIn) -> Response:
    """A line's dashboard: plan, expiry, allowances, warnings, eSIM, features."""
    language = page_language(request, account)
    try:
        shown = lines.dashboard(runtime.unit_of_work, account, line_id, language)
    except DomainError as error:
        return _not_found(request, runtime, account, error)
    return render(
        request,
        runtime,
        "portal/line.html",
        account,
        summary=shown.summary,
        line=shown.summary.line,
        profile=shown.profile,
        code=activation_code(shown.profile.smdp_address, shown.profile.matching_id),
        person=shown.person,
        **_formatters(language, account.timezone),
    )


@router.get("/lines/{line_id}/usage")
def usage_page(
    line_id: int, request: Request, runtime: RuntimeDep, account: SignedIn, month: str | None = None
) -> Response:
    """Usage by day (charts) and the month's records with what each one charged."""
    language = page_language(request, account)
    tz = account.timezone or runtime.settings.display_timezone
    today = runtime.clock.now().astimezone(ZoneInfo(tz)).date()
    current = usage_history.Month(today.year, today.month)
    chosen = usage_history.Month.parse(month, today)
    if (chosen.year, chosen.month) > (current.year, current.month):
        chosen = current
    try:
        month_usage = lines.usage_month(runtime.unit_of_work, account, line_id, chosen, tz)
    except DomainError as error:
        return _not_found(request, runtime, account, error)
    history = month_usage.history
    locale = i18n.babel_locale(language)
    data_unit, data_size = ("gb", GIB) if max(d.data_bytes for d in history.days) >= GIB else ("mb", MIB)
    charts = [
        _chart("voice", "min", [d.voice_seconds / 60 for d in history.days]),
        _chart("sms", "sms", [float(d.sms) for d in history.days]),
        _chart("data", data_unit, [d.data_bytes / data_size for d in history.days]),
    ]
    return render(
        request,
        runtime,
        "portal/line_usage.html",
        account,
        line=month_usage.line,
        history=history,
        charts=charts,
        month_label=format_skeleton("yMMMM", chosen.first_day, locale=locale),
        previous_month=str(chosen.previous()),
        next_month=str(chosen.next()) if chosen != current else None,
        month_value=str(chosen),
        current_month=str(current),
        tz=tz,
        **_formatters(language, tz),
    )


def _not_found(request: Request, runtime: Runtime, account: Account, error: DomainError) -> Response:
    if error.error is not ErrorCode.NOT_FOUND:
        raise error
    return render(request, runtime, "portal/line_not_found.html", account, status_code=404)


# --- Numbers for the templates (the words around them are in the templates) -------------------


def _formatters(language: str, tz: str) -> dict[str, Any]:
    locale = i18n.babel_locale(language)
    zone = ZoneInfo(tz)

    def number(value: float, pattern: str = "#,##0") -> str:
        return format_decimal(value, pattern, locale=locale)

    def quantity(unit: str, amount: int, rounding: str = "nearest") -> list[tuple[str, str]]:
        """[(number, unit key)] for an allowance amount in people's units.

        Voice: whole minutes (remaining rounded down and used rounded up, so they add up to
        the allowance); data: GB from 1 GB, else MB; SMS: a count. Unit keys: min, s, sms, gb, mb.
        """
        if unit == "voice_seconds":
            minutes = amount / 60
            whole = math.floor(minutes) if rounding == "down" else math.ceil(minutes) if rounding == "up" else minutes
            return [(number(whole), "min")]
        if unit == "data_bytes":
            if amount >= GIB:
                return [(number(amount / GIB, "#,##0.##"), "gb")]
            return [(number(amount / MIB, "#,##0.#" if amount >= MIB or amount == 0 else "#,##0.###"), "mb")]
        return [(number(amount), "sms")]

    def duration(seconds: int) -> list[tuple[str, str]]:
        """A call's length: minutes and seconds."""
        minutes, rest = divmod(seconds, 60)
        return ([(number(minutes), "min")] if minutes else []) + ([(number(rest), "s")] if rest or not minutes else [])

    def day(value: date, skeleton: str = "MMMd") -> str:
        return format_skeleton(skeleton, value, locale=locale)

    def at(value: datetime, skeleton: str = "yMMMd") -> str:
        """A date and a time to the minute, in the viewer's time zone: "24 Dec 2026 3:16 pm"."""
        local = value.astimezone(zone)
        return f"{format_skeleton(skeleton, local, locale=locale)} {format_time(local, 'short', locale=locale)}"

    return {"number": number, "quantity": quantity, "duration": duration, "day": day, "at": at}


@dataclass(frozen=True)
class Bar:
    index: int  # day of the month - 1
    value: float
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Chart:
    kind: str  # voice, sms, data: the bars' class in portal.css
    unit: str  # what the values count: min, sms, mb or gb
    top: float  # the value at the top of the scale
    bars: list[Bar]
    ticks: list[tuple[int, float]]  # (day of the month, x of its label)
    width: int = 320
    height: int = 130
    plot_top: int = 12
    plot_bottom: int = 112
    left: int = 42


def _chart(kind: str, unit: str, values: list[float]) -> Chart:
    """Bar geometry for an inline SVG: one bar per day, scaled to a round maximum."""
    chart = Chart(kind, unit, 0, [], [])
    top = _round_up(max(values, default=0))
    slot = (chart.width - chart.left - 4) / max(len(values), 1)
    plot = chart.plot_bottom - chart.plot_top
    bars = []
    for index, value in enumerate(values):
        if value <= 0:
            continue
        height = max(plot * value / top, 1.5)
        bars.append(
            Bar(
                index,
                value,
                round(chart.left + index * slot + slot * 0.15, 2),
                round(chart.plot_bottom - height, 2),
                round(slot * 0.7, 2),
                round(height, 2),
            )
        )
    ticks = [
        (d, round(chart.left + (d - 1) * slot + slot / 2, 2)) for d in (1, 5, 10, 15, 20, 25, 30) if d <= len(values)
    ]
    return Chart(kind, unit, top, bars, ticks)


def _round_up(value: float) -> float:
    """1, 2, 5 × a power of ten at or above `value` (1 for nothing)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


__all__ = ["router", "signed_in_redirect"]
