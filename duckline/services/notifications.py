"""Messages to subscribers: rendered in their language, queued in the outbox in the same
transaction as their cause, and delivered by the worker with retries — never twice.

Message texts are gettext message ids (English), translated in duckline/locales.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from duckline import i18n
from duckline.adapters.db.engine import Database
from duckline.adapters.db.tables import Account, Notification
from duckline.adapters.email import EmailChannel, EmailMessage, PermanentFailure
from duckline.adapters.sms import SmsChannel
from duckline.clock import Clock
from duckline.domain.phone import display
from duckline.money import Money
from duckline.services.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

SECURITY, PAYMENT, SERVICE, REMINDERS, SUPPORT, MARKETING = (
    "security",
    "payment",
    "service",
    "reminders",
    "support",
    "marketing",
)
ALWAYS_ON = frozenset({SECURITY, PAYMENT, SERVICE})  # cannot be turned off: they protect the subscriber
DEFAULT_OFF = frozenset({MARKETING})
CATEGORIES = (SECURITY, PAYMENT, SERVICE, REMINDERS, SUPPORT, MARKETING)
CHANNELS = ("sms", "email")


@dataclass(frozen=True)
class Template:
    category: str
    subject: str
    text: str


TEMPLATES: dict[str, Template] = {
    "otp": Template(
        SECURITY,
        "Your verification code",
        "Your Duckline verification code is {code}. It expires in {minutes} minutes. Never share it with anyone.",
    ),
    "email_verify": Template(
        SECURITY,
        "Confirm your email address",
        "Your Duckline code to confirm this email address is {code}. It expires in {minutes} minutes.",
    ),
    "email_changed": Template(
        SECURITY,
        "Your contact details were changed",
        "The email address on your Duckline account was changed to {new}. "
        "If this was not you, contact support at once.",
    ),
    "phone_changed": Template(
        SECURITY,
        "Your contact details were changed",
        "The phone number on your Duckline account was changed to {new}. If this was not you, contact support at once.",
    ),
    "login_locked": Template(
        SECURITY,
        "Sign-in locked after wrong passwords",
        "Someone entered a wrong password for your Duckline account {attempts} times, so sign-in is locked "
        "for {minutes} minutes. If this was not you, reset your password with an SMS code.",
    ),
    "renewal_succeeded": Template(
        PAYMENT,
        "Renewal confirmed: {msisdn}",
        "Your renewal of {msisdn} ({plan}) is confirmed. Paid {amount}. Valid until {expires}. Receipt {receipt}.",
    ),
    "payment_failed": Template(
        PAYMENT,
        "Payment not completed",
        "Your payment of {amount} for {msisdn} did not go through. Nothing was charged. You can try again in the app.",
    ),
    "payment_unconfirmed": Template(
        PAYMENT,
        "Payment not confirmed yet",
        "We asked for your payment of {amount} for {msisdn}, but the payment provider has not confirmed yet "
        "whether it went through. We are checking with them: if it did, your renewal is applied. "
        "You will never be charged twice, so there is no need to pay again.",
    ),
    "refund_issued": Template(
        PAYMENT,
        "Refund issued",
        "We have refunded {amount} for {msisdn} to your original payment method. Credit note {credit_note}.",
    ),
    "auto_renew_failed": Template(
        PAYMENT,
        "Automatic renewal failed",
        "We could not renew {msisdn} automatically. Please check your payment method "
        "or renew in the app before {expires}.",
    ),
    "balance_low": Template(
        REMINDERS,
        "Your allowance is running low",
        "You have used {percent}% of your {allowance} on {msisdn}. {remaining} left.",
    ),
    "plan_expiring": Template(
        REMINDERS,
        "Your plan is expiring soon",
        "Your plan on {msisdn} expires on {expires}. Renew now to keep your number and allowances.",
    ),
    "line_grace": Template(
        SERVICE,
        "Your plan has expired",
        "Your plan on {msisdn} expired on {expires}. Renew by {until} to keep your number.",
    ),
    "line_suspended": Template(
        SERVICE,
        "Your line is suspended",
        "{msisdn} is suspended. Renew by {until} or the number will be recycled and given to someone else.",
    ),
    "recycle_warning": Template(
        SERVICE, "Your number will be recycled", "{msisdn} will be recycled on {until}. Renew before then to keep it."
    ),
    "line_recycled": Template(
        SERVICE, "Your number was recycled", "{msisdn} has been recycled after the retention period."
    ),
    "ticket_answered": Template(
        SUPPORT, "Support replied to your ticket", "Support replied to your ticket #{ticket}: {reply}"
    ),
}
UNIT_NAMES = {"voice_seconds": "voice minutes", "sms": "SMS", "data_bytes": "data"}
EMAIL_FOOTER = "This message was sent by Duckline to {recipient}."
MESSAGE_IDS: tuple[str, ...] = (
    *(t.subject for t in TEMPLATES.values()),
    *(t.text for t in TEMPLATES.values()),
    *UNIT_NAMES.values(),
    EMAIL_FOOTER,
)
_emails = Environment(loader=PackageLoader("duckline.web", "templates"), autoescape=select_autoescape(["html"]))


def wants(account: Account, channel: str, category: str) -> bool:
    if category in ALWAYS_ON:
        return True
    chosen = (account.preferences or {}).get(channel, {}).get(category)
    return bool(chosen) if chosen is not None else category not in DEFAULT_OFF


def notify(
    uow: UnitOfWork,
    account: Account,
    kind: str,
    dedupe_key: str | None = None,
    channels: tuple[str, ...] = CHANNELS,
    **params: Any,
) -> list[Notification]:
    """Queue `kind` for the account on each channel it wants (email only with an address)."""
    template = TEMPLATES[kind]
    queued = []
    for channel in channels:
        recipient = account.phone if channel == "sms" else account.email
        if recipient and wants(account, channel, template.category):
            key = f"{dedupe_key}:{channel}" if dedupe_key else None
            row = send_to(uow, channel, recipient, kind, account.language, account.id, key, **params)
            if row is not None:
                queued.append(row)
    return queued


def send_to(
    uow: UnitOfWork,
    channel: str,
    recipient: str,
    kind: str,
    language: str,
    account_id: int | None = None,
    dedupe_key: str | None = None,
    **params: Any,
) -> Notification | None:
    """Queue one message to one address. With a dedupe_key it is queued at most once, ever:
    the unique constraint decides, so concurrent schedulers cannot both queue it."""
    if (
        dedupe_key is not None
        and uow.session.scalar(select(Notification.id).where(Notification.dedupe_key == dedupe_key)) is not None
    ):
        return None
    subject, text = render(kind, language, params)
    row = Notification(
        account_id=account_id,
        channel=channel,
        recipient=recipient,
        template=kind,
        language=language,
        subject=subject,
        body=text,
        html=_html(subject, text, recipient, language) if channel == "email" else None,
        status="queued",
        attempts=0,
        next_attempt_at=uow.now(),
        dedupe_key=dedupe_key,
        created_at=uow.now(),
    )
    try:
        with uow.session.begin_nested():
            uow.session.add(row)
            uow.session.flush()
    except IntegrityError:
        return None  # queued by someone else meanwhile
    uow.queued_notifications += 1
    return row


def render(kind: str, language: str, params: dict[str, Any]) -> tuple[str, str]:
    template = TEMPLATES[kind]
    values = {k: _shown(v, language) for k, v in params.items()}
    return (
        i18n.gettext(language, template.subject).format(**values),
        i18n.gettext(language, template.text).format(**values),
    )


def _shown(value: Any, language: str) -> Any:
    """Money as money, instants as Hong Kong dates, in the message's language."""
    if isinstance(value, Money):
        return value.format(i18n.babel_locale(language))
    if isinstance(value, datetime):
        return format_date(
            value.astimezone(ZoneInfo("Asia/Hong_Kong")).date(), "long", locale=i18n.babel_locale(language)
        )
    return value


