"""WeChatPayProvider against a local fake of the WeChat Pay APIv3 server.

The fake checks every request's WECHATPAY2-SHA256-RSA2048 Authorization header with the merchant's
public key and signs every answer with the "platform" key, as WeChat Pay does, so the SDK's own
signing and response verification are exercised end to end. Notifications are built the way WeChat
Pay builds them: the resource encrypted with AES-256-GCM under the APIv3 key, the headers signed
over "timestamp\\nnonce\\nbody\\n" with the platform key.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import threading
import time
from base64 import b64decode, b64encode
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256

from duckline.billing.order_states import PaymentMethod, PaymentStatus
from duckline.billing.providers import InvalidSignature, PaymentProvider, PaymentRequest, ProviderError, RefundResult
from duckline.billing.providers.wechatpay import WeChatPayProvider
from duckline.core.clock import FrozenClock
from duckline.core.money import Money

MCHID = "1900000109"
APPID = "wxd678efh567hg6787"
CERT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
PUBLIC_KEY_ID = "PUB_KEY_ID_0119000001092026112400000001"
NOTIFY_URL = "https://duckline.example/api/v1/webhooks/wechatpay"
REF = "pay_000042"
QUERY_PATH = f"/v3/pay/transactions/out-trade-no/{REF}"


# --- keys -------------------------------------------------------------------------------------


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass(frozen=True)
class Keys:
    merchant: rsa.RSAPrivateKey
    platform: rsa.RSAPrivateKey
    stranger: rsa.RSAPrivateKey  # neither merchant nor WeChat Pay
    apiv3: str


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(_new_key(), _new_key(), _new_key(), secrets.token_hex(16))  # 32-byte APIv3 key


def _rsa_sign(key: rsa.RSAPrivateKey, message: str) -> str:
    return b64encode(key.sign(message.encode(), PKCS1v15(), SHA256())).decode()


# --- the fake WeChat Pay API ------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str  # with the query string
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: dict[str, Any] | None
    authorized: bool


@dataclass
class FakeWeChatPay:
    keys: Keys
    routes: dict[tuple[str, str], tuple[int, dict[str, Any] | None]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    signing_key: rsa.RSAPrivateKey | None = None  # None: the platform key
    base_url: str = ""

    def check_authorization(self, method: str, path: str, header: str, body: str) -> bool:
        scheme, _, params = header.partition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if scheme != "WECHATPAY2-SHA256-RSA2048" or fields.get("mchid") != MCHID:
            return False
        if fields.get("serial_no") != CERT_SERIAL or abs(time.time() - int(fields.get("timestamp", "0"))) > 300:
            return False
        message = f"{method}\n{path}\n{fields['timestamp']}\n{fields['nonce_str']}\n{body}\n"
        try:
            self.keys.merchant.public_key().verify(
                b64decode(fields["signature"]), message.encode(), PKCS1v15(), SHA256()
            )
        except (CryptoInvalidSignature, KeyError, ValueError):
            return False
        return True

    def answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, bytes, dict[str, str]]:
        body = raw.decode()
        authorized = self.check_authorization(method, path, headers.get("authorization", ""), body)
        url = urlsplit(path)
        self.seen.append(
            Seen(method, path, parse_qs(url.query), headers, json.loads(body) if body else None, authorized)
        )
        if not authorized:
            status, payload = 401, {"code": "SIGN_ERROR", "message": "签名错误"}
        elif headers.get("wechatpay-serial") != PUBLIC_KEY_ID:
            status, payload = 400, {"code": "PARAM_ERROR", "message": "Wechatpay-Serial"}
        else:
            status, payload = self.routes.get((method, url.path), (404, {"code": "NOT_FOUND", "message": "no route"}))
        out = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        signature = _rsa_sign(self.signing_key or self.keys.platform, f"{timestamp}\n{nonce}\n{out.decode()}\n")
        return (
            status,
            out,
            {
                "Content-Type": "application/json; charset=utf-8",
                "Request-ID": secrets.token_hex(8),
                "Wechatpay-Timestamp": timestamp,
                "Wechatpay-Nonce": nonce,
                "Wechatpay-Signature": signature,
                "Wechatpay-Serial": PUBLIC_KEY_ID,
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
            },
        )

    def requests_to(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and urlsplit(s.path).path == path]


@pytest.fixture
def fake(keys: Keys) -> Iterator[FakeWeChatPay]:
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

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def _make(keys: Keys, base_url: str, **overrides: Any) -> WeChatPayProvider:
    options: dict[str, Any] = {
        "mchid": MCHID,
        "appid": APPID,
        "private_key": _private_pem(keys.merchant),
        "cert_serial_no": CERT_SERIAL,
        "apiv3_key": keys.apiv3,
        "platform_public_key": _public_pem(keys.platform),
        "platform_public_key_id": PUBLIC_KEY_ID,
        "notify_url": NOTIFY_URL,
        "base_url": base_url,
        "timeout": (2.0, 5.0),
    }
    options.update(overrides)
    return WeChatPayProvider(**options)


@pytest.fixture
def provider(keys: Keys, fake: FakeWeChatPay) -> WeChatPayProvider:
    return _make(keys, fake.base_url)


def _request(reference: str = REF, amount: Money | None = None) -> PaymentRequest:
    return PaymentRequest(
        reference=reference,
        amount=amount or Money(12800, "HKD"),
        description="Duckline 30 日計劃 / 30-day plan",
        method=PaymentMethod.WECHATPAY,
        return_url="https://duckline.example/pay/return",
        notify_url=NOTIFY_URL,
    )


def _trade(state: str, total: int = 12800, currency: str = "HKD", **extra: Any) -> dict[str, Any]:
    return {
        "appid": APPID,
        "mchid": MCHID,
        "out_trade_no": REF,
        "transaction_id": "4200001234202611240000000042",
        "trade_type": "NATIVE",
        "trade_state": state,
        "trade_state_desc": {"PAYERROR": "支付失败"}.get(state, state),
        "amount": {"total": total, "payer_total": total, "currency": currency, "payer_currency": currency},
        **extra,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- construction -----------------------------------------------------------------------------


def test_satisfies_the_provider_interface_and_needs_no_network_to_start(keys: Keys) -> None:
    provider: PaymentProvider = _make(keys, f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    assert provider.name == "wechatpay"
    assert provider.methods == frozenset({PaymentMethod.WECHATPAY})


def test_rejects_an_apiv3_key_that_is_not_32_bytes(keys: Keys) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        _make(keys, "http://127.0.0.1:9", apiv3_key="too-short")


def test_rejects_an_unreadable_private_key(keys: Keys) -> None:
    with pytest.raises(ValueError, match="configuration"):
        _make(keys, "http://127.0.0.1:9", private_key="not a key")


# --- create_payment ---------------------------------------------------------------------------


def test_create_returns_the_qr_code_url_from_a_signed_native_order(
    provider: WeChatPayProvider, fake: FakeWeChatPay
) -> None:
    code_url = "weixin://wxpay/bizpayurl?pr=p4lpSuKzz"
    fake.routes["POST", "/v3/pay/transactions/native"] = (200, {"code_url": code_url})

    payment = provider.create_payment(_request())

    assert payment.provider_ref == REF
    assert payment.status is PaymentStatus.PENDING
    assert (payment.amount, payment.currency) == (12800, "HKD")
    assert payment.next_action == {"type": "qr", "code_url": code_url}
    [sent] = fake.requests_to("POST", "/v3/pay/transactions/native")
    assert sent.authorized
    assert sent.headers["wechatpay-serial"] == PUBLIC_KEY_ID
    assert sent.body == {
        "notify_url": NOTIFY_URL,
        "description": "Duckline 30 日計劃 / 30-day plan",
        "out_trade_no": REF,
        "amount": {"total": 12800, "currency": "HKD"},
        "appid": APPID,
        "mchid": MCHID,
    }


def test_create_truncates_a_long_description_to_127_bytes_on_a_character_boundary(
    provider: WeChatPayProvider, fake: FakeWeChatPay
) -> None:
    fake.routes["POST", "/v3/pay/transactions/native"] = (200, {"code_url": "weixin://wxpay/bizpayurl?pr=x"})
    request = _request()
    provider.create_payment(PaymentRequest(**{**request.__dict__, "description": "月" * 100}))
    [sent] = fake.requests_to("POST", "/v3/pay/transactions/native")
    assert sent.body is not None
    assert sent.body["description"] == "月" * 42  # 3 bytes each: 126 <= 127


def test_create_signed_with_the_wrong_merchant_key_is_refused(keys: Keys, fake: FakeWeChatPay) -> None:
    fake.routes["POST", "/v3/pay/transactions/native"] = (200, {"code_url": "weixin://wxpay/bizpayurl?pr=x"})
    impostor = _make(keys, fake.base_url, private_key=_private_pem(keys.stranger))
    with pytest.raises(ProviderError, match="401 SIGN_ERROR"):
        impostor.create_payment(_request())
    assert [s.authorized for s in fake.seen] == [False]


def test_create_with_an_order_already_paid_reports_the_paid_order(
    provider: WeChatPayProvider, fake: FakeWeChatPay
) -> None:
    fake.routes["POST", "/v3/pay/transactions/native"] = (403, {"code": "ORDERPAID", "message": "订单已支付"})
    fake.routes["GET", QUERY_PATH] = (200, _trade("SUCCESS"))
    payment = provider.create_payment(_request())
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.next_action is None


def test_create_refused_by_wechat_pay_raises_provider_error(provider: WeChatPayProvider, fake: FakeWeChatPay) -> None:
    fake.routes["POST", "/v3/pay/transactions/native"] = (400, {"code": "PARAM_ERROR", "message": "参数错误"})
    with pytest.raises(ProviderError, match="PARAM_ERROR"):
        provider.create_payment(_request())


def test_create_refuses_a_reference_wechat_pay_would_not_take(provider: WeChatPayProvider, fake: FakeWeChatPay) -> None:
    for bad in ("pay_1", "pay/../../x", "a" * 33):
        with pytest.raises(ProviderError, match="out_trade_no"):
            provider.create_payment(_request(reference=bad))
    assert fake.seen == []


# --- query --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trade_state", "status"),
    [
        ("NOTPAY", PaymentStatus.PENDING),
        ("USERPAYING", PaymentStatus.PENDING),
        ("SUCCESS", PaymentStatus.SUCCEEDED),
        ("CLOSED", PaymentStatus.CANCELLED),
        ("REVOKED", PaymentStatus.CANCELLED),
        ("PAYERROR", PaymentStatus.FAILED),
        ("REFUND", PaymentStatus.REFUNDED),
    ],
)
def test_query_maps_the_trade_state(
    provider: WeChatPayProvider, fake: FakeWeChatPay, trade_state: str, status: PaymentStatus
) -> None:
    fake.routes["GET", QUERY_PATH] = (200, _trade(trade_state, total=9900, currency="CNY"))

    payment = provider.query(REF)

    assert payment.status is status
    assert (payment.provider_ref, payment.amount, payment.currency) == (REF, 9900, "CNY")
    [sent] = fake.seen
    assert sent.authorized
    assert sent.query == {"mchid": [MCHID]}
    if status is PaymentStatus.FAILED:
        assert (payment.failure_code, payment.failure_message) == ("PAYERROR", "支付失败")
    else:
        assert payment.failure_code is None


def test_query_reports_the_order_total_not_the_coupon_reduced_payer_total(
    provider: WeChatPayProvider, fake: FakeWeChatPay
) -> None:
    trade = _trade("SUCCESS", total=12800)
    trade["amount"]["payer_total"] = 11800  # a WeChat Pay coupon took 10.00 off what the payer paid
    fake.routes["GET", QUERY_PATH] = (200, trade)
    assert provider.query(REF).amount == 12800


def test_query_of_an_order_wechat_pay_does_not_know_is_pending(
    provider: WeChatPayProvider, fake: FakeWeChatPay
) -> None:
    fake.routes["GET", QUERY_PATH] = (404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
    payment = provider.query(REF)
    assert payment.status is PaymentStatus.PENDING
    assert (payment.amount, payment.failure_code) == (0, "ORDER_NOT_EXIST")


def test_query_answer_not_signed_by_wechat_pay_is_not_believed(
    provider: WeChatPayProvider, fake: FakeWeChatPay
) -> None:
    fake.routes["GET", QUERY_PATH] = (200, _trade("SUCCESS"))
    fake.signing_key = fake.keys.stranger
    with pytest.raises(ProviderError, match="verify the signature"):
        provider.query(REF)


def test_query_server_error_raises_provider_error(provider: WeChatPayProvider, fake: FakeWeChatPay) -> None:
    fake.routes["GET", QUERY_PATH] = (500, {"code": "SYSTEM_ERROR", "message": "系统错误"})
    with pytest.raises(ProviderError, match="500 SYSTEM_ERROR"):
        provider.query(REF)


# --- refund -------------------------------------------------------------------------------------


def test_refund_sends_out_refund_no_and_the_original_total(provider: WeChatPayProvider, fake: FakeWeChatPay) -> None:
    fake.routes["GET", QUERY_PATH] = (200, _trade("SUCCESS", total=12800))
    fake.routes["POST", "/v3/refund/domestic/refunds"] = (
        200,
        {"refund_id": "50000000382019052709732678859", "out_refund_no": "rf_000007", "status": "PROCESSING"},
    )

    result = provider.refund(REF, Money(5000, "HKD"), "rf_000007", "plan cancelled within the cooling-off period")

    assert result == RefundResult("rf_000007", True)
    [sent] = fake.requests_to("POST", "/v3/refund/domestic/refunds")
    assert sent.authorized
    assert sent.body == {
        "notify_url": NOTIFY_URL,
        "out_refund_no": "rf_000007",
        "out_trade_no": REF,
        "amount": {"refund": 5000, "total": 12800, "currency": "HKD"},
        "reason": "plan cancelled within the cooling-off period",
    }


@pytest.mark.parametrize(("status", "succeeded"), [("SUCCESS", True), ("CLOSED", False), ("ABNORMAL", False)])
def test_refund_succeeds_only_when_success_or_processing(
    provider: WeChatPayProvider, fake: FakeWeChatPay, status: str, succeeded: bool
) -> None:
    fake.routes["GET", QUERY_PATH] = (200, _trade("SUCCESS"))
    fake.routes["POST", "/v3/refund/domestic/refunds"] = (200, {"out_refund_no": "rf_000008", "status": status})
    result = provider.refund(REF, Money(12800, "HKD"), "rf_000008", "")
    assert result.succeeded is succeeded
    assert result.provider_ref == "rf_000008"
    [sent] = fake.requests_to("POST", "/v3/refund/domestic/refunds")
    assert sent.body is not None and "reason" not in sent.body


def test_refund_of_an_unpaid_order_is_not_sent(provider: WeChatPayProvider, fake: FakeWeChatPay) -> None:
    fake.routes["GET", QUERY_PATH] = (200, _trade("NOTPAY"))
    result = provider.refund(REF, Money(100, "HKD"), "rf_000009", "")
    assert not result.succeeded
    assert fake.requests_to("POST", "/v3/refund/domestic/refunds") == []


def test_refund_in_another_currency_is_not_sent(provider: WeChatPayProvider, fake: FakeWeChatPay) -> None:
    fake.routes["GET", QUERY_PATH] = (200, _trade("SUCCESS", currency="CNY"))
    result = provider.refund(REF, Money(100, "HKD"), "rf_000010", "")
    assert not result.succeeded and "CNY" in (result.failure_message or "")
    assert fake.requests_to("POST", "/v3/refund/domestic/refunds") == []


def test_refund_refused_by_wechat_pay_is_a_failed_refund(provider: WeChatPayProvider, fake: FakeWeChatPay) -> None:
    fake.routes["GET", QUERY_PATH] = (200, _trade("SUCCESS"))
    fake.routes["POST", "/v3/refund/domestic/refunds"] = (403, {"code": "NOT_ENOUGH", "message": "余额不足"})
    result = provider.refund(REF, Money(100, "HKD"), "rf_000011", "")
    assert result == RefundResult("rf_000011", False, "NOT_ENOUGH: 余额不足")


def test_refund_system_error_raises_provider_error(provider: WeChatPayProvider, fake: FakeWeChatPay) -> None:
    fake.routes["GET", QUERY_PATH] = (200, _trade("SUCCESS"))
    fake.routes["POST", "/v3/refund/domestic/refunds"] = (500, {"code": "SYSTEM_ERROR", "message": "系统超时"})
    with pytest.raises(ProviderError):
        provider.refund(REF, Money(100, "HKD"), "rf_000012", "")


# --- unreachable --------------------------------------------------------------------------------


def test_unreachable_wechat_pay_raises_provider_error(keys: Keys) -> None:
    provider = _make(keys, f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(ProviderError):
        provider.create_payment(_request())
    with pytest.raises(ProviderError):
        provider.query(REF)
    with pytest.raises(ProviderError):
        provider.refund(REF, Money(100, "HKD"), "rf_000013", "")


# --- webhooks -----------------------------------------------------------------------------------


def _notification(
    event_type: str, resource: dict[str, Any], apiv3_key: str, event_id: str = "EV-2026112410000042"
) -> bytes:
    nonce = secrets.token_hex(6)  # 12 characters, as WeChat Pay sends
    associated = "transaction" if event_type.startswith("TRANSACTION") else "refund"
    ciphertext = AESGCM(apiv3_key.encode()).encrypt(
        nonce.encode(), json.dumps(resource, ensure_ascii=False).encode(), associated.encode()
    )
    body = {
        "id": event_id,
        "create_time": "2026-11-24T10:00:05+08:00",
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "支付成功" if event_type == "TRANSACTION.SUCCESS" else "退款成功",
        "resource": {
            "original_type": associated,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": b64encode(ciphertext).decode(),
            "associated_data": associated,
            "nonce": nonce,
        },
    }
    return json.dumps(body, ensure_ascii=False).encode()


def _headers(
    body: bytes, key: rsa.RSAPrivateKey, serial: str = PUBLIC_KEY_ID, timestamp: int | None = None
) -> dict[str, str]:
    ts, nonce = str(timestamp if timestamp is not None else int(time.time())), secrets.token_hex(16)
    return {
        "wechatpay-signature": _rsa_sign(key, f"{ts}\n{nonce}\n{body.decode()}\n"),
        "wechatpay-timestamp": ts,
        "wechatpay-nonce": nonce,
        "wechatpay-serial": serial,
        "wechatpay-signature-type": "WECHATPAY2-SHA256-RSA2048",
    }


def _paid(total: int = 12800, currency: str = "HKD") -> dict[str, Any]:
    return {
        **_trade("SUCCESS", total=total, currency=currency),
        "success_time": "2026-11-24T10:00:03+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    }


def test_webhook_payment_success_is_verified_decrypted_and_mapped(provider: WeChatPayProvider, keys: Keys) -> None:
    body = _notification("TRANSACTION.SUCCESS", _paid(12800, "HKD"), keys.apiv3)

    notice = provider.parse_webhook(_headers(body, keys.platform), body)

    assert notice.event_id == "EV-2026112410000042"
    assert notice.event_type == "TRANSACTION.SUCCESS"
    assert notice.provider_ref == REF
    assert notice.status is PaymentStatus.SUCCEEDED
    assert (notice.amount, notice.currency, notice.refunded_amount) == (12800, "HKD", 0)
    assert notice.payload["resource"]["transaction_id"] == "4200001234202611240000000042"  # decrypted


def test_webhook_headers_without_signature_type_still_verify(provider: WeChatPayProvider, keys: Keys) -> None:
    body = _notification("TRANSACTION.SUCCESS", _paid(), keys.apiv3)
    headers = _headers(body, keys.platform)
    del headers["wechatpay-signature-type"]
    assert provider.parse_webhook(headers, body).status is PaymentStatus.SUCCEEDED


def _refund_resource(refund: int, total: int = 12800, status: str = "SUCCESS") -> dict[str, Any]:
    return {
        "mchid": MCHID,
        "out_trade_no": REF,
        "transaction_id": "4200001234202611240000000042",
        "out_refund_no": "rf_000007",
        "refund_id": "50000000382019052709732678859",
        "refund_status": status,
        "success_time": "2026-11-25T09:00:00+08:00",
        "user_received_account": "支付用户零钱",
        "amount": {"total": total, "refund": refund, "payer_total": total, "payer_refund": refund},
    }


def test_webhook_full_refund_is_refunded(provider: WeChatPayProvider, keys: Keys) -> None:
    body = _notification("REFUND.SUCCESS", _refund_resource(12800), keys.apiv3, event_id="EV-R1")
    notice = provider.parse_webhook(_headers(body, keys.platform), body)
    assert (notice.event_id, notice.provider_ref) == ("EV-R1", REF)
    assert notice.status is PaymentStatus.REFUNDED
    assert (notice.refunded_amount, notice.amount, notice.currency) == (12800, 12800, None)


def test_webhook_partial_refund_keeps_the_payment_succeeded(provider: WeChatPayProvider, keys: Keys) -> None:
    body = _notification("REFUND.SUCCESS", _refund_resource(5000), keys.apiv3, event_id="EV-R2")
    notice = provider.parse_webhook(_headers(body, keys.platform), body)
    assert notice.status is PaymentStatus.SUCCEEDED
    # One refund, named: not what the payment has had refunded in all, which the notice does not say.
    assert (notice.refund_amount, notice.refunded_amount) == (5000, 0)
    assert (notice.refund_id, notice.refund_reference) == ("50000000382019052709732678859", "rf_000007")


def test_webhook_failed_refund_carries_no_refunded_amount(provider: WeChatPayProvider, keys: Keys) -> None:
    body = _notification("REFUND.ABNORMAL", _refund_resource(5000, status="ABNORMAL"), keys.apiv3)
    notice = provider.parse_webhook(_headers(body, keys.platform), body)
    assert (notice.status, notice.refunded_amount) == (PaymentStatus.SUCCEEDED, 0)
    assert (notice.amount, notice.currency) == (12800, None)  # captured; the currency is the order's
    assert notice.payload["resource"]["refund_status"] == "ABNORMAL"


def test_webhook_other_event_maps_its_trade_state(provider: WeChatPayProvider, keys: Keys) -> None:
    body = _notification("TRANSACTION.CLOSED", _trade("CLOSED"), keys.apiv3)
    assert provider.parse_webhook(_headers(body, keys.platform), body).status is PaymentStatus.CANCELLED


def test_webhook_signed_by_another_key_is_rejected(provider: WeChatPayProvider, keys: Keys) -> None:
    body = _notification("TRANSACTION.SUCCESS", _paid(), keys.apiv3)
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(_headers(body, keys.stranger), body)


def test_webhook_with_a_tampered_body_is_rejected(provider: WeChatPayProvider, keys: Keys) -> None:
    body = _notification("TRANSACTION.SUCCESS", _paid(), keys.apiv3)
    headers = _headers(body, keys.platform)
    tampered = body.replace(b"EV-2026112410000042", b"EV-2026112410000043")
    assert tampered != body
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(headers, tampered)


def test_webhook_encrypted_with_another_apiv3_key_is_rejected(provider: WeChatPayProvider, keys: Keys) -> None:
    body = _notification("TRANSACTION.SUCCESS", _paid(), secrets.token_hex(16))
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(_headers(body, keys.platform), body)  # the signature is fine, decryption is not


def test_webhook_signature_probe_is_rejected(provider: WeChatPayProvider, keys: Keys) -> None:
    # WeChat Pay sends such probes to check that merchants really verify signatures.
    body = _notification("TRANSACTION.SUCCESS", _paid(), keys.apiv3)
    headers = {**_headers(body, keys.platform), "wechatpay-signature": "WECHATPAY/SIGNTEST/" + "A" * 40}
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(headers, body)


def test_webhook_with_an_unknown_serial_is_rejected_without_calling_wechat_pay(
    provider: WeChatPayProvider, fake: FakeWeChatPay, keys: Keys
) -> None:
    body = _notification("TRANSACTION.SUCCESS", _paid(), keys.apiv3)
    for serial in ("PUB_KEY_ID_0000000000000000000000000000", "7132D72A03E93CDDF8C03BBD1F37EEDF"):
        with pytest.raises(InvalidSignature):
            provider.parse_webhook(_headers(body, keys.platform, serial=serial), body)
    assert fake.seen == []  # the SDK did not go and fetch platform certificates


@pytest.mark.parametrize(
    "missing", ["wechatpay-signature", "wechatpay-timestamp", "wechatpay-nonce", "wechatpay-serial"]
)
def test_webhook_missing_a_header_is_rejected(provider: WeChatPayProvider, keys: Keys, missing: str) -> None:
    body = _notification("TRANSACTION.SUCCESS", _paid(), keys.apiv3)
    headers = _headers(body, keys.platform)
    del headers[missing]
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(headers, body)


def test_webhook_outside_the_five_minute_window_is_rejected(keys: Keys, fake: FakeWeChatPay) -> None:
    clock = FrozenClock(datetime(2026, 11, 24, 2, 0, tzinfo=UTC))
    provider = _make(keys, fake.base_url, clock=clock)
    body = _notification("TRANSACTION.SUCCESS", _paid(), keys.apiv3)
    now = int(clock.now().timestamp())
    assert provider.parse_webhook(_headers(body, keys.platform, timestamp=now - 290), body).event_id
    with pytest.raises(InvalidSignature, match="window"):
        provider.parse_webhook(_headers(body, keys.platform, timestamp=now - 301), body)
    with pytest.raises(InvalidSignature, match="window"):
        provider.parse_webhook(_headers(body, keys.platform, timestamp=now + 301), body)


def test_webhook_for_another_merchant_is_rejected(provider: WeChatPayProvider, keys: Keys) -> None:
    body = _notification("TRANSACTION.SUCCESS", {**_paid(), "mchid": "1900009999"}, keys.apiv3)
    with pytest.raises(InvalidSignature, match="another merchant"):
        provider.parse_webhook(_headers(body, keys.platform), body)


def test_webhook_that_is_not_json_is_rejected(provider: WeChatPayProvider, keys: Keys) -> None:
    body = b"\xff\xfe not json"
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(_headers(b"x", keys.platform), body)


def test_ack_is_what_wechat_pay_takes_as_received(provider: WeChatPayProvider) -> None:
    ack = provider.ack()
    assert ack.status_code in (200, 204)
    assert json.loads(ack.body) == {"code": "SUCCESS", "message": "OK"}
    assert ack.media_type == "application/json"


# --- by our reference, and closing ----------------------------------------------------------------


def test_find_is_none_for_an_order_wechat_pay_does_not_have(provider: WeChatPayProvider, fake: FakeWeChatPay) -> None:
    fake.routes["GET", QUERY_PATH] = (404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
    assert provider.find(REF) is None
    fake.routes["GET", QUERY_PATH] = (200, _trade("SUCCESS"))
    found = provider.find(REF)
    assert found is not None and found.status is PaymentStatus.SUCCEEDED


def test_a_native_order_carries_the_deadline_after_which_wechat_pay_refuses_it(
    provider: WeChatPayProvider, fake: FakeWeChatPay
) -> None:
    fake.routes["POST", "/v3/pay/transactions/native"] = (200, {"code_url": "weixin://wxpay/bizpayurl?pr=x"})
    request = _request()
    provider.create_payment(
        PaymentRequest(**{**request.__dict__, "expires_at": datetime(2026, 11, 24, 2, 30, tzinfo=UTC)})
    )

    [sent] = fake.requests_to("POST", "/v3/pay/transactions/native")
    assert sent.body is not None and sent.body["time_expire"] == "2026-11-24T10:30:00+08:00"


def test_cancel_closes_the_order_then_reports_it(provider: WeChatPayProvider, fake: FakeWeChatPay) -> None:
    fake.routes["POST", f"{QUERY_PATH}/close"] = (204, None)
    fake.routes["GET", QUERY_PATH] = (200, _trade("CLOSED"))

    assert provider.cancel(REF).status is PaymentStatus.CANCELLED
    [sent] = fake.requests_to("POST", f"{QUERY_PATH}/close")
    assert sent.authorized and sent.body == {"mchid": MCHID}
