"""Registration with real-name identity, phone verification, login and tokens."""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, NoReturn, Protocol

from sqlalchemy import case, or_, select, update
from sqlalchemy.exc import IntegrityError

from duckline.accounts import identity, otp
from duckline.accounts.identity import DocumentType, KycStatus
from duckline.accounts.models import Account, ApiToken, DocumentImage, Guardian, Person
from duckline.accounts.phone import normalise_mobile
from duckline.accounts.roles import Role
from duckline.core import i18n
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.protection import Passwords
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db.types import is_id
from duckline.messaging import notifications
from duckline.staff import audit

MIN_PASSWORD_LENGTH = 10
REGISTER = "register"


@dataclass(frozen=True)
class IdentityInput:
    document_type: str
    document_number: str
    name_en: str | None
    name_zh: str | None
    birth_date: date


@dataclass(frozen=True)
class Registration:
    phone: str
    password: str
    identity: IdentityInput
    document_image: bytes
    language: str = "en"
    email: str | None = None
    guardian: IdentityInput | None = None


def register(uow: UnitOfWork, form: Registration) -> str:
    """Create an unverified account with its identity record, and text it a verification code.
    Returns the number (E.164) the code goes to.

    A number or an identity document that already has an account gets the same answer, so that
    registration tells nobody who is a customer: then no account is made and no code is sent, and
    the owner of that account is told by SMS (and email) that someone tried. The password is hashed
    either way, so both answers take as long."""
    settings = uow.settings
    phone = normalise_mobile(form.phone, settings.allowed_regions, settings.default_region)
    if len(form.password) < MIN_PASSWORD_LENGTH:
        raise DomainError(ErrorCode.PASSWORD_TOO_WEAK, field="password", min=MIN_PASSWORD_LENGTH)
    language = form.language if form.language in i18n.LANGUAGES else i18n.DEFAULT_LANGUAGE
    today = uow.today_local()

    checked = _check_identity(uow, form.identity, today, field_prefix="")
    guardian: _CheckedIdentity | None = None
    if identity.age_on(checked.birth_date, today) < settings.min_age_without_guardian:
        if form.guardian is None:
            raise DomainError(ErrorCode.GUARDIAN_REQUIRED, field="guardian", age=settings.min_age_without_guardian)
        guardian = _check_identity(uow, form.guardian, today, field_prefix="guardian.")
        if identity.age_on(guardian.birth_date, today) < 18:
            raise DomainError(ErrorCode.GUARDIAN_NOT_ADULT, field="guardian.birth_date")
    content_type = identity.check_document_image(form.document_image, settings.document_max_bytes)
    password_hash = uow.passwords.hash(form.password)

    if _tell_owners(uow, phone, checked):
        return phone
    person = checked.to_person(uow)
    account = Account(
        phone=phone,
        password_hash=password_hash,
        role=Role.SUBSCRIBER,
        language=language,
        email=_unused_email(uow, form.email),
        created_at=uow.now(),
    )
    # The unique constraints decide races that the look-ups above cannot see.
    try:
        with uow.session.begin_nested():
            if guardian is not None:
                adult = guardian.to_guardian(uow)
                uow.session.add(adult)
                uow.session.flush()
                person.guardian_id = adult.id
            uow.session.add(person)
            uow.session.flush()
            account.person_id = person.id
            uow.session.add(account)
            uow.session.flush()
    except IntegrityError:
        _tell_owners(uow, phone, checked)  # the winner of the race is an owner like any other
        return phone
    uow.session.add(
        DocumentImage(
            person_id=person.id,
            content_type=content_type,
            size=len(form.document_image),
            sha256=hashlib.sha256(form.document_image).hexdigest(),
            cipher=uow.protector.encrypt(form.document_image),
            created_at=uow.now(),
        )
    )
    otp.send(uow, phone, REGISTER, language)
    audit.record(uow, account.id, "account.registered", f"account:{account.id}", kyc=person.kyc_status.value)
    return phone


