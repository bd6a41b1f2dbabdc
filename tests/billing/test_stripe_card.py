"""StripeCardProvider against a local fake of the Stripe HTTP API (Stripe itself is not reachable).

The fake speaks the wire protocol the official library uses: form-encoded POST bodies with
bracketed keys (metadata[x]=…, expand[0]=…), Bearer auth, the Idempotency-Key header (a repeated
key replays the first response, a different body under the same key is an idempotency_error),
and Stripe's error envelope (402 card_error with the PaymentIntent attached, 400/404/429/500).
Webhooks are signed here by hand, exactly as Stripe signs them, not with the library's helper.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from duckline.billing.order_states import PaymentMethod, PaymentStatus
from duckline.billing.providers import InvalidSignature, PaymentRequest, ProviderError, WebhookAck
from duckline.billing.providers.stripe_card import StripeCardProvider, StripeJs
from duckline.core.money import Money

SECRET_KEY = "sk_test_duckline_fake"
WEBHOOK_SECRET = "whsec_duckline_test_secret"

# Stripe's test payment methods the fake knows: (brand, last4, decline_code or None)
FAKE_PAYMENT_METHODS = {
    "pm_card_visa": ("visa", "4242", None),
    "pm_card_mastercard": ("mastercard", "4444", None),
    "pm_card_chargeDeclinedInsufficientFunds": ("visa", "9995", "insufficient_funds"),
    "pm_card_chargeDeclined": ("visa", "0002", "generic_decline"),
}


# --- the fake Stripe API -----------------------------------------------------------------------


def decode_form(raw: str) -> dict[str, Any]:
    """Stripe's form encoding back to nested dicts and lists: a[b]=1&c[0]=x -> {"a": {"b": "1"}, "c": ["x"]}."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        parts = [key.split("[", 1)[0], *re.findall(r"\[([^\]]*)\]", key)]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def listify(value: Any) -> Any:
        if isinstance(value, dict):
            if value and all(k.isdigit() for k in value):
                return [listify(value[k]) for k in sorted(value, key=int)]
            return {k: listify(v) for k, v in value.items()}
        return value

    return listify(root)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, Any]


class StripeError(Exception):
    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.status, self.error = status, error


