"""Sign-up as flows, each one transaction: identity and phone, the SMS code, then the first line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from duckline.accounts import service as accounts
from duckline.accounts.models import Account
from duckline.core.unit_of_work import Transactions
from duckline.lines import service as lines
from duckline.lines.models import EsimProfile, Line


@dataclass(frozen=True)
class Verified:
    """The account just activated, its first line and that line's eSIM profile."""

    account: Account
    line: Line
    esim: EsimProfile
    session_token: str | None = None  # when asked for: the browser that verified is signed in


def start(transactions: Transactions, form: accounts.Registration) -> str:
    """Register and text the code; the normalised phone (the same answer for a taken number)."""
    with transactions() as uow:
        return accounts.register(uow, form)


def resend(transactions: Transactions, raw_phone: str) -> None:
    with transactions() as uow:
        accounts.resend_code(uow, raw_phone)


def verify(transactions: Transactions, raw_phone: str, code: str, portal_session: timedelta | None = None) -> Verified:
    """Check the code; the account becomes active with its first line and eSIM, all or nothing
    (with `portal_session`, also a portal session of that length, as the login page issues)."""
    with transactions() as uow:
        account = accounts.verify_phone(uow, raw_phone, code)
        line = lines.open_line(uow, account)
        token = accounts.issue_token(uow, account, "portal", portal_session) if portal_session else None
        return Verified(account, line, lines.esim_profile(uow, line), token)
