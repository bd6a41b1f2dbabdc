"""Dependencies: the runtime, the caller (session cookie or bearer token), role checks."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, Request
from itsdangerous import BadSignature, TimestampSigner

from duckline import i18n
from duckline.adapters.db.tables import Account
from duckline.domain.phone import normalise_mobile
from duckline.domain.roles import Role
from duckline.errors import DomainError, ErrorCode
from duckline.runtime import Runtime
from duckline.services import accounts

SESSION_COOKIE = "duckline_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def session_signer(runtime: Runtime) -> TimestampSigner:
    return TimestampSigner(runtime.settings.secret_key, salt="duckline.session")


def csrf_token(runtime: Runtime, session_token: str) -> str:
    """Derived from the session, so it needs no storage and dies with the session."""
    key = runtime.settings.secret_key.encode()
    return hmac.new(key, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


def session_token_from_cookie(request: Request, runtime: Runtime) -> str | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return session_signer(runtime).unsign(cookie, max_age=runtime.settings.session_max_age_seconds).decode()
    except BadSignature:
        return None


def optional_account(request: Request, runtime: RuntimeDep) -> Account | None:
    """The caller, if any. Bearer tokens for API clients; the signed cookie for browsers, whose
    unsafe requests must also carry the CSRF token."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    from_cookie = False
    if scheme.lower() == "bearer" and token:
        credential = token.strip()
    else:
        credential = session_token_from_cookie(request, runtime) or ""
        from_cookie = True
    if not credential:
        return None
    with runtime.unit_of_work() as uow:
        account = accounts.account_for_token(uow, credential)
    if account is None:
        return None
    if from_cookie and request.method not in SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(given, csrf_token(runtime, credential)):
            raise DomainError(ErrorCode.CSRF_FAILED)
    request.state.language = account.language
    return account


def current_account(account: Annotated[Account | None, Depends(optional_account)]) -> Account:
    if account is None:
        raise DomainError(ErrorCode.AUTH_REQUIRED)
    return account


CurrentAccount = Annotated[Account, Depends(current_account)]


class RoleCheck:
    """A dependency that lets through only the given roles; the OpenAPI document lists them."""

    def __init__(self, roles: Iterable[Role]) -> None:
        self.roles = frozenset(roles)

    def __call__(self, account: CurrentAccount) -> Account:
        if account.role not in self.roles:
            raise DomainError(ErrorCode.FORBIDDEN)
        return account


def require_roles(roles: Iterable[Role]) -> RoleCheck:
    return RoleCheck(roles)


def request_language(request: Request) -> str:
    return getattr(request.state, "language", None) or i18n.negotiate(request.headers.get("accept-language"))


async def language(request: Request) -> str:
    """The caller's language, as a dependency (async: no thread hop for something this small)."""
    return request_language(request)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def phone_key(runtime: Runtime, raw_phone: str) -> str:
    """Rate limits count a number however it is written (+852 5123 4567, 51234567, …)."""
    settings = runtime.settings
    try:
        return f"phone:{normalise_mobile(raw_phone, settings.allowed_regions, settings.default_region)}"
    except DomainError:
        return f"phone:{raw_phone.strip()}"
