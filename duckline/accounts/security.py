"""The account holder's own security: a fresh proof that it is them (a "step-up") before risky
changes, changing the password while signed in, and the sessions and tokens signed in.

A proof is the password or a code texted to the current phone. It belongs to the session or
token it was given in (the ApiToken row) and lasts `step_up_ttl_seconds`: a stolen session
cookie alone can no longer move the account to another phone or email, or lock its owner out
with a new password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from duckline.accounts import otp
from duckline.accounts import service as accounts
from duckline.accounts.models import Account, ApiToken, OtpChallenge
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db.types import is_id
from duckline.messaging import notifications
from duckline.staff import audit

STEP_UP = "step_up"  # the OTP purpose of a code that proves the account holder
BROWSER_SESSIONS = frozenset({"portal", "session"})  # token names the portal and /auth/login give


# --- the proof ---------------------------------------------------------------------------------


def proof_valid_until(uow: UnitOfWork, token: str | None) -> datetime | None:
    """Until when the proof given in this session lets it make risky changes (None: no fresh one)."""
    row = accounts.live_token(uow, token) if token else None
    if row is None or row.reauthenticated_at is None:
        return None
    until = row.reauthenticated_at + timedelta(seconds=uow.settings.step_up_ttl_seconds)
    return until if until > uow.now() else None


def require_proof(uow: UnitOfWork, token: str | None) -> None:
    """Refuse, with `reauthentication_required`, unless this session holds a fresh proof."""
    if proof_valid_until(uow, token) is None:
        raise DomainError(ErrorCode.REAUTHENTICATION_REQUIRED, field="password")


def send_code(uow: UnitOfWork, account: Account) -> OtpChallenge:
    """Text a code to the account's current phone (never to a number the caller names)."""
    return otp.send(uow, account.phone, STEP_UP, account.language)


def code_pending(uow: UnitOfWork, account: Account) -> bool:
    """Whether a code sent by `send_code` can still be entered."""
    latest = uow.session.scalars(
        select(OtpChallenge)
        .where(OtpChallenge.phone == account.phone, OtpChallenge.purpose == STEP_UP)
        .order_by(OtpChallenge.created_at.desc(), OtpChallenge.id.desc())
        .limit(1)
    ).first()
    return (
        latest is not None
        and latest.consumed_at is None
        and latest.expires_at > uow.now()
        and latest.attempts < uow.settings.otp_max_attempts
    )


def prove_with_code(uow: UnitOfWork, account: Account, token: str, code: str) -> datetime:
    """Accept the code sent by `send_code`; the session holds a fresh proof from now."""
    otp.verify(uow, account.phone, STEP_UP, code)
    return _proved(uow, account, token, "code")


def prove_with_password(app: accounts.SignInApp, account: Account, token: str, password: str) -> datetime:
    """Check the password (counted like a sign-in, so guesses lock it as they would the login)."""
    accounts.check_password(app, account.id, password)
    with app.unit_of_work() as uow:
        return _proved(uow, account, token, "password")


def _proved(uow: UnitOfWork, account: Account, token: str, via: str) -> datetime:
    row = accounts.live_token(uow, token)
    if row is None or row.account_id != account.id:
        raise DomainError(ErrorCode.AUTH_REQUIRED)
    row.reauthenticated_at = uow.now()
    audit.record(uow, account.id, "account.reauthenticated", f"account:{account.id}", via=via, session=row.id)
    return row.reauthenticated_at + timedelta(seconds=uow.settings.step_up_ttl_seconds)


# --- the password ------------------------------------------------------------------------------


def change_password(
    app: accounts.SignInApp, account: Account, token: str, new_password: str, current_password: str | None
) -> int:
    """Set a new password, proved by the current one or by a fresh proof in this session. Every
    other session and token of the account is signed out; this one goes on. The account holder
    is told on every channel. Returns how many sessions were signed out."""
    if len(new_password) < accounts.MIN_PASSWORD_LENGTH:
        raise DomainError(ErrorCode.PASSWORD_TOO_WEAK, field="new_password", min=accounts.MIN_PASSWORD_LENGTH)
    if current_password:
        accounts.check_password(app, account.id, current_password)
    else:
        with app.unit_of_work() as uow:
            require_proof(uow, token)  # before the slow hash: a refusal costs nothing
    password_hash = app.passwords.hash(new_password)
    with app.unit_of_work() as uow:
        if not current_password:
            require_proof(uow, token)  # still fresh now that the hash is done
        me = uow.session.get(Account, account.id, with_for_update=True)
        assert me is not None  # accounts are never deleted
        me.password_hash = password_hash
        me.failed_logins, me.locked_until = 0, None
        revoked = _revoke_others(uow, me, token)
        notifications.notify(uow, me, "password_changed")
        audit.record(
            uow,
            me.id,
            "account.password_changed",
            f"account:{me.id}",
            via="password" if current_password else "proof",
            sessions_revoked=revoked,
        )
        return revoked


