"""The Alipay provider against a local fake Alipay gateway that checks and signs like the real one.

Two RSA-2048 key pairs: the app's (it signs requests; the fake gateway verifies them with the
app public key) and "Alipay's" (the fake gateway signs its answers and the notifications with
it; the provider verifies them with the Alipay public key). Signatures are made and checked
here with `cryptography`, independently of the SDK the provider uses.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from duckline.billing.order_states import PaymentMethod, PaymentStatus
from duckline.billing.providers import InvalidSignature, PaymentRequest, ProviderError, WebhookAck
from duckline.billing.providers.alipay import AlipayProvider
from duckline.core.money import Money

APP_ID = "2021000123456789"
BEIJING = timezone(timedelta(hours=8))


# --- keys and Alipay's signing rules ------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    key: rsa.RSAPrivateKey
    private_pem: str
    public_pem: str


def _keypair() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return KeyPair(key, private_pem, public_pem)


@pytest.fixture(scope="module")
def keys() -> dict[str, KeyPair]:
    return {"app": _keypair(), "alipay": _keypair(), "stranger": _keypair()}


def rsa2_sign(key: rsa.RSAPrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_verify(public_pem: str, message: str, sign: str) -> bool:
    public_key = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(public_key, rsa.RSAPublicKey)
    try:
        public_key.verify(base64.b64decode(sign), message.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (CryptoInvalidSignature, ValueError):
        return False
    return True


def request_sign_content(params: dict[str, str]) -> str:
    """What an app signs in a request: every parameter but `sign`, non-empty, sorted, `k=v&…`."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v != "")


def notification_sign_content(fields: dict[str, str]) -> str:
    """What Alipay signs in an async notification: all fields but `sign` and `sign_type`, sorted."""
    return "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k not in ("sign", "sign_type"))


def single(query: str) -> dict[str, str]:
    parsed = parse_qs(query, keep_blank_values=True)
    assert all(len(v) == 1 for v in parsed.values()), parsed
    return {k: v[0] for k, v in parsed.items()}


# --- the fake gateway -----------------------------------------------------------------------------


