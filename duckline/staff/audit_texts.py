"""What each audit entry says, in the reader's language (English, 繁體中文, 简体中文).

An entry is stored as an action, a target ("order:12") and its details (values, never prose).
Here each action has a short name (for the filter) and a sentence; the details fill the sentence
and are formatted for the reader: money as HK$10.00, phone numbers as +852 5123 4567, moments in
the reader's time zone, true/false as words, statuses by their names. Details the sentence does
not use are listed under it with a translated label, and a change (`old`, `new`) is shown as
"before → after". An action missing here is shown with a generic sentence, never its raw name:
tests/staff/test_audit_texts.py fails when an action recorded in the code has no sentence.

Message texts are gettext message ids (English), translated in duckline/locales.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from babel.dates import format_date, format_time, get_datetime_format
from babel.numbers import format_decimal

from duckline.accounts.phone import display
from duckline.core import i18n
from duckline.core.money import Money
from duckline.staff.audit import Subject
from duckline.support import case_texts


@dataclass(frozen=True)
class Action:
    label: str  # a short name, for the action filter
    sentence: str  # {subject} and details by name
    values: str = "text"  # how a scalar `old` and `new` are shown (a kind of FIELDS)
    field: str | None = None  # what a scalar `old` and `new` are, when the sentence does not show them


ACTIONS: dict[str, Action] = {
    "account.registered": Action("Account registered", "{subject} registered; identity check: {kyc}."),
    "account.registration_attempted": Action(
        "Registration tried again", "Someone tried to register again with {via} of {subject}; its holder was told."
    ),
    "account.phone_verified": Action("Phone verified", "{subject} verified its phone number."),
    "account.login_locked": Action("Sign-in locked", "Sign-in to {subject} was locked after too many wrong passwords."),
    "account.password_reset_requested": Action(
        "Password reset asked for", "A password reset code was sent for {subject}."
    ),
    "account.password_reset": Action(
        "Password reset", "The password of {subject} was reset with a code; every session was signed out."
    ),
    "account.preferences": Action("Notification preferences changed", "Notification preferences of {subject} changed."),
    "account.phone_changed": Action(
        "Login phone changed", "The login phone of {subject} changed from {old} to {new}.", "phone"
    ),
    "account.email_changed": Action("Email changed", "The email of {subject} changed from {old} to {new}.", "contact"),
    "token.issued": Action("API key issued", "An API key named “{name}” was issued to {subject}."),
    "kyc.reviewed": Action("Identity reviewed", "{subject} reviewed: {old} → {new}.", "kyc"),
    "kyc.resubmitted": Action(
        "Identity sent again", "Corrected identity details sent for {subject}: {old} → {new}.", "kyc"
    ),
    "kyc.document_viewed": Action("Identity document viewed", "The identity document scan of {subject} was viewed."),
    "line.opened": Action("Line opened", "{subject} opened with the number {msisdn}."),
    "line.activated": Action("Line activated", "{subject} activated on {plan}."),
    "line.features": Action("Line features changed", "Features of {subject} changed."),
    "line.auto_renew": Action("Automatic renewal changed", "Automatic renewal of {subject}: {old} → {new}.", "onoff"),
    "ticket.opened": Action("Ticket opened", "{subject} opened."),
    "ticket.replied": Action("Ticket answered", "Staff replied on {subject}."),
    "ticket.resolved": Action("Ticket resolved", "{subject} resolved: {resolution}"),
    "ticket.assigned": Action("Ticket assigned", "{subject} assigned: staff account {old} → {new}.", "id"),
    "ticket.noted": Action("Internal note added", "Staff added an internal note on {subject}."),
    "ticket.closed": Action("Ticket closed", "{subject} closed ({old} → {new}): {reason}.", "status"),
    "ticket.linked": Action("Ticket linked", "{subject} now concerns {concerns} #{concerns_id}."),
    "ticket.unlinked": Action("Ticket unlinked", "{subject} no longer concerns {concerns} #{concerns_id}."),
    "reconciliation.apply": Action("Case: renewal applied", "{subject} resolved by applying the renewal."),
    "reconciliation.refund": Action("Case: payment refunded", "{subject} resolved by refunding the payment."),
    "reconciliation.close": Action("Case closed", "{subject} closed without applying or refunding anything."),
    "order.refunded": Action("Order refunded", "{amount} of {subject} refunded to the original payment method."),
    "payment.refunded": Action("Payment refunded", "{amount} of {subject} refunded to the original payment method."),
    "plan.created": Action("Plan created", "{subject} created at {price}."),
    "plan.updated": Action("Plan changed", "{subject} changed."),
    "plan.retired": Action("Plan retired", "{subject} retired.", "status", "Status"),
    "promotion.created": Action("Promotion created", "{subject} created."),
    "rating_group.set": Action("Rating group changed", "{subject}: charged in {old} → {new}.", "choice"),
    "rating_group.removed": Action("Rating group removed", "{subject} removed; it was charged in {old}.", "choice"),
    "promotion.deactivated": Action("Promotion deactivated", "{subject} deactivated.", "status", "Status"),
    "numbers.imported": Action("Numbers added to the pool", "Numbers added to the {subject}: {added}."),
    "job.run": Action(
        "Reconciliation run by hand",
        "{subject} run by hand: {applied} applied, {refunded} refunded, {expired} expired, {unreachable} unreachable.",
    ),
    "webhook.subscribed": Action("Webhook subscribed", "{subject} created for {url}."),
    "webhook.replayed": Action("Webhook sent again", "{subject} sent again."),
    # Self-care: sessions and step-up proofs, lost phones, saved methods, the right of access, closing.
    "account.reauthenticated": Action("Account holder proved", "{subject} proved it is the account holder with {via}."),
    "account.password_changed": Action(
        "Password changed", "The password of {subject} was changed; other sessions signed out: {sessions_revoked}."
    ),
    "account.session_revoked": Action("Session signed out", "A session of {subject} was signed out."),
    "account.sessions_revoked": Action(
        "Other sessions signed out", "Every other session of {subject} was signed out: {count}."
    ),
    "line.suspended": Action("Line suspended", "{subject} suspended: the phone was {new}.", "choice"),
    "line.resumed": Action("Line resumed", "{subject} resumed; the phone had been {old}.", "choice"),
    "line.esim_moved": Action(
        "eSIM moved", "The eSIM of {subject} moved to a new phone: profile {old} replaced by {new}."
    ),
    "line.sip_password_reset": Action(
        "SIP password reset", "The SIP password of {subject} was reset; the old one no longer works."
    ),
    "payment_method.removed": Action(
        "Saved payment method removed", "A saved payment method of {subject} was removed."
    ),
    "payment_method.detached": Action("Payment method detached", "{subject} was detached at {provider}."),
    "payment_method.detach_failed": Action(
        "Payment method not detached", "{provider} did not confirm detaching {subject}."
    ),
    "account.data_exported": Action(
        "Personal data downloaded", "{subject} downloaded everything Duckline holds about it."
    ),
    "account.closed": Action("Account closed", "{subject} closed; its lines were ended."),
    "account.contact_erased": Action(
        "Contact details erased", "The contact details of {subject} were erased, as its closure said."
    ),
    "account.identity_erased": Action(
        "Identity erased", "The identity record of {subject} was erased, as its closure said."
    ),
}
UNKNOWN = Action("Other action", "An action with no description yet was recorded for {subject}.")

# The subjects, as the log names them ("order:12"), with the reader's words.
SUBJECTS: dict[str, str] = {
    "account": "Account #{key}",
    "person": "Identity record #{key}",
    "line": "Line #{key}",
    "order": "Order #{key}",
    "payment": "Payment #{key}",
    "ticket": "Ticket #{key}",
    "plan": "Plan “{key}”",
    "promotion": "Promotion #{key}",
    "rating_group": "Rating group {key}",
    "pool": "number pool",
    "job": "Reconciliation job",
    "webhook_subscription": "Webhook subscription #{key}",
    "webhook_delivery": "Webhook delivery #{key}",
    "payment_method": "Saved payment method #{key}",
}
CASE = "Case #{key}"
UNKNOWN_SUBJECT = "Record “{key}”"

# Detail names: (label, kind). A kind says how a value is shown; see `_shown`.
FIELDS: dict[str, tuple[str, str]] = {
    "amount": ("Amount", "money"),
    "concerns": ("Concerns", "choice"),
    "concerns_id": ("Number", "id"),
    "price": ("Price", "money"),
    "reason": ("Reason", "choice"),
    "resolution": ("Resolution", "resolution"),
    "kyc": ("Identity check", "kyc"),
    "status": ("Identity check", "kyc"),
    "via": ("Proved with", "choice"),
    "proof": ("Proved with", "choice"),
    "msisdn": ("Number", "phone"),
    "plan": ("Plan", "plan"),
    "order": ("Order", "order"),
    "payment": ("Payment", "payment"),
    "message": ("Message", "id"),
    "document": ("Document scan", "id"),
    "enabled": ("Automatic renewal", "onoff"),
    "voicemail": ("Voicemail", "onoff"),
    "caller_id": ("Caller ID", "onoff"),
    "name": ("Name", "text"),
    "code": ("Promo code", "text"),
    "url": ("Address", "text"),
    "added": ("Numbers added", "count"),
    "applied": ("Applied", "count"),
    "refunded": ("Refunded", "count"),
    "expired": ("Expired", "count"),
    "unreachable": ("Provider unreachable", "count"),
    "names": ("Name", "names"),
    "descriptions": ("Description", "names"),
    "validity": ("Validity", "validity"),
    "allowances": ("Allowances", "allowances"),
    "voice_increments": ("Call charging increments", "increments"),
    "phone": ("Login phone", "phone"),
    "email": ("Email", "text"),
    "sessions_ended": ("Network sessions ended", "count"),
    "sessions_revoked": ("Sessions signed out", "count"),
    "count": ("Sessions signed out", "count"),
    "session": ("Session", "id"),
    "lines": ("Lines", "phones"),
    "auto_renew_off": ("Automatic renewal turned off", "phones"),
    "erase_contact_at": ("Contact details erased from", "moment"),
    "erase_identity_at": ("Identity record erased from", "moment"),
    "identity": ("Identity number", "choice"),
    "format": ("Format", "choice"),
    "payment_method": ("Saved payment method", "id"),
    "method": ("Payment method", "choice"),
    "brand": ("Card brand", "text"),
    "last4": ("Last four digits", "text"),
    "provider": ("Payment provider", "provider"),
    "old": ("Before", "text"),
    "new": ("After", "text"),
}
OTHER_DETAIL = "Other detail"
# A change of preferences is stored per "channel.category".
CHANNELS = {"sms": "SMS", "email": "Email"}
CATEGORIES = {
    "security": "Security",
    "payment": "Payments",
    "service": "Service",
    "reminders": "Reminders",
    "support": "Support",
    "marketing": "Offers",
}
WORDS = {
    "on": "On",
    "off": "Off",
    "yes": "Yes",
    "no": "No",
    "none": "—",
}
KYC = {"pending_review": "Pending review", "verified": "Verified", "rejected": "Rejected", "flagged": "Flagged"}
STATUSES = {
    "active": "Active",
    "retired": "Retired",
    "inactive": "Inactive",
    "open": "Open",
    "waiting": "Waiting for the subscriber",
    "resolved": "Resolved",
}
# Words the code stores for a choice (a detail's value), in the reader's words; others as written.
CHOICES = {
    "phone": "the phone number",
    "identity": "the identity document",
    "password": "the password",
    "code": "a code sent to the phone",
    "proof": "a recent proof of the account holder",
    "lost": "reported lost",
    "stolen": "reported stolen",
    "full": "In full",
    "masked": "Masked",
    "zip": "ZIP with the receipts",
    "json": "JSON",
    "card": "Card",
    "alipay": "Alipay",
    "wechatpay": "WeChat Pay",
    "method_removed": "The saved payment method was removed",
    "answered": "Answered",
    "duplicate": "Duplicate",
    "no_response": "No response from the subscriber",
    "resolved_by_action": "Resolved by an action",
    "order": "order",
    "payment": "payment",
    "case": "reconciliation case",
    "data_bytes": "Data",  # the unit a rating group is charged in
    "voice_seconds": "Voice",
    "sms": "SMS",
}
UNITS = {
    "min": "{n} min",
    "s": "{n} s",
    "sms": "{n} SMS",
    "gb": "{n} GB",
    "mb": "{n} MB",
    "bytes": "{n} bytes",
}
ZONES = {"HK": "Hong Kong", "CN": "Mainland China", "MO": "Macau", "INTL": "International"}
IN_ZONE = "{quantity} ({zone})"
INCREMENTS = "{initial} s, then every {subsequent} s"  # a plan's voice charging increments
NAMED = "{action}: {subject}"  # an entry whose details do not fit its sentence (written before it)
VALIDITY = {"month": "1 month", "months": "{n} months", "day": "1 day", "days": "{n} days"}
SEPARATORS = {"en": ", "}  # Chinese lists take the enumeration comma

# What a filter of the audit page that cannot be read is told, by the filter's name.
PROBLEMS = {
    "actor": "Enter a phone number or an account number, for example 12.",
    "subject": "Enter a subject as the log names it, for example account:12 or plan:monthly, or a phone number.",
    "action": "Choose an action from the list.",
    "since": "Enter a date, for example 2026-12-01.",
    "until": "Enter an end date on or after the start date, for example 2026-12-31.",
}

MESSAGE_IDS: tuple[str, ...] = (
    *(a.label for a in ACTIONS.values()),
    *(a.sentence for a in ACTIONS.values()),
    *(a.field for a in ACTIONS.values() if a.field),
    UNKNOWN.label,
    UNKNOWN.sentence,
    *SUBJECTS.values(),
    CASE,
    UNKNOWN_SUBJECT,
    *(label for label, _kind in FIELDS.values()),
    OTHER_DETAIL,
    *CHANNELS.values(),
    *CATEGORIES.values(),
    *(w for w in WORDS.values() if w != "—"),
    *KYC.values(),
    *STATUSES.values(),
    *CHOICES.values(),
    *UNITS.values(),
    *ZONES.values(),
    *VALIDITY.values(),
    *PROBLEMS.values(),
    IN_ZONE,
    INCREMENTS,
    NAMED,
)


@dataclass(frozen=True)
class Value:
    """A value as the reader sees it; `ref` names a subject the page may link to."""

    text: str
    ref: str | None = None


@dataclass(frozen=True)
class Change:
    label: str
    old: Value
    new: Value


@dataclass(frozen=True)
class Described:
    """An entry in the reader's language: a sentence with {placeholders} and their values (so a
    page can make links of them), what else the entry holds, and what changed."""

    sentence: str
    values: dict[str, Value]
    details: list[tuple[str, Value]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.sentence.format(**{name: value.text for name, value in self.values.items()})


class Reader:
    """Formats values for one reader: their language and time zone."""

    def __init__(self, language: str, timezone: str, subjects: dict[str, Subject] | None = None) -> None:
        self.language = language
        self.locale = i18n.babel_locale(language)
        self.tz = ZoneInfo(timezone)
        self.subjects = subjects or {}
        self.separator = SEPARATORS.get(language, "、")
        self._minute = str(get_datetime_format("medium", locale=self.locale)).replace("'", "")

    def _(self, message: str, **params: Any) -> str:
        translated = i18n.gettext(self.language, message)
        return translated.format(**params) if params else translated

    # --- subjects ---------------------------------------------------------------------------

    def subject(self, target: str) -> Value:
        kind, _, key = target.partition(":")
        known = self.subjects.get(target)
        if kind == "plan" and known is not None and known.names:
            key = known.names.get(self.language) or known.names.get("en") or key
        if kind == "ticket" and known is not None and known.case:
            return Value(self._(CASE, key=key), target)
        pattern = SUBJECTS.get(kind)
        if pattern is None:
            return Value(self._(UNKNOWN_SUBJECT, key=target), target)
        return Value(self._(pattern, key=key), target)

    # --- values -----------------------------------------------------------------------------

    def shown(self, kind: str, value: Any, context: dict[str, Any] | None = None) -> Value:
        """`value` shown as `kind`; a value of another shape than expected is shown by its own."""
        if value is None:
            return Value(WORDS["none"])
        try:
            return self._shown(kind, value, context or {})
        except (TypeError, ValueError, KeyError, AttributeError, phonenumbers.NumberParseException):
            return self._guess(value)

    def _shown(self, kind: str, value: Any, context: dict[str, Any]) -> Value:
        if kind == "money":
            if isinstance(value, dict):
                return Value(Money(int(value["amount"]), str(value["currency"]).upper()).format(self.locale))
            if isinstance(value, int) and not isinstance(value, bool):  # entries from before currencies
                return Value(Money(value, str(context.get("currency") or "HKD")).format(self.locale))
        if kind == "phone":
            return Value(display(str(value)))
        if kind == "contact":
            return Value(display(str(value)) if str(value).startswith("+") else str(value))
        if kind == "onoff" and isinstance(value, bool):
            return Value(self._(WORDS["on" if value else "off"]))
        if kind == "kyc" and value in KYC:
            return Value(self._(KYC[value]))
        if kind == "status" and value in STATUSES:
            return Value(self._(STATUSES[value]))
        if kind == "choice" and isinstance(value, str):
            return Value(self._(CHOICES[value]) if value in CHOICES else value)
        if kind == "provider" and isinstance(value, str):
            return Value(self._(case_texts.PROVIDER_NAMES.get(value, value)))
        if kind == "phones" and isinstance(value, list):
            return Value(self.separator.join(self.shown("phone", v).text for v in value) or WORDS["none"])
        if kind == "moment" and isinstance(value, str):
            return Value(self.when(datetime.fromisoformat(value)))
        if kind == "plan":
            return self.subject(f"plan:{value}")
        if kind in ("order", "payment"):  # under a label that names it already: the number, linked
            return Value(f"#{int(value)}", f"{kind}:{int(value)}")
        if kind == "id" and isinstance(value, int):
            return Value(f"#{value}")
        if kind == "count" and isinstance(value, int):
            return Value(format_decimal(value, locale=self.locale))
        if kind == "resolution":
            return Value(case_texts.resolution(str(value), self.language) or "")
        if kind == "names" and isinstance(value, dict):
            return Value(str(value.get(self.language) or value.get("en") or ""))
        if kind == "validity" and isinstance(value, dict):
            return Value(self._validity(int(value.get("days") or 0), int(value.get("months") or 0)))
        if kind == "increments" and isinstance(value, dict):
            return Value(self._(INCREMENTS, initial=value.get("initial"), subsequent=value.get("subsequent")))
        if kind == "allowances" and isinstance(value, list):
            return Value(self.separator.join(self._allowance(a) for a in value))
        if kind == "text" and isinstance(value, str):
            return Value(value)
        return self._guess(value)

    def _guess(self, value: Any) -> Value:
        """A value of a detail this module does not name: shown by its shape."""
        if isinstance(value, bool):
            return Value(self._(WORDS["yes" if value else "no"]))
        if isinstance(value, int):
            return Value(format_decimal(value, locale=self.locale))
        if isinstance(value, dict) and "amount" in value and "currency" in value:
            return self.shown("money", value)
        if isinstance(value, str) and value.startswith("+") and value[1:].replace(" ", "").isdigit():
            return self.shown("phone", value)
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return Value(value)
            return Value(self.when(moment)) if moment.tzinfo else Value(value)
        if isinstance(value, list):
            return Value(self.separator.join(self._guess(v).text for v in value))
        if isinstance(value, dict):
            return Value(self.separator.join(self._guess(v).text for v in value.values()))
        return Value(str(value))

    def when(self, moment: datetime) -> str:
        shown = moment.astimezone(self.tz)
        return self._minute.format(
            format_time(shown, "short", locale=self.locale), format_date(shown, "medium", locale=self.locale)
        )

    def _validity(self, days: int, months: int) -> str:
        if months == 1:
            return self._(VALIDITY["month"])
        if months:
            return self._(VALIDITY["months"], n=months)
        return self._(VALIDITY["day"]) if days == 1 else self._(VALIDITY["days"], n=days)

    def _allowance(self, allowance: dict[str, Any]) -> str:
        unit, amount, zone = allowance["unit"], int(allowance["amount"]), str(allowance.get("zone") or "")
        if unit == "voice_seconds":
            measure, n = ("min", amount // 60) if amount % 60 == 0 else ("s", amount)
        elif unit == "data_bytes":
            measure, n = next(
                (m, amount // f) for m, f in (("gb", 1024**3), ("mb", 1024**2), ("bytes", 1)) if amount % f == 0
            )
        else:
            measure, n = "sms", amount
        quantity = self._(UNITS[measure], n=format_decimal(n, locale=self.locale))
        return self._(IN_ZONE, quantity=quantity, zone=self._(ZONES[zone])) if zone in ZONES else quantity

    # --- entries ----------------------------------------------------------------------------

    def label(self, key: str) -> str:
        if key in FIELDS:
            return self._(FIELDS[key][0])
        channel, _, category = key.partition(".")
        if channel in CHANNELS and category in CATEGORIES:
            return f"{self._(CHANNELS[channel])} · {self._(CATEGORIES[category])}"
        return self._(OTHER_DETAIL)

    def kind(self, key: str) -> str:
        if key in FIELDS:
            return FIELDS[key][1]
        return "onoff" if key.partition(".")[0] in CHANNELS else "guess"

    def describe(self, action_name: str, target: str, detail: dict[str, Any]) -> Described:
        action = ACTIONS.get(action_name, UNKNOWN)
        sentence = self._(action.sentence)
        wanted = {name for _text, name, _spec, _conv in string.Formatter().parse(sentence) if name}
        if not wanted <= {"subject", *detail}:  # an entry written before its details were settled
            sentence, wanted = self._(UNKNOWN.sentence), {"subject"}
            if action is not UNKNOWN:
                sentence = self._(NAMED, action=self._(action.label), subject="{subject}")
        values: dict[str, Value] = {"subject": self.subject(target)}
        for name in wanted - {"subject"}:
            kind = action.values if name in ("old", "new") else self.kind(name)
            values[name] = self.shown(kind, detail[name], detail)
        described = Described(sentence, values)
        rest = {key: value for key, value in detail.items() if key not in wanted and key != "currency"}
        old, new = rest.pop("old", None), rest.pop("new", None)
        if isinstance(old, dict) or isinstance(new, dict):
            before, after = old if isinstance(old, dict) else {}, new if isinstance(new, dict) else {}
            for key in [*before, *(k for k in after if k not in before)]:
                kind = self.kind(key)
                described.changes.append(
                    Change(
                        self.label(key),
                        self.shown(kind, before.get(key), before),
                        self.shown(kind, after.get(key), after),
                    )
                )
        elif old is not None or new is not None:
            described.changes.append(
                Change(
                    self._(action.field or action.label),
                    self.shown(action.values, old),
                    self.shown(action.values, new),
                )
            )
        for key, value in rest.items():
            if value is None or value == "":
                continue
            described.details.append((self.label(key), self.shown(self.kind(key), value, detail)))
        return described
