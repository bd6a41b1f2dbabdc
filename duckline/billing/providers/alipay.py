"""Alipay (支付宝) through python-alipay-sdk: page pay, trade query, refund and the async notification.

Alipay names a trade by our own `out_trade_no`, so the provider reference is the request's
reference and there is nothing to store between calls. Every answer from the gateway is
RSA2-signed by Alipay and checked by the SDK against the Alipay public key; every request
is RSA2-signed with the app's private key.

Currency: a mainland trade is in CNY. Duckline sells in HKD, so an HKD order is sent as a
cross-border trade: `trans_currency` (the currency `total_amount` is quoted in) and
`settle_currency` (what we are paid out in) are both HKD; the payer sees and pays the CNY
equivalent, converted by Alipay. Refunds of such trades name the same currency
(`refund_currency`). Only CNY and HKD are accepted; both have two decimals.

Notes on the SDK (3.4.0):
- it has no gateway parameter (only `debug=` for the sandbox), so the gateway is set on the
  instance's `_gateway`, which is what its requests use;
- it stamps requests with the server's local time; Alipay reads `timestamp` as Beijing time
  (Alipay's own Java SDK sends GMT+8), so requests are stamped in GMT+8 here;
- it raises `AliPayException` for an unsigned answer (gateway errors) and
  `AliPayValidationError` for an answer whose signature does not verify: both are
  ProviderError here, as are network errors and time-outs.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

from alipay import AliPay, AliPayConfig
from alipay.exceptions import AliPayException, AliPayValidationError
from babel.numbers import get_currency_precision

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

DEFAULT_GATEWAY = "https://openapi.alipay.com/gateway.do"
CURRENCIES = frozenset({"CNY", "HKD"})
_BEIJING = timezone(timedelta(hours=8), "GMT+8")
_SUCCESS = "10000"
_SIGN_TYPE = "RSA2"
_SUBJECT_MAX = 256
_REASON_MAX = 256
# What the SDK lets escape from a gateway call: network (URLError, time-outs and resets are
# OSError), a broken HTTP exchange, a body that is not JSON, an unsigned or badly signed answer,
# and the SDK stumbling over an answer that has neither the expected key nor error_response.
_CALL_ERRORS = (
    OSError,
    http.client.HTTPException,
    ValueError,
    TypeError,
    AttributeError,
    KeyError,
    AliPayException,
    AliPayValidationError,
)
# trade.close answers after which the trade's state is simply read: not there yet, paid or closed.
_CLOSE_SETTLED = frozenset({"ACQ.TRADE_NOT_EXIST", "ACQ.TRADE_STATUS_ERROR"})
_TRADE_STATUS = {
    "WAIT_BUYER_PAY": PaymentStatus.PENDING,
    "TRADE_SUCCESS": PaymentStatus.SUCCEEDED,
    "TRADE_FINISHED": PaymentStatus.SUCCEEDED,  # paid, and past the refund period
    "TRADE_CLOSED": PaymentStatus.CANCELLED,  # unpaid and timed out, or paid and then fully refunded
}


def to_major(money: Money) -> str:
    """Minor units to Alipay's amount string: 12800 HKD -> "128.00". No float anywhere."""
    if money.currency not in CURRENCIES:
        raise ValueError(f"Alipay takes {sorted(CURRENCIES)}, not {money.currency}")
    places = get_currency_precision(money.currency)
    return format(Decimal(money.amount).scaleb(-places), f".{places}f")


def to_minor(value: str, currency: str) -> int:
    """Alipay's amount string to minor units: "128.00" HKD -> 12800. ValueError unless exact."""
    try:
        amount = Decimal(value.strip())
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {value!r}") from exc
    places = get_currency_precision(currency)
    minor = amount.scaleb(places)
    if not minor.is_finite() or minor != minor.to_integral_value() or minor < 0:
        raise ValueError(f"not an amount in {currency}: {value!r}")
    return int(minor)


def _subject(description: str) -> str:
    # Alipay refuses "/", "=" and "&" in the subject, and cuts it at 256 characters.
    cleaned = " ".join(description.translate(str.maketrans("/=&", "   ")).split())
    return (cleaned or "Duckline")[:_SUBJECT_MAX]


