"""The subscriber's own data in the portal: saved payment methods (/settings/payment-methods) and
"Privacy & data" (/settings/privacy): download everything held about them, close the account.

The same services as the API (duckline.accounts.api.privacy), and the same download (duckline.web.downloads);
every form carries the CSRF token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from duckline.accounts import closure as account_closure
from duckline.accounts import data_export as exports
from duckline.accounts.models import Account
from duckline.accounts.phone import display
from duckline.billing import payment_methods
from duckline.core import i18n
from duckline.core.errors import DomainError, ErrorCode
from duckline.runtime import Runtime
from duckline.web.deps import SESSION_COOKIE, RuntimeDep, client_address
from duckline.web.downloads import download
from duckline.web.errors import STATUS
from duckline.web.portal.rendering import (
    LANGUAGE_COOKIE,
    LANGUAGE_NAMES,
    check_csrf,
    error_text,
    gettext_for,
    page_language,
    redirect,
    render,
)
from duckline.web.portal.session import SignedIn

router = APIRouter(include_in_schema=False)

Csrf = Annotated[str, Form()]
Password = Annotated[str, Form(max_length=200)]


# --- saved payment methods ------------------------------------------------------------------


@router.get("/settings/payment-methods")
def payment_methods_page(request: Request, runtime: RuntimeDep, account: SignedIn) -> Response:
    return _methods(request, runtime, account)


@router.post("/settings/payment-methods/{method_id}/remove")
def remove_payment_method(
    method_id: int, request: Request, runtime: RuntimeDep, account: SignedIn, csrf_token: Csrf = ""
) -> Response:
    """Shown at once on the page (not by redirect): which lines' automatic renewal went off with it."""
    check_csrf(request, runtime, csrf_token)
    try:
        removed = payment_methods.remove(runtime, account.id, method_id)
    except DomainError as error:
        return _methods(request, runtime, account, error=_error(request, account, error), status_code=_status(error))
    return _methods(request, runtime, account, removed=removed)


def _methods(request: Request, runtime: Runtime, account: Account, status_code: int = 200, **context: Any) -> Response:
    language = page_language(request, account)
    methods = payment_methods.methods_of(runtime.unit_of_work, account, language)
    return render(
        request,
        runtime,
        "portal/payment_methods.html",
        account,
        status_code=status_code,
        methods=methods,
        numbers_of=lambda msisdns: ", ".join(display(n) for n in msisdns),
        **context,
    )


# --- privacy & data -------------------------------------------------------------------------------


@router.get("/settings/privacy")
def privacy_page(request: Request, runtime: RuntimeDep, account: SignedIn) -> Response:
    return _privacy(request, runtime, account)


@router.post("/settings/privacy/export")
def export_data(
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    password: Password = "",
    format: Annotated[str, Form(max_length=4)] = "json",
    csrf_token: Csrf = "",
) -> Response:
    """The download itself; a wrong password or too many downloads show the page with the reason."""
    check_csrf(request, runtime, csrf_token)
    as_zip = format == "zip"
    try:
        if not runtime.rate_limits.hit("export", f"ip:{client_address(request)}", f"account:{account.id}"):
            raise DomainError(ErrorCode.RATE_LIMITED)
        made = exports.export(runtime, account.id, password or None, as_zip, page_language(request, account))
    except DomainError as error:
        return _privacy(
            request,
            runtime,
            account,
            status_code=_status(error),
            error=_error(request, account, error),
            error_field=f"export_{error.field}" if error.field else None,
        )
    return download(made, as_zip, runtime.clock.now())


@router.post("/settings/privacy/close")
def close_account(
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    password: Password = "",
    confirm: Annotated[str, Form(max_length=3)] = "",
    csrf_token: Csrf = "",
) -> Response:
    """Closed: signed out here, and sent to the login page, which says the account is closed."""
    check_csrf(request, runtime, csrf_token)
    try:
        if not runtime.rate_limits.hit("login", f"ip:{client_address(request)}", f"account:{account.id}"):
            raise DomainError(ErrorCode.RATE_LIMITED)
        account_closure.close(runtime, account.id, password, confirm == "yes")
    except DomainError as error:
        return _privacy(
            request,
            runtime,
            account,
            status_code=_status(error),
            error=_error(request, account, error),
            error_field=f"close_{error.field}" if error.field else None,
        )
    response = redirect("/login?closed=1")
    response.delete_cookie(SESSION_COOKIE, path="/")
    # The login page speaks to a visitor: in the language the account had.
    response.set_cookie(LANGUAGE_COOKIE, account.language, samesite="lax", path="/")
    return response


def _privacy(request: Request, runtime: Runtime, account: Account, status_code: int = 200, **context: Any) -> Response:
    language = page_language(request, account)
    terms = account_closure.retention_terms(runtime.unit_of_work)
    # What closing keeps is shown in every language, the reader's first (a statement people rely on).
    others = [(code, LANGUAGE_NAMES[code], gettext_for(code)) for code in i18n.LANGUAGES if code != language]
    return render(
        request,
        runtime,
        "portal/privacy.html",
        account,
        status_code=status_code,
        terms=terms,
        recycled_after=terms.grace_days + terms.retention_days,
        other_languages=others,
        **context,
    )


def _error(request: Request, account: Account, error: DomainError) -> str:
    return error_text(page_language(request, account), error)


def _status(error: DomainError) -> int:
    return STATUS[error.error.kind]
