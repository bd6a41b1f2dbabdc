"""Messages to subscribers: rendered in their language, queued in the outbox in the same
transaction as their cause, and delivered by the worker with retries — never twice.

Message texts are gettext message ids (English), translated in duckline/locales.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from duckline.accounts.models import Account
from duckline.accounts.phone import display
from duckline.core import i18n
from duckline.core.clock import Clock
from duckline.core.config import Settings
from duckline.core.money import Money
from duckline.core.unit_of_work import UnitOfWork
from duckline.db.engine import Database
from duckline.messaging import delivery
from duckline.messaging.email import EmailChannel, EmailMessage, PermanentFailure
from duckline.messaging.models import Notification
from duckline.messaging.sms import SmsChannel
from duckline.messaging.states import NotificationStatus

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
URGENT, ROUTINE = 0, 1  # delivery priority: messages with a one-time code go first
MASK = "••••••"  # what is left of a one-time code once its message is settled


@dataclass(frozen=True)
class Template:
    category: str
    subject: str
    text: str
    carries_code: bool = False  # its `code` parameter is a one-time code: kept only until delivered


TEMPLATES: dict[str, Template] = {
    "otp": Template(
        SECURITY,
        "Your verification code",
        "Your Duckline verification code is {code}. It expires in {minutes} minutes. Never share it with anyone.",
        carries_code=True,
    ),
    "email_verify": Template(
        SECURITY,
        "Confirm your email address",
        "Your Duckline code to confirm this email address is {code}. It expires in {minutes} minutes.",
        carries_code=True,
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
    "password_changed": Template(
        SECURITY,
        "Your password was changed",
        "The password of your Duckline account was changed, and every other session was signed out. "
        "If this was not you, reset your password with an SMS code and contact support at once.",
    ),
    "registration_attempt_phone": Template(
        SECURITY,
        "Someone tried to register your number",
        "Someone tried to register a new Duckline account with this mobile number, which already has one, "
        "so no account was made. If it was you, log in (or reset your password with an SMS code); if you "
        "have not finished registering, ask for a new code on the verification page. If not, ignore this.",
    ),
    "registration_attempt_identity": Template(
        SECURITY,
        "Someone tried to register your identity document",
        "Someone tried to register a new Duckline account with your identity document {document}, which "
        "already has an account: this one. No account was made. If it was you, log in and add a line here. "
        "If it was not you, contact support.",
    ),
    "renewal_succeeded": Template(
        PAYMENT,
        "Renewal confirmed: {msisdn}",
        "Your renewal of {msisdn} ({plan}) is confirmed. Paid {amount}. Valid until {expires}. Receipt {receipt}.",
    ),
    "activation_succeeded": Template(
        PAYMENT,
        "Activation confirmed: {msisdn}",
        "Your line {msisdn} is activated on {plan}. Paid {amount}. Valid until {expires}. Receipt {receipt}.",
    ),
    "payment_failed": Template(
        PAYMENT,
        "Payment not completed",
        "Your payment of {amount} for {msisdn} did not go through. Nothing was charged. Try again here: {url}",
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
        "We could not renew {msisdn} automatically. Please check your payment method or renew before {expires}: {url}",
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
    "line_reported_lost": Template(
        SECURITY,
        "Service stopped on {msisdn}",
        "You reported the phone with {msisdn} lost or stolen, so we stopped calls, SMS and data on it at once. "
        "Your number, plan and expiry stay as they are. To turn the line back on, sign in and prove it is you "
        "with your password, or with a code we email you. If this was not you, contact support at once.",
    ),
    "line_resumed": Template(
        SECURITY,
        "Service is back on {msisdn}",
        "Calls, SMS and data are back on {msisdn}. If this was not you, contact support at once.",
    ),
    "esim_moved": Template(
        SECURITY,
        "Your eSIM was moved to a new phone",
        "A new eSIM profile was issued for {msisdn}, and the eSIM on the old phone no longer works. "
        "If this was not you, contact support at once.",
    ),
    "proof_code": Template(
        SECURITY,
        "Your verification code",
        "Your Duckline code to confirm it is you is {code}. It expires in {minutes} minutes. "
        "Never share it with anyone.",
        carries_code=True,
    ),
    "payment_method_removed": Template(
        SECURITY,
        "A saved payment method was removed",
        "{method} was removed from your Duckline account. If this was not you, contact support at once.",
    ),
    "payment_method_removed_auto_renew_off": Template(
        SECURITY,
        "Automatic renewal is off",
        "{method} was removed from your Duckline account, so automatic renewal of {numbers} is now off. "
        "Renew before the plan expires to keep your number. If this was not you, contact support at once.",
    ),
    "account_closed": Template(
        SECURITY,
        "Your Duckline account is closed",
        "Your Duckline account is closed and its lines have ended. You can no longer log in. Receipts and "
        "payment records are kept for {years} years, as the law requires; your contact details are erased "
        "after {days} days. If this was not you, contact support at once.",
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
_emails = Environment(loader=PackageLoader("duckline.messaging", "templates"), autoescape=select_autoescape(["html"]))


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
    *,
    valid_until: datetime | None = None,
    **params: Any,
) -> Notification | None:
    """Queue one message to one address. With a dedupe_key it is queued at most once, ever:
    the unique constraint decides, so concurrent schedulers cannot both queue it. A message is not
    sent after `valid_until` (when the code it carries expires)."""
    if (
        dedupe_key is not None
        and uow.session.scalar(select(Notification.id).where(Notification.dedupe_key == dedupe_key)) is not None
    ):
        return None
    subject, text = render(kind, language, params)
    code = str(params["code"]) if TEMPLATES[kind].carries_code else None
    row = Notification(
        account_id=account_id,
        channel=channel,
        recipient=recipient,
        template=kind,
        language=language,
        subject=subject,
        body=text,
        html=_html(subject, text, recipient, language) if channel == "email" else None,
        status=NotificationStatus.QUEUED,
        attempts=0,
        next_attempt_at=uow.now(),
        priority=URGENT if code else ROUTINE,
        reference=f"dl-{uuid.uuid4().hex}",
        one_time_code=code,
        expires_at=valid_until,
        dedupe_key=dedupe_key,
        created_at=uow.now(),
    )
    if dedupe_key is None:  # nothing another transaction could have queued: no savepoint needed
        uow.session.add(row)
        uow.session.flush()
    else:
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


# --- delivery (services/delivery.py claims, sends and records) ------------------------------


@dataclass(frozen=True)
class DeliveryPolicy(delivery.Policy):
    max_attempts: int = 6
    base_delay: timedelta = timedelta(seconds=30)  # then 1, 2, 4, 8 minutes …
    # Short, so that what a dead worker held (codes too) goes out again well before a code expires.
    lease: timedelta = timedelta(seconds=30)

    @classmethod
    def of(cls, settings: Settings) -> DeliveryPolicy:
        return cls(lease=timedelta(seconds=settings.notification_lease_seconds))


@dataclass(frozen=True)
class _Outgoing:
    id: int
    channel: str
    recipient: str
    subject: str | None
    body: str
    html: str | None
    reference: str
    one_time_code: str | None
    expires_at: datetime | None
    attempts: int

    @classmethod
    def of(cls, row: Notification) -> _Outgoing:
        return cls(
            row.id,
            row.channel,
            row.recipient,
            row.subject,
            row.body,
            row.html,
            row.reference,
            row.one_time_code,
            row.expires_at,
            row.attempts,
        )


def _load(session: Session, ids: list[int]) -> list[_Outgoing]:
    rows = session.scalars(
        select(Notification).where(Notification.id.in_(ids)).order_by(Notification.priority, Notification.id)
    )
    return [_Outgoing.of(row) for row in rows]


def _settle(message: _Outgoing, outcome: delivery.Outcome, values: dict[str, Any]) -> dict[str, Any]:
    """A retry that would bring a code after it expired is not worth waiting for; a message that is
    settled for good loses its code."""
    if (
        values["status"] == NotificationStatus.QUEUED
        and message.expires_at
        and values["next_attempt_at"] >= message.expires_at
    ):
        values["status"] = NotificationStatus.EXPIRED
    if values["status"] != NotificationStatus.QUEUED and message.one_time_code:
        values |= _without_code(message, outcome.error)
    return values


def _queue(policy: delivery.Policy) -> delivery.Queue[_Outgoing]:
    return delivery.Queue(
        subject="notification",
        table=Notification,
        due_at=Notification.next_attempt_at,
        waiting=NotificationStatus.QUEUED,
        sent=NotificationStatus.SENT,
        order_by=(Notification.priority, Notification.id),  # codes first
        policy=policy,
        load=_load,
        settle=_settle,
    )


def claim(db: Database, clock: Clock, limit: int, policy: DeliveryPolicy, token: str | None = None) -> list[int]:
    """Take up to `limit` due messages for this worker, codes first, under `token`."""
    return delivery.claim(delivery.Store.of(db, clock), _queue(policy), limit, token)


def deliver_due(
    db: Database,
    sms: SmsChannel,
    email: EmailChannel | None,
    clock: Clock,
    limit: int = 100,
    policy: DeliveryPolicy | None = None,
) -> int:
    """Send what is due, codes first; returns how many were sent. Safe to run in several workers.
    Each message goes under its own reference, the same on every try, so a gateway can drop the
    repeat of one whose worker died before recording it."""

    def send(message: _Outgoing) -> delivery.Outcome:
        return _send(message, sms, email, clock)

    # Outcomes are committed without waiting for the disk (Store.of): should the database server
    # itself crash and lose one, the message merely goes again under its reference.
    store = delivery.Store.of(db, clock)
    return delivery.deliver(store, _queue(policy or DeliveryPolicy()), send, limit).sent


def _send(message: _Outgoing, sms: SmsChannel, email: EmailChannel | None, clock: Clock) -> delivery.Outcome:
    if message.expires_at is not None and message.expires_at <= clock.now():
        return delivery.Outcome("expired", "not sent: its code had expired")
    try:
        if message.channel == "sms":
            reference = sms.send(message.recipient, message.body, reference=message.reference)
        elif email is not None:
            reference = email.send(
                EmailMessage(message.recipient, message.subject or "", message.body, message.html, message.reference)
            )
        else:
            raise PermanentFailure("no email channel configured")
        return delivery.Outcome("sent", values={"sent_at": clock.now(), "provider_ref": reference})
    except PermanentFailure as exc:
        return delivery.Outcome("refused", _struck(str(exc), message.one_time_code)[:500])
    except Exception as exc:  # a temporary failure: retried with back-off
        error = _struck(repr(exc), message.one_time_code)
        log.warning("notification %s attempt %s failed: %s", message.id, message.attempts, error)
        return delivery.Outcome("error", error[:500])


def _without_code(message: _Outgoing, error: str | None) -> dict[str, Any]:
    """The stored texts of a settled message (sent, failed for good, expired) without its code."""
    code = message.one_time_code
    return {
        "one_time_code": None,
        "body": _struck(message.body, code),
        "subject": message.subject and _struck(message.subject, code),
        "html": message.html and _struck(message.html, code),
        "last_error": error and _struck(error, code),
    }


def _struck(text: str, code: str | None) -> str:
    return text.replace(code, MASK) if code else text


def queue_sms(
    uow: UnitOfWork,
    to: str,
    template: str,
    language: str,
    *,
    valid_until: datetime | None = None,
    **params: object,
) -> Notification | None:
    """A message to a phone number that may have no account yet (registration codes)."""
    return send_to(uow, "sms", to, template, language, None, None, valid_until=valid_until, **params)