def _tell_owners(uow: UnitOfWork, phone: str, checked: _CheckedIdentity) -> bool:
    """Whether the number or the identity is taken; if so, tell the accounts that hold them. At
    most one notice an hour per account and kind, so nobody can flood an owner with them."""
    by_phone = uow.session.scalars(select(Account).where(Account.phone == phone)).first()
    person = uow.session.scalars(select(Person).where(Person.document_hash == checked.document_hash)).first()
    by_identity = uow.session.scalars(select(Account).where(Account.person_id == person.id)).first() if person else None
    hour = int(uow.now().timestamp()) // 3600
    if by_phone is not None:
        notifications.notify(uow, by_phone, "registration_attempt_phone", f"registration-attempt:{by_phone.id}:{hour}")
        audit.record(uow, by_phone.id, "account.registration_attempted", f"account:{by_phone.id}", via="phone")
    if person is not None and by_identity is not None and by_identity is not by_phone:
        notifications.notify(
            uow,
            by_identity,
            "registration_attempt_identity",
            f"registration-attempt-identity:{by_identity.id}:{hour}",
            document=person.document_masked,
        )
        audit.record(uow, by_identity.id, "account.registration_attempted", f"account:{by_identity.id}", via="identity")
    return by_phone is not None or person is not None


def _unused_email(uow: UnitOfWork, email: str | None) -> str | None:
    """An address another account already gives is left out (it can be added, with a code, in the
    settings): refusing it would tell whose it is."""
    if email and uow.session.scalar(select(Account.id).where(Account.email == email)) is None:
        return email
    return None


@dataclass(frozen=True)
class _CheckedIdentity:
    document_type: DocumentType
    number: str
    document_hash: str
    name: identity.PersonName
    birth_date: date

    def _protected(self, uow: UnitOfWork) -> dict[str, Any]:
        return {
            "document_type": self.document_type,
            "document_hash": self.document_hash,
            "document_cipher": uow.protector.encrypt(self.number.encode()),
            "document_masked": identity.mask_document_number(self.number),
            "name_en": self.name.english,
            "name_zh": self.name.chinese,
            "birth_date": self.birth_date,
            "created_at": uow.now(),
        }

    def to_person(self, uow: UnitOfWork) -> Person:
        return Person(
            **self._protected(uow),
            kyc_status=KycStatus.VERIFIED if uow.settings.kyc_auto_approve else KycStatus.PENDING_REVIEW,
            line_count=0,
        )

    def to_guardian(self, uow: UnitOfWork) -> Guardian:
        return Guardian(**self._protected(uow))


def _check_identity(uow: UnitOfWork, given: IdentityInput, today: date, field_prefix: str) -> _CheckedIdentity:
    try:
        doc_type = DocumentType(given.document_type)
    except ValueError as exc:
        raise DomainError(ErrorCode.DOCUMENT_TYPE_UNKNOWN, field=f"{field_prefix}document_type") from exc
    try:
        number = identity.normalise_document_number(doc_type, given.document_number)
        name = identity.validate_names(given.name_en, given.name_zh)
        birth = identity.validate_birth_date(given.birth_date, today)
        if doc_type is DocumentType.CN_RESIDENT_ID and identity.birth_date_of_cn_resident_id(number) != birth:
            raise DomainError(ErrorCode.BIRTH_DATE_INVALID, field="birth_date")
    except DomainError as error:
        error.field = f"{field_prefix}{error.field}" if error.field else error.field
        raise
    return _CheckedIdentity(doc_type, number, uow.protector.lookup_hash(doc_type.value, number), name, birth)


def resend_code(uow: UnitOfWork, raw_phone: str) -> None:
    """A new code for a registration waiting for one. Any other number gets the same answer and
    nothing is sent: the endpoint must not reveal who is registered."""
    try:
        account = _unverified_account(uow, raw_phone)
    except DomainError as error:
        if error.error is not ErrorCode.OTP_INVALID:
            raise
        return
    otp.send(uow, account.phone, REGISTER, account.language)


def verify_phone(uow: UnitOfWork, raw_phone: str, code: str) -> Account:
    """Mark the phone verified. The caller then allocates the account's first line."""
    account = _unverified_account(uow, raw_phone)
    otp.verify(uow, account.phone, REGISTER, code)
    account.phone_verified_at = uow.now()
    audit.record(uow, account.id, "account.phone_verified", f"account:{account.id}")
    return account


def _unverified_account(uow: UnitOfWork, raw_phone: str) -> Account:
    settings = uow.settings
    phone = normalise_mobile(raw_phone, settings.allowed_regions, settings.default_region)
    account = uow.session.scalars(select(Account).where(Account.phone == phone)).first()
    if account is None or account.phone_verified_at is not None:
        # Same answer as a wrong code: the endpoint must not reveal who is registered.
        raise DomainError(ErrorCode.OTP_INVALID, field="code")
    return account


class SignInApp(Protocol):
    passwords: Passwords

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]: ...


