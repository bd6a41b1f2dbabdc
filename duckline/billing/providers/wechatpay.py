"""WeChat Pay (APIv3) through the `wechatpayv3` SDK: Native pay, the payer scans a QR code.

Trust material is the "WeChat Pay public key" mode of APIv3 (a platform RSA public key and its id,
``PUB_KEY_ID_…``, downloaded once from the merchant platform), so nothing is fetched from WeChat Pay
at start-up and responses and notifications are verified offline. The SDK only falls back to fetching
platform certificates (``GET /v3/certificates``) when a message carries a serial other than the
public-key id; webhooks with another serial are refused here before the SDK sees them.

The SDK has no base-URL option: its `Core` object reads the private attribute ``_gate_way`` on every
request, so a test (or a switch to the backup domain ``api2.mch.weixin.qq.com``) sets it after
construction. `WeChatPay.__init__` builds the `Core` itself, so there is no class to subclass instead.

Amounts are integer minor units (fen / cents) in both directions; WeChat Pay's ``amount.total`` is
already in minor units.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import timedelta, timezone
from typing import Any

from wechatpayv3 import WeChatPay, WeChatPayType

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
from duckline.core.clock import Clock, SystemClock
from duckline.core.money import Money

DEFAULT_BASE_URL = "https://api.mch.weixin.qq.com"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
# WeChat Pay re-signs every retried notification, and asks merchants to refuse a timestamp more than
# five minutes away from their own clock (replay protection).
TOLERANCE_SECONDS = 300

# WeChat Pay's rules (out_trade_no also goes into a URL path, so no "|", which would be re-encoded).
_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-*]{6,32}")
_OUT_REFUND_NO = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")
_DESCRIPTION_BYTES = 127
_BEIJING = timezone(timedelta(hours=8))
_REASON_CHARS = 80

_TRADE_STATE = {
    "NOTPAY": PaymentStatus.PENDING,
    "USERPAYING": PaymentStatus.PENDING,
    "SUCCESS": PaymentStatus.SUCCEEDED,
    "CLOSED": PaymentStatus.CANCELLED,
    "REVOKED": PaymentStatus.CANCELLED,
    "PAYERROR": PaymentStatus.FAILED,
    "REFUND": PaymentStatus.REFUNDED,
}
# Error codes on which a call may simply be tried again later.
_RETRYABLE = frozenset({"SYSTEM_ERROR", "SYSTEMERROR", "FREQUENCY_LIMITED", "BANKERROR"})


class WeChatPayProvider:
    """One WeChat Pay direct merchant (mchid + appid), Native (QR code) payments."""

    name = "wechatpay"
    methods = frozenset({PaymentMethod.WECHATPAY})
    lookup_lag = timedelta(0)  # the order query by out_trade_no reads the order itself

    def __init__(
        self,
        *,
        mchid: str,
        appid: str,
        private_key: str,
        cert_serial_no: str,
        apiv3_key: str,
        platform_public_key: str,
        platform_public_key_id: str,
        notify_url: str,
        base_url: str | None = None,
        timeout: float | tuple[float, float] = (5.0, 20.0),
        clock: Clock | None = None,
    ) -> None:
        """
        private_key: the merchant API certificate's key, PKCS#8 PEM (``BEGIN PRIVATE KEY``).
        cert_serial_no: the merchant API certificate's serial number (hex).
        apiv3_key: the 32-character APIv3 key (AES-256-GCM key of notifications).
        platform_public_key / platform_public_key_id: the WeChat Pay public key (PEM) and its id.
        base_url: defaults to https://api.mch.weixin.qq.com; tests point it at a local fake.
        """
        if len(apiv3_key.encode()) != 32:
            raise ValueError("the WeChat Pay APIv3 key must be 32 bytes")
        if not platform_public_key or not platform_public_key_id:
            raise ValueError("the WeChat Pay public key and its id are both required")
        self.mchid = mchid
        self.notify_url = notify_url
        self._public_key_id = platform_public_key_id
        self._clock: Clock = clock or SystemClock()
        try:
            self._client = WeChatPay(
                wechatpay_type=WeChatPayType.NATIVE,
                mchid=mchid,
                private_key=private_key,
                cert_serial_no=cert_serial_no,
                appid=appid,
                apiv3_key=apiv3_key,
                notify_url=notify_url,
                timeout=timeout,
                public_key=platform_public_key,
                public_key_id=platform_public_key_id,
            )
        except Exception as exc:  # the SDK raises bare Exception for unreadable keys
            raise ValueError(f"WeChat Pay configuration rejected: {exc}") from exc
        # No constructor option for the API domain; see the module docstring.
        self._client._core._gate_way = (base_url or DEFAULT_BASE_URL).rstrip("/")

    # --- PaymentProvider ------------------------------------------------------------------------

    def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        _check_out_trade_no(request.reference)
        code, body = self._call(
            "create",
            self._client.pay,
            description=_truncate_utf8(request.description or request.reference, _DESCRIPTION_BYTES),
            out_trade_no=request.reference,
            amount={"total": request.amount.amount, "currency": request.amount.currency},
            notify_url=request.notify_url or self.notify_url,
            pay_type=WeChatPayType.NATIVE,
            # WeChat Pay refuses to take the payment after this (RFC 3339, as its examples write it).
            time_expire=request.expires_at.astimezone(_BEIJING).isoformat(timespec="seconds")
            if request.expires_at
            else None,
        )
        if 400 <= code < 500 and body.get("code") in ("ORDERPAID", "ORDER_CLOSED"):
            return self.query(request.reference)  # an earlier attempt was paid or closed: say which, signed
        if code != 200 or not body.get("code_url"):
            raise _error("create", code, body)
        return ProviderPayment(
            provider_ref=request.reference,
            status=PaymentStatus.PENDING,
            amount=request.amount.amount,
            currency=request.amount.currency,
            next_action={"type": "qr", "code_url": body["code_url"]},
        )

    def query(self, provider_ref: str) -> ProviderPayment:
        found = self.find(provider_ref)
        if found is None:
            # Not (yet) known to WeChat Pay: nothing was paid. Amount and currency are unknown.
            return ProviderPayment(
                provider_ref=provider_ref,
                status=PaymentStatus.PENDING,
                amount=0,
                currency="",
                failure_code="ORDER_NOT_EXIST",
            )
        return found

    def find(self, reference: str) -> ProviderPayment | None:
        """The order query by out_trade_no, which is our reference; None: WeChat Pay has no such order."""
        _check_out_trade_no(reference)
        code, body = self._call("query", self._client.query, out_trade_no=reference)
        if code == 404 and body.get("code") == "ORDER_NOT_EXIST":
            return None
        if code != 200:
            raise _error("query", code, body)
        return self._transaction_view(reference, body)

    def cancel(self, provider_ref: str) -> ProviderPayment:
        """Close the order (answered 204). A paid order cannot be closed: it is reported as it is."""
        _check_out_trade_no(provider_ref)
        code, body = self._call("close", self._client.close, out_trade_no=provider_ref)
        if code == 204 or (400 <= code < 500 and body.get("code") in ("ORDERPAID", "ORDER_CLOSED")):
            return self.query(provider_ref)
        if code == 404 and body.get("code") == "ORDER_NOT_EXIST":  # only our create makes one: none ever will
            return ProviderPayment(provider_ref, PaymentStatus.CANCELLED, 0, "", failure_code="ORDER_NOT_EXIST")
        raise _error("close", code, body)

    def refund(self, provider_ref: str, amount: Money, refund_reference: str, reason: str) -> RefundResult:
        """Refund by out_trade_no; out_refund_no = refund_reference makes a repeat a no-op at WeChat Pay.

        WeChat Pay wants the original order total with every refund; it is taken from a (signed)
        order query, which also checks that the order was paid and is in the refund's currency.
        """
        if not _OUT_REFUND_NO.fullmatch(refund_reference):
            raise ProviderError(f"not a valid WeChat Pay out_refund_no: {refund_reference!r}")
        order = self.query(provider_ref)
        if order.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED):
            return RefundResult(refund_reference, False, f"the payment is {order.status.value}, nothing to refund")
        if order.currency != amount.currency:
            return RefundResult(
                refund_reference, False, f"refund in {amount.currency} for a payment in {order.currency}"
            )
        code, body = self._call(
            "refund",
            self._client.refund,
            out_refund_no=refund_reference,
            out_trade_no=provider_ref,
            amount={"refund": amount.amount, "total": order.amount, "currency": amount.currency},
            reason=reason[:_REASON_CHARS] or None,
        )
        if code == 200:
            status = str(body.get("status", ""))
            if status in ("SUCCESS", "PROCESSING"):
                return RefundResult(refund_reference, True)
            return RefundResult(refund_reference, False, f"refund {status or 'in an unknown state'}")
        if code >= 500 or code == 429 or body.get("code") in _RETRYABLE:
            raise _error("refund", code, body)
        # A refusal (e.g. NOT_ENOUGH funds, more than was paid): retrying will not help.
        return RefundResult(refund_reference, False, f"{body.get('code', code)}: {body.get('message', '')}".strip())

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        wanted = {k.lower(): v for k, v in headers.items()}
        for name in ("wechatpay-signature", "wechatpay-timestamp", "wechatpay-nonce", "wechatpay-serial"):
            if not wanted.get(name):
                raise InvalidSignature(f"missing header {name}")
        # The SDK would fetch platform certificates for an unknown serial: refuse it here.
        if wanted["wechatpay-serial"] != self._public_key_id:
            raise InvalidSignature("signed with an unknown WeChat Pay key")
        wanted.setdefault("wechatpay-signature-type", SIGNATURE_TYPE)
        try:
            timestamp = int(wanted["wechatpay-timestamp"])
        except ValueError as exc:
            raise InvalidSignature("malformed timestamp") from exc
        if abs(self._clock.now().timestamp() - timestamp) > TOLERANCE_SECONDS:
            raise InvalidSignature("timestamp outside the allowed window")
        try:
            # Verifies the RSA signature over "timestamp\nnonce\nbody\n", then decrypts the resource.
            event = self._client.callback(wanted, body)
        except Exception as exc:  # malformed signature or body, unsupported algorithm
            raise InvalidSignature(f"notification rejected: {exc}") from exc
        if not isinstance(event, dict) or not isinstance(event.get("resource"), dict):
            raise InvalidSignature("signature or APIv3 decryption failed")
        resource: dict[str, Any] = event["resource"]
        if resource.get("mchid", self.mchid) != self.mchid:
            raise InvalidSignature("notification for another merchant")
        return self._notice(event, resource)

    def ack(self) -> WebhookAck:
        # APIv3: "received" is HTTP 200 or 204 and no body is needed; the body is the one the older
        # documentation asked for, harmless under the current rule.
        return WebhookAck(200, b'{"code": "SUCCESS", "message": "OK"}', "application/json")

    # --- internals ------------------------------------------------------------------------------

    def _call(self, what: str, method: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        try:
            code, message = method(**kwargs)
        except Exception as exc:  # requests' network errors; the SDK's "failed to verify the signature"
            raise ProviderError(f"WeChat Pay {what} failed: {exc}") from exc
        return int(code), _json(message)

    def _transaction_view(self, provider_ref: str, trade: dict[str, Any]) -> ProviderPayment:
        state = str(trade.get("trade_state", ""))
        status = _TRADE_STATE.get(state)
        if status is None:
            raise ProviderError(f"WeChat Pay query: unknown trade_state {state!r}")
        amount = trade.get("amount") or {}
        failed = status is PaymentStatus.FAILED
        return ProviderPayment(
            provider_ref=provider_ref,
            status=status,
            amount=_order_total(amount),
            currency=str(amount.get("currency", "")),
            failure_code=state if failed else None,
            failure_message=trade.get("trade_state_desc") if failed else None,
        )

    def _notice(self, event: dict[str, Any], resource: dict[str, Any]) -> WebhookNotice:
        event_type = str(event.get("event_type", ""))
        event_id = event.get("id")
        provider_ref = resource.get("out_trade_no")
        if not event_id or not provider_ref:
            raise InvalidSignature("notification without id or out_trade_no")
        amount = resource.get("amount") or {}
        common: dict[str, Any] = {
            "event_id": str(event_id),
            "event_type": event_type,
            "provider_ref": str(provider_ref),
            "reference": str(provider_ref),
            "payload": event,
        }
        if event_type.startswith("REFUND."):
            # A refund notice carries the order total and this one refund's amount, but no currency
            # and not what was refunded before: it is reported as one refund, named by WeChat Pay's
            # refund_id (and our out_refund_no), so a repeated notice is recognised.
            # The payment was captured, so the total is reported as captured (currency: the order's).
            # Only a refund of the whole total makes the payment REFUNDED; a partial one leaves it
            # SUCCEEDED. A failed refund (REFUND.ABNORMAL / REFUND.CLOSED) refunds nothing.
            total = int(amount.get("total", 0))
            refunded = int(amount.get("refund", 0)) if event_type == "REFUND.SUCCESS" else 0
            full = refunded > 0 and refunded >= total
            return WebhookNotice(
                **common,
                status=PaymentStatus.REFUNDED if full else PaymentStatus.SUCCEEDED,
                amount=total or None,
                currency=None,
                refunded_amount=total if full else 0,  # all of it, or: not said
                refund_id=_text(resource.get("refund_id")) if refunded else None,
                refund_amount=refunded or None,
                refund_reference=_text(resource.get("out_refund_no")) if refunded else None,
            )
        state = str(resource.get("trade_state", ""))
        status = (
            PaymentStatus.SUCCEEDED
            if event_type == "TRANSACTION.SUCCESS"
            else _TRADE_STATE.get(state, PaymentStatus.PENDING)
        )
        return WebhookNotice(
            **common,
            status=status,
            amount=_order_total(amount) if amount else None,
            currency=str(amount["currency"]) if amount.get("currency") else None,
            failure_code=state if status is PaymentStatus.FAILED else None,
        )


def _order_total(amount: Mapping[str, Any]) -> int:
    """The order total in minor units: what the order is checked against. `payer_total` is what the
    payer's wallet was debited after WeChat coupons, and in cross-border trades it is in
    `payer_currency`, not `currency`; it is used only when `total` is absent."""
    value = amount.get("total", amount.get("payer_total", 0))
    return int(value)


def _text(value: Any) -> str | None:
    return str(value) if value else None


def _check_out_trade_no(reference: str) -> None:
    if not _OUT_TRADE_NO.fullmatch(reference):
        # WeChat Pay would refuse it (PARAM_ERROR); refusing here also keeps it out of URL paths.
        raise ProviderError(f"not a valid WeChat Pay out_trade_no (6-32 of 0-9 A-Z a-z _ - *): {reference!r}")


def _truncate_utf8(text: str, limit: int) -> str:
    return text.encode()[:limit].decode("utf-8", "ignore")


def _json(message: Any) -> dict[str, Any]:
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    if not message:
        return {}
    try:
        data = json.loads(message)
    except ValueError:
        return {"message": str(message)[:200]}
    return data if isinstance(data, dict) else {}


def _error(what: str, code: int, body: Mapping[str, Any]) -> ProviderError:
    return ProviderError(f"WeChat Pay {what}: HTTP {code} {body.get('code', '')} {body.get('message', '')}".strip())