@dataclass
class FakeAlipay:
    """Plays openapi.alipay.com/gateway.do for alipay.trade.query, .refund and .close."""

    app_public_pem: str
    signing_key: rsa.RSAPrivateKey  # Alipay's private key; tests swap it to sign with a wrong one
    trades: dict[str, dict[str, str]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)  # verified, biz_content decoded
    rejected: list[dict[str, str]] = field(default_factory=list)  # bad app signature
    refunds: dict[str, dict[str, str]] = field(default_factory=dict)  # by out_request_no
    next_content: dict[str, str] | None = None  # answer the next call with this (signed) content
    next_raw: tuple[int, bytes] | None = None  # or with this status and body, as is
    delay: float = 0.0
    gateway: str = ""  # set once the server listens

    def answer(self, query: str) -> tuple[int, bytes]:
        if self.delay:
            time.sleep(self.delay)
        params = single(query)
        sign = params.get("sign", "")
        if (
            not rsa2_verify(self.app_public_pem, request_sign_content(params), sign)
            or params.get("app_id") != APP_ID
            or params.get("sign_type") != "RSA2"
        ):
            self.rejected.append(params)
            error = {
                "code": "40002",
                "msg": "Invalid Arguments",
                "sub_code": "isv.invalid-signature",
                "sub_msg": "验签出错",
            }
            return 200, json.dumps({"error_response": error}, ensure_ascii=False).encode()
        biz = json.loads(params["biz_content"])
        self.requests.append({**params, "biz_content": biz})
        if self.next_raw is not None:
            raw, self.next_raw = self.next_raw, None
            return raw
        method = params["method"]
        if self.next_content is not None:
            content, self.next_content = self.next_content, None
        elif method == "alipay.trade.query":
            content = self._query(biz)
        elif method == "alipay.trade.refund":
            content = self._refund(biz)
        elif method == "alipay.trade.close":
            content = self._close(biz)
        else:
            content = {"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method"}
        return 200, self.signed(method.replace(".", "_") + "_response", content)

    def signed(self, response_key: str, content: dict[str, str]) -> bytes:
        text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        sign = rsa2_sign(self.signing_key, text)  # Alipay signs the response object's exact JSON text
        return f'{{"{response_key}":{text},"sign":"{sign}"}}'.encode()

    def _query(self, biz: dict[str, Any]) -> dict[str, str]:
        trade = self.trades.get(biz.get("out_trade_no", ""))
        if trade is None:
            return {
                "code": "40004",
                "msg": "Business Failed",
                "sub_code": "ACQ.TRADE_NOT_EXIST",
                "sub_msg": "交易不存在",
                "buyer_pay_amount": "0.00",
                "invoice_amount": "0.00",
                "point_amount": "0.00",
                "receipt_amount": "0.00",
            }
        return {"code": "10000", "msg": "Success", **trade}

    def _close(self, biz: dict[str, Any]) -> dict[str, str]:
        trade = self.trades.get(biz.get("out_trade_no", ""))
        failed = {"code": "40004", "msg": "Business Failed"}
        if trade is None:
            return {**failed, "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}
        if trade["trade_status"] != "WAIT_BUYER_PAY":
            return {**failed, "sub_code": "ACQ.TRADE_STATUS_ERROR", "sub_msg": "交易状态不合法"}
        trade["trade_status"] = "TRADE_CLOSED"
        return {"code": "10000", "msg": "Success", "out_trade_no": biz["out_trade_no"], "trade_no": trade["trade_no"]}

    def _refund(self, biz: dict[str, Any]) -> dict[str, str]:
        trade = self.trades.get(biz.get("out_trade_no", ""))
        if trade is None:
            return {
                "code": "40004",
                "msg": "Business Failed",
                "sub_code": "ACQ.TRADE_NOT_EXIST",
                "sub_msg": "交易不存在",
            }
        done = self.refunds.get(biz["out_request_no"])
        if done is not None:  # the same out_request_no again: no second refund
            return {**done, "fund_change": "N"}
        refunded = Decimal(trade.get("refund_fee", "0")) + Decimal(biz["refund_amount"])
        if trade["trade_status"] != "TRADE_SUCCESS":
            return {
                "code": "40004",
                "msg": "Business Failed",
                "sub_code": "ACQ.TRADE_STATUS_ERROR",
                "sub_msg": "交易状态不合法",
            }
        if refunded > Decimal(trade["total_amount"]):
            return {
                "code": "40004",
                "msg": "Business Failed",
                "sub_code": "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
                "sub_msg": "退款金额超限",
            }
        trade["refund_fee"] = f"{refunded:.2f}"
        if refunded == Decimal(trade["total_amount"]):
            trade["trade_status"] = "TRADE_CLOSED"
        result = {
            "code": "10000",
            "msg": "Success",
            "out_trade_no": biz["out_trade_no"],
            "trade_no": trade.get("trade_no", ""),
            "buyer_logon_id": trade.get("buyer_logon_id", ""),
            "fund_change": "Y",
            "refund_fee": trade["refund_fee"],
        }
        self.refunds[biz["out_request_no"]] = result
        return result


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:  # a client that gave up waiting
        pass


def _serve(fake: FakeAlipay) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the SDK sends the signed request as a GET query string
            status, body = fake.answer(urlsplit(self.path).query)
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def fake(keys: dict[str, KeyPair]) -> Iterator[FakeAlipay]:
    fake = FakeAlipay(app_public_pem=keys["app"].public_pem, signing_key=keys["alipay"].key)
    server = _serve(fake)
    fake.gateway = f"http://127.0.0.1:{server.server_address[1]}/gateway.do"
    yield fake
    server.shutdown()
    server.server_close()


def _provider(keys: dict[str, KeyPair], gateway: str, app_key: str = "app", timeout: float = 2.0) -> AlipayProvider:
    return AlipayProvider(
        app_id=APP_ID,
        app_private_key=keys[app_key].private_pem,
        alipay_public_key=keys["alipay"].public_pem,
        gateway=gateway,
        timeout=timeout,
    )


@pytest.fixture
def provider(keys: dict[str, KeyPair], fake: FakeAlipay) -> AlipayProvider:
    return _provider(keys, fake.gateway)


def _request(amount: Money = Money(12800, "HKD"), reference: str = "pay_42", **kwargs: Any) -> PaymentRequest:
    values: dict[str, Any] = {
        "reference": reference,
        "amount": amount,
        "description": "Duckline 30日 本地數據計劃",
        "method": PaymentMethod.ALIPAY,
        "return_url": "https://duckline.hk/pay/return?p=pay_42",
        "notify_url": "https://duckline.hk/api/v1/webhooks/alipay",
        **kwargs,
    }
    return PaymentRequest(**values)


def _trade(status: str, **extra: str) -> dict[str, str]:
    return {
        "out_trade_no": "pay_42",
        "trade_no": "2024061222001404560500012345",
        "trade_status": status,
        "total_amount": "128.00",
        "trans_currency": "HKD",
        "settle_currency": "HKD",
        "buyer_pay_amount": "0.00",
        **extra,
    }


# --- create_payment -----------------------------------------------------------------------------


def test_create_payment_returns_a_signed_page_pay_redirect(
    provider: AlipayProvider, fake: FakeAlipay, keys: dict[str, KeyPair]
) -> None:
    payment = provider.create_payment(_request())

    assert payment.provider_ref == "pay_42"
    assert payment.status is PaymentStatus.PENDING
    assert (payment.amount, payment.currency) == (12800, "HKD")
    assert payment.next_action is not None and payment.next_action["type"] == "redirect"
    url = payment.next_action["url"]
    assert url.startswith(fake.gateway + "?")

    params = single(urlsplit(url).query)
    sign = params["sign"]
    assert rsa2_verify(keys["app"].public_pem, request_sign_content(params), sign)
    tampered = {**params, "biz_content": params["biz_content"].replace("128.00", "1.28")}
    assert not rsa2_verify(keys["app"].public_pem, request_sign_content(tampered), sign)

    assert params["app_id"] == APP_ID
    assert params["method"] == "alipay.trade.page.pay"
    assert params["sign_type"] == "RSA2"
    assert params["charset"] == "utf-8"
    assert params["return_url"] == "https://duckline.hk/pay/return?p=pay_42"
    assert params["notify_url"] == "https://duckline.hk/api/v1/webhooks/alipay"
    stamped = datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    assert abs(stamped - datetime.now(BEIJING)) < timedelta(minutes=2)  # Beijing time, whatever the host's zone
    biz = json.loads(params["biz_content"])
    assert biz == {
        "subject": "Duckline 30日 本地數據計劃",
        "out_trade_no": "pay_42",
        "total_amount": "128.00",
        "product_code": "FAST_INSTANT_TRADE_PAY",
        "trans_currency": "HKD",
        "settle_currency": "HKD",
    }
    assert fake.requests == [] and fake.rejected == []  # the page pay goes through the payer's browser


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (Money(12800, "HKD"), "128.00"),
        (Money(5, "HKD"), "0.05"),
        (Money(1, "CNY"), "0.01"),
        (Money(100000, "CNY"), "1000.00"),
        (Money(123456789, "HKD"), "1234567.89"),
        (Money(1990, "HKD"), "19.90"),
    ],
)
def test_total_amount_has_exactly_two_decimals(provider: AlipayProvider, amount: Money, expected: str) -> None:
    payment = provider.create_payment(_request(amount))
    assert payment.next_action is not None
    biz = json.loads(single(urlsplit(payment.next_action["url"]).query)["biz_content"])
    assert biz["total_amount"] == expected
    assert ("trans_currency" in biz) is (amount.currency == "HKD")
    assert biz.get("settle_currency") == ("HKD" if amount.currency == "HKD" else None)