# --- sessions and tokens -----------------------------------------------------------------------


@dataclass(frozen=True)
class SignedInSession:
    id: int
    name: str
    browser: bool  # a portal (or /auth/login) session, else an API token
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    user_agent: str | None
    current: bool


def signed_in(uow: UnitOfWork, account: Account, token: str | None) -> list[SignedInSession]:
    """The account's sessions and tokens that still sign in, the current one first."""
    now = uow.now()
    current = accounts.live_token(uow, token) if token else None
    rows = uow.session.scalars(
        select(ApiToken)
        .where(
            ApiToken.account_id == account.id,
            ApiToken.revoked_at.is_(None),
            (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now),
        )
        .order_by(ApiToken.id.desc())
    ).all()
    found = [
        SignedInSession(
            id=row.id,
            name=row.name,
            browser=row.name in BROWSER_SESSIONS,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            expires_at=row.expires_at,
            user_agent=row.user_agent,
            current=current is not None and row.id == current.id,
        )
        for row in rows
    ]
    return sorted(found, key=lambda s: not s.current)


def revoke(uow: UnitOfWork, account: Account, token_id: int) -> None:
    """Sign one of the account's own sessions or tokens out, at once. Another account's look missing."""
    row = uow.session.get(ApiToken, token_id, with_for_update=True) if is_id(token_id) else None
    if row is None or row.account_id != account.id or row.revoked_at is not None:
        raise DomainError(ErrorCode.NOT_FOUND)
    row.revoked_at = uow.now()
    audit.record(uow, account.id, "account.session_revoked", f"account:{account.id}", session=row.id, name=row.name)


def revoke_others(uow: UnitOfWork, account: Account, token: str) -> int:
    """Sign out every session and token of the account but this one; returns how many."""
    revoked = _revoke_others(uow, account, token)
    audit.record(uow, account.id, "account.sessions_revoked", f"account:{account.id}", count=revoked)
    return revoked


def _revoke_others(uow: UnitOfWork, account: Account, token: str) -> int:
    result = uow.session.execute(
        update(ApiToken)
        .where(
            ApiToken.account_id == account.id,
            ApiToken.revoked_at.is_(None),
            ApiToken.token_hash != uow.secrets.token(token),
        )
        .values(revoked_at=uow.now())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- flows: each one transaction, on the viewer's own account -------------------------------------


def send_proof_code(transactions: Transactions, viewer: Account) -> None:
    with transactions() as uow:
        send_code(uow, uow.session.merge(viewer))


def prove_code(transactions: Transactions, viewer: Account, token: str, code: str) -> datetime:
    """Until when this session (`token`) may make risky changes, once the texted code is right."""
    with transactions() as uow:
        return prove_with_code(uow, viewer, token, code)


def proof_until(transactions: Transactions, token: str | None) -> datetime | None:
    with transactions() as uow:
        return proof_valid_until(uow, token)


def sessions_of(transactions: Transactions, viewer: Account, token: str | None) -> list[SignedInSession]:
    with transactions() as uow:
        return signed_in(uow, viewer, token)


def end_session(transactions: Transactions, viewer: Account, session_id: int) -> None:
    with transactions() as uow:
        revoke(uow, viewer, session_id)


def end_other_sessions(transactions: Transactions, viewer: Account, token: str) -> int:
    with transactions() as uow:
        return revoke_others(uow, viewer, token)


@dataclass(frozen=True)
class Overview:
    """What the security page shows: the account as it now is, and this session's standing."""

    me: Account
    sessions: list[SignedInSession]  # the current one first
    proof_until: datetime | None
    code_pending: bool


def overview(transactions: Transactions, viewer: Account, token: str | None) -> Overview:
    with transactions() as uow:
        me = uow.session.get(Account, viewer.id) or viewer
        return Overview(me, signed_in(uow, me, token), proof_valid_until(uow, token), code_pending(uow, me))