@dataclass
class FakeStripe:
    secret_key: str = SECRET_KEY
    base: str = ""  # http://127.0.0.1:<port>, once serving
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    detached: set[str] = field(default_factory=set)  # payment methods detached from their customer
    requests: list[Recorded] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # HTTP statuses to answer with, one per request
    delay: float = 0.0
    _idempotent: dict[str, tuple[str, int, bytes]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    # -- routing --

    def handle(self, method: str, path: str, headers: dict[str, str], raw: str) -> tuple[int, bytes, dict[str, str]]:
        params = decode_form(raw)
        with self.lock:
            self.requests.append(Recorded(method, path, headers, params))
            if headers.get("authorization") != f"Bearer {self.secret_key}":
                return self._error(401, {"type": "invalid_request_error", "message": "Invalid API Key provided"})
            if self.fail_next:
                status = self.fail_next.pop(0)
                kind = "rate_limit_error" if status == 429 else "api_error"
                return self._error(
                    status,
                    {"type": kind, "code": "rate_limit" if status == 429 else None, "message": f"fake outage {status}"},
                )
            key = headers.get("idempotency-key") if method == "POST" else None
            fingerprint = f"{path}?{json.dumps(params, sort_keys=True)}"
            if key is not None and key in self._idempotent:
                seen, status, body = self._idempotent[key]
                if seen != fingerprint:
                    return self._error(
                        400,
                        {
                            "type": "idempotency_error",
                            "message": "Keys for idempotent requests can only be used with the "
                            "same parameters they were first used with.",
                        },
                    )
                return status, body, {"idempotent-replayed": "true"}
            result: tuple[int, bytes, dict[str, str]]
            try:
                status, obj = self._route(method, path, params)
                result = status, json.dumps(obj).encode(), {}
            except StripeError as exc:
                result = self._error(exc.status, exc.error)
            if key is not None and result[0] != 500:
                self._idempotent[key] = (fingerprint, result[0], result[1])
            return result

    @staticmethod
    def _error(status: int, error: dict[str, Any]) -> tuple[int, bytes, dict[str, str]]:
        return status, json.dumps({"error": error}).encode(), {}

    def _route(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        expand = params.get("expand", [])
        if method == "POST" and path == "/v1/customers":
            return 200, self._create_customer(params)
        if method == "POST" and path == "/v1/payment_intents":
            return 200, self._create_intent(params, expand)
        if method == "GET" and path == "/v1/payment_intents/search":
            return 200, self._search_intents(params.get("query", ""), expand)
        if method == "POST" and (m := re.fullmatch(r"/v1/payment_intents/([^/]+)/cancel", path)):
            return 200, self._cancel_intent(m.group(1), expand)
        if method == "GET" and (m := re.fullmatch(r"/v1/payment_intents/([^/]+)", path)):
            return 200, self.view(self._intent(m.group(1)), expand)
        if method == "POST" and path == "/v1/refunds":
            return 200, self._create_refund(params)
        if method == "POST" and (m := re.fullmatch(r"/v1/payment_methods/([^/]+)/detach", path)):
            return 200, self._detach(m.group(1))
        raise StripeError(404, {"type": "invalid_request_error", "message": f"Unrecognized request URL ({path})"})

    # -- resources --

    def _detach(self, payment_method: str) -> dict[str, Any]:
        """Stripe answers 400 for a method attached to no customer (never attached, or detached)."""
        if payment_method not in FAKE_PAYMENT_METHODS or payment_method in self.detached:
            raise StripeError(
                400,
                {
                    "type": "invalid_request_error",
                    "message": f"The payment method {payment_method} is not attached to a customer.",
                },
            )
        self.detached.add(payment_method)
        brand, last4, _ = FAKE_PAYMENT_METHODS[payment_method]
        return {
            "id": payment_method,
            "object": "payment_method",
            "type": "card",
            "customer": None,
            "card": {"brand": brand, "last4": last4, "exp_month": 12, "exp_year": 2034},
        }

    def _create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = {
            "id": f"cus_{secrets.token_hex(7)}",
            "object": "customer",
            "created": int(time.time()),
            "description": params.get("description"),
            "email": params.get("email"),
            "metadata": params.get("metadata", {}),
            "livemode": False,
        }
        self.customers[customer["id"]] = customer
        return customer

    def _create_intent(self, params: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        if "payment_method_types" in params:  # what API version 2026-09-30.endive and later answer
            raise StripeError(
                400,
                {
                    "type": "invalid_request_error",
                    "code": "payment_method_types_no_longer_supported",
                    "param": "payment_method_types",
                    "message": "payment_method_types is no longer supported",
                },
            )
        for required in ("amount", "currency"):
            if required not in params:
                raise StripeError(
                    400,
                    {
                        "type": "invalid_request_error",
                        "code": "parameter_missing",
                        "param": required,
                        "message": f"Missing required param: {required}.",
                    },
                )
        if params.get("customer") and params["customer"] not in self.customers:
            raise StripeError(
                400,
                {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "param": "customer",
                    "message": f"No such customer: '{params['customer']}'",
                },
            )
        pi_id = f"pi_{secrets.token_hex(12)}"
        intent: dict[str, Any] = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": int(params["amount"]),
            "amount_received": 0,
            "currency": params["currency"],
            "status": "requires_payment_method",
            "client_secret": f"{pi_id}_secret_{secrets.token_hex(12)}",
            "created": int(time.time()),
            "customer": params.get("customer"),
            "description": params.get("description"),
            "metadata": params.get("metadata", {}),
            "payment_method": params.get("payment_method"),
            "payment_method_types": params.get("allowed_payment_method_types", ["card"]),
            "setup_future_usage": params.get("setup_future_usage"),
            "latest_charge": None,
            "last_payment_error": None,
            "next_action": None,
            "livemode": False,
            "capture_method": "automatic",
            "confirmation_method": "automatic",
        }
        self.intents[pi_id] = intent
        if params.get("confirm") == "true":
            if not intent["payment_method"]:
                raise StripeError(
                    400,
                    {
                        "type": "invalid_request_error",
                        "param": "payment_method",
                        "message": "You cannot confirm this PaymentIntent without a payment method.",
                    },
                )
            self.confirm(pi_id, intent["payment_method"], off_session=params.get("off_session") == "true")
        return self.view(intent, expand)

    def confirm(self, pi_id: str, payment_method: str, off_session: bool = False) -> None:
        """Stripe.js confirming in the browser, or the server confirming off-session."""
        with self.lock:
            intent = self._intent(pi_id)
            brand, last4, decline = FAKE_PAYMENT_METHODS[payment_method]
            charge = self._charge(intent, payment_method, brand, last4, paid=decline is None)
            intent.update(payment_method=payment_method, latest_charge=charge["id"])
            if decline is None:
                intent.update(status="succeeded", amount_received=intent["amount"], last_payment_error=None)
                return
            error = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": decline,
                "message": "Your card was declined.",
                "charge": charge["id"],
                "payment_method": {
                    "id": payment_method,
                    "object": "payment_method",
                    "type": "card",
                    "card": {"brand": brand, "last4": last4},
                },
            }
            intent.update(status="requires_payment_method", last_payment_error=error)
            if off_session:
                raise StripeError(402, {**error, "payment_intent": self.view(intent, [])})

    def _search_intents(self, query: str, expand: list[str]) -> dict[str, Any]:
        """Stripe's search, for the one clause Duckline sends: metadata['key']:'value'."""
        clause = re.fullmatch(r"metadata\['([^']+)'\]:'([^']*)'", query.strip())
        if clause is None:
            raise StripeError(400, {"type": "invalid_request_error", "message": f"unsupported query {query!r}"})
        key, value = clause.groups()
        each = [e.removeprefix("data.") for e in expand if e.startswith("data.")]
        found = [self.view(i, each) for i in self.intents.values() if i["metadata"].get(key) == value]
        return {
            "object": "search_result",
            "data": found,
            "has_more": False,
            "next_page": None,
            "url": "/v1/payment_intents/search",
        }

    def _cancel_intent(self, pi_id: str, expand: list[str]) -> dict[str, Any]:
        intent = self._intent(pi_id)
        if intent["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
            raise StripeError(
                400,
                {
                    "type": "invalid_request_error",
                    "code": "payment_intent_unexpected_state",
                    "message": f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}.",
                },
            )
        intent.update(status="canceled", cancellation_reason="requested_by_customer", next_action=None)
        return self.view(intent, expand)

    def require_action(self, pi_id: str) -> None:
        with self.lock:
            self._intent(pi_id).update(
                status="requires_action", next_action={"type": "use_stripe_sdk", "use_stripe_sdk": {}}
            )

    def _charge(
        self, intent: dict[str, Any], payment_method: str, brand: str, last4: str, paid: bool
    ) -> dict[str, Any]:
        charge = {
            "id": f"ch_{secrets.token_hex(12)}",
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if paid else 0,
            "amount_refunded": 0,
            "refunded": False,
            "captured": paid,
            "paid": paid,
            "status": "succeeded" if paid else "failed",
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "payment_method": payment_method,
            "payment_method_details": {
                "type": "card",
                "card": {
                    "brand": brand,
                    "last4": last4,
                    "exp_month": 12,
                    "exp_year": 2034,
                    "funding": "credit",
                    "country": "HK",
                },
            },
            "livemode": False,
        }
        self.charges[charge["id"]] = charge
        return charge

    def _create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        intent = self._intent(params.get("payment_intent", ""))
        charge = self.charges.get(intent["latest_charge"] or "")
        if intent["status"] != "succeeded" or charge is None:
            raise StripeError(
                400,
                {
                    "type": "invalid_request_error",
                    "code": "charge_not_refundable",
                    "message": f"This PaymentIntent ({intent['id']}) does not have a successful charge to refund.",
                },
            )
        left = charge["amount_captured"] - charge["amount_refunded"]
        amount = int(params.get("amount", left))
        if left == 0:
            raise StripeError(
                400,
                {
                    "type": "invalid_request_error",
                    "code": "charge_already_refunded",
                    "message": f"Charge {charge['id']} has already been refunded.",
                },
            )
        if amount > left:
            raise StripeError(
                400,
                {
                    "type": "invalid_request_error",
                    "code": "amount_too_large",
                    "param": "amount",
                    "message": f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                },
            )
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        refund = {
            "id": f"re_{secrets.token_hex(12)}",
            "object": "refund",
            "amount": amount,
            "currency": charge["currency"],
            "charge": charge["id"],
            "payment_intent": intent["id"],
            "metadata": params.get("metadata", {}),
            "reason": params.get("reason"),
            "status": "succeeded",
            "created": int(time.time()),
        }
        self.refunds[refund["id"]] = refund
        return refund

    def _intent(self, pi_id: str) -> dict[str, Any]:
        if pi_id not in self.intents:
            raise StripeError(
                404,
                {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "param": "intent",
                    "message": f"No such payment_intent: '{pi_id}'",
                },
            )
        return self.intents[pi_id]

    def view(self, intent: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        shown = json.loads(json.dumps(intent))
        if "latest_charge" in expand and shown["latest_charge"]:
            shown["latest_charge"] = json.loads(json.dumps(self.charges[shown["latest_charge"]]))
        return shown

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]


def _handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            if fake.delay:
                time.sleep(fake.delay)
            url = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length).decode() if length else url.query
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body, extra = fake.handle(self.command, url.path, headers, raw)
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.send_header("request-id", f"req_{secrets.token_hex(7)}")
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout test)
                self.close_connection = True

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    fake = FakeStripe()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def provider(fake: FakeStripe) -> StripeCardProvider:
    return StripeCardProvider(SECRET_KEY, WEBHOOK_SECRET, api_base=fake.base, timeout=5.0)


