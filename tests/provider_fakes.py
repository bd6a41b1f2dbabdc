"""Payment providers for tests that go through Duckline end to end.

- The sandbox: capture the webhooks it would post, and build and sign notifications exactly as
  it signs its own (`duckline.billing.providers.sandbox.sign` with the runtime's secret).
- Stripe, Alipay and WeChat Pay: the local fake servers of the adapter tests
  (tests/billing/test_stripe_card.py, test_alipay.py, test_wechatpay.py), served on a free
  port, with notifications signed as each provider signs them; and the Settings that make a
  Runtime choose that provider (card_provider="stripe", alipay_provider="alipay",
  wechatpay_provider="wechatpay") against the fake.
- The fake Stripe also plays the payer's side: it serves a stand-in for Stripe.js
  (tests/stripe_js_standin.js) at /v3/ and takes the confirm call Stripe.js makes with the
  publishable key and the client secret.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from duckline.billing.providers.sandbox import SIGNATURE_HEADER, sign
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.runtime import Runtime
from tests.billing.test_alipay import APP_ID as ALIPAY_APP_ID
from tests.billing.test_alipay import FakeAlipay, KeyPair, notification_sign_content, rsa2_sign
from tests.billing.test_alipay import _keypair as alipay_keypair
from tests.billing.test_alipay import _serve as serve_alipay
from tests.billing.test_stripe_card import FAKE_PAYMENT_METHODS, FakeStripe, Recorded, decode_form, stripe_signature
from tests.billing.test_stripe_card import _handler as stripe_handler
from tests.billing.test_stripe_card import event as stripe_event
from tests.billing.test_wechatpay import APPID as WECHAT_APPID
from tests.billing.test_wechatpay import CERT_SERIAL as WECHAT_CERT_SERIAL
from tests.billing.test_wechatpay import MCHID as WECHAT_MCHID
from tests.billing.test_wechatpay import PUBLIC_KEY_ID as WECHAT_PUBLIC_KEY_ID
from tests.billing.test_wechatpay import FakeWeChatPay, Keys, _new_key, _private_pem, _public_pem
from tests.billing.test_wechatpay import _headers as wechat_headers
from tests.billing.test_wechatpay import _notification as wechat_notification

# --- the sandbox ---------------------------------------------------------------------------------


def capture_webhooks(runtime: Runtime, clock: FrozenClock) -> list[tuple[str, bytes, dict[str, str]]]:
    """The sandbox's due webhooks (path, body, headers) exactly as it would post them, taken
    instead of posted (once each): the test decides when, how often and how they reach the app."""
    clock.advance(timedelta(seconds=5))
    assert runtime.sandbox is not None
    taken: list[tuple[str, bytes, dict[str, str]]] = []

    def keep(url: str, body: bytes, headers: dict[str, str]) -> int:
        if not any(body == seen for _, seen, _ in taken):  # the sandbox sends each one twice
            taken.append((urlsplit(url).path, body, dict(headers)))
        return 200

    runtime.sandbox.deliver_due(keep)
    return taken


def sandbox_ref(order: dict[str, Any]) -> str:
    """The sandbox's reference of an order's latest payment: the end of its hosted page URL."""
    return str(urlsplit(order["payments"][-1]["next_action"]["url"]).path.rsplit("/", 1)[-1])


def sandbox_event(
    runtime: Runtime,
    event_type: str,
    ref: str,
    status: str,
    amount: int,
    currency: str = "HKD",
    refunded: int = 0,
    event_id: str | None = None,
    timestamp: int | None = None,
    secret: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A sandbox notification, built and signed the way the sandbox builds and signs its own."""
    event_id = event_id or f"evt_{secrets.token_hex(10)}"
    body = json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created": int(runtime.clock.now().timestamp()),
            "data": {
                "ref": ref,
                "status": status,
                "amount": amount,
                "currency": currency,
                "refunded": refunded,
                "brand": "visa",
                "last4": "4242",
                "saved_token": None,
                "failure_code": None,
            },
        }
    ).encode()
    at = int(runtime.clock.now().timestamp()) if timestamp is None else timestamp
    signature = sign(runtime.settings.sandbox_webhook_secret if secret is None else secret, body, at)
    return body, {"content-type": "application/json", SIGNATURE_HEADER: signature}


# --- serving a fake ----------------------------------------------------------------------------


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def with_settings(settings: Settings, **overrides: Any) -> Settings:
    """The test settings with a provider switched on: validated like any configuration."""
    return Settings(**{**settings.model_dump(), **overrides})


# --- Stripe ------------------------------------------------------------------------------------

STRIPE_SECRET_KEY = "sk_test_x"
STRIPE_WEBHOOK_SECRET = "whsec_test"
STRIPE_PUBLISHABLE_KEY = "pk_test_x"
STRIPE_JS_STANDIN = Path(__file__).parent / "stripe_js_standin.js"
_BROWSER_CONFIRM = re.compile(r"/v1/payment_intents/([^/]+)/confirm")
_PAYER_STEPS = ("requires_payment_method", "requires_confirmation", "requires_action")


