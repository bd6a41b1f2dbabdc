"""A line's SIP account: made when the line is activated, deleted when its number is recycled,
its password reset by the subscriber (shown once, never stored).

What Kamailio may authenticate is the `kamailio_subscriber` view: it follows the line's status
and suspension by itself (see models.py), so nothing here runs on a suspension or a renewal, and
a renewed or resumed line gets its old password back without anyone resetting it.

The hashes are MD5 because SIP digest authentication (RFC 3261 §22, RFC 2617 §3.2.2.2) defines
HA1 = MD5(username:realm:password), and Kamailio's auth_db compares against it. This is not how
Duckline keeps passwords for its own logins (those are argon2id): a SIP password is a random
secret Duckline makes itself, of about 115 bits, so its HA1 cannot be guessed back.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from duckline.accounts.models import Account
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines.models import Line
from duckline.lines.states import LineStatus
from duckline.sip.models import SipAccount
from duckline.staff import audit

# Letters and digits a person can read back and type on a phone: no 0/O, 1/l/I. Nor ":" or "@",
# which would need escaping in the sip: URI of the QR code.
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
PASSWORD_LENGTH = 20


def new_password() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(PASSWORD_LENGTH))


def username_of(msisdn: str) -> str:
    """The SIP user part: the number in E.164 digits without the "+" (+85251700000 → 85251700000)."""
    return msisdn.removeprefix("+")


def ha1(username: str, domain: str, password: str) -> str:
    """RFC 2617's HA1 for the realm `domain` (MD5: what SIP digest needs, see the module's doc)."""
    return hashlib.md5(f"{username}:{domain}:{password}".encode(), usedforsecurity=False).hexdigest()


def ha1b(username: str, domain: str, password: str) -> str:
    """HA1 for a phone that sends its user as "user@domain" (Kamailio's ha1b column)."""
    return ha1(f"{username}@{domain}", domain, password)


def _set_password(account: SipAccount, domain: str, password: str, now: datetime) -> None:
    account.domain = domain
    account.ha1 = ha1(account.username, domain, password)
    account.ha1b = ha1b(account.username, domain, password)
    account.password_changed_at = now


def account_of(uow: UnitOfWork, line: Line) -> SipAccount | None:
    return uow.session.scalars(select(SipAccount).where(SipAccount.line_id == line.id)).one_or_none()


def ensure(uow: UnitOfWork, line: Line) -> SipAccount:
    """The line's account, made on its first activation. Its first password is thrown away
    unseen (activation may be staff's or a payment's doing, with no subscriber to show it to):
    the subscriber sets one by resetting it. A line activated again keeps its account."""
    existing = account_of(uow, line)
    if existing is not None:
        return existing
    now = uow.now()
    account = SipAccount(line_id=line.id, username=username_of(line.msisdn), created_at=now)
    _set_password(account, uow.settings.sip_domain, new_password(), now)
    uow.session.add(account)
    uow.session.flush()
    return account


def remove(uow: UnitOfWork, line: Line) -> None:
    """A recycled number's account goes with it: the number's next owner starts afresh."""
    uow.session.execute(delete(SipAccount).where(SipAccount.line_id == line.id))


@dataclass(frozen=True)
class NewPassword:
    account: SipAccount
    password: str  # shown to the subscriber once, then gone


def reset_password(uow: UnitOfWork, actor: Account, line: Line) -> NewPassword:
    """A new random password (and so a new HA1: the old password stops working at once). The
    account moves to the current `sip_domain`, should the setting have changed since."""
    account = account_of(uow, line)
    if account is None and line.status not in (LineStatus.PENDING, LineStatus.RECYCLED):
        account = ensure(uow, line)  # a line activated before SIP accounts existed
    if account is None:
        raise DomainError(ErrorCode.SIP_ACCOUNT_MISSING)
    password = new_password()
    _set_password(account, uow.settings.sip_domain, password, uow.now())
    audit.record(uow, actor.id, "line.sip_password_reset", f"line:{line.id}", msisdn=line.msisdn)
    return NewPassword(account, password)


def provisioning_uri(username: str, password: str, domain: str) -> str:
    """What the QR code holds: a SIP URI with the password in its user info (RFC 3261 §19.1.1's
    `sip:user:password@host`), which softphones that scan account QR codes (Linphone, Zoiper,
    Groundwire and others) read as username, password and domain. The alphabet needs no escaping."""
    return f"sip:{username}:{password}@{domain}"