def test_create_payment_cleans_the_subject(provider: AlipayProvider) -> None:
    payment = provider.create_payment(_request(description="SIM / 30 days & more = fun"))
    assert payment.next_action is not None
    biz = json.loads(single(urlsplit(payment.next_action["url"]).query)["biz_content"])
    assert biz["subject"] == "SIM 30 days more fun"


@pytest.mark.parametrize("amount", [Money(100, "USD"), Money(0, "HKD"), Money(-100, "CNY")])
def test_create_payment_refuses_what_alipay_cannot_take(provider: AlipayProvider, amount: Money) -> None:
    with pytest.raises(ValueError):
        provider.create_payment(_request(amount))


def test_create_payment_with_a_saved_method_fails_plainly(provider: AlipayProvider) -> None:
    payment = provider.create_payment(_request(saved_token="tok_1"))
    assert payment.status is PaymentStatus.FAILED
    assert payment.failure_code == "saved_method_unsupported"
    assert payment.next_action is None


# --- query --------------------------------------------------------------------------------------


def test_query_of_a_trade_alipay_does_not_know_yet_is_pending(provider: AlipayProvider, fake: FakeAlipay) -> None:
    payment = provider.query("pay_42")

    assert payment.status is PaymentStatus.PENDING
    assert payment.provider_ref == "pay_42"
    assert fake.rejected == []
    [request] = fake.requests
    assert request["method"] == "alipay.trade.query"
    assert request["biz_content"] == {"out_trade_no": "pay_42"}


