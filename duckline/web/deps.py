"""Dependencies: the runtime, the caller (session cookie or bearer token), role checks."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from itsdangerous import BadSignature, TimestampSigner

from duckline.accounts import token_callers
from duckline.accounts.models import Account
from duckline.accounts.phone import normalise_mobile
from duckline.accounts.roles import Caller, Role, caller_of
from duckline.core import i18n
from duckline.core.errors import DomainError, ErrorCode
from duckline.runtime import Runtime

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


def request_credential(request: Request, runtime: Runtime) -> tuple[str, bool] | None:
    """The token the request signs in with and whether it came in the session cookie: a bearer
    token for API clients, else the signed cookie for browsers."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), False
    cookie = session_token_from_cookie(request, runtime)
    return (cookie, True) if cookie else None


def token_account(runtime: Runtime, token: str) -> Account | None:
    """The open account a live token belongs to: one statement (see accounts/token_callers.py),
    and "last used" written only when due. The API's caller and the portal's session use it."""
    with runtime.reads() as uow:
        caller = token_callers.find(uow, token)
    if caller is None:
        return None
    if caller.touch_due:
        with runtime.unit_of_work(wait_for_disk=False) as uow:  # "last used" may be lost in a crash
            token_callers.touch(uow, caller.token_id)
    return caller.account


def optional_account(request: Request, runtime: RuntimeDep) -> Account | None:
    """The caller, if any. Bearer tokens for API clients; the signed cookie for browsers, whose
    unsafe requests must also carry the CSRF token."""
    found = request_credential(request, runtime)
    if found is None:
        return None
    credential, from_cookie = found
    account = token_account(runtime, credential)
    if account is None:
        return None
    if from_cookie and request.method not in SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(given, csrf_token(runtime, credential)):
            raise DomainError(ErrorCode.CSRF_FAILED)
    request.state.language = account.language
    return account


class Callers:
    """A dependency that declares the kinds of caller a route is for, and refuses the others.
    Every route has exactly one (tests/web/test_callers.py walks the routes to check)."""

    accepted: frozenset[Caller] = frozenset()


class Accepts(Callers):
    """The signed-in caller, if of a kind in `callers` (and, when given, of one of `roles`); anyone
    else gets 401 when nobody is signed in, 403 otherwise. (Routes for anyone use PUBLIC.)"""

    def __init__(self, *callers: Caller, roles: Iterable[Role] | None = None) -> None:
        if Caller.ANONYMOUS in callers:
            raise ValueError("a route for anyone declares PUBLIC")
        self.roles = frozenset(roles) if roles is not None else None
        self.accepted = frozenset(callers) | frozenset(caller_of(r) for r in self.roles or ())

    # async: it does no I/O, so it runs on the event loop rather than hop into a worker thread
    async def __call__(self, account: Annotated[Account | None, Depends(optional_account)]) -> Account:
        allowed = caller_of(account.role if account else None) in self.accepted
        if account is None or not allowed or (self.roles is not None and account.role not in self.roles):
            raise DomainError(ErrorCode.AUTH_REQUIRED if account is None else ErrorCode.FORBIDDEN)
        return account


class Public(Callers):
    """For anyone, signed in or not. Reads no credential: a route that shows more to some
    callers asks for `optional_account` itself."""

    accepted = frozenset(Caller)

    async def __call__(self) -> None:
        return None


PUBLIC = Depends(Public())  # dependencies=[PUBLIC] on a route (or a router) for anyone
# The signed-in caller, by the kinds of caller a route is for:
CurrentAccount = Annotated[Account, Depends(Accepts(Caller.SUBSCRIBER, Caller.STAFF, Caller.NETWORK))]
Subscriber = Annotated[Account, Depends(Accepts(Caller.SUBSCRIBER))]
SubscriberOrStaff = Annotated[Account, Depends(Accepts(Caller.SUBSCRIBER, Caller.STAFF))]


def require_roles(roles: Iterable[Role]) -> Accepts:
    """Staff (or machines) with one of these roles."""
    return Accepts(roles=roles)


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


@contextmanager
def sending_code(request: Request, runtime: Runtime) -> Iterator[None]:
    """Around a request that sends a one-time code: refused when the client's address has used its
    ceiling (`otp_address_rate_limit`), counted against it only when the request succeeds, so input
    refused before anything is sent costs nothing. Each destination's own quota (per phone or email
    and purpose) is the service's: `accounts.otp.check_quota`."""
    key = f"ip:{client_address(request)}"
    wait = runtime.rate_limits.wait("otp_send", key)
    if wait:
        raise DomainError(ErrorCode.OTP_ADDRESS_LIMIT, wait=timedelta(seconds=wait), retry_after=wait)
    yield
    runtime.rate_limits.hit("otp_send", key)


def checking_code(request: Request, runtime: Runtime, *keys: str) -> None:
    """Count one code check from the client's address (and `keys`); 429 past `otp_rate_limit`. Each
    challenge takes only `otp_max_attempts` wrong codes besides, wherever they come from."""
    every = (f"ip:{client_address(request)}", *keys)
    if not runtime.rate_limits.hit("otp", *every):
        raise DomainError(ErrorCode.RATE_LIMITED, retry_after=runtime.rate_limits.wait("otp", *every))
