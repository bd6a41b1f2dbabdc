"""Console: online charging as operators watch it: each Gy server (`duckline ocs`) with its peers'
state and counters, as the server last wrote them, and the credit-control sessions still open, per
line, with what each holds per rating group. Support and administrators read it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from babel.numbers import format_decimal
from fastapi import APIRouter, Request
from fastapi.responses import Response

from duckline.accounts.models import Account
from duckline.accounts.roles import CHARGING_READERS
from duckline.core import i18n
from duckline.core.errors import DomainError
from duckline.diameter import board
from duckline.staff.console_common import page, status_for
from duckline.usage import open_sessions
from duckline.web.deps import RuntimeDep
from duckline.web.portal.rendering import page_language
from duckline.web.portal.session import staff_with

router = APIRouter(include_in_schema=False)
ChargingReader = Annotated[Account, staff_with(CHARGING_READERS)]
KIB = 1024
SIZES = ((KIB**3, "GB"), (KIB**2, "MB"), (KIB, "KB"))


def amount_parts(language: str) -> Callable[[str, int], list[tuple[str, str]]]:
    """What a reservation holds as people read it: [(number, unit key)], unit keys min, s, sms,
    bytes, KB, MB, GB (binary multiples, as the line pages count data)."""
    locale = i18n.babel_locale(language)

    def number(value: float, pattern: str = "#,##0") -> str:
        return format_decimal(value, pattern, locale=locale)

    def parts(unit: str, amount: int) -> list[tuple[str, str]]:
        if unit == "voice_seconds":
            minutes, seconds = divmod(amount, 60)
            shown = [(number(minutes), "min")] if minutes else []
            return shown + ([(number(seconds), "s")] if seconds or not minutes else [])
        if unit == "sms":
            return [(number(amount), "sms")]
        for size, key in SIZES:
            if amount >= size:
                return [(number(amount / size, "#,##0.#"), key)]
        return [(number(amount), "bytes")]

    return parts


@router.get("/console/charging")
def charging(
    request: Request, runtime: RuntimeDep, actor: ChargingReader, msisdn: str = "", cursor: str | None = None
) -> Response:
    msisdn = msisdn[:30]
    filtered = {"msisdn": msisdn} if msisdn.strip() else {}
    context: dict[str, Any] = {
        "servers": board.servers(runtime.unit_of_work, actor),
        "number_filter": msisdn,
        "filtered": bool(filtered),
        "first_page": not cursor,
        "newest": "/console/charging" + (f"?{urlencode(filtered)}" if filtered else "") + "#sessions",
        "amount": amount_parts(page_language(request, actor)),
    }
    try:
        found = open_sessions.open_sessions(runtime.unit_of_work, actor, msisdn, cursor)
    except DomainError as failure:
        return page(
            request, runtime, actor, "charging.html", status_for(failure), failure, sessions=[], older=None, **context
        )
    older = (
        f"/console/charging?{urlencode({**filtered, 'cursor': found.next_cursor})}#sessions"
        if found.next_cursor
        else None
    )
    return page(request, runtime, actor, "charging.html", sessions=found.sessions, older=older, **context)