def request(reference: str = "pay_42", amount: int = 12800, **kwargs: Any) -> PaymentRequest:
    return PaymentRequest(
        reference=reference,
        amount=Money(amount, "HKD"),
        description="Duckline 30-day plan 852-5550-1234",
        method=PaymentMethod.CARD,
        return_url="https://duckline.test/pay/return",
        notify_url="https://duckline.test/wh",
        **kwargs,
    )


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- create_payment ------------------------------------------------------------------------------


def test_create_returns_a_pending_intent_with_its_client_secret(fake: FakeStripe, provider: StripeCardProvider) -> None:
    payment = provider.create_payment(request())

    assert payment.status is PaymentStatus.PENDING
    assert payment.provider_ref.startswith("pi_") and payment.provider_ref in fake.intents
    intent = fake.intents[payment.provider_ref]
    assert payment.next_action == {
        "type": "stripe_client_secret",
        "client_secret": intent["client_secret"],
        "publishable": True,
    }
    assert (payment.amount, payment.currency) == (12800, "HKD")
    assert payment.card_brand is None and payment.failure_code is None and payment.saved_token is None

    [call] = fake.calls("POST", "/v1/payment_intents")
    assert call.params["amount"] == "12800"
    assert call.params["currency"] == "hkd"  # Stripe wants lower case
    assert call.params["metadata"] == {"duckline_reference": "pay_42"}
    assert call.params["description"] == "Duckline 30-day plan 852-5550-1234"
    assert call.params["allowed_payment_method_types"] == ["card"]
    assert call.params["expand"] == ["latest_charge"]
    assert "confirm" not in call.params and "off_session" not in call.params and "customer" not in call.params
    assert call.headers["idempotency-key"] == "pay_42"
    assert call.headers["authorization"] == f"Bearer {SECRET_KEY}"
    assert fake.customers == {}


