"""What every staff console page shares: who may do what, rendering with the staff menu, and
form values read without floats (money as integer minor units)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from babel.numbers import get_currency_precision
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import FormData

from duckline.accounts.models import Account
from duckline.accounts.roles import (
    CATALOGUE_EDITORS,
    CHARGING_READERS,
    DELIVERY_READERS,
    KYC_REVIEWERS,
    LINE_OPERATORS,
    NUMBER_POOL_MANAGERS,
    STAFF,
    Role,
)
from duckline.core.errors import DomainError
from duckline.runtime import Runtime
from duckline.web.errors import STATUS
from duckline.web.portal.rendering import error_text, page_language, render
from duckline.web.portal.session import staff_with

REFUNDERS = frozenset({Role.FINANCE, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})
DESK = frozenset({Role.SUPPORT, Role.ADMIN})  # the support desk (support.desk.DESK_ROLES)

# Each route names the roles it needs; the check runs on the server for every request.
Staff = Annotated[Account, staff_with(STAFF)]
KycReviewer = Annotated[Account, staff_with(KYC_REVIEWERS)]
Refunder = Annotated[Account, staff_with(REFUNDERS)]
CatalogueEditor = Annotated[Account, staff_with(CATALOGUE_EDITORS)]
PoolManager = Annotated[Account, staff_with(NUMBER_POOL_MANAGERS)]
Admin = Annotated[Account, staff_with(ADMINS)]


class FormProblem(Exception):
    """A form value the console cannot read; `key` names the message the page shows."""

    def __init__(self, key: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(key)
        self.key = key
        self.field = field
        self.status = status


def abilities(actor: Account) -> dict[str, bool]:
    """What the menu and the forms offer; the routes check the same roles again."""
    return {
        "kyc": actor.role in KYC_REVIEWERS,
        "lines": actor.role in LINE_OPERATORS,
        "refund": actor.role in REFUNDERS,
        "catalogue": actor.role in CATALOGUE_EDITORS,
        "pool": actor.role in NUMBER_POOL_MANAGERS,
        "audit": actor.role in ADMINS,
        "jobs": actor.role in ADMINS,
        "desk": actor.role in DESK,
        "deliveries": actor.role in DELIVERY_READERS,
        "charging": actor.role in CHARGING_READERS,
    }


def page(
    request: Request,
    runtime: Runtime,
    actor: Account,
    template: str,
    status_code: int = 200,
    failure: DomainError | FormProblem | None = None,
    **context: Any,
) -> HTMLResponse:
    """A console page for `actor`, with the outcome of a failed action shown at the top."""
    if isinstance(failure, DomainError):
        context["failure_text"] = error_text(page_language(request, actor), failure)
        context["error_field"] = failure.field
    elif isinstance(failure, FormProblem):
        context["problem"] = failure.key
        context["error_field"] = failure.field
    context.setdefault("done", request.query_params.get("done"))
    context.setdefault("amount_input", money_input)
    return render(request, runtime, f"console/{template}", actor, status_code, can=abilities(actor), **context)


def status_for(failure: DomainError | FormProblem) -> int:
    return STATUS[failure.error.kind] if isinstance(failure, DomainError) else failure.status


async def form_data(request: Request) -> FormData:
    """The posted form, for the long forms (plans, promotions) whose rows repeat field names."""
    return await request.form(max_files=0, max_fields=200)


Posted = Annotated[FormData, Depends(form_data)]


def text(form: FormData, name: str, max_length: int = 2000) -> str:
    value = form.get(name, "")
    return value[:max_length] if isinstance(value, str) else ""


def texts(form: FormData, name: str, max_length: int = 2000) -> list[str]:
    return [value[:max_length] for value in form.getlist(name) if isinstance(value, str)]


def parse_money(text: str, currency: str = "HKD", field: str = "amount") -> int:
    """'88.50', '88.5', '88', 'HK$1,288.00' → minor units (8850, …); never through a float."""
    digits = get_currency_precision(currency)
    cleaned = text.strip().replace(",", "").replace(" ", "")
    for prefix in ("HK$", "$"):
        cleaned = cleaned.removeprefix(prefix)
    pattern = rf"(\d{{1,9}})(?:\.(\d{{1,{digits}}}))?" if digits else r"(\d{1,9})()"
    found = re.fullmatch(pattern, cleaned)
    if found is None:
        raise FormProblem("amount", field)
    major, minor = found.group(1), found.group(2) or ""
    return int(major) * 10**digits + (int(minor.ljust(digits, "0")) if digits else 0)


def money_input(amount: int, currency: str = "HKD") -> str:
    """Minor units as the form shows them for editing: 8850 → '88.50'."""
    digits = get_currency_precision(currency)
    if not digits:
        return str(amount)
    return f"{amount // 10**digits}.{amount % 10**digits:0{digits}d}"


def parse_count(text: str, field: str, minimum: int = 0, maximum: int = 10**12) -> int:
    cleaned = text.strip().replace(",", "")
    if not re.fullmatch(r"\d{1,13}", cleaned) or not minimum <= int(cleaned) <= maximum:
        raise FormProblem("number", field)
    return int(cleaned)


def optional_count(text: str, field: str, minimum: int = 1) -> int | None:
    return parse_count(text, field, minimum) if text.strip() else None


def parse_local_time(text: str, timezone: str, field: str) -> datetime:
    """A datetime-local field ('2026-12-01T09:00'), read on the staff member's clock."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise FormProblem("date", field) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(timezone))
    return value


def local_input(value: datetime, timezone: str) -> str:
    return value.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%dT%H:%M")


def required_text(text: str, field: str, max_length: int = 500) -> str:
    cleaned = text.strip()
    if not cleaned:
        raise FormProblem("reason" if field == "reason" else "required", field)
    if len(cleaned) > max_length:
        raise FormProblem("too_long", field)
    return cleaned
