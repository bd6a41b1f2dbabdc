"""The subscriber's own account: settings (contact details, language, messages, line features,
automatic renewal); the support tickets' pages are in duckline/support/pages.py.

Every form posts back here with the session's CSRF token; a success redirects to a GET that
shows a notice (?saved=…), a failure shows the same page again with the reason.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import EmailStr, TypeAdapter, ValidationError

from duckline.accounts import contacts
from duckline.accounts import settings as account_settings
from duckline.accounts.models import Account
from duckline.accounts.pages import security as security_pages
from duckline.billing import payment_labels
from duckline.billing.models import SavedPaymentMethod
from duckline.core.errors import DomainError, ErrorCode
from duckline.messaging import notifications
from duckline.runtime import Runtime
from duckline.web.deps import RuntimeDep, checking_code, sending_code, session_token_from_cookie
from duckline.web.errors import STATUS
from duckline.web.portal.rendering import check_csrf, error_text, page_language, redirect, render
from duckline.web.portal.session import SignedIn

router = APIRouter(include_in_schema=False)

Csrf = Annotated[str, Form()]
CODE = re.compile(r"^\d{6}$")
_email = TypeAdapter(EmailStr)


# --- settings -----------------------------------------------------------------------------


@router.get("/settings")
def settings_page(request: Request, runtime: RuntimeDep, account: SignedIn, saved: str | None = None) -> Response:
    return _settings(request, runtime, account, saved=saved)


@router.post("/settings/email")
def request_email_change(
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Csrf = "",
) -> Response:
    """Send a code to the new address; nothing changes until it comes back. The password proves
    it is the account holder (unless this session proved it a moment ago)."""
    check_csrf(request, runtime, csrf_token)
    try:
        address = str(_email.validate_python(email.strip()))
    except ValidationError:
        return _settings_error(
            request, runtime, account, DomainError(ErrorCode.EMAIL_INVALID, field="email"), email=email
        )
    return _request_change(request, runtime, account, contacts.EMAIL, address, password)


@router.post("/settings/phone")
def request_phone_change(
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    phone: Annotated[str, Form(max_length=30)],
    password: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Csrf = "",
) -> Response:
    check_csrf(request, runtime, csrf_token)
    return _request_change(request, runtime, account, contacts.PHONE, phone, password)


@router.post("/settings/email/verify")
def confirm_email_change(
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    code: Annotated[str, Form(max_length=20)],
    csrf_token: Csrf = "",
) -> Response:
    check_csrf(request, runtime, csrf_token)
    return _confirm_change(request, runtime, account, contacts.EMAIL, code)


@router.post("/settings/phone/verify")
def confirm_phone_change(
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    code: Annotated[str, Form(max_length=20)],
    csrf_token: Csrf = "",
) -> Response:
    check_csrf(request, runtime, csrf_token)
    return _confirm_change(request, runtime, account, contacts.PHONE, code)


@router.post("/settings/preferences")
def save_preferences(
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    shown: Annotated[list[str], Form()] = [],  # noqa: B006 — FastAPI copies form defaults
    enabled: Annotated[list[str], Form()] = [],  # noqa: B006
    csrf_token: Csrf = "",
) -> Response:
    """Each `shown` channel.category is on when it is also `enabled` (an unticked box sends nothing).
    Always-on categories are never shown as editable, and the service refuses to turn them off."""
    check_csrf(request, runtime, csrf_token)
    wanted: dict[str, dict[str, bool]] = {}
    try:
        for item in shown:
            channel, dot, category = item.partition(".")
            if not dot:
                raise DomainError(ErrorCode.VALIDATION_FAILED, field="preferences")
            wanted.setdefault(channel, {})[category] = item in enabled
        contacts.save_preferences(runtime.unit_of_work, account, wanted)
    except DomainError as error:
        return _settings_error(request, runtime, account, error)
    return redirect("/settings?saved=preferences")


@router.post("/settings/lines/{line_id}/features")
def save_features(
    line_id: int,
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    voicemail: Annotated[str | None, Form()] = None,
    caller_id: Annotated[str | None, Form()] = None,
    csrf_token: Csrf = "",
) -> Response:
    """Both switches are on the form, so a box that is not ticked means off."""
    check_csrf(request, runtime, csrf_token)
    try:
        account_settings.set_line_features(
            runtime.unit_of_work, account, line_id, voicemail is not None, caller_id is not None
        )
    except DomainError as error:
        return _settings_error(request, runtime, account, error)
    return redirect("/settings?saved=features")


@router.post("/settings/lines/{line_id}/auto-renew")
def save_auto_renew(
    line_id: int,
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    enabled: Annotated[str, Form(max_length=3)] = "",
    csrf_token: Csrf = "",
) -> Response:
    check_csrf(request, runtime, csrf_token)
    turn_on = enabled == "on"
    try:
        account_settings.set_line_auto_renew(runtime.unit_of_work, account, line_id, turn_on)
    except DomainError as error:
        return _settings_error(request, runtime, account, error, auto_renew_line=line_id)
    return redirect(f"/settings?saved=auto_renew_{'on' if turn_on else 'off'}")


def _request_change(
    request: Request, runtime: Runtime, account: Account, kind: str, value: str, password: str
) -> Response:
    try:
        if password:
            security_pages.prove_with_password(request, runtime, account, password)
        with sending_code(request, runtime):
            token = session_token_from_cookie(request, runtime) or ""
            contacts.start_change(runtime.unit_of_work, account, kind, value, token)
    except DomainError as error:
        return _settings_error(request, runtime, account, error, change_for=kind, **{kind: value})
    return redirect(f"/settings?saved={kind}_code_sent")


def _confirm_change(request: Request, runtime: Runtime, account: Account, kind: str, code: str) -> Response:
    try:
        checking_code(request, runtime, f"account:{account.id}")
        if not CODE.match(code.strip()):
            raise DomainError(ErrorCode.OTP_INVALID, field="code")
        contacts.finish_change(runtime.unit_of_work, account, kind, code.strip())
    except DomainError as error:  # a wrong code is still counted: the service's error commits it
        return _settings_error(request, runtime, account, error, code_for=kind)
    return redirect(f"/settings?saved={kind}")


def _masked(method: SavedPaymentMethod | None, language: str) -> str | None:
    """Brand and last four digits (or the wallet's name), never more."""
    return payment_labels.describe(method, language) if method is not None else None


def _settings_error(
    request: Request, runtime: Runtime, account: Account, error: DomainError, **context: Any
) -> Response:
    response = _settings(
        request,
        runtime,
        account,
        status_code=STATUS[error.error.kind],
        error=error_text(page_language(request, account), error),
        error_field=error.field,
        error_code=error.code,
        **context,
    )
    if error.retry_after is not None:  # a refusal that passes with time says when
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _settings(request: Request, runtime: Runtime, account: Account, status_code: int = 200, **context: Any) -> Response:
    shown = account_settings.settings_of(runtime.unit_of_work, account, session_token_from_cookie(request, runtime))
    me = shown.me
    language = page_language(request, me)
    line_rows = [{"line": row.line, "method": _masked(row.renewal_method, language)} for row in shown.lines]
    return render(
        request,
        runtime,
        "portal/settings.html",
        me,
        status_code=status_code,
        me=me,
        pending=shown.pending,
        proof_until=shown.proof_until,
        preferences=contacts.effective_preferences(me),
        channels=notifications.CHANNELS,
        categories=notifications.CATEGORIES,
        always_on=notifications.ALWAYS_ON,
        line_rows=line_rows,
        **context,
    )