def test_query_waiting_for_the_buyer_is_pending(provider: AlipayProvider, fake: FakeAlipay) -> None:
    fake.trades["pay_42"] = _trade("WAIT_BUYER_PAY")
    payment = provider.query("pay_42")
    assert payment.status is PaymentStatus.PENDING
    assert (payment.amount, payment.currency) == (12800, "HKD")


@pytest.mark.parametrize("status", ["TRADE_SUCCESS", "TRADE_FINISHED"])
def test_query_of_a_paid_trade_is_succeeded(provider: AlipayProvider, fake: FakeAlipay, status: str) -> None:
    fake.trades["pay_42"] = _trade(
        status, buyer_logon_id="abc***@example.com", buyer_pay_amount="117.53", send_pay_date="2024-06-12 10:01:02"
    )
    payment = provider.query("pay_42")

    assert payment.status is PaymentStatus.SUCCEEDED
    assert (payment.amount, payment.currency) == (12800, "HKD")
    assert payment.wallet_account == "abc***@example.com"
    assert payment.refunded_amount == 0


def test_query_of_a_mainland_trade_is_in_cny(provider: AlipayProvider, fake: FakeAlipay) -> None:
    fake.trades["pay_42"] = {"out_trade_no": "pay_42", "trade_status": "TRADE_SUCCESS", "total_amount": "88.80"}
    payment = provider.query("pay_42")
    assert (payment.status, payment.amount, payment.currency) == (PaymentStatus.SUCCEEDED, 8880, "CNY")


def test_query_of_a_closed_unpaid_trade_is_cancelled(provider: AlipayProvider, fake: FakeAlipay) -> None:
    fake.trades["pay_42"] = _trade("TRADE_CLOSED")
    payment = provider.query("pay_42")
    assert payment.status is PaymentStatus.CANCELLED
    assert payment.refunded_amount == 0


def test_query_of_a_closed_paid_trade_is_refunded(provider: AlipayProvider, fake: FakeAlipay) -> None:
    fake.trades["pay_42"] = _trade("TRADE_CLOSED", send_pay_date="2024-06-12 10:01:02")
    payment = provider.query("pay_42")
    assert payment.status is PaymentStatus.REFUNDED
    assert payment.refunded_amount == 12800


def test_query_business_error_is_a_provider_error(provider: AlipayProvider, fake: FakeAlipay) -> None:
    fake.next_content = {
        "code": "40004",
        "msg": "Business Failed",
        "sub_code": "ACQ.INVALID_PARAMETER",
        "sub_msg": "参数无效",
    }
    with pytest.raises(ProviderError, match=r"ACQ\.INVALID_PARAMETER"):
        provider.query("pay_42")


def test_query_answer_signed_with_another_key_is_refused(
    provider: AlipayProvider, fake: FakeAlipay, keys: dict[str, KeyPair]
) -> None:
    fake.trades["pay_42"] = _trade("TRADE_SUCCESS")
    fake.signing_key = keys["stranger"].key
    with pytest.raises(ProviderError):
        provider.query("pay_42")


@pytest.mark.parametrize(
    "raw",
    [
        (200, b'{"alipay_trade_query_response":{"code":"20000","msg":"Service Currently Unavailable"}}'),
        (502, b"<html>Bad Gateway</html>"),
        (200, b"not json"),
    ],
)
def test_query_unsigned_or_broken_answers_are_provider_errors(
    provider: AlipayProvider, fake: FakeAlipay, raw: tuple[int, bytes]
) -> None:
    fake.next_raw = raw
    with pytest.raises(ProviderError):
        provider.query("pay_42")