def test_the_same_reference_twice_makes_one_intent(fake: FakeStripe, provider: StripeCardProvider) -> None:
    first = provider.create_payment(request("pay_7"))
    second = provider.create_payment(request("pay_7"))
    other = provider.create_payment(request("pay_8"))

    assert second.provider_ref == first.provider_ref
    assert second.next_action == first.next_action
    assert other.provider_ref != first.provider_ref
    assert len(fake.intents) == 2
    assert [c.headers["idempotency-key"] for c in fake.calls("POST", "/v1/payment_intents")] == [
        "pay_7",
        "pay_7",
        "pay_8",
    ]


def test_a_server_error_is_retried_once_with_the_same_key(fake: FakeStripe, provider: StripeCardProvider) -> None:
    fake.fail_next.append(500)

    payment = provider.create_payment(request("pay_9"))

    calls = fake.calls("POST", "/v1/payment_intents")
    assert len(calls) == 2 and {c.headers["idempotency-key"] for c in calls} == {"pay_9"}
    assert list(fake.intents) == [payment.provider_ref]


def test_off_session_saved_card_that_succeeds(fake: FakeStripe, provider: StripeCardProvider) -> None:
    customer = fake._create_customer({})["id"]

    payment = provider.create_payment(request("pay_renew_1", saved_token=f"{customer}|pm_card_mastercard"))

    assert payment.status is PaymentStatus.SUCCEEDED
    assert (payment.card_brand, payment.card_last4) == ("mastercard", "4444")
    assert payment.amount == 12800 and payment.next_action is None
    [call] = fake.calls("POST", "/v1/payment_intents")
    assert call.params["customer"] == customer
    assert call.params["payment_method"] == "pm_card_mastercard"
    assert call.params["off_session"] == "true" and call.params["confirm"] == "true"
    assert "setup_future_usage" not in call.params


def test_off_session_decline_is_failed_with_the_decline_code(fake: FakeStripe, provider: StripeCardProvider) -> None:
    customer = fake._create_customer({})["id"]

    payment = provider.create_payment(
        request("pay_renew_2", saved_token=f"{customer}|pm_card_chargeDeclinedInsufficientFunds")
    )

    assert payment.status is PaymentStatus.FAILED
    assert payment.failure_code == "insufficient_funds"  # decline_code wins over the generic card_declined
    assert payment.failure_message == "Your card was declined."
    [intent] = fake.intents.values()
    assert payment.provider_ref == intent["id"]
    assert (payment.card_brand, payment.card_last4) == ("visa", "9995")
    assert payment.next_action is None and payment.amount == 12800 and payment.currency == "HKD"

    # Asking later tells the same story: the intent is back to requires_payment_method with the error.
    later = provider.query(payment.provider_ref)
    assert later.status is PaymentStatus.FAILED and later.failure_code == "insufficient_funds"
    assert later.next_action is None


