"""Portal pages shared by everyone: log in and out, the language switch, the home page."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from duckline.accounts import contacts
from duckline.accounts import service as accounts
from duckline.accounts.roles import STAFF
from duckline.core import i18n
from duckline.core.errors import DomainError, ErrorCode
from duckline.web.deps import (
    PUBLIC,
    SESSION_COOKIE,
    RuntimeDep,
    client_address,
    phone_key,
    session_signer,
    session_token_from_cookie,
)
from duckline.web.errors import STATUS
from duckline.web.portal.rendering import LANGUAGE_COOKIE, check_csrf, error_text, page_language, redirect, render
from duckline.web.portal.session import Viewer

router = APIRouter(include_in_schema=False)


@router.get("/login")
def login_page(
    request: Request, runtime: RuntimeDep, account: Viewer, next: str = "/", closed: bool = False
) -> Response:
    if account is not None:
        return redirect("/console" if account.role in STAFF else "/")
    return render(request, runtime, "portal/login.html", None, title_key="Log in", next=_safe(next), closed=closed)


@router.post("/login", dependencies=[PUBLIC])
def login(
    request: Request,
    runtime: RuntimeDep,
    phone: Annotated[str, Form(max_length=30)],
    password: Annotated[str, Form(max_length=200)],
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    check_csrf(request, runtime, csrf_token)
    language = page_language(request, None)
    if not runtime.rate_limits.hit("login", f"ip:{client_address(request)}", phone_key(runtime, phone)):
        return render(
            request,
            runtime,
            "portal/login.html",
            None,
            status_code=429,
            next=_safe(next),
            phone=phone,
            error=error_text(language, DomainError(ErrorCode.RATE_LIMITED)),
        )
    settings = runtime.settings
    try:
        signed = accounts.sign_in(
            runtime,
            phone,
            password,
            "portal",
            timedelta(seconds=settings.session_max_age_seconds),
            request.headers.get("user-agent"),
        )
    except DomainError as error:
        return render(
            request,
            runtime,
            "portal/login.html",
            None,
            status_code=STATUS[error.error.kind],
            next=_safe(next),
            phone=phone,
            error=error_text(language, error),
        )
    target = _safe(next)
    if signed.account.role in STAFF and target == "/":
        target = "/console"
    response = redirect(target)
    response.set_cookie(
        SESSION_COOKIE,
        session_signer(runtime).sign(signed.token).decode(),
        max_age=settings.session_max_age_seconds,
        httponly=True,
        secure=settings.environment == "production",
        samesite="lax",
        path="/",
    )
    return response


@router.post("/logout", dependencies=[PUBLIC])
def logout(request: Request, runtime: RuntimeDep, csrf_token: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, runtime, csrf_token)
    token = session_token_from_cookie(request, runtime)
    if token:
        accounts.sign_out(runtime.unit_of_work, token)
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/language")
def switch_language(
    request: Request,
    runtime: RuntimeDep,
    account: Viewer,
    language: Annotated[str, Form()],
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Remembered on the account when signed in, and in a cookie for visitors."""
    check_csrf(request, runtime, csrf_token)
    if language not in i18n.LANGUAGES:
        language = i18n.DEFAULT_LANGUAGE
    if account is not None:
        contacts.choose_language(runtime.unit_of_work, account, language)
    response = redirect(_safe(next))
    response.set_cookie(
        LANGUAGE_COOKIE,
        language,
        max_age=365 * 86400,
        samesite="lax",
        path="/",
        secure=runtime.settings.environment == "production",
    )
    return response


def _safe(target: str) -> str:
    """Only same-site paths: never an open redirect."""
    return target if target.startswith("/") and not target.startswith("//") else "/"
