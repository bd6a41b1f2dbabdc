"""Who is looking at a portal page: the signed session cookie, nothing else (forms carry a
CSRF token, checked by each POST handler). Every page declares the kinds of caller it is for."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, Request

from duckline.accounts.models import Account
from duckline.accounts.roles import STAFF, Caller, Role, caller_of
from duckline.web.deps import Callers, RuntimeDep, session_token_from_cookie, token_account


class LoginRequired(Exception):
    """Raised by page dependencies; the app turns it into a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class StaffOnly(Exception):
    """A signed-in subscriber asked for a console page: 403, and the role is checked again below."""


class SubscribersOnly(Exception):
    """Staff or a network element's account asked for a subscriber's page: 403."""


def session_account(request: Request, runtime: RuntimeDep) -> Account | None:
    token = session_token_from_cookie(request, runtime)
    if not token:
        return None
    return token_account(runtime, token)


class PageAccess(Callers):
    """The page's caller, if of a kind in `callers` (and, when given, of one of `roles`). Nobody
    signed in is sent to log in; anyone else of the wrong kind gets 403."""

    def __init__(self, *callers: Caller, roles: Iterable[Role] | None = None) -> None:
        self.roles = frozenset(roles) if roles is not None else None
        self.accepted = frozenset(callers) | frozenset(caller_of(r) for r in self.roles or ())

    def __call__(
        self, request: Request, account: Annotated[Account | None, Depends(session_account)]
    ) -> Account | None:
        allowed = caller_of(account.role if account else None) in self.accepted
        if allowed and (self.roles is None or (account is not None and account.role in self.roles)):
            return account
        if account is None:
            raise LoginRequired(request.url.path)
        if Caller.SUBSCRIBER in self.accepted:
            raise SubscribersOnly()
        raise StaffOnly()


# The page's caller, by the kinds of caller a page is for:
Viewer = Annotated[Account | None, Depends(PageAccess(*Caller))]  # anyone; the account when signed in
SignedIn = Annotated[Account, Depends(PageAccess(Caller.SUBSCRIBER))]  # a subscriber's own pages
SubscriberOrStaff = Annotated[Account, Depends(PageAccess(Caller.SUBSCRIBER, Caller.STAFF))]


def staff_with(roles: Iterable[Role]) -> object:
    return Depends(PageAccess(roles=roles))


StaffMember = Annotated[Account, staff_with(STAFF)]