def test_a_malformed_saved_token_is_refused_before_calling_stripe(
    fake: FakeStripe, provider: StripeCardProvider
) -> None:
    with pytest.raises(ValueError, match="cus_"):
        provider.create_payment(request(saved_token="pm_card_visa"))
    assert fake.requests == []


def test_save_method_creates_a_customer_and_yields_a_reusable_token(
    fake: FakeStripe, provider: StripeCardProvider
) -> None:
    payment = provider.create_payment(request("pay_save", save_method=True))

    [customer] = fake.customers.values()
    assert customer["metadata"] == {"duckline_reference": "pay_save"}
    [call] = fake.calls("POST", "/v1/payment_intents")
    assert call.params["customer"] == customer["id"]
    assert call.params["setup_future_usage"] == "off_session"
    assert payment.status is PaymentStatus.PENDING and payment.saved_token is None

    # a retry of the same attempt reuses the customer as well as the intent
    assert provider.create_payment(request("pay_save", save_method=True)).provider_ref == payment.provider_ref
    assert len(fake.customers) == 1 and len(fake.intents) == 1

    fake.confirm(payment.provider_ref, "pm_card_visa")  # the payer confirms in the browser
    paid = provider.query(payment.provider_ref)
    assert paid.status is PaymentStatus.SUCCEEDED
    assert paid.saved_token == f"{customer['id']}|pm_card_visa"

    renewal = provider.create_payment(request("pay_renew_3", saved_token=paid.saved_token))
    assert renewal.status is PaymentStatus.SUCCEEDED and renewal.card_last4 == "4242"


def test_a_saved_card_has_its_expiry_and_is_detached_once_removed(
    fake: FakeStripe, provider: StripeCardProvider
) -> None:
    payment = provider.create_payment(request("pay_keep", save_method=True))
    fake.confirm(payment.provider_ref, "pm_card_visa")
    paid = provider.query(payment.provider_ref)
    assert paid.saved_token is not None and paid.card_expiry == "12/2034"

    provider.detach_saved(paid.saved_token)

    assert fake.detached == {"pm_card_visa"}
    [call] = fake.calls("POST", "/v1/payment_methods/pm_card_visa/detach")
    assert call.params == {}
    provider.detach_saved(paid.saved_token)  # already detached: what was asked for is true
    fake.fail_next.append(500)
    fake.fail_next.append(500)  # the library retries once
    with pytest.raises(ProviderError):
        provider.detach_saved("cus_x|pm_card_mastercard")


# --- query ---------------------------------------------------------------------------------------


def test_query_after_the_payer_paid(fake: FakeStripe, provider: StripeCardProvider) -> None:
    payment = provider.create_payment(request())
    assert provider.query(payment.provider_ref).status is PaymentStatus.PENDING

    fake.confirm(payment.provider_ref, "pm_card_visa")
    paid = provider.query(payment.provider_ref)

    assert paid.status is PaymentStatus.SUCCEEDED
    assert (paid.card_brand, paid.card_last4) == ("visa", "4242")
    assert (paid.amount, paid.currency, paid.refunded_amount) == (12800, "HKD", 0)
    assert paid.next_action is None and paid.saved_token is None
    get = fake.calls("GET", f"/v1/payment_intents/{payment.provider_ref}")[-1]
    assert get.params == {"expand": ["latest_charge"]}


def test_query_maps_requires_action_and_an_on_session_decline(fake: FakeStripe, provider: StripeCardProvider) -> None:
    payment = provider.create_payment(request())
    fake.require_action(payment.provider_ref)

    challenged = provider.query(payment.provider_ref)
    assert challenged.status is PaymentStatus.REQUIRES_ACTION
    assert challenged.next_action is not None and challenged.next_action["type"] == "stripe_client_secret"

    fake.confirm(payment.provider_ref, "pm_card_chargeDeclined")
    declined = provider.query(payment.provider_ref)
    assert declined.status is PaymentStatus.FAILED
    assert declined.failure_code == "generic_decline"
    assert (declined.card_brand, declined.card_last4) == ("visa", "0002")


def test_query_of_an_unknown_intent_is_a_provider_error(fake: FakeStripe, provider: StripeCardProvider) -> None:
    with pytest.raises(ProviderError, match=r"No such payment_intent"):
        provider.query("pi_missing")


# --- refund --------------------------------------------------------------------------------------


