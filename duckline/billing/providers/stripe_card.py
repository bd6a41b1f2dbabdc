"""Card payments through Stripe (PaymentIntents), with the official `stripe` library.

The payer's card never touches Duckline: the browser confirms the PaymentIntent with its
client secret (Stripe.js / Payment Element), and Duckline only ever sees Stripe's ids, the
card brand and the last four digits. A saved method is kept as the token "cus_…|pm_…" and
charged off-session (auto-renew).

Every call goes through one `stripe.StripeClient` per provider instance (no global module
state), so several configurations (accounts, test/live, a local fake in tests) can coexist.
Duckline's payment reference is Stripe's idempotency key: a retried create never makes a
second intent (Stripe keeps idempotency keys for at least 24 hours).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import stripe

from duckline.billing.order_states import PaymentMethod, PaymentStatus
from duckline.billing.providers import (
    InvalidSignature,
    PaymentRequest,
    ProviderError,
    ProviderPayment,
    RefundResult,
    WebhookAck,
    WebhookNotice,
)
from duckline.core.money import Money

if TYPE_CHECKING:
    from stripe.params import CustomerCreateParams, PaymentIntentCreateParams, RefundCreateParams

SIGNATURE_HEADER = "stripe-signature"
# What a page running Stripe.js must allow (Stripe's documented Content-Security-Policy sources).
STRIPE_JS_ORIGIN = "https://js.stripe.com"
STRIPE_HOOKS_ORIGIN = "https://hooks.stripe.com"  # 3-D Secure challenges are framed from here
STRIPE_API_ORIGIN = "https://api.stripe.com"
SAVED_METHOD_SEPARATOR = "|"
MAX_NETWORK_RETRIES = 1  # the library's own retry (same idempotency key); the caller retries beyond that
_METADATA_VALUE_LIMIT = 500  # Stripe's limit on one metadata value
_STRIPE_REFUND_REASONS: dict[str, Literal["duplicate", "fraudulent", "requested_by_customer"]] = {
    "duplicate": "duplicate",
    "fraudulent": "fraudulent",
    "requested_by_customer": "requested_by_customer",
}
_PAYER_STEPS = frozenset({"requires_payment_method", "requires_confirmation", "requires_action"})
# Stripe's search "can be up to an hour behind during outages" (normally under a minute).
SEARCH_LAG = timedelta(hours=1)

_STATUS = {
    "requires_payment_method": PaymentStatus.PENDING,
    "requires_confirmation": PaymentStatus.PENDING,
    "requires_action": PaymentStatus.REQUIRES_ACTION,
    "processing": PaymentStatus.PENDING,
    "requires_capture": PaymentStatus.PENDING,  # never asked for (automatic capture), but not a success yet
    "succeeded": PaymentStatus.SUCCEEDED,
    "canceled": PaymentStatus.CANCELLED,
}

_WEBHOOK_STATUS = {
    "payment_intent.succeeded": PaymentStatus.SUCCEEDED,
    "payment_intent.payment_failed": PaymentStatus.FAILED,
    "payment_intent.canceled": PaymentStatus.CANCELLED,
    "payment_intent.requires_action": PaymentStatus.REQUIRES_ACTION,
}


@dataclass(frozen=True)
class StripeJs:
    """What the payer's browser needs to confirm a PaymentIntent with Stripe.js (the Payment
    Element): the publishable key, where Stripe.js is loaded from, and the API it talks to."""

    publishable_key: str
    script_url: str = f"{STRIPE_JS_ORIGIN}/v3/"
    api_base: str | None = None  # the server's API base when it is not Stripe's (a local fake)

    def csp_sources(self) -> dict[str, list[str]]:
        """Origins, per CSP directive, that the page running Stripe.js must allow: Stripe's own,
        plus the origin of a Stripe.js or an API that stands in for Stripe's (tests, stripe-mock),
        whose stand-in client talks to that API as Stripe.js talks to api.stripe.com."""
        script = _origin(self.script_url)
        return {
            "script-src": _unique(STRIPE_JS_ORIGIN, script),
            "frame-src": _unique(STRIPE_JS_ORIGIN, STRIPE_HOOKS_ORIGIN, script),
            "connect-src": _unique(STRIPE_API_ORIGIN, _origin(self.api_base)),
        }


def _origin(url: str | None) -> str | None:
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def _unique(*origins: str | None) -> list[str]:
    return list(dict.fromkeys(o for o in origins if o))


class StripeCardProvider:
    name = "stripe"
    methods = frozenset({PaymentMethod.CARD})
    lookup_lag = SEARCH_LAG

    def __init__(
        self, secret_key: str, webhook_secret: str, api_base: str | None = None, timeout: float = 10.0
    ) -> None:
        self._webhook_secret = webhook_secret
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=stripe.RequestsClient(timeout=timeout),
            max_network_retries=MAX_NETWORK_RETRIES,
        )

    # --- the provider interface ------------------------------------------------------------------

    def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        params: PaymentIntentCreateParams = {
            "amount": request.amount.amount,
            "currency": request.amount.currency.lower(),
            # Cards only. API versions from 2026-09-30 (endive, the one this library pins) refuse the
            # old writable `payment_method_types`; `allowed_payment_method_types` is its replacement.
            "allowed_payment_method_types": ["card"],
            "description": request.description,
            "metadata": {"duckline_reference": request.reference},
            "expand": ["latest_charge"],
        }
        off_session = request.saved_token is not None
        if request.saved_token is not None:
            customer, payment_method = _split_token(request.saved_token)
            params["customer"], params["payment_method"] = customer, payment_method
            params["off_session"], params["confirm"] = True, True
        elif request.save_method:
            params["customer"] = self._create_customer(request)
            params["setup_future_usage"] = "off_session"
        try:
            intent = self._client.v1.payment_intents.create(
                params=params, options={"idempotency_key": request.reference}
            )
        except stripe.CardError as exc:  # the off-session confirm was declined (or needs the payer)
            return _declined(exc, request.amount)
        except stripe.StripeError as exc:
            raise _provider_error("create payment", exc) from exc
        return _payment(intent.to_dict(), on_session=not off_session)

    def query(self, provider_ref: str) -> ProviderPayment:
        try:
            intent = self._client.v1.payment_intents.retrieve(provider_ref, params={"expand": ["latest_charge"]})
        except stripe.StripeError as exc:
            raise _provider_error(f"query {provider_ref}", exc) from exc
        return _payment(intent.to_dict(), on_session=True)

    def find(self, reference: str) -> ProviderPayment | None:
        """By the metadata every intent carries (Stripe's search; references are [0-9a-z_])."""
        try:
            found = self._client.v1.payment_intents.search(
                params={"query": f"metadata['duckline_reference']:'{reference}'", "expand": ["data.latest_charge"]}
            )
        except stripe.StripeError as exc:
            raise _provider_error(f"search {reference}", exc) from exc
        intents = [intent.to_dict() for intent in found.data]
        return _payment(intents[0], on_session=True) if intents else None

    def cancel(self, provider_ref: str) -> ProviderPayment:
        try:
            intent = self._client.v1.payment_intents.cancel(provider_ref, params={"expand": ["latest_charge"]})
        except stripe.InvalidRequestError:  # not cancellable any more (succeeded, processing): say where it is
            return self.query(provider_ref)
        except stripe.StripeError as exc:
            raise _provider_error(f"cancel {provider_ref}", exc) from exc
        return _payment(intent.to_dict(), on_session=False)

    def refund(self, provider_ref: str, amount: Money, refund_reference: str, reason: str) -> RefundResult:
        params: RefundCreateParams = {
            "payment_intent": provider_ref,
            "amount": amount.amount,
            "metadata": {"duckline_reference": refund_reference, "reason": reason[:_METADATA_VALUE_LIMIT]},
        }
        if reason in _STRIPE_REFUND_REASONS:
            params["reason"] = _STRIPE_REFUND_REASONS[reason]
        try:
            refund = self._client.v1.refunds.create(params=params, options={"idempotency_key": refund_reference})
        except stripe.InvalidRequestError as exc:  # refused for good: already refunded, amount too large, …
            return RefundResult("", succeeded=False, failure_message=exc.user_message or str(exc))
        except stripe.StripeError as exc:
            raise _provider_error(f"refund {provider_ref}", exc) from exc
        succeeded = refund.status in ("succeeded", "pending")
        return RefundResult(
            refund.id,
            succeeded=succeeded,
            failure_message=None if succeeded else (refund.failure_reason or refund.status),
        )

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        signature = headers.get(SIGNATURE_HEADER)
        if not signature:
            raise InvalidSignature("missing Stripe-Signature header")
        try:  # verifies the HMAC and the timestamp (5 minutes) before the body is even parsed
            event = self._client.construct_event(body, signature, self._webhook_secret)
        except stripe.SignatureVerificationError as exc:
            raise InvalidSignature(str(exc)) from exc
        except (ValueError, TypeError, AttributeError) as exc:  # signed, but not JSON / not an event
            raise InvalidSignature(f"malformed event: {exc}") from exc
        payload = event.to_dict()
        try:
            return _notice(payload)
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidSignature(f"malformed event: {exc!r}") from exc

    def ack(self) -> WebhookAck:
        return WebhookAck()

    def detach_saved(self, token: str) -> None:
        """Detach the card from its customer: Stripe refuses to charge it from then on."""
        _, payment_method = _split_token(token)
        try:
            self._client.v1.payment_methods.detach(payment_method)
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing" or "not attached" in str(exc.user_message or exc):
                return  # gone already: what was asked for is true
            raise _provider_error(f"detach {payment_method}", exc) from exc
        except stripe.StripeError as exc:
            raise _provider_error(f"detach {payment_method}", exc) from exc

    # --- internals -------------------------------------------------------------------------------

    def _create_customer(self, request: PaymentRequest) -> str:
        params: CustomerCreateParams = {
            "description": request.description,
            "metadata": {"duckline_reference": request.reference},
        }
        try:
            customer = self._client.v1.customers.create(
                params=params, options={"idempotency_key": f"{request.reference}:customer"}
            )
        except stripe.StripeError as exc:
            raise _provider_error("create customer", exc) from exc
        return customer.id


def _split_token(token: str) -> tuple[str, str]:
    customer, sep, payment_method = token.partition(SAVED_METHOD_SEPARATOR)
    if not sep or not customer.startswith("cus_") or not payment_method.startswith("pm_"):
        raise ValueError("a saved Stripe token is 'cus_…|pm_…'")
    return customer, payment_method


def _provider_error(action: str, exc: stripe.StripeError) -> ProviderError:
    kind = type(exc).__name__
    return ProviderError(f"stripe: {action} failed ({kind}, HTTP {exc.http_status}): {exc.user_message or exc}")


def _id(value: Any) -> str | None:
    """An id, whether Stripe sent the bare id or the expanded object."""
    if isinstance(value, Mapping):
        return value.get("id")
    return value if isinstance(value, str) else None


def _card(obj: Any) -> tuple[str | None, str | None]:
    """Brand and last four of a charge (payment_method_details.card) or a payment method (card)."""
    if not isinstance(obj, Mapping):
        return None, None
    card = (obj.get("payment_method_details") or {}).get("card") or obj.get("card")
    if not isinstance(card, Mapping):
        return None, None
    return card.get("brand"), card.get("last4")


def _expiry(charge: Any) -> str | None:
    """The card's expiry as "MM/YYYY" (shown with a saved method), from a charge's card details."""
    if not isinstance(charge, Mapping):
        return None
    card = (charge.get("payment_method_details") or {}).get("card") or charge.get("card")
    if not isinstance(card, Mapping) or not card.get("exp_month") or not card.get("exp_year"):
        return None
    return f"{int(card['exp_month']):02d}/{int(card['exp_year'])}"


def _failure(error: Any) -> tuple[str | None, str | None]:
    if not isinstance(error, Mapping):
        return None, None
    return error.get("decline_code") or error.get("code"), error.get("message")


def _saved_token(intent: Mapping[str, Any]) -> str | None:
    customer, payment_method = _id(intent.get("customer")), _id(intent.get("payment_method"))
    if (
        intent.get("setup_future_usage") == "off_session"
        and intent.get("status") == "succeeded"
        and customer
        and payment_method
    ):
        return f"{customer}{SAVED_METHOD_SEPARATOR}{payment_method}"
    return None


def _payment(intent: Mapping[str, Any], on_session: bool) -> ProviderPayment:
    stripe_status = intent["status"]
    status = _STATUS.get(stripe_status, PaymentStatus.PENDING)
    failure_code, failure_message = _failure(intent.get("last_payment_error"))
    if stripe_status == "requires_payment_method" and failure_code is not None:
        status = PaymentStatus.FAILED  # the last attempt was declined; the payer may try again on the same intent
    charge = intent.get("latest_charge")
    brand, last4 = _card(charge)
    if brand is None:
        brand, last4 = _card((intent.get("last_payment_error") or {}).get("payment_method"))
    refunded = charge.get("amount_refunded", 0) if isinstance(charge, Mapping) else 0
    if (
        status is PaymentStatus.SUCCEEDED
        and refunded
        and isinstance(charge, Mapping)
        and (charge.get("refunded") or refunded >= intent.get("amount_received", 0))
    ):
        status = PaymentStatus.REFUNDED
    next_action = None
    if (
        on_session
        and stripe_status in _PAYER_STEPS
        and status is not PaymentStatus.FAILED
        and intent.get("client_secret")
    ):
        next_action = {"type": "stripe_client_secret", "client_secret": intent["client_secret"], "publishable": True}
    return ProviderPayment(
        provider_ref=intent["id"],
        status=status,
        amount=(intent.get("amount_received") or intent["amount"])
        if stripe_status == "succeeded"
        else intent["amount"],
        currency=str(intent["currency"]).upper(),
        next_action=next_action,
        card_brand=brand,
        card_last4=last4,
        failure_code=failure_code if status is PaymentStatus.FAILED else None,
        failure_message=failure_message if status is PaymentStatus.FAILED else None,
        saved_token=_saved_token(intent),
        refunded_amount=refunded,
        card_expiry=_expiry(charge),
    )


def _declined(exc: stripe.CardError, amount: Money) -> ProviderPayment:
    body: Mapping[str, Any] = exc.json_body if isinstance(exc.json_body, Mapping) else {}
    error: Mapping[str, Any] = body.get("error") or {}
    intent: Mapping[str, Any] = error.get("payment_intent") or {}
    brand, last4 = _card(intent.get("latest_charge"))
    if brand is None:
        brand, last4 = _card(
            error.get("payment_method") or (intent.get("last_payment_error") or {}).get("payment_method")
        )
    return ProviderPayment(
        provider_ref=intent.get("id") or error.get("charge") or "",
        status=PaymentStatus.FAILED,
        amount=intent.get("amount", amount.amount),
        currency=str(intent.get("currency") or amount.currency).upper(),
        card_brand=brand,
        card_last4=last4,
        failure_code=error.get("decline_code") or error.get("code") or exc.code or "card_error",
        failure_message=error.get("message") or exc.user_message,
    )


def _notice(event: dict[str, Any]) -> WebhookNotice:
    event_type: str = event["type"]
    obj: dict[str, Any] = event["data"]["object"]
    currency = obj.get("currency")
    common: dict[str, Any] = {
        "event_id": event["id"],
        "event_type": event_type,
        "currency": currency.upper() if isinstance(currency, str) else None,
        "payload": event,
    }
    if event_type in _WEBHOOK_STATUS:
        status = _WEBHOOK_STATUS[event_type]
        failure_code, _ = _failure(obj.get("last_payment_error"))
        brand, last4 = _card(obj.get("latest_charge"))
        if brand is None:
            brand, last4 = _card((obj.get("last_payment_error") or {}).get("payment_method"))
        return WebhookNotice(
            **common,
            provider_ref=obj["id"],
            reference=(obj.get("metadata") or {}).get("duckline_reference"),
            status=status,
            amount=obj.get("amount_received") if status is PaymentStatus.SUCCEEDED else obj.get("amount"),
            card_brand=brand,
            card_last4=last4,
            failure_code=failure_code if status is PaymentStatus.FAILED else None,
            saved_token=_saved_token(obj),
            card_expiry=_expiry(obj.get("latest_charge")),
        )
    if event_type == "charge.refunded":
        brand, last4 = _card(obj)
        refunded = int(obj.get("amount_refunded") or 0)
        captured = int(obj.get("amount_captured", obj["amount"]))
        fully = obj.get("refunded") is True or refunded >= captured
        return WebhookNotice(
            **common,
            provider_ref=_id(obj.get("payment_intent")) or obj["id"],
            status=PaymentStatus.REFUNDED if fully else PaymentStatus.SUCCEEDED,
            amount=captured,
            refunded_amount=refunded,
            card_brand=brand,
            card_last4=last4,
        )
    # Anything else (charge.succeeded, payment_intent.created, …): reported, and ignored by the service.
    about = _id(obj.get("payment_intent")) if obj.get("object") != "payment_intent" else None
    return WebhookNotice(**common, provider_ref=about or obj.get("id") or "", status=PaymentStatus.PENDING, amount=None)