@dataclass(frozen=True)
class SignedIn:
    account: Account
    token: str


@dataclass(frozen=True)
class _Attempt:
    account_id: int | None  # None: no account has this number
    password_hash: str | None
    locks: bool  # this attempt was the last one allowed: sign-in is locked unless it is right


def sign_in(
    app: SignInApp,
    raw_phone: str,
    password: str,
    token_name: str,
    ttl: timedelta | None,
    user_agent: str | None = None,
) -> SignedIn:
    """Check a phone and password and issue a token for the account.

    The attempt is counted, and committed, before the password is checked, so however many come
    at once, no more than `login_lockout_failures` wrong passwords are ever checked before sign-in
    locks; the one that reaches the limit locks it unless it turns out to be right. The check
    (argon2, slow on purpose) runs outside any transaction, so it holds no row lock."""
    with app.unit_of_work() as uow:
        attempt = _count_attempt(uow, raw_phone)
    right = app.passwords.verify(attempt.password_hash, password)
    if attempt.account_id is None:
        raise DomainError(ErrorCode.LOGIN_FAILED)
    with app.unit_of_work() as uow:
        account = uow.session.get(Account, attempt.account_id)
        assert account is not None  # accounts are never deleted
        if not right:
            _wrong_password(uow, account, attempt)
        if account.closed_at is not None:  # said only to whoever knows the password
            raise DomainError(ErrorCode.ACCOUNT_CLOSED)
        # The owner proved it: the count starts again (and a lock this attempt took is lifted).
        account.failed_logins, account.locked_until = 0, None
        if account.phone_verified_at is not None:
            return SignedIn(account, issue_token(uow, account, token_name, ttl, user_agent))
    raise DomainError(ErrorCode.ACCOUNT_NOT_VERIFIED, field="phone")


def _count_attempt(uow: UnitOfWork, raw_phone: str) -> _Attempt:
    """One conditional UPDATE: unless sign-in is locked, count this attempt as a failure (until it
    proves right) and, at the limit, lock sign-in and start the count again. Racing attempts are
    each counted once, in turn, so the attempt after the limit finds the lock."""
    settings = uow.settings
    try:
        phone = normalise_mobile(raw_phone, settings.allowed_regions, settings.default_region)
    except DomainError:
        phone = raw_phone
    now = uow.now()
    reaches = Account.failed_logins + 1 >= settings.login_lockout_failures
    counted = uow.session.execute(
        update(Account)
        .where(Account.phone == phone, or_(Account.locked_until.is_(None), Account.locked_until <= now))
        .values(
            failed_logins=case((reaches, 0), else_=Account.failed_logins + 1),
            locked_until=case((reaches, now + timedelta(minutes=settings.login_lockout_minutes)), else_=None),
        )
        .returning(Account.id, Account.password_hash, Account.locked_until)
        .execution_options(synchronize_session=False)
    ).first()
    if counted is not None:
        return _Attempt(counted.id, counted.password_hash, counted.locked_until is not None)
    locked_until = uow.session.scalar(select(Account.locked_until).where(Account.phone == phone))
    if locked_until is not None and locked_until > now:
        left = locked_until - now
        raise DomainError(ErrorCode.LOGIN_LOCKED, minutes=_minutes_left(left), retry_after=_seconds_left(left))
    return _Attempt(None, None, False)


class WrongPassword(DomainError):
    """A wrong password: the lock notice it may queue must be kept, so this is committed."""

    commit = True


def check_password(app: SignInApp, account_id: int, password: str) -> None:
    """The signed-in account holder proves it is them with their password. Counted as a sign-in
    attempt (the same lock after `login_lockout_failures` wrong ones), and checked, as at sign-in,
    outside any transaction."""
    with app.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        assert account is not None  # accounts are never deleted
        attempt = _count_attempt(uow, account.phone)
    right = app.passwords.verify(attempt.password_hash, password)
    with app.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        assert account is not None
        if not right:
            _wrong_password(uow, account, attempt, DomainError(ErrorCode.PASSWORD_WRONG, field="password"))
        account.failed_logins, account.locked_until = 0, None


