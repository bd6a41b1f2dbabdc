"""Contact details and preferences: a new email or phone must prove itself with a code before
it replaces the old one, and the old one is told."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select

from duckline.accounts import otp, security
from duckline.accounts.contact_states import ContactKind
from duckline.accounts.models import Account, ContactChange
from duckline.accounts.phone import normalise_mobile
from duckline.core import i18n
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.messaging import notifications
from duckline.staff import audit

EMAIL, PHONE = ContactKind.EMAIL, ContactKind.PHONE


Preferences = dict[str, dict[str, bool]]


def set_preferences(
    uow: UnitOfWork, account: Account, wanted: dict[str, dict[str, bool]]
) -> dict[str, dict[str, bool]]:
    """Turn categories on or off per channel. Security, payment and service messages (codes,
    receipts, warnings before a number is lost) cannot be turned off."""
    merged = {channel: dict((account.preferences or {}).get(channel, {})) for channel in notifications.CHANNELS}
    before = _flat(effective_preferences(account))
    for channel, categories in wanted.items():
        if channel not in notifications.CHANNELS:
            raise DomainError(ErrorCode.VALIDATION_FAILED, field=f"preferences.{channel}")
        for category, on in categories.items():
            if category not in notifications.CATEGORIES:
                raise DomainError(ErrorCode.VALIDATION_FAILED, field=f"preferences.{channel}.{category}")
            if category in notifications.ALWAYS_ON and not on:
                raise DomainError(ErrorCode.PREFERENCE_ALWAYS_ON, field=f"preferences.{channel}.{category}")
            merged[channel][category] = on
    account.preferences = merged
    old, new = audit.changes(before, _flat(effective_preferences(account)))
    audit.record(uow, account.id, "account.preferences", f"account:{account.id}", old=old, new=new)
    return effective_preferences(account)


def _flat(preferences: Preferences) -> dict[str, bool]:
    """{"sms.marketing": False, …}: one value per channel and category, as the audit log keeps them."""
    return {
        f"{channel}.{category}": on
        for channel, categories in preferences.items()
        for category, on in categories.items()
    }


def effective_preferences(account: Account) -> Preferences:
    return {
        channel: {category: notifications.wants(account, channel, category) for category in notifications.CATEGORIES}
        for channel in notifications.CHANNELS
    }


def set_language(uow: UnitOfWork, account: Account, language: str) -> None:
    if language not in i18n.LANGUAGES:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="language")
    account.language = language


def request_change(uow: UnitOfWork, account: Account, kind: str, raw_value: str, session_token: str) -> ContactChange:
    """Send a code to the NEW address; nothing changes until it comes back. The session asking
    must hold a fresh proof of the account holder (see accounts/security.py): a stolen session
    alone cannot move the account to another phone or email."""
    settings = uow.settings
    security.require_proof(uow, session_token)
    if kind == PHONE:
        value = normalise_mobile(raw_value, settings.allowed_regions, settings.default_region)
        if uow.session.scalar(select(Account.id).where(Account.phone == value)) is not None:
            raise DomainError(ErrorCode.PHONE_TAKEN, field="phone")
    else:
        value = raw_value.strip()
        if uow.session.scalar(select(Account.id).where(Account.email == value)) is not None:
            raise DomainError(ErrorCode.EMAIL_TAKEN, field="email")
    # The new address's quota for this purpose ("email" or "phone" change), whoever asks for it.
    otp.check_quota(
        uow,
        uow.session.scalars(
            select(ContactChange.created_at).where(
                ContactChange.kind == kind,
                ContactChange.new_value == value,
                ContactChange.created_at > uow.now() - otp.DAY,
            )
        ).all(),
    )
    code = f"{secrets.randbelow(1_000_000):06d}"
    change = ContactChange(
        account_id=account.id,
        kind=kind,
        new_value=value,
        code_hash=uow.secrets.otp(f"{kind}:{value}", code),
        attempts=0,
        expires_at=uow.now() + timedelta(seconds=settings.otp_ttl_seconds),
        created_at=uow.now(),
    )
    uow.session.add(change)
    minutes = settings.otp_ttl_seconds // 60
    channel, template = ("sms", "otp") if kind == PHONE else ("email", "email_verify")
    notifications.send_to(
        uow,
        channel,
        value,
        template,
        account.language,
        account.id,
        valid_until=change.expires_at,
        code=code,
        minutes=minutes,
    )
    return change


def confirm_change(uow: UnitOfWork, account: Account, kind: str, code: str) -> Account:
    change = uow.session.scalars(
        select(ContactChange)
        .where(ContactChange.account_id == account.id, ContactChange.kind == kind)
        .order_by(ContactChange.id.desc())
        .limit(1)
        .with_for_update()
    ).first()
    if change is None or change.consumed_at is not None:
        raise DomainError(ErrorCode.OTP_INVALID, field="code")
    if change.expires_at <= uow.now():
        raise DomainError(ErrorCode.OTP_EXPIRED, field="code")
    if change.attempts >= uow.settings.otp_max_attempts:
        raise DomainError(ErrorCode.OTP_TOO_MANY_ATTEMPTS, field="code")
    if not secrets.compare_digest(change.code_hash, uow.secrets.otp(f"{kind}:{change.new_value}", code.strip())):
        change.attempts += 1
        raise WrongContactCode()
    change.consumed_at = uow.now()
    old_phone, old_email = account.phone, account.email
    shown = change.new_value if kind == EMAIL else notifications.msisdn(change.new_value)
    template = "email_changed" if kind == EMAIL else "phone_changed"
    # Tell the OLD contacts (and the new ones): a hijacked account must not change silently.
    for channel, address in (("sms", old_phone), ("email", old_email)):
        if address:
            notifications.send_to(uow, channel, address, template, account.language, account.id, new=shown)
    if kind == EMAIL:
        account.email = change.new_value
    else:
        account.phone = change.new_value
    audit.record(
        uow,
        account.id,
        "account.email_changed" if kind == EMAIL else "account.phone_changed",
        f"account:{account.id}",
        old=old_email if kind == EMAIL else old_phone,
        new=change.new_value,
    )
    return account


class WrongContactCode(DomainError):
    commit = True  # keep the attempt count

    def __init__(self) -> None:
        super().__init__(ErrorCode.OTP_INVALID, field="code")


def pending_change(uow: UnitOfWork, account: Account, kind: str) -> ContactChange | None:
    """The change still waiting for its code, if its code can still be entered."""
    change = uow.session.scalars(
        select(ContactChange)
        .where(ContactChange.account_id == account.id, ContactChange.kind == kind)
        .order_by(ContactChange.id.desc())
        .limit(1)
    ).first()
    if (
        change is None
        or change.consumed_at is not None
        or change.expires_at <= uow.now()
        or change.attempts >= uow.settings.otp_max_attempts
    ):
        return None
    return change


# --- flows: each one transaction, on the viewer's own account -------------------------------------


def choose_language(transactions: Transactions, viewer: Account, language: str | None) -> Account:
    """The account as it now stands (unchanged when no language is given)."""
    with transactions() as uow:
        me = uow.session.merge(viewer)
        if language:
            set_language(uow, me, language)
        return me


def save_preferences(transactions: Transactions, viewer: Account, wanted: Preferences) -> Preferences:
    with transactions() as uow:
        return set_preferences(uow, uow.session.merge(viewer), wanted)


def start_change(transactions: Transactions, viewer: Account, kind: str, raw_value: str, session_token: str) -> None:
    """Text or mail a code to the new phone or email (`kind`), if this session holds a fresh proof."""
    with transactions() as uow:
        request_change(uow, uow.session.merge(viewer), kind, raw_value, session_token)


def finish_change(transactions: Transactions, viewer: Account, kind: str, code: str) -> Account:
    """The account with its new phone or email; a wrong code is counted (its error commits it)."""
    with transactions() as uow:
        return confirm_change(uow, uow.session.merge(viewer), kind, code)