def test_partial_then_full_refund(fake: FakeStripe, provider: StripeCardProvider) -> None:
    payment = provider.create_payment(request())
    fake.confirm(payment.provider_ref, "pm_card_visa")

    part = provider.refund(payment.provider_ref, Money(3000, "HKD"), "refund_1", "requested_by_customer")
    assert part.succeeded and part.provider_ref in fake.refunds
    [call] = fake.calls("POST", "/v1/refunds")
    assert call.params["payment_intent"] == payment.provider_ref and call.params["amount"] == "3000"
    assert call.params["reason"] == "requested_by_customer"
    assert call.params["metadata"] == {"duckline_reference": "refund_1", "reason": "requested_by_customer"}
    assert call.headers["idempotency-key"] == "refund_1"

    after_part = provider.query(payment.provider_ref)
    assert after_part.status is PaymentStatus.SUCCEEDED and after_part.refunded_amount == 3000

    again = provider.refund(payment.provider_ref, Money(3000, "HKD"), "refund_1", "requested_by_customer")
    assert again.provider_ref == part.provider_ref  # the same refund, not a second one
    assert len(fake.refunds) == 1

    rest = provider.refund(payment.provider_ref, Money(9800, "HKD"), "refund_2", "line cancelled in cooling-off")
    assert rest.succeeded and rest.provider_ref != part.provider_ref
    assert "reason" not in fake.calls("POST", "/v1/refunds")[-1].params  # free text is not one of Stripe's reasons

    done = provider.query(payment.provider_ref)
    assert done.status is PaymentStatus.REFUNDED and done.refunded_amount == 12800


def test_refund_beyond_what_is_left_is_refused(fake: FakeStripe, provider: StripeCardProvider) -> None:
    payment = provider.create_payment(request())
    fake.confirm(payment.provider_ref, "pm_card_visa")

    result = provider.refund(payment.provider_ref, Money(20000, "HKD"), "refund_big", "requested_by_customer")

    assert not result.succeeded
    assert result.failure_message is not None and "greater than unrefunded amount" in result.failure_message
    assert fake.refunds == {}


# --- outages -------------------------------------------------------------------------------------


def test_connection_refused_is_a_provider_error() -> None:
    provider = StripeCardProvider(SECRET_KEY, WEBHOOK_SECRET, api_base=f"http://127.0.0.1:{closed_port()}", timeout=2.0)
    with pytest.raises(ProviderError, match="APIConnectionError"):
        provider.create_payment(request())
    with pytest.raises(ProviderError):
        provider.query("pi_123")
    with pytest.raises(ProviderError):
        provider.refund("pi_123", Money(100, "HKD"), "refund_x", "requested_by_customer")


@pytest.mark.parametrize("statuses", [[500, 500], [429], [503, 502]])
def test_server_errors_and_rate_limits_are_provider_errors(
    fake: FakeStripe, provider: StripeCardProvider, statuses: list[int]
) -> None:
    fake.fail_next.extend(statuses)
    with pytest.raises(ProviderError):
        provider.create_payment(request())
    assert fake.intents == {}
    assert provider.create_payment(request()).status is PaymentStatus.PENDING  # the retry later works


def test_a_slow_stripe_times_out_as_a_provider_error(fake: FakeStripe) -> None:
    provider = StripeCardProvider(SECRET_KEY, WEBHOOK_SECRET, api_base=fake.base, timeout=0.2)
    fake.delay = 0.6
    with pytest.raises(ProviderError, match="APIConnectionError"):
        provider.query("pi_anything")


def test_two_configurations_coexist(fake: FakeStripe, provider: StripeCardProvider) -> None:
    wrong = StripeCardProvider("sk_test_other_account", WEBHOOK_SECRET, api_base=fake.base)

    with pytest.raises(ProviderError, match="AuthenticationError"):
        wrong.create_payment(request("pay_a"))
    assert provider.create_payment(request("pay_b")).status is PaymentStatus.PENDING
    assert [r.headers["authorization"] for r in fake.requests] == [
        "Bearer sk_test_other_account",
        f"Bearer {SECRET_KEY}",
    ]


# --- webhooks ------------------------------------------------------------------------------------


@pytest.fixture
def hooks() -> StripeCardProvider:
    """Webhook parsing needs no network: this provider's API base is a closed port."""
    return StripeCardProvider(SECRET_KEY, WEBHOOK_SECRET, api_base=f"http://127.0.0.1:{closed_port()}")


