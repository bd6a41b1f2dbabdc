"""Who a request's token belongs to, in one statement: the request's caller, looked up on every
request.

Not cached between requests: a token revoked (sign-out, password change, a closed account) must
stop working at once in every server process, and a per-process cache could only learn of that
late. Instead the lookup is one indexed statement, token and account joined, read without a
BEGIN/COMMIT of its own (`Runtime.reads`); "last used" is written in a short transaction only
when it is due (once a minute per token), for the owner's list of sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from duckline.accounts.models import Account, ApiToken
from duckline.core.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class TokenCaller:
    account: Account
    token_id: int
    touch_due: bool  # "last used" is older than the interval: write it


def find(uow: UnitOfWork, token: str) -> TokenCaller | None:
    """The live token's open account (not revoked, not expired, account not closed)."""
    now = uow.now()
    row = uow.session.execute(
        select(Account, ApiToken.id, ApiToken.expires_at, ApiToken.last_used_at)
        .join(ApiToken, ApiToken.account_id == Account.id)
        .where(ApiToken.token_hash == uow.secrets.token(token), ApiToken.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    account, token_id, expires_at, last_used_at = row
    if (expires_at is not None and expires_at <= now) or account.closed_at is not None:
        return None
    interval = timedelta(seconds=uow.settings.token_last_used_interval_seconds)
    return TokenCaller(account, token_id, last_used_at is None or last_used_at <= now - interval)


def touch(uow: UnitOfWork, token_id: int) -> None:
    """Record the token's use, for the owner's list of sessions."""
    uow.session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=uow.now()))
