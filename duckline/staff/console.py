"""The staff console (/console): the dashboard here; subscribers, catalogue and operations in the
console_*.py modules. Every route checks the staff member's role again on the server, every form
carries the CSRF token, and every change goes through a service that writes the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

from babel.dates import format_date
from babel.numbers import format_decimal
from fastapi import APIRouter, Request
from fastapi.responses import Response

from duckline.billing import console as console_operations
from duckline.catalog import console as console_catalogue
from duckline.catalog.rules import Unit
from duckline.core import i18n
from duckline.core.money import Money
from duckline.diameter import console as console_charging
from duckline.lines import console as console_lines
from duckline.messaging import console as console_deliveries
from duckline.staff import console_subscribers
from duckline.staff import dashboard as dashboard_figures
from duckline.staff.console_common import Staff, page
from duckline.support import console as console_support
from duckline.web.deps import RuntimeDep
from duckline.web.portal.rendering import page_language

router = APIRouter(include_in_schema=False)
router.include_router(console_subscribers.router)
router.include_router(console_lines.router)
router.include_router(console_catalogue.router)
router.include_router(console_operations.router)
router.include_router(console_support.router)
router.include_router(console_deliveries.router)
router.include_router(console_charging.router)

DAYS = dashboard_figures.DAYS
MB = 1024 * 1024


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the day
    value: str  # the figure, formatted


@dataclass(frozen=True)
class Chart:
    """A bar chart by day, laid out here so the page needs no script and no inline style."""

    bars: list[Bar]
    ticks: list[tuple[float, str, str]]  # x, label, text-anchor
    top: str  # the largest value, written at the top of the scale
    width: int
    height: int
    base: int  # y of the baseline; day labels below it


def bar_chart(
    days: list[date], values: list[int], show: Any, day_label: Any, width: int = 600, height: int = 170, every: int = 5
) -> Chart:
    """Bars scaled to the largest value; a day label under every `every`-th bar."""
    base, top_margin, left = height - 20, 14, 4
    slot = (width - left) / len(days)
    peak = max([*values, 1])
    bars = []
    for i, (day, value) in enumerate(zip(days, values, strict=True)):
        bar_height = round((base - top_margin) * value / peak, 1) if value else 0.0
        bars.append(
            Bar(
                x=round(left + i * slot + slot * 0.15, 1),
                y=round(base - bar_height, 1),
                width=round(slot * 0.7, 1),
                height=bar_height,
                label=day_label(day),
                value=show(value),
            )
        )
    # The first label starts at the left edge and the last (today) ends at the right one: none is cut off.
    last = len(days) - 1
    ticks = [
        (
            left if i == 0 else width - 1 if i == last else round(left + i * slot + slot / 2, 1),
            day_label(day),
            "start" if i == 0 else "end" if i == last else "middle",
        )
        for i, day in enumerate(days)
        if (i % every == 0 and last - i >= every / 2) or i == last
    ]
    return Chart(bars=bars, ticks=ticks, top=show(max(values, default=0)), width=width, height=height, base=base)


def _rounded(value: int, per: int) -> int:
    return int((Decimal(value) / per).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@router.get("/console")
def dashboard(request: Request, runtime: RuntimeDep, actor: Staff) -> Response:
    locale = i18n.babel_locale(page_language(request, actor))
    shown = dashboard_figures.figures(runtime.unit_of_work, actor)
    days, today, usage = shown.days, shown.days[-1], shown.usage

    # The same figures as GET /api/v1/reports/revenue?by=day, for the same days.
    report = shown.revenue
    net: dict[str, list[int]] = {}
    held: dict[str, int] = {}  # captured beyond an order's price, to refund: shown apart, never as revenue
    for row in report:
        currency = str(row["currency"])
        net.setdefault(currency, [0] * DAYS)[days.index(date.fromisoformat(str(row["day"])))] += cast(int, row["net"])
        held[currency] = held.get(currency, 0) + cast(int, row["held"])
    currency = runtime.settings.default_currency  # other currencies are listed beside the chart
    revenue = net.get(currency, [0] * DAYS)

    def day_label(day: date) -> str:
        return format_date(day, "d/M", locale=locale)

    def money(amount: int) -> str:
        return Money(amount, currency).format(locale)

    def count(value: int) -> str:
        return format_decimal(value, locale=locale)

    def small(values: list[int]) -> Chart:
        return bar_chart(days, values, count, day_label, width=240, height=130, every=10)

    desk = shown.desk
    return page(
        request,
        runtime,
        actor,
        "dashboard.html",
        open_cases=shown.open_cases,
        desk=desk,
        oldest_open_age=console_support.ages(request, runtime, actor)(desk.oldest_open_at),
        revenue_total=money(sum(revenue)),
        other_currencies={c: Money(sum(v), c).format(locale) for c, v in net.items() if c != currency},
        held=[Money(amount, c).format(locale) for c, amount in sorted(held.items()) if amount],
        revenue_chart=bar_chart(days, revenue, money, day_label),
        revenue_narrow=bar_chart(days, revenue, money, day_label, width=300, height=150, every=10),
        usage_charts=[  # three side by side: a narrower drawing keeps their text legible
            ("voice", small([_rounded(v, 60) for v in usage[Unit.VOICE_SECONDS]])),
            ("sms", small(usage[Unit.SMS])),
            ("data", small([_rounded(v, MB) for v in usage[Unit.DATA_BYTES]])),
        ],
        usage_totals={
            "voice": count(_rounded(sum(usage[Unit.VOICE_SECONDS]), 60)),
            "sms": count(sum(usage[Unit.SMS])),
            "data": count(_rounded(sum(usage[Unit.DATA_BYTES]), MB)),
        },
        pool=shown.pool,
        lines_by_status=[(status.value, n) for status, n in shown.lines_by_status.items()],
        period=(format_date(days[0], "medium", locale=locale), format_date(today, "medium", locale=locale)),
    )
