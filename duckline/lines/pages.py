"""Subscriber pages: the lines list, a line's dashboard (balances, expiry, eSIM) and its usage
history (registration and the password reset are in accounts/pages/registration.py).

Each page calls the same services as the API (lines/service.py, usage/history.py) and holds no
rule of its own; what it shows is formatted here only as numbers — every word comes from the
templates, through gettext.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_skeleton, format_time
from babel.numbers import format_decimal
from fastapi import APIRouter, Request
from fastapi.responses import Response

from duckline.accounts.models import Account
from duckline.accounts.roles import STAFF
from duckline.core import i18n
from duckline.core.errors import DomainError, ErrorCode
from duckline.lines import service as lines
from duckline.lines.esim import activation_code
from duckline.runtime import Runtime
from duckline.usage import history as usage_history
from duckline.web.deps import RuntimeDep
from duckline.web.portal.rendering import page_language, redirect, render
from duckline.web.portal.session import SignedIn, SubscriberOrStaff

router = APIRouter(include_in_schema=False)
MIB, GIB = 1024**2, 1024**3


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
    """A line's dashboard: plan, expiry, allowances, warnings, eSIM, SIP account, features."""
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
        sip=shown.sip,
        sip_server=runtime.settings.sip_server,
        own_line=shown.summary.line.account_id == account.id,  # only the holder may reset the SIP password
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


__all__ = ["router"]
