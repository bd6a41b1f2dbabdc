"""Settings › Security: prove it is you (password, or a code to the current number), change the
password, and see and end the sessions and tokens signed in to the account.

Every form posts back here with the session's CSRF token; a success redirects to a GET that
shows a notice (?saved=…), a failure shows the page again with the reason by its field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from duckline.accounts import security
from duckline.accounts.models import Account
from duckline.core.errors import DomainError, ErrorCode
from duckline.runtime import Runtime
from duckline.web.deps import RuntimeDep, client_address, session_token_from_cookie
from duckline.web.errors import STATUS
from duckline.web.portal.rendering import check_csrf, error_text, page_language, redirect, render
from duckline.web.portal.session import SignedIn

router = APIRouter(include_in_schema=False)

Csrf = Annotated[str, Form()]
Secret = Annotated[str, Form(max_length=200)]
CODE = re.compile(r"^\d{6}$")
PAGE = "/settings/security"


@router.get(PAGE)
def security_page(request: Request, runtime: RuntimeDep, account: SignedIn, saved: str | None = None) -> Response:
    return _page(request, runtime, account, saved=saved)


@router.post(f"{PAGE}/confirm")
def confirm(
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    password: Secret = "",
    code: Annotated[str, Form(max_length=20)] = "",
    csrf_token: Csrf = "",
) -> Response:
    """Prove it is you with the password, or with the code texted to the current number."""
    check_csrf(request, runtime, csrf_token)
    try:
        if code.strip():
            prove_with_code(request, runtime, account, code.strip())
        else:
            prove_with_password(request, runtime, account, password)
    except DomainError as error:
        return _error(request, runtime, account, error, form="code" if code.strip() else "confirm")
    return redirect(f"{PAGE}?saved=confirmed")


@router.post(f"{PAGE}/code")
def send_code(request: Request, runtime: RuntimeDep, account: SignedIn, csrf_token: Csrf = "") -> Response:
    """Text a code to the account's current number (never to one the form names)."""
    check_csrf(request, runtime, csrf_token)
    try:
        limit(request, runtime, "otp", account)
        security.send_proof_code(runtime.unit_of_work, account)
    except DomainError as error:
        return _error(request, runtime, account, error, form="code")
    return redirect(f"{PAGE}?saved=code_sent#confirm")


@router.post(f"{PAGE}/password")
def change_password(
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    new_password: Secret,
    repeat_password: Secret,
    current_password: Secret = "",
    csrf_token: Csrf = "",
) -> Response:
    """A new password, proved by the current one (or a fresh proof); other sessions are signed out."""
    check_csrf(request, runtime, csrf_token)
    try:
        if new_password != repeat_password:
            raise DomainError(ErrorCode.PASSWORDS_DIFFER, field="repeat_password")
        if current_password:
            limit(request, runtime, "login", account)
        security.change_password(runtime, account, _token(request, runtime), new_password, current_password or None)
    except DomainError as error:
        if error.field == "password":  # the current password, as this form names it
            error.field = "current_password"
        return _error(request, runtime, account, error, form="password")
    return redirect(f"{PAGE}?saved=password")


@router.post(f"{PAGE}/sessions/{{session_id}}/revoke")
def revoke_session(
    session_id: int, request: Request, runtime: RuntimeDep, account: SignedIn, csrf_token: Csrf = ""
) -> Response:
    check_csrf(request, runtime, csrf_token)
    try:
        security.end_session(runtime.unit_of_work, account, session_id)
    except DomainError as error:
        return _error(request, runtime, account, error, form="sessions")
    return redirect(f"{PAGE}?saved=revoked#sessions")


@router.post(f"{PAGE}/sessions/revoke-others")
def revoke_other_sessions(request: Request, runtime: RuntimeDep, account: SignedIn, csrf_token: Csrf = "") -> Response:
    check_csrf(request, runtime, csrf_token)
    security.end_other_sessions(runtime.unit_of_work, account, _token(request, runtime))
    return redirect(f"{PAGE}?saved=revoked_others#sessions")


# --- shared with the contact forms of /settings ------------------------------------------------


def prove_with_password(request: Request, runtime: Runtime, account: Account, password: str) -> None:
    if not password:
        raise DomainError(ErrorCode.REAUTHENTICATION_REQUIRED, field="password")
    limit(request, runtime, "login", account)
    security.prove_with_password(runtime, account, _token(request, runtime), password)


def prove_with_code(request: Request, runtime: Runtime, account: Account, code: str) -> None:
    limit(request, runtime, "otp", account)
    if not CODE.match(code):
        raise DomainError(ErrorCode.OTP_INVALID, field="code")
    security.prove_code(runtime.unit_of_work, account, _token(request, runtime), code)


def limit(request: Request, runtime: Runtime, rule: str, account: Account) -> None:
    """Proofs are what someone holding a stolen session would guess: counted per address and account."""
    if not runtime.rate_limits.hit(rule, f"ip:{client_address(request)}", f"account:{account.id}"):
        raise DomainError(ErrorCode.RATE_LIMITED)


def _token(request: Request, runtime: Runtime) -> str:
    return session_token_from_cookie(request, runtime) or ""


def _error(request: Request, runtime: Runtime, account: Account, error: DomainError, form: str) -> Response:
    return _page(
        request,
        runtime,
        account,
        status_code=STATUS[error.error.kind],
        error=error_text(page_language(request, account), error),
        error_field=error.field,
        error_form=form,
    )


def _page(request: Request, runtime: Runtime, account: Account, status_code: int = 200, **context: Any) -> Response:
    shown = security.overview(runtime.unit_of_work, account, _token(request, runtime))
    return render(
        request,
        runtime,
        "portal/security.html",
        shown.me,
        status_code=status_code,
        me=shown.me,
        sessions=shown.sessions,
        proof_until=shown.proof_until,
        code_pending=shown.code_pending,
        **context,
    )