def confirm_in_browser(fake: FakeStripe, pi_id: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST /v1/payment_intents/{id}/confirm as Stripe.js sends it: authorised by the publishable
    key and the intent's client secret (not the secret key), the card as a payment method. A
    decline answers 402 with the error and the intent, as Stripe does."""

    def error(status: int, **fields: Any) -> tuple[int, dict[str, Any]]:
        return status, {"error": {"type": "invalid_request_error", **fields}}

    with fake.lock:
        fake.requests.append(Recorded("POST", f"/v1/payment_intents/{pi_id}/confirm", {}, params))
        intent = fake.intents.get(pi_id)
        if params.get("key") != STRIPE_PUBLISHABLE_KEY:
            return error(401, message="Invalid API Key provided")
        if intent is None or params.get("client_secret") != intent["client_secret"]:
            return error(404, code="resource_missing", message=f"No such payment_intent: '{pi_id}'")
        if intent["status"] not in _PAYER_STEPS:
            return error(
                400,
                code="payment_intent_unexpected_state",
                message=f"This PaymentIntent's status is {intent['status']}: it cannot be confirmed.",
            )
        if params.get("payment_method") not in FAKE_PAYMENT_METHODS:
            return error(400, code="resource_missing", message="No such PaymentMethod.")
        fake.confirm(pi_id, params["payment_method"])
        shown = fake.view(intent, [])
        if intent["last_payment_error"]:
            return 402, {"error": {**intent["last_payment_error"], "payment_intent": shown}}
        return 200, shown


def stripe_browser_handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    """The fake Stripe API, plus what the payer's browser meets: Stripe.js (the stand-in) at
    /v3/ and the browser's confirm call, answered with CORS headers as api.stripe.com's are."""
    api: Any = stripe_handler(fake)

    class Handler(api):  # type: ignore[misc,valid-type]
        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.send_header("access-control-allow-origin", "*")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if urlsplit(self.path).path == "/v3/":
                self._reply(200, STRIPE_JS_STANDIN.read_bytes(), "application/javascript; charset=utf-8")
            else:
                self._serve()

        def do_POST(self) -> None:
            found = _BROWSER_CONFIRM.fullmatch(urlsplit(self.path).path)
            if found is None or "authorization" in {k.lower() for k in self.headers}:
                self._serve()  # the server's own calls, with the secret key
                return
            raw = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
            status, answer = confirm_in_browser(fake, found.group(1), decode_form(raw))
            self._reply(status, json.dumps(answer).encode(), "application/json")

    return Handler


@contextmanager
def fake_stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe(secret_key=STRIPE_SECRET_KEY)
    with serving(stripe_browser_handler(fake)) as base:
        fake.base = base
        yield fake


def stripe_settings(settings: Settings, fake: FakeStripe) -> Settings:
    """Cards through Stripe, the server's calls and the payer's browser both going to the fake."""
    return with_settings(
        settings,
        card_provider="stripe",
        stripe_secret_key=STRIPE_SECRET_KEY,
        stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
        stripe_publishable_key=STRIPE_PUBLISHABLE_KEY,
        stripe_api_base=fake.base,
        stripe_js_url=f"{fake.base}/v3/",
    )


def stripe_notification(
    event_type: str, obj: dict[str, Any], secret: str = STRIPE_WEBHOOK_SECRET
) -> tuple[bytes, dict[str, str]]:
    """An event signed as Stripe signs it (HMAC-SHA256 over "t.body", real time: the library checks it)."""
    body = stripe_event(event_type, obj)
    return body, {"content-type": "application/json", "stripe-signature": stripe_signature(body, secret)}


# --- Alipay ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlipayKeys:
    app: KeyPair  # Duckline's: signs requests
    alipay: KeyPair  # Alipay's: signs answers and notifications
    stranger: KeyPair


@functools.cache  # three RSA keys take a few tenths of a second to make; the tests only need them distinct
def alipay_keys() -> AlipayKeys:
    return AlipayKeys(alipay_keypair(), alipay_keypair(), alipay_keypair())


@contextmanager
def fake_alipay(keys: AlipayKeys) -> Iterator[FakeAlipay]:
    fake = FakeAlipay(app_public_pem=keys.app.public_pem, signing_key=keys.alipay.key)
    server = serve_alipay(fake)
    fake.gateway = f"http://127.0.0.1:{server.server_address[1]}/gateway.do"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def alipay_settings(settings: Settings, fake: FakeAlipay, keys: AlipayKeys) -> Settings:
    return with_settings(
        settings,
        alipay_provider="alipay",
        alipay_app_id=ALIPAY_APP_ID,
        alipay_app_private_key=keys.app.private_pem,
        alipay_public_key=keys.alipay.public_pem,
        alipay_gateway=fake.gateway,
    )


def alipay_notification(
    signing_key: rsa.RSAPrivateKey, out_trade_no: str, total_amount: str, **fields: str
) -> tuple[bytes, dict[str, str]]:
    """An asynchronous notification (trade_status_sync), RSA2-signed as Alipay signs it."""
    values = {
        "gmt_create": "2026-11-24 10:00:58",
        "charset": "utf-8",
        "gmt_payment": "2026-11-24 10:01:02",
        "notify_time": "2026-11-24 10:01:03",
        "subject": "Duckline order",
        "buyer_id": "2088102177846880",
        "buyer_logon_id": "abc***@example.com",
        "invoice_amount": total_amount,
        "version": "1.0",
        "notify_id": f"2026112400222100{secrets.randbelow(10**18):018d}",
        "notify_type": "trade_status_sync",
        "out_trade_no": out_trade_no,
        "total_amount": total_amount,
        "trade_status": "TRADE_SUCCESS",
        "trade_no": "2026112422001404560500012345",
        "auth_app_id": ALIPAY_APP_ID,
        "receipt_amount": total_amount,
        "point_amount": "0.00",
        "app_id": ALIPAY_APP_ID,
        "buyer_pay_amount": "80.12",
        "seller_id": "2088102177302314",
        "trans_currency": "HKD",
        **fields,
    }
    signed = {**values, "sign_type": "RSA2"}
    signed["sign"] = rsa2_sign(signing_key, notification_sign_content(signed))
    return urlencode(signed).encode(), {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}


# --- WeChat Pay --------------------------------------------------------------------------------


@functools.cache  # as alipay_keys: made once per test process
def wechatpay_keys() -> Keys:
    return Keys(_new_key(), _new_key(), _new_key(), secrets.token_hex(16))  # a 32-byte APIv3 key


@contextmanager
def fake_wechatpay(keys: Keys) -> Iterator[FakeWeChatPay]:
    state = FakeWeChatPay(keys)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body, extra = state.answer(self.command, self.path, headers, raw)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as base:
        state.base_url = base
        yield state


def wechatpay_settings(settings: Settings, fake: FakeWeChatPay, keys: Keys) -> Settings:
    return with_settings(
        settings,
        wechatpay_provider="wechatpay",
        wechatpay_mchid=WECHAT_MCHID,
        wechatpay_appid=WECHAT_APPID,
        wechatpay_private_key=_private_pem(keys.merchant),
        wechatpay_cert_serial_no=WECHAT_CERT_SERIAL,
        wechatpay_apiv3_key=keys.apiv3,
        wechatpay_public_key=_public_pem(keys.platform),
        wechatpay_public_key_id=WECHAT_PUBLIC_KEY_ID,
        wechatpay_base_url=fake.base_url,
    )


def wechatpay_trade(out_trade_no: str, state: str, total: int, currency: str = "HKD") -> dict[str, Any]:
    """A transaction as WeChat Pay describes it (query answers and TRANSACTION.* resources)."""
    return {
        "appid": WECHAT_APPID,
        "mchid": WECHAT_MCHID,
        "out_trade_no": out_trade_no,
        "transaction_id": f"42000012342026112400{secrets.randbelow(10**8):08d}",
        "trade_type": "NATIVE",
        "trade_state": state,
        "trade_state_desc": state,
        "amount": {"total": total, "payer_total": total, "currency": currency, "payer_currency": currency},
    }


def wechatpay_notification(
    keys: Keys,
    resource: dict[str, Any],
    timestamp: int,
    event_type: str = "TRANSACTION.SUCCESS",
    signing_key: rsa.RSAPrivateKey | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A notification as WeChat Pay sends it: the resource AES-256-GCM encrypted with the APIv3
    key, the headers RSA-signed over "timestamp\\nnonce\\nbody\\n" with the platform key. The
    provider checks the timestamp against Duckline's clock, so the test passes that clock's time."""
    body = wechat_notification(event_type, resource, keys.apiv3, event_id=f"EV-{secrets.token_hex(8)}")
    headers = wechat_headers(body, signing_key or keys.platform, timestamp=timestamp)
    return body, {"content-type": "application/json", **headers}


__all__ = [
    "ALIPAY_APP_ID",
    "STRIPE_PUBLISHABLE_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "AlipayKeys",
    "FakeAlipay",
    "FakeStripe",
    "FakeWeChatPay",
    "Keys",
    "alipay_keys",
    "alipay_notification",
    "alipay_settings",
    "capture_webhooks",
    "confirm_in_browser",
    "fake_alipay",
    "fake_stripe",
    "fake_wechatpay",
    "sandbox_event",
    "sandbox_ref",
    "stripe_notification",
    "stripe_settings",
    "wechatpay_keys",
    "wechatpay_notification",
    "wechatpay_settings",
    "wechatpay_trade",
]