class _AliPayClient(AliPay):
    """The SDK's client, pointed at a given gateway and stamping requests in Beijing time."""

    def __init__(self, gateway: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gateway = gateway

    @property
    def gateway(self) -> str:
        return str(self._gateway)

    def build_body(self, method: str, biz_content: Any = None, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = super().build_body(method, biz_content, **kwargs)
        data["timestamp"] = datetime.now(_BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        return data


class AlipayProvider:
    name = "alipay"
    methods = frozenset({PaymentMethod.ALIPAY})
    lookup_lag = timedelta(0)  # trade.query by out_trade_no reads the trade itself

    def __init__(
        self,
        app_id: str,
        app_private_key: str,
        alipay_public_key: str,
        gateway: str = DEFAULT_GATEWAY,
        timeout: float = 10.0,
    ) -> None:
        self.app_id = str(app_id)
        self._client = _AliPayClient(
            gateway,
            appid=self.app_id,
            app_private_key_string=app_private_key,
            alipay_public_key_string=alipay_public_key,
            sign_type=_SIGN_TYPE,
            config=AliPayConfig(timeout=timeout),
        )

    @property
    def gateway(self) -> str:
        return self._client.gateway

    # --- PaymentProvider -------------------------------------------------------------------

    def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        """Sign an alipay.trade.page.pay request; the payer's browser goes to it.

        Nothing is sent to Alipay here: the trade exists once the payer opens the page. The same
        reference gives the same out_trade_no, which Alipay never charges twice.
        """
        money = request.amount
        if money.amount <= 0:
            raise ValueError("an Alipay payment needs a positive amount")
        total_amount = to_major(money)  # also refuses currencies other than CNY and HKD
        if request.saved_token:
            # Page pay has no saved methods (that would be an agreement, 周期扣款): say no plainly.
            return ProviderPayment(
                provider_ref=request.reference,
                status=PaymentStatus.FAILED,
                amount=money.amount,
                currency=money.currency,
                failure_code="saved_method_unsupported",
                failure_message="Alipay cannot charge a saved payment method.",
            )
        extra: dict[str, str] = {}
        if money.currency != "CNY":
            extra = {"trans_currency": money.currency, "settle_currency": money.currency}
        if request.expires_at is not None:  # Alipay refuses to take the payment after this
            extra["time_expire"] = request.expires_at.astimezone(_BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        signed_query = self._client.api_alipay_trade_page_pay(
            subject=_subject(request.description),
            out_trade_no=request.reference,
            total_amount=total_amount,
            return_url=request.return_url,
            notify_url=request.notify_url,
            **extra,
        )
        return ProviderPayment(
            provider_ref=request.reference,
            status=PaymentStatus.PENDING,
            amount=money.amount,
            currency=money.currency,
            next_action={"type": "redirect", "url": f"{self.gateway}?{signed_query}"},
        )

    def query(self, provider_ref: str) -> ProviderPayment:
        found = self.find(provider_ref)
        if found is None:  # the payer has not opened the page yet
            return ProviderPayment(provider_ref=provider_ref, status=PaymentStatus.PENDING, amount=0, currency="CNY")
        return found

    def find(self, reference: str) -> ProviderPayment | None:
        """alipay.trade.query by out_trade_no, which is our reference; None: no such trade (yet)."""
        result = self._call(self._client.api_alipay_trade_query, out_trade_no=reference)
        code, sub_code = result.get("code"), result.get("sub_code")
        if code != _SUCCESS:
            if sub_code == "ACQ.TRADE_NOT_EXIST":
                return None
            raise ProviderError(f"alipay.trade.query failed: {_describe(result)}")
        trade_status = str(result.get("trade_status", ""))
        status = _TRADE_STATUS.get(trade_status)
        if status is None:
            raise ProviderError(f"alipay.trade.query: unknown trade_status {trade_status!r}")
        currency = _currency(result)
        try:
            amount = to_minor(str(result.get("total_amount", "")), currency)
            refunded = to_minor(str(result["refund_fee"]), currency) if result.get("refund_fee") else 0
        except ValueError as exc:
            raise ProviderError(f"alipay.trade.query: {exc}") from exc
        if status is PaymentStatus.CANCELLED and (refunded >= amount > 0 or result.get("send_pay_date")):
            # Closed after it was paid: Alipay closes a paid trade only once it is fully refunded.
            status, refunded = PaymentStatus.REFUNDED, max(refunded, amount)
        return ProviderPayment(
            provider_ref=reference,
            status=status,
            amount=amount,
            currency=currency,
            wallet_account=result.get("buyer_logon_id") or None,  # masked by Alipay, e.g. "abc***@x.com"
            refunded_amount=refunded,
        )

    def cancel(self, provider_ref: str) -> ProviderPayment:
        """alipay.trade.close. A trade the payer never opened does not exist yet and cannot be
        closed: it stays PENDING, and Alipay refuses it after the request's time_expire."""
        result = self._call(self._client.api_alipay_trade_close, out_trade_no=provider_ref)
        if result.get("code") == _SUCCESS or result.get("sub_code") in _CLOSE_SETTLED:
            return self.query(provider_ref)  # closed, not there yet, or paid (or closed) before: as it now is
        raise ProviderError(f"alipay.trade.close failed: {_describe(result)}")

    def refund(self, provider_ref: str, amount: Money, refund_reference: str, reason: str) -> RefundResult:
        if amount.amount <= 0:
            raise ValueError("a refund needs a positive amount")
        extra: dict[str, str] = {}
        if amount.currency != "CNY":
            extra["refund_currency"] = amount.currency
        result = self._call(
            self._client.api_alipay_trade_refund,
            refund_amount=to_major(amount),
            out_trade_no=provider_ref,
            out_request_no=refund_reference,  # Alipay's idempotency key for this refund
            refund_reason=reason[:_REASON_MAX],
            **extra,
        )
        code = result.get("code")
        if code == _SUCCESS:
            return RefundResult(refund_reference, True)
        if code == "20000" or result.get("sub_code") == "ACQ.SYSTEM_ERROR":
            # Alipay's own trouble: it asks for the same call again, with the same out_request_no.
            raise ProviderError(f"alipay.trade.refund failed: {_describe(result)}")
        return RefundResult(refund_reference, False, _describe(result))

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        fields = self._verified_fields(body)
        if fields.get("app_id") != self.app_id:
            raise InvalidSignature("notification for another app")
        out_trade_no, notify_id = fields.get("out_trade_no"), fields.get("notify_id")
        trade_status = fields.get("trade_status", "")
        status = _TRADE_STATUS.get(trade_status)
        if not out_trade_no or not notify_id or status is None:
            raise InvalidSignature(f"incomplete notification (trade_status {trade_status!r})")
        currency = _currency(fields)
        try:
            amount = to_minor(fields["total_amount"], currency) if fields.get("total_amount") else None
            refunded = to_minor(fields["refund_fee"], currency) if fields.get("refund_fee") else 0
        except ValueError as exc:
            raise InvalidSignature(f"malformed amount in notification: {exc}") from exc
        if status is PaymentStatus.CANCELLED and refunded > 0:
            status = PaymentStatus.REFUNDED  # a paid trade closes only on full refund
        if refunded > 0:
            event_type = "refund.succeeded"
        else:
            event_type = {
                PaymentStatus.PENDING: "payment.pending",
                PaymentStatus.SUCCEEDED: "payment.succeeded",
                PaymentStatus.CANCELLED: "payment.cancelled",
            }[status]
        return WebhookNotice(
            event_id=notify_id,
            event_type=event_type,
            provider_ref=out_trade_no,
            reference=out_trade_no,
            status=status,
            amount=amount,
            currency=currency,
            refunded_amount=refunded,  # refund_fee: the trade's total refunded so far
            payload=dict(fields),
            wallet_account=fields.get("buyer_logon_id") or None,
            # out_biz_no: the out_request_no of the refund this notice is about (ours: refund_<id>)
            refund_reference=(fields.get("out_biz_no") or None) if refunded > 0 else None,
        )

    def ack(self) -> WebhookAck:
        return WebhookAck(200, b"success", "text/plain")

    # --- internals ---------------------------------------------------------------------------

    def _call(self, api: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
        try:
            result = api(**kwargs)
        except _CALL_ERRORS as exc:
            raise ProviderError(f"Alipay could not be reached or refused the call: {exc}") from exc
        if not isinstance(result, dict):
            raise ProviderError(f"unexpected answer from Alipay: {result!r}")
        return result

    def _verified_fields(self, body: bytes) -> dict[str, str]:
        """The notification's fields, once Alipay's RSA2 signature over them is verified.

        Alipay signs every field but `sign` and `sign_type`, sorted, as `k=v` joined by `&`, with
        the values URL-decoded and empty values included (hence keep_blank_values).
        """
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidSignature("notification is not a form") from exc
        if any(len(values) != 1 for values in parsed.values()):
            raise InvalidSignature("repeated field in notification")
        fields = {key: values[0] for key, values in parsed.items()}
        sign, sign_type = fields.pop("sign", ""), fields.pop("sign_type", "")
        if not sign:
            raise InvalidSignature("notification without sign")
        if sign_type != _SIGN_TYPE:
            raise InvalidSignature(f"unexpected sign_type {sign_type!r}")
        try:
            verified = self._client.verify(dict(fields), sign)
        except (AliPayException, ValueError, TypeError) as exc:
            raise InvalidSignature("malformed sign") from exc
        if not verified:
            raise InvalidSignature("signature mismatch")
        return fields


def _currency(fields: Mapping[str, Any]) -> str:
    return str(fields.get("trans_currency") or fields.get("currency") or "CNY")


def _describe(result: Mapping[str, Any]) -> str:
    parts = [str(result.get(key)) for key in ("code", "msg", "sub_code", "sub_msg") if result.get(key)]
    return " ".join(parts) or "no details"
