"""Who is looking at a portal page: the signed session cookie, nothing else (forms carry a
CSRF token, checked by each POST handler)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, Request

from duckline.adapters.db.tables import Account
from duckline.domain.roles import STAFF, Role
from duckline.services import accounts
from duckline.web.deps import RuntimeDep, session_token_from_cookie


class LoginRequired(Exception):
    """Raised by page dependencies; the app turns it into a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class StaffOnly(Exception):
    """A signed-in subscriber asked for a console page: 403, and the role is checked again below."""


def viewer(request: Request, runtime: RuntimeDep) -> Account | None:
    token = session_token_from_cookie(request, runtime)
    if not token:
        return None
    with runtime.unit_of_work() as uow:
        return accounts.account_for_token(uow, token)


Viewer = Annotated[Account | None, Depends(viewer)]


def signed_in(request: Request, account: Viewer) -> Account:
    if account is None:
        raise LoginRequired(request.url.path)
    return account


SignedIn = Annotated[Account, Depends(signed_in)]


def staff_with(roles: Iterable[Role]) -> object:
    allowed = frozenset(roles)

    def check(account: SignedIn) -> Account:
        if account.role not in allowed:
            raise StaffOnly()
        return account

    return Depends(check)


StaffMember = Annotated[Account, staff_with(STAFF)]