def stripe_signature(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def event(event_type: str, obj: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
    ).encode()


def intent_obj(status: str = "succeeded", **extra: Any) -> dict[str, Any]:
    return {
        "id": "pi_3Webhook",
        "object": "payment_intent",
        "amount": 12800,
        "amount_received": 12800 if status == "succeeded" else 0,
        "currency": "hkd",
        "status": status,
        "client_secret": "pi_3Webhook_secret_x",
        "customer": None,
        "payment_method": "pm_1Card",
        "latest_charge": "ch_3Webhook",
        "last_payment_error": None,
        "setup_future_usage": None,
        "metadata": {"duckline_reference": "pay_42"},
        **extra,
    }


def test_webhook_payment_succeeded(hooks: StripeCardProvider) -> None:
    body = event("payment_intent.succeeded", intent_obj(customer="cus_Saved", setup_future_usage="off_session"))

    notice = hooks.parse_webhook({"stripe-signature": stripe_signature(body)}, body)

    sent = json.loads(body)
    assert notice.event_id == sent["id"] and notice.event_type == "payment_intent.succeeded"
    assert notice.provider_ref == "pi_3Webhook"
    assert notice.status is PaymentStatus.SUCCEEDED
    assert (notice.amount, notice.currency) == (12800, "HKD")
    assert notice.saved_token == "cus_Saved|pm_1Card"
    assert notice.payload == sent


def test_webhook_payment_failed_cancelled_and_requires_action(hooks: StripeCardProvider) -> None:
    failed = event(
        "payment_intent.payment_failed",
        intent_obj(
            "requires_payment_method",
            last_payment_error={
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "stolen_card",
                "message": "Your card was declined.",
                "payment_method": {
                    "id": "pm_1",
                    "object": "payment_method",
                    "type": "card",
                    "card": {"brand": "amex", "last4": "0005"},
                },
            },
        ),
    )
    notice = hooks.parse_webhook({"stripe-signature": stripe_signature(failed)}, failed)
    assert notice.status is PaymentStatus.FAILED and notice.failure_code == "stolen_card"
    assert (notice.card_brand, notice.card_last4) == ("amex", "0005")

    cancelled = event("payment_intent.canceled", intent_obj("canceled"))
    assert (
        hooks.parse_webhook({"stripe-signature": stripe_signature(cancelled)}, cancelled).status
        is PaymentStatus.CANCELLED
    )

    action = event("payment_intent.requires_action", intent_obj("requires_action"))
    notice = hooks.parse_webhook({"stripe-signature": stripe_signature(action)}, action)
    assert notice.status is PaymentStatus.REQUIRES_ACTION and notice.failure_code is None


@pytest.mark.parametrize(("refunded", "status"), [(3000, PaymentStatus.SUCCEEDED), (12800, PaymentStatus.REFUNDED)])
def test_webhook_charge_refunded(hooks: StripeCardProvider, refunded: int, status: PaymentStatus) -> None:
    body = event(
        "charge.refunded",
        {
            "id": "ch_3Webhook",
            "object": "charge",
            "amount": 12800,
            "amount_captured": 12800,
            "amount_refunded": refunded,
            "refunded": refunded == 12800,
            "currency": "hkd",
            "payment_intent": "pi_3Webhook",
            "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}},
        },
    )

    notice = hooks.parse_webhook({"stripe-signature": stripe_signature(body)}, body)

    assert notice.provider_ref == "pi_3Webhook"
    assert notice.status is status and notice.refunded_amount == refunded
    assert (notice.amount, notice.currency) == (12800, "HKD")
    assert (notice.card_brand, notice.card_last4) == ("visa", "4242")


def test_webhook_of_another_type_is_passed_on_as_pending(hooks: StripeCardProvider) -> None:
    body = event(
        "charge.succeeded",
        {"id": "ch_1", "object": "charge", "amount": 12800, "currency": "hkd", "payment_intent": "pi_3Webhook"},
    )
    notice = hooks.parse_webhook({"stripe-signature": stripe_signature(body)}, body)
    assert notice.event_type == "charge.succeeded" and notice.status is PaymentStatus.PENDING
    assert notice.provider_ref == "pi_3Webhook" and notice.amount is None


def test_webhook_signed_during_a_secret_rotation_is_accepted(hooks: StripeCardProvider) -> None:
    body = event("payment_intent.succeeded", intent_obj())
    t = int(time.time())
    old = stripe_signature(body, "whsec_old", t).split(",")[1]
    header = f"t={t},{old},{stripe_signature(body, timestamp=t).split(',')[1]},v0=deadbeef"
    assert hooks.parse_webhook({"stripe-signature": header}, body).status is PaymentStatus.SUCCEEDED


@pytest.mark.parametrize(
    "case", ["wrong secret", "modified body", "missing header", "empty header", "too old", "garbage header", "no v1"]
)
def test_webhook_that_does_not_verify_is_rejected(hooks: StripeCardProvider, case: str) -> None:
    body = event("payment_intent.succeeded", intent_obj())
    headers = {"stripe-signature": stripe_signature(body)}
    if case == "wrong secret":
        headers = {"stripe-signature": stripe_signature(body, "whsec_someone_else")}
    elif case == "modified body":
        body = body.replace(b'"amount": 12800', b'"amount": 1')
        assert b'"amount": 1,' in body
    elif case == "missing header":
        headers = {"content-type": "application/json"}
    elif case == "empty header":
        headers = {"stripe-signature": ""}
    elif case == "too old":
        headers = {"stripe-signature": stripe_signature(body, timestamp=int(time.time()) - 301)}
    elif case == "garbage header":
        headers = {"stripe-signature": "t=yesterday,v1=abc"}
    elif case == "no v1":
        headers = {"stripe-signature": stripe_signature(body).replace("v1=", "v0=")}

    with pytest.raises(InvalidSignature):
        hooks.parse_webhook(headers, body)


def test_a_signed_body_that_is_not_an_event_is_rejected(hooks: StripeCardProvider) -> None:
    for body in (b"not json", b"[1, 2]"):
        with pytest.raises(InvalidSignature):
            hooks.parse_webhook({"stripe-signature": stripe_signature(body)}, body)


def test_ack_is_the_default() -> None:
    assert StripeCardProvider(SECRET_KEY, WEBHOOK_SECRET).ack() == WebhookAck()


# --- the payer's browser ---------------------------------------------------------------------------


def test_stripe_js_needs_stripe_s_documented_origins() -> None:
    assert StripeJs("pk_test_x").csp_sources() == {
        "script-src": ["https://js.stripe.com"],
        "frame-src": ["https://js.stripe.com", "https://hooks.stripe.com"],
        "connect-src": ["https://api.stripe.com"],
    }


def test_a_stand_in_for_stripe_js_and_its_api_is_allowed_too() -> None:
    local = StripeJs("pk_test_x", "http://127.0.0.1:4010/v3/?v=1", api_base="http://127.0.0.1:4010/")

    assert local.csp_sources() == {
        "script-src": ["https://js.stripe.com", "http://127.0.0.1:4010"],
        "frame-src": ["https://js.stripe.com", "https://hooks.stripe.com", "http://127.0.0.1:4010"],
        "connect-src": ["https://api.stripe.com", "http://127.0.0.1:4010"],
    }
    # Stripe's own URLs add nothing twice; a URL that is not http(s) adds nothing at all.
    assert StripeJs("pk_x", "https://js.stripe.com/v3/", "https://api.stripe.com").csp_sources() == (
        StripeJs("pk_x", "javascript:alert(1)", "").csp_sources()
    )


# --- by our reference, and cancelling ---------------------------------------------------------------


def test_find_by_our_reference_sees_an_intent_whose_create_answer_was_lost(
    fake: FakeStripe, provider: StripeCardProvider
) -> None:
    customer = provider._client.v1.customers.create(params={}).id
    made = provider.create_payment(request("pay_lost", saved_token=f"{customer}|pm_card_visa"))

    found = provider.find("pay_lost")

    assert found is not None and found.provider_ref == made.provider_ref
    assert (found.status, found.amount, found.card_last4) == (PaymentStatus.SUCCEEDED, 12800, "4242")
    [search] = fake.calls("GET", "/v1/payment_intents/search")
    assert search.params["query"] == "metadata['duckline_reference']:'pay_lost'"
    assert provider.find("pay_never_sent") is None


def test_cancel_stops_an_open_intent_and_reports_a_paid_one_as_paid(
    fake: FakeStripe, provider: StripeCardProvider
) -> None:
    open_one = provider.create_payment(request("pay_open"))
    paid = provider.create_payment(request("pay_paid"))
    fake.confirm(paid.provider_ref, "pm_card_visa")

    assert provider.cancel(open_one.provider_ref).status is PaymentStatus.CANCELLED
    assert fake.intents[open_one.provider_ref]["status"] == "canceled"
    assert provider.cancel(paid.provider_ref).status is PaymentStatus.SUCCEEDED
    assert fake.intents[paid.provider_ref]["status"] == "succeeded"


def test_a_webhook_names_our_reference() -> None:
    hooks = StripeCardProvider(SECRET_KEY, WEBHOOK_SECRET, api_base=f"http://127.0.0.1:{closed_port()}")
    body = event("payment_intent.succeeded", intent_obj())

    assert hooks.parse_webhook({"stripe-signature": stripe_signature(body)}, body).reference == "pay_42"