def test_request_signed_with_the_wrong_app_key_is_refused_by_the_gateway(
    keys: dict[str, KeyPair], fake: FakeAlipay
) -> None:
    impostor = _provider(keys, fake.gateway, app_key="stranger")
    with pytest.raises(ProviderError):
        impostor.query("pay_42")
    assert len(fake.rejected) == 1 and fake.requests == []


# --- refund -------------------------------------------------------------------------------------


def test_partial_refund_succeeds_and_names_the_refund(provider: AlipayProvider, fake: FakeAlipay) -> None:
    fake.trades["pay_42"] = _trade("TRADE_SUCCESS", send_pay_date="2024-06-12 10:01:02")

    result = provider.refund("pay_42", Money(5000, "HKD"), "rf_7", "customer changed plan")

    assert result.succeeded is True
    assert result.provider_ref == "rf_7"
    assert fake.rejected == []
    [request] = fake.requests
    assert request["method"] == "alipay.trade.refund"
    assert request["biz_content"] == {
        "refund_amount": "50.00",
        "out_trade_no": "pay_42",
        "out_request_no": "rf_7",
        "refund_reason": "customer changed plan",
        "refund_currency": "HKD",
    }
    assert fake.trades["pay_42"]["refund_fee"] == "50.00"
    assert provider.query("pay_42").status is PaymentStatus.SUCCEEDED  # partial: still paid


def test_refund_asked_again_is_not_paid_twice(provider: AlipayProvider, fake: FakeAlipay) -> None:
    fake.trades["pay_42"] = _trade("TRADE_SUCCESS")
    first = provider.refund("pay_42", Money(5000, "HKD"), "rf_7", "x")
    again = provider.refund("pay_42", Money(5000, "HKD"), "rf_7", "x")
    assert first.succeeded and again.succeeded
    assert [r["biz_content"]["out_request_no"] for r in fake.requests] == ["rf_7", "rf_7"]
    assert fake.trades["pay_42"]["refund_fee"] == "50.00"


def test_full_refund_then_query_is_refunded(provider: AlipayProvider, fake: FakeAlipay) -> None:
    fake.trades["pay_42"] = _trade("TRADE_SUCCESS", send_pay_date="2024-06-12 10:01:02")
    assert provider.refund("pay_42", Money(12800, "HKD"), "rf_8", "cancelled").succeeded
    assert provider.query("pay_42").status is PaymentStatus.REFUNDED


def test_refund_beyond_the_payment_is_declined(provider: AlipayProvider, fake: FakeAlipay) -> None:
    fake.trades["pay_42"] = _trade("TRADE_SUCCESS")
    result = provider.refund("pay_42", Money(12801, "HKD"), "rf_9", "too much")
    assert result.succeeded is False
    assert result.failure_message is not None and "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL" in result.failure_message


def test_refund_of_a_mainland_trade_sends_no_currency(provider: AlipayProvider, fake: FakeAlipay) -> None:
    fake.trades["pay_42"] = {"out_trade_no": "pay_42", "trade_status": "TRADE_SUCCESS", "total_amount": "88.80"}
    assert provider.refund("pay_42", Money(880, "CNY"), "rf_1", "x").succeeded
    assert "refund_currency" not in fake.requests[0]["biz_content"]
    assert fake.requests[0]["biz_content"]["refund_amount"] == "8.80"


def test_refund_during_alipay_system_error_is_retryable(provider: AlipayProvider, fake: FakeAlipay) -> None:
    fake.next_content = {
        "code": "40004",
        "msg": "Business Failed",
        "sub_code": "ACQ.SYSTEM_ERROR",
        "sub_msg": "系统错误",
    }
    with pytest.raises(ProviderError):
        provider.refund("pay_42", Money(5000, "HKD"), "rf_7", "x")


# --- network trouble ----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_gateway_is_a_provider_error(keys: dict[str, KeyPair]) -> None:
    provider = _provider(keys, f"http://127.0.0.1:{_closed_port()}/gateway.do")
    with pytest.raises(ProviderError):
        provider.query("pay_42")
    with pytest.raises(ProviderError):
        provider.refund("pay_42", Money(5000, "HKD"), "rf_7", "x")


