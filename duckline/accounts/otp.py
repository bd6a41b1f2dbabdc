"""One-time codes sent by SMS: 6 digits, hashed at rest, with expiry, attempt limits and a sending
quota per destination and purpose."""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update

from duckline.accounts.models import OtpChallenge
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import UnitOfWork
from duckline.messaging import notifications


def send(uow: UnitOfWork, phone: str, purpose: str, language: str) -> OtpChallenge:
    """Text a new code (replacing any earlier one) unless the phone's quota for `purpose` says wait."""
    challenge, code = issue(uow, phone, purpose)
    minutes = uow.settings.otp_ttl_seconds // 60
    notifications.queue_sms(uow, phone, "otp", language, valid_until=challenge.expires_at, code=code, minutes=minutes)
    return challenge


def issue(uow: UnitOfWork, destination: str, purpose: str) -> tuple[OtpChallenge, str]:
    """A new code for (destination, purpose), stored hashed, unless the quota says wait; the
    caller sends the code (returned here, the only time it is seen) by the channel it chose."""
    now = uow.now()
    sent = select(OtpChallenge.created_at).where(
        OtpChallenge.phone == destination, OtpChallenge.purpose == purpose, OtpChallenge.created_at > now - DAY
    )
    check_quota(uow, uow.session.scalars(sent).all())
    code = f"{secrets.randbelow(1_000_000):06d}"
    challenge = OtpChallenge(
        phone=destination,
        purpose=purpose,
        code_hash=uow.secrets.otp(destination, code),
        expires_at=now + timedelta(seconds=uow.settings.otp_ttl_seconds),
        attempts=0,
        created_at=now,
    )
    uow.session.add(challenge)
    return challenge, code


def verify(uow: UnitOfWork, phone: str, purpose: str, code: str) -> None:
    """Consume the latest code for (phone, purpose) or raise why not.

    A wrong code counts an attempt and that count is kept even though the request fails, so the
    caller commits before raising: see `WrongCode`.
    """
    now = uow.now()
    challenge = uow.session.scalars(
        select(OtpChallenge)
        .where(OtpChallenge.phone == phone, OtpChallenge.purpose == purpose)
        .order_by(OtpChallenge.created_at.desc(), OtpChallenge.id.desc())
        .limit(1)
        .with_for_update()
    ).first()
    if challenge is None or challenge.consumed_at is not None:
        raise DomainError(ErrorCode.OTP_INVALID, field="code")
    if challenge.expires_at <= now:
        raise DomainError(ErrorCode.OTP_EXPIRED, field="code")
    if challenge.attempts >= uow.settings.otp_max_attempts:
        raise DomainError(ErrorCode.OTP_TOO_MANY_ATTEMPTS, field="code")
    if not secrets.compare_digest(challenge.code_hash, uow.secrets.otp(phone, code.strip())):
        challenge.attempts += 1
        raise WrongCode(challenge.attempts >= uow.settings.otp_max_attempts)
    challenge.consumed_at = now


HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def check_quota(uow: UnitOfWork, sent: Sequence[datetime]) -> None:
    """Refuse one more code to a destination that was sent codes at `sent` (for one purpose, the
    last day at least): one a minute (`otp_resend_interval_seconds`), `otp_max_sends_per_hour` an
    hour and `otp_max_sends_per_day` a day. The refusal says when the next one can go."""
    settings, now = uow.settings, uow.now()
    times = sorted(sent)
    waits = [timedelta(0)]
    if times:
        too_soon = times[-1] + timedelta(seconds=settings.otp_resend_interval_seconds) - now
        if too_soon > timedelta(0):
            seconds = math.ceil(too_soon.total_seconds())
            raise DomainError(ErrorCode.OTP_RESEND_TOO_SOON, seconds=seconds, retry_after=seconds)
    for window, most in ((HOUR, settings.otp_max_sends_per_hour), (DAY, settings.otp_max_sends_per_day)):
        inside = [moment for moment in times if moment > now - window]
        if len(inside) >= most:  # room again when enough of them have left the window
            waits.append(inside[len(inside) - most] + window - now)
    wait = max(waits)
    if wait > timedelta(0):
        raise DomainError(ErrorCode.OTP_SEND_LIMIT, wait=wait, retry_after=math.ceil(wait.total_seconds()))


class WrongCode(DomainError):
    """A wrong code: the attempt must be recorded, so this one is committed, not rolled back."""

    commit = True

    def __init__(self, exhausted: bool) -> None:
        super().__init__(ErrorCode.OTP_TOO_MANY_ATTEMPTS if exhausted else ErrorCode.OTP_INVALID, field="code")


def expire_all(uow: UnitOfWork, phone: str) -> None:
    """Mark every open code for a phone as used (e.g. when staff verify the phone another way)."""
    uow.session.execute(
        update(OtpChallenge)
        .where(OtpChallenge.phone == phone, OtpChallenge.consumed_at.is_(None))
        .values(consumed_at=uow.now())
    )
