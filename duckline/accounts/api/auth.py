"""Log in and out: a signed HttpOnly cookie for browsers, bearer tokens for API clients."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response, status

from duckline.accounts import service as accounts
from duckline.accounts.schemas import AccountOut, LoginIn, SessionOut, TokenIn, TokenOut
from duckline.core.errors import DomainError, ErrorCode
from duckline.web.deps import (
    PUBLIC,
    SESSION_COOKIE,
    CurrentAccount,
    RuntimeDep,
    client_address,
    csrf_token,
    phone_key,
    request_credential,
    session_signer,
    session_token_from_cookie,
)
from duckline.web.openapi import errors

router = APIRouter(prefix="/auth", tags=["auth"])


def _check_rate(request: Request, runtime: RuntimeDep, phone: str) -> None:
    keys = (f"ip:{client_address(request)}", phone_key(runtime, phone))
    if not runtime.rate_limits.hit("login", *keys):
        raise DomainError(ErrorCode.RATE_LIMITED, retry_after=runtime.rate_limits.wait("login", *keys))


@router.post("/login", response_model=SessionOut, dependencies=[PUBLIC], responses=errors(401, 409, 429))
def login(body: LoginIn, request: Request, response: Response, runtime: RuntimeDep) -> SessionOut:
    """Start a browser session. Unsafe requests made with it must send the X-CSRF-Token header."""
    _check_rate(request, runtime, body.phone)
    settings = runtime.settings
    signed = accounts.sign_in(
        runtime,
        body.phone,
        body.password,
        "session",
        timedelta(seconds=settings.session_max_age_seconds),
        request.headers.get("user-agent"),
    )
    response.set_cookie(
        SESSION_COOKIE,
        session_signer(runtime).sign(signed.token).decode(),
        max_age=settings.session_max_age_seconds,
        httponly=True,
        secure=settings.environment == "production",
        samesite="lax",
        path="/",
    )
    return SessionOut(account=AccountOut.of(signed.account), csrf_token=csrf_token(runtime, signed.token))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, response: Response, runtime: RuntimeDep, account: CurrentAccount) -> None:
    """End the credential this request signed in with (the bearer token, or the session behind the
    cookie); the account's other tokens and sessions go on working."""
    found = request_credential(request, runtime)
    if found is not None:
        accounts.sign_out(runtime.unit_of_work, found[0])
    if found is None or found[1]:
        response.delete_cookie(SESSION_COOKIE, path="/")


@router.get("/session", response_model=SessionOut)
def session(request: Request, runtime: RuntimeDep, account: CurrentAccount) -> SessionOut:
    token = session_token_from_cookie(request, runtime) or ""
    return SessionOut(account=AccountOut.of(account), csrf_token=csrf_token(runtime, token) if token else "")


@router.post(
    "/tokens",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenOut,
    dependencies=[PUBLIC],
    responses=errors(401, 409, 429),
)
def create_token(body: TokenIn, request: Request, runtime: RuntimeDep) -> TokenOut:
    """Exchange a phone and password for a bearer token (shown once; only its hash is kept)."""
    _check_rate(request, runtime, body.phone)
    ttl = timedelta(days=runtime.settings.api_token_ttl_days)
    token = accounts.sign_in(
        runtime, body.phone, body.password, body.name, ttl, request.headers.get("user-agent")
    ).token
    return TokenOut(token=token, expires_at=runtime.clock.now() + ttl)