def test_slow_gateway_times_out_as_a_provider_error(keys: dict[str, KeyPair], fake: FakeAlipay) -> None:
    fake.delay = 1.5
    provider = _provider(keys, fake.gateway, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ProviderError):
        provider.query("pay_42")
    assert time.monotonic() - started < 1.4


# --- webhooks -----------------------------------------------------------------------------------


def _notification(**overrides: str) -> dict[str, str]:
    fields = {
        "gmt_create": "2024-06-12 10:00:58",
        "charset": "utf-8",
        "gmt_payment": "2024-06-12 10:01:02",
        "notify_time": "2024-06-12 10:01:03",
        "subject": "Duckline 30日 本地數據計劃",
        "buyer_id": "2088102177846880",
        "buyer_logon_id": "abc***@example.com",
        "invoice_amount": "128.00",
        "version": "1.0",
        "notify_id": "2024061200222100103044561403045612",
        "notify_type": "trade_status_sync",
        "out_trade_no": "pay_42",
        "total_amount": "128.00",
        "trade_status": "TRADE_SUCCESS",
        "trade_no": "2024061222001404560500012345",
        "auth_app_id": APP_ID,
        "receipt_amount": "128.00",
        "point_amount": "0.00",
        "app_id": APP_ID,
        "buyer_pay_amount": "117.53",
        "seller_id": "2088102177302314",
        "trans_currency": "HKD",
        "passback_params": "",
        "fund_bill_list": '[{"amount":"117.53","fundChannel":"ALIPAYACCOUNT"}]',
    }
    fields.update(overrides)
    return fields


def _signed_body(fields: dict[str, str], key: rsa.RSAPrivateKey) -> bytes:
    signed = {**fields, "sign_type": "RSA2"}
    signed["sign"] = rsa2_sign(key, notification_sign_content(signed))
    return urlencode(signed).encode()


HEADERS = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}


def test_webhook_payment_succeeded(provider: AlipayProvider, keys: dict[str, KeyPair]) -> None:
    notice = provider.parse_webhook(HEADERS, _signed_body(_notification(), keys["alipay"].key))

    assert notice.event_id == "2024061200222100103044561403045612"
    assert notice.event_type == "payment.succeeded"
    assert notice.provider_ref == "pay_42"
    assert notice.status is PaymentStatus.SUCCEEDED
    assert (notice.amount, notice.currency) == (12800, "HKD")
    assert notice.refunded_amount == 0
    assert notice.wallet_account == "abc***@example.com"
    assert notice.payload["trade_no"] == "2024061222001404560500012345"
    assert "sign" not in notice.payload and "sign_type" not in notice.payload


def test_webhook_partial_refund(provider: AlipayProvider, keys: dict[str, KeyPair]) -> None:
    fields = _notification(refund_fee="50.00", gmt_refund="2024-06-13 09:00:00.123", notify_id="n_refund_1")
    notice = provider.parse_webhook(HEADERS, _signed_body(fields, keys["alipay"].key))
    assert notice.status is PaymentStatus.SUCCEEDED
    assert notice.event_type == "refund.succeeded"
    assert notice.refunded_amount == 5000
    assert notice.amount == 12800


def test_webhook_full_refund_closes_the_trade(provider: AlipayProvider, keys: dict[str, KeyPair]) -> None:
    fields = _notification(trade_status="TRADE_CLOSED", refund_fee="128.00", notify_id="n_refund_2")
    notice = provider.parse_webhook(HEADERS, _signed_body(fields, keys["alipay"].key))
    assert notice.status is PaymentStatus.REFUNDED
    assert notice.refunded_amount == 12800


def test_webhook_closed_unpaid_is_cancelled_and_cny_by_default(
    provider: AlipayProvider, keys: dict[str, KeyPair]
) -> None:
    fields = _notification(trade_status="TRADE_CLOSED", total_amount="88.80")
    del fields["trans_currency"]
    notice = provider.parse_webhook(HEADERS, _signed_body(fields, keys["alipay"].key))
    assert notice.status is PaymentStatus.CANCELLED
    assert (notice.amount, notice.currency) == (8880, "CNY")


