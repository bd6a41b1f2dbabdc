"""What the cases that Duckline opens itself say, in each reader's language.

Such a case is stored as a topic and its parameters (order and payment ids, amounts as minor
units and currency, an error code), never as finished prose, so the console and the API can show
it in the reader's language with money formatted for their locale. The English rendering is kept
in the ticket's subject and body too, for search and for readers that ignore topics.

Message texts are gettext message ids (English), translated in duckline/locales.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from duckline.core import i18n
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.money import Money


@dataclass(frozen=True)
class CaseText:
    subject: str
    body: str


AMOUNT_MISMATCH, SECOND_CAPTURE, PAID_NOT_APPLIED = "amount_mismatch", "second_capture", "paid_not_applied"
APPLIED_WITHOUT_CONFIRMATION, APPLIED_LATE, REFUNDED_UNAPPLIABLE = (
    "applied_without_confirmation",
    "applied_late",
    "refunded_unappliable",
)
# Refunds made at the provider (its dashboard), not through Duckline.
REFUNDED_AT_PROVIDER, REFUNDED_AT_PROVIDER_AFTER_USE = "refunded_at_provider", "refunded_at_provider_after_use"
PARTLY_REFUNDED_AT_PROVIDER, EXTRA_REFUNDED_AT_PROVIDER = "partly_refunded_at_provider", "extra_refunded_at_provider"

TEXTS: dict[str, CaseText] = {
    AMOUNT_MISMATCH: CaseText(
        "Payment {payment} captured a different amount",
        "Order {order} expects {expected}; {provider} captured {captured}. "
        "Nothing was applied: refund the payment or settle it by hand.",
    ),
    SECOND_CAPTURE: CaseText(
        "Second payment captured for order {order}",
        "Payment {payment} succeeded after the order was already paid. Refund it.",
    ),
    PAID_NOT_APPLIED: CaseText(
        "Order {order} paid but not applied",
        "The renewal could not be applied: {reason}",
    ),
    APPLIED_WITHOUT_CONFIRMATION: CaseText(
        "Order {order} applied by reconciliation",
        "{provider} captured payment {payment} but no confirmation arrived; the renewal has been applied.",
    ),
    APPLIED_LATE: CaseText(
        "Order {order} applied by reconciliation",
        "The order was paid but not applied; the renewal has now been applied.",
    ),
    REFUNDED_UNAPPLIABLE: CaseText(
        "Order {order} refunded by reconciliation",
        "The order was paid but could not be applied ({reason}); it was refunded to the original payment method.",
    ),
    REFUNDED_AT_PROVIDER: CaseText(
        "Order {order} refunded at {provider}",
        "{provider} refunded {amount} of payment {payment} outside Duckline. Credit note {credit_note} was "
        "issued and what the order granted was taken back.",
    ),
    REFUNDED_AT_PROVIDER_AFTER_USE: CaseText(
        "Order {order} refunded at {provider}",
        "{provider} refunded {amount} of payment {payment} outside Duckline. Credit note {credit_note} was "
        "issued and the unused allowances were taken back; what the subscriber had already used cannot be.",
    ),
    PARTLY_REFUNDED_AT_PROVIDER: CaseText(
        "Order {order} partly refunded at {provider}",
        "{provider} refunded {amount} of payment {payment} outside Duckline. Credit note {credit_note} was "
        "issued; nothing the order granted was taken back. Decide whether to refund the rest.",
    ),
    EXTRA_REFUNDED_AT_PROVIDER: CaseText(
        "Extra payment for order {order} refunded at {provider}",
        "{provider} refunded {amount} of payment {payment}, money the order did not need. The order is unchanged.",
    ),
}

# Resolutions written by Duckline itself (a person's resolution is shown as they wrote it).
APPLIED_AUTOMATICALLY = "Applied automatically by reconciliation"
REFUNDED_AUTOMATICALLY = "Refunded automatically by reconciliation"
RECORDED_AUTOMATICALLY = "Recorded automatically"
REFUNDED_AT_THE_PROVIDER = "Refunded at the payment provider"
AUTOMATIC_RESOLUTIONS = frozenset(
    {APPLIED_AUTOMATICALLY, REFUNDED_AUTOMATICALLY, RECORDED_AUTOMATICALLY, REFUNDED_AT_THE_PROVIDER}
)

PROVIDER_NAMES = {"sandbox": "Sandbox", "stripe": "Stripe", "alipay": "Alipay", "wechatpay": "WeChat Pay"}

MESSAGE_IDS: tuple[str, ...] = (
    *(t.subject for t in TEXTS.values()),
    *(t.body for t in TEXTS.values()),
    *sorted(AUTOMATIC_RESOLUTIONS),
    *(name for name in PROVIDER_NAMES.values() if name != "Stripe"),  # a brand, the same everywhere
)


def money(amount: int | None, currency: str | None) -> dict[str, Any]:
    """A money parameter, as stored (a provider may report an amount we cannot read as Money)."""
    return {"amount": amount, "currency": currency}


def error(failure: DomainError) -> dict[str, Any]:
    """An error parameter: its code and the values its message needs, never the English text."""
    return {"error": failure.code, "values": {k: str(v) for k, v in failure.params.items()}}


def render(topic: str, params: dict[str, Any], language: str) -> tuple[str, str]:
    """(subject, body) of a case in `language`."""
    text = TEXTS[topic]
    values = {name: _shown(name, value, language) for name, value in params.items()}
    return (
        i18n.gettext(language, text.subject).format(**values),
        i18n.gettext(language, text.body).format(**values),
    )


def resolution(value: str | None, language: str) -> str | None:
    return i18n.gettext(language, value) if value in AUTOMATIC_RESOLUTIONS else value


def _shown(name: str, value: Any, language: str) -> Any:
    if name == "provider":
        return i18n.gettext(language, PROVIDER_NAMES.get(value, value))
    if isinstance(value, dict) and "currency" in value:
        try:
            return Money(int(value["amount"]), str(value["currency"]).upper()).format(i18n.babel_locale(language))
        except (TypeError, ValueError):
            return f"{value.get('amount')} {value.get('currency')}"
    if isinstance(value, dict) and "error" in value:
        code = ErrorCode.__members__.get(str(value["error"]).upper())
        if code is None:
            return value["error"]
        message = i18n.gettext(language, code.message)
        try:
            return message.format(**value.get("values", {}))
        except (KeyError, IndexError):
            return message
    return value
