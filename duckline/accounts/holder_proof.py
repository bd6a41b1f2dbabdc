"""Fresh proof that the account holder is the one asking: the account password typed again, or a
one-time code sent to the account's email address.

The code never goes by SMS: the moments that ask for proof here (a phone reported lost, an eSIM
moved away from a phone) are the ones where the phone may be in someone else's hands. Codes use
the one-time-code table under the key "acct:<id>" (the table's `phone` column is the address
the code is for) and the same limits as SMS codes. Wrong passwords count towards the sign-in
lock, so a stranger holding a signed-in phone cannot guess the password here instead.
"""

from __future__ import annotations

from datetime import timedelta
from typing import NoReturn

from duckline.accounts import otp
from duckline.accounts.models import Account
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import UnitOfWork
from duckline.messaging import notifications
from duckline.staff import audit

PASSWORD, EMAIL_CODE = "password", "email_code"


def masked_email(address: str) -> str:
    """ "c•••@example.com": enough for the holder to recognise, little for anyone else."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}"


def _key(account: Account) -> str:
    return f"acct:{account.id}"


def send_email_code(uow: UnitOfWork, account: Account, purpose: str) -> str:
    """Email a code for `purpose` to the account's address; returns the address it went to."""
    if not account.email:
        raise DomainError(ErrorCode.PROOF_EMAIL_MISSING, field="code")
    challenge, code = otp.issue(uow, _key(account), purpose)
    notifications.send_to(
        uow,
        "email",
        account.email,
        "proof_code",
        account.language,
        account.id,
        valid_until=challenge.expires_at,
        code=code,
        minutes=uow.settings.otp_ttl_seconds // 60,
    )
    return account.email


def prove(uow: UnitOfWork, account: Account, purpose: str, password: str | None, code: str | None) -> str:
    """Check the proof given (the password, else the emailed code) or raise why it fails; returns
    how it was proved. A failure counts against the account and is committed (see WrongProof),
    so call this before changing anything in the unit of work."""
    if password:
        return _password(uow, account, password)
    if code:
        return _code(uow, account, purpose, code)
    raise DomainError(ErrorCode.PROOF_REQUIRED, field="password")


def _password(uow: UnitOfWork, account: Account, password: str) -> str:
    held = uow.session.get(Account, account.id, with_for_update=True, populate_existing=True)
    assert held is not None  # accounts are never deleted
    now = uow.now()
    if held.locked_until is not None and held.locked_until > now:
        minutes = max(1, -(-int((held.locked_until - now).total_seconds()) // 60))
        raise DomainError(ErrorCode.LOGIN_LOCKED, field="password", minutes=minutes)
    if uow.passwords.verify(held.password_hash, password):
        held.failed_logins, held.locked_until = 0, None
        return PASSWORD
    _wrong_password(uow, held)


def _wrong_password(uow: UnitOfWork, account: Account) -> NoReturn:
    settings = uow.settings
    account.failed_logins += 1
    if account.failed_logins < settings.login_lockout_failures:
        raise WrongProof(ErrorCode.PASSWORD_WRONG, field="password")
    account.failed_logins = 0
    account.locked_until = uow.now() + timedelta(minutes=settings.login_lockout_minutes)
    notifications.notify(
        uow,
        account,
        "login_locked",
        dedupe_key=f"login-locked:{account.id}:{int(account.locked_until.timestamp())}",
        attempts=settings.login_lockout_failures,
        minutes=settings.login_lockout_minutes,
    )
    audit.record(uow, account.id, "account.login_locked", f"account:{account.id}")
    raise WrongProof(ErrorCode.LOGIN_LOCKED, field="password", minutes=settings.login_lockout_minutes)


def _code(uow: UnitOfWork, account: Account, purpose: str, code: str) -> str:
    otp.verify(uow, _key(account), purpose, code)  # a wrong one is counted and committed (WrongCode)
    return EMAIL_CODE


class WrongProof(DomainError):
    """A wrong password or code: the count it adds must be kept, so this one is committed."""

    commit = True