def _html(subject: str, text: str, recipient: str, language: str) -> str:
    footer = i18n.gettext(language, EMAIL_FOOTER).format(recipient=recipient)
    html_lang = {"zh_Hant": "zh-Hant", "zh_Hans": "zh-Hans"}.get(language, "en")
    return _emails.get_template("email/message.html").render(
        subject=subject, paragraphs=text.split("\n"), footer=footer, lang=html_lang
    )


def unit_name(unit: str, language: str) -> str:
    return i18n.gettext(language, UNIT_NAMES[unit])


def msisdn(value: str) -> str:
    return display(value)


# --- delivery -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 6
    base_delay: timedelta = timedelta(seconds=30)  # then 1, 2, 4, 8 minutes …
    lease: timedelta = timedelta(minutes=5)


def claim(db: Database, clock: Clock, limit: int, policy: DeliveryPolicy) -> list[int]:
    """Take up to `limit` due messages for this worker. SKIP LOCKED lets two workers claim
    different rows at once (SQLite serialises writers instead); a claim whose worker died is
    taken back when its lease runs out."""
    now = clock.now()
    with db.transaction() as session:
        ids = list(
            session.scalars(
                select(Notification.id)
                .where(
                    or_(
                        (Notification.status == "queued") & (Notification.next_attempt_at <= now),
                        (Notification.status == "sending") & (Notification.lease_until < now),
                    )
                )
                .order_by(Notification.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
        )
        if ids:
            session.execute(
                update(Notification)
                .where(Notification.id.in_(ids))
                .values(status="sending", lease_until=now + policy.lease, attempts=Notification.attempts + 1)
            )
    return ids


def deliver_due(
    db: Database,
    sms: SmsChannel,
    email: EmailChannel | None,
    clock: Clock,
    limit: int = 100,
    policy: DeliveryPolicy | None = None,
) -> int:
    """Send what is due; returns how many were sent. Safe to run in several workers at once.

    One transaction claims a batch, the sends happen outside any transaction, one transaction
    records every outcome. A worker that dies mid-batch leaves its claims to expire and be
    retried: delivery is at least once, and exactly once whenever workers finish their rounds.
    """
    policy = policy or DeliveryPolicy()
    claimed = claim(db, clock, limit, policy)
    if not claimed:
        return 0
    with db.transaction() as session:
        rows = session.scalars(select(Notification).where(Notification.id.in_(claimed))).all()
        batch = [(r.id, r.channel, r.recipient, r.subject, r.body, r.html, r.attempts) for r in rows]
    outcomes: dict[int, tuple[str, str | None, str | None]] = {}
    for notification_id, channel, recipient, subject, body, html, attempts in batch:
        try:
            if channel == "sms":
                reference = sms.send(recipient, body)
            elif email is not None:
                reference = email.send(EmailMessage(recipient, subject or "", body, html))
            else:
                raise PermanentFailure("no email channel configured")
            outcomes[notification_id] = ("sent", None, reference)
        except PermanentFailure as exc:
            outcomes[notification_id] = ("failed", str(exc)[:500], None)
        except Exception as exc:  # a temporary failure: retried with back-off
            log.warning("notification %s attempt %s failed: %r", notification_id, attempts, exc)
            outcomes[notification_id] = (
                "failed" if attempts >= policy.max_attempts else "queued",
                repr(exc)[:500],
                None,
            )
    now = clock.now()
    with db.transaction() as session:
        for row in session.scalars(select(Notification).where(Notification.id.in_(list(outcomes)))):
            outcome, error, provider_ref = outcomes[row.id]
            row.status, row.lease_until, row.last_error = outcome, None, error
            if outcome == "sent":
                row.sent_at, row.provider_ref = now, provider_ref
            elif outcome == "queued":
                row.next_attempt_at = now + policy.base_delay * (2 ** (row.attempts - 1))
    return sum(1 for status, _, _ in outcomes.values() if status == "sent")


def queue_sms(uow: UnitOfWork, to: str, template: str, language: str, **params: object) -> Notification | None:
    """A message to a phone number that may have no account yet (registration codes)."""
    return send_to(uow, "sms", to, template, language, None, None, **params)