def test_webhook_with_tampered_amount_is_refused(provider: AlipayProvider, keys: dict[str, KeyPair]) -> None:
    body = _signed_body(_notification(), keys["alipay"].key)
    tampered = body.replace(b"total_amount=128.00", b"total_amount=1.28")
    assert tampered != body
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(HEADERS, tampered)


def test_webhook_signed_with_another_key_is_refused(provider: AlipayProvider, keys: dict[str, KeyPair]) -> None:
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(HEADERS, _signed_body(_notification(), keys["stranger"].key))


def test_webhook_without_sign_is_refused(provider: AlipayProvider) -> None:
    body = urlencode({**_notification(), "sign_type": "RSA2"}).encode()
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(HEADERS, body)


@pytest.mark.parametrize("sign", ["not base64 at all!", "", "QUJD"])
def test_webhook_with_a_garbage_sign_is_refused(provider: AlipayProvider, sign: str) -> None:
    body = urlencode({**_notification(), "sign_type": "RSA2", "sign": sign}).encode()
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(HEADERS, body)


def test_webhook_for_another_app_is_refused(provider: AlipayProvider, keys: dict[str, KeyPair]) -> None:
    body = _signed_body(_notification(app_id="2021000999999999"), keys["alipay"].key)  # genuinely Alipay's
    with pytest.raises(InvalidSignature, match="another app"):
        provider.parse_webhook(HEADERS, body)


def test_webhook_with_another_sign_type_is_refused(provider: AlipayProvider, keys: dict[str, KeyPair]) -> None:
    fields = _notification()
    body = urlencode(
        {**fields, "sign_type": "RSA", "sign": rsa2_sign(keys["alipay"].key, notification_sign_content(fields))}
    ).encode()
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(HEADERS, body)


def test_webhook_with_a_repeated_field_is_refused(provider: AlipayProvider, keys: dict[str, KeyPair]) -> None:
    body = _signed_body(_notification(), keys["alipay"].key) + b"&total_amount=1.28"
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(HEADERS, body)


def test_webhook_that_is_not_a_form_is_refused(provider: AlipayProvider) -> None:
    with pytest.raises(InvalidSignature):
        provider.parse_webhook(HEADERS, b'{"trade_status": "TRADE_SUCCESS"}')


def test_ack_is_plain_success(provider: AlipayProvider) -> None:
    assert provider.ack() == WebhookAck(200, b"success", "text/plain")


# --- by our reference, and closing ----------------------------------------------------------------


def test_find_is_none_for_a_trade_alipay_does_not_have(provider: AlipayProvider, fake: FakeAlipay) -> None:
    assert provider.find("pay_42") is None
    fake.trades["pay_42"] = _trade("TRADE_SUCCESS")
    found = provider.find("pay_42")
    assert found is not None and (found.status, found.amount) == (PaymentStatus.SUCCEEDED, 12800)


def test_a_page_pay_carries_the_deadline_after_which_alipay_refuses_it(provider: AlipayProvider) -> None:
    deadline = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
    payment = provider.create_payment(_request(expires_at=deadline))

    assert payment.next_action is not None
    biz = json.loads(single(urlsplit(payment.next_action["url"]).query)["biz_content"])
    assert biz["time_expire"] == "2026-11-24 10:30:00"  # Beijing time


def test_cancel_closes_a_waiting_trade_and_leaves_a_paid_or_unopened_one_as_it_is(
    provider: AlipayProvider, fake: FakeAlipay
) -> None:
    fake.trades["pay_wait"] = _trade("WAIT_BUYER_PAY", out_trade_no="pay_wait")
    fake.trades["pay_paid"] = _trade("TRADE_SUCCESS", out_trade_no="pay_paid")

    assert provider.cancel("pay_wait").status is PaymentStatus.CANCELLED
    assert fake.trades["pay_wait"]["trade_status"] == "TRADE_CLOSED"
    assert provider.cancel("pay_paid").status is PaymentStatus.SUCCEEDED
    assert provider.cancel("pay_unopened").status is PaymentStatus.PENDING  # nothing to close yet
    assert [r["method"] for r in fake.requests].count("alipay.trade.close") == 3