def _wrong_password(uow: UnitOfWork, account: Account, attempt: _Attempt, wrong: DomainError | None = None) -> NoReturn:
    if not attempt.locks:
        raise wrong or DomainError(ErrorCode.LOGIN_FAILED)
    settings = uow.settings
    locked_until = account.locked_until or uow.now()
    notifications.notify(
        uow,
        account,
        "login_locked",
        dedupe_key=f"login-locked:{account.id}:{int(locked_until.timestamp())}",
        attempts=settings.login_lockout_failures,
        minutes=settings.login_lockout_minutes,
    )
    audit.record(uow, account.id, "account.login_locked", f"account:{account.id}")
    minutes = settings.login_lockout_minutes
    raise WrongPassword(ErrorCode.LOGIN_LOCKED, minutes=minutes, retry_after=minutes * 60)


def _minutes_left(left: timedelta) -> int:
    return max(1, -(-int(left.total_seconds()) // 60))


def _seconds_left(left: timedelta) -> int:
    return max(1, -(-int(left.total_seconds() * 1000) // 1000))


def issue_token(
    uow: UnitOfWork, account: Account, name: str, ttl: timedelta | None, user_agent: str | None = None
) -> str:
    """A new bearer token; only its hash is stored, so this is the only time it is seen."""
    token = uow.secrets.new_token()
    uow.session.add(
        ApiToken(
            account_id=account.id,
            name=name,
            token_hash=uow.secrets.token(token),
            created_at=uow.now(),
            expires_at=uow.now() + ttl if ttl else None,
            user_agent=user_agent[:200] if user_agent else None,
        )
    )
    return token


def live_token(uow: UnitOfWork, token: str) -> ApiToken | None:
    """The token's row while it still signs in: not revoked, not expired."""
    row = uow.session.scalars(
        select(ApiToken).where(ApiToken.token_hash == uow.secrets.token(token), ApiToken.revoked_at.is_(None))
    ).first()
    if row is None or (row.expires_at is not None and row.expires_at <= uow.now()):
        return None
    return row


def revoke_token(uow: UnitOfWork, token: str) -> None:
    uow.session.execute(
        update(ApiToken)
        .where(ApiToken.token_hash == uow.secrets.token(token), ApiToken.revoked_at.is_(None))
        .values(revoked_at=uow.now())
    )


def create_staff(uow: UnitOfWork, raw_phone: str, password: str, role: Role, language: str = "en") -> Account:
    """Staff and machine accounts: no identity record; verified by whoever creates them."""
    phone = normalise_mobile(raw_phone, uow.settings.allowed_regions, uow.settings.default_region)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise DomainError(ErrorCode.PASSWORD_TOO_WEAK, field="password", min=MIN_PASSWORD_LENGTH)
    account = Account(
        phone=phone,
        password_hash=uow.passwords.hash(password),
        role=role,
        language=language,
        phone_verified_at=uow.now(),
        created_at=uow.now(),
    )
    uow.session.add(account)
    uow.session.flush()
    return account


def set_kyc(uow: UnitOfWork, actor: Account, person_id: int, status: KycStatus, reason: str | None) -> Person:
    person = uow.session.get(Person, person_id, with_for_update=True) if is_id(person_id) else None
    if person is None:
        raise DomainError(ErrorCode.NOT_FOUND)
    before = person.kyc_status
    person.kyc_status, person.kyc_reason = status, reason
    audit.record(
        uow, actor.id, "kyc.reviewed", f"person:{person_id}", old=before.value, new=status.value, reason=reason
    )
    return person


def issue_staff_token(uow: UnitOfWork, raw_phone: str, name: str) -> str:
    """An API key without expiry for a staff or network account (never for a subscriber)."""
    phone = normalise_mobile(raw_phone, uow.settings.allowed_regions, uow.settings.default_region)
    account = uow.session.scalars(select(Account).where(Account.phone == phone)).first()
    if account is None or account.role is Role.SUBSCRIBER:
        raise DomainError(ErrorCode.NOT_FOUND, field="phone")
    audit.record(uow, account.id, "token.issued", f"account:{account.id}", name=name)
    return issue_token(uow, account, name, None)


def resubmit_identity(uow: UnitOfWork, account: Account, given: IdentityInput, document_image: bytes) -> Person:
    """After a rejection (or while waiting), the subscriber sends corrected details and a new scan."""
    person = uow.session.get(Person, account.person_id, with_for_update=True) if account.person_id else None
    if person is None:
        raise DomainError(ErrorCode.NOT_FOUND)
    if person.kyc_status is KycStatus.VERIFIED:
        raise DomainError(ErrorCode.IDENTITY_ALREADY_VERIFIED)
    checked = _check_identity(uow, given, uow.today_local(), field_prefix="")
    content_type = identity.check_document_image(document_image, uow.settings.document_max_bytes)
    other = uow.session.scalar(
        select(Person.id).where(Person.document_hash == checked.document_hash, Person.id != person.id)
    )
    if other is not None:
        raise DomainError(ErrorCode.IDENTITY_TAKEN, field="document_number")
    fresh, before = checked.to_person(uow), person.kyc_status
    for column in (
        "document_type",
        "document_hash",
        "document_cipher",
        "document_masked",
        "name_en",
        "name_zh",
        "birth_date",
        "kyc_status",
    ):
        setattr(person, column, getattr(fresh, column))
    person.kyc_reason = None
    uow.session.add(
        DocumentImage(
            person_id=person.id,
            content_type=content_type,
            size=len(document_image),
            sha256=hashlib.sha256(document_image).hexdigest(),
            cipher=uow.protector.encrypt(document_image),
            created_at=uow.now(),
        )
    )
    audit.record(
        uow, account.id, "kyc.resubmitted", f"person:{person.id}", old=before.value, new=person.kyc_status.value
    )
    return person


PASSWORD_RESET = "password_reset"  # noqa: S105 - an OTP purpose, not a password


def request_password_reset(uow: UnitOfWork, raw_phone: str) -> None:
    """Text a reset code to a verified account's phone. Every number gets the same answer, so
    nobody can learn who is registered: unknown or unverified numbers, and a number asking again
    too soon, are answered as if a code had been sent (the last one sent still works)."""
    settings = uow.settings
    phone = normalise_mobile(raw_phone, settings.allowed_regions, settings.default_region)
    account = uow.session.scalars(select(Account).where(Account.phone == phone)).first()
    if account is None or account.phone_verified_at is None or account.closed_at is not None:
        return
    try:
        otp.send(uow, phone, PASSWORD_RESET, account.language)
    except DomainError as error:
        if error.error not in (ErrorCode.OTP_RESEND_TOO_SOON, ErrorCode.OTP_SEND_LIMIT):
            raise
        return
    audit.record(uow, account.id, "account.password_reset_requested", f"account:{account.id}")


def reset_password(uow: UnitOfWork, raw_phone: str, code: str, new_password: str) -> Account:
    """Set a new password with the code sent by `request_password_reset`, and sign the account
    out everywhere (every token it holds is revoked)."""
    settings = uow.settings
    phone = normalise_mobile(raw_phone, settings.allowed_regions, settings.default_region)
    if len(new_password) < MIN_PASSWORD_LENGTH:
        raise DomainError(ErrorCode.PASSWORD_TOO_WEAK, field="password", min=MIN_PASSWORD_LENGTH)
    account = uow.session.scalars(select(Account).where(Account.phone == phone).with_for_update()).first()
    if account is None or account.phone_verified_at is None or account.closed_at is not None:
        raise DomainError(ErrorCode.OTP_INVALID, field="code")  # as a wrong code: no enumeration
    otp.verify(uow, phone, PASSWORD_RESET, code)
    account.password_hash = uow.passwords.hash(new_password)
    account.failed_logins, account.locked_until = 0, None  # the owner proved it: sign-in unlocks
    uow.session.execute(
        update(ApiToken)
        .where(ApiToken.account_id == account.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=uow.now())
    )
    audit.record(uow, account.id, "account.password_reset", f"account:{account.id}")
    return account


# --- flows: each one transaction ----------------------------------------------------------------


def sign_out(transactions: Transactions, token: str) -> None:
    """End the one session or token signed in with `token` (the account's others go on)."""
    with transactions() as uow:
        revoke_token(uow, token)


def send_password_reset(transactions: Transactions, raw_phone: str) -> None:
    with transactions() as uow:
        request_password_reset(uow, raw_phone)


def finish_password_reset(transactions: Transactions, raw_phone: str, code: str, new_password: str) -> None:
    with transactions() as uow:
        reset_password(uow, raw_phone, code, new_password)


def identity_of(transactions: Transactions, viewer: Account) -> Person:
    """The viewer's real-name record (NOT_FOUND for an account without one)."""
    with transactions() as uow:
        person = uow.session.get(Person, viewer.person_id) if viewer.person_id else None
        if person is None:
            raise DomainError(ErrorCode.NOT_FOUND)
        return person


def correct_identity(
    transactions: Transactions, viewer: Account, given: IdentityInput, document_image: bytes
) -> Person:
    with transactions() as uow:
        return resubmit_identity(uow, viewer, given, document_image)
