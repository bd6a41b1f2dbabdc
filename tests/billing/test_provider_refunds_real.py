"""Refunds made in Stripe's, Alipay's or WeChat Pay's dashboard, reported by each one's own signed
notification (each reports differently: Stripe and Alipay the total refunded so far, WeChat Pay one
refund at a time), are recorded once each, as a refund made in Duckline is; and a refund Duckline
made through the provider is not counted again when the provider's notice of it arrives.

Each provider is the local fake of its API (tests/provider_fakes.py) behind a Runtime of its own.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.roles import Role
from duckline.billing.models import Payment, Refund
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.runtime import Runtime
from tests.billing.test_webhooks import PRICE, major, order_now, pending_order, renewal_subscriber, running
from tests.factories import staff
from tests.provider_fakes import (
    ALIPAY_APP_ID,
    alipay_keys,
    alipay_notification,
    alipay_settings,
    fake_alipay,
    fake_stripe,
    fake_wechatpay,
    stripe_notification,
    stripe_settings,
    wechatpay_keys,
    wechatpay_notification,
    wechatpay_settings,
    wechatpay_trade,
)

Signed = tuple[bytes, dict[str, str]]


@dataclass
class Provider:
    name: str
    method: str
    runtime: Runtime
    client: TestClient
    paid: Callable[[str], Signed]  # the payer pays; the provider's notification of it
    # A refund of `amount` made in the dashboard, `total` refunded in all by now; its notification.
    refunded: Callable[[str, int, int], Signed]
    # The provider's notification of Duckline's own refund (reference "refund_<id>").
    our_refund: Callable[[str, str, int, int], Signed]

    def post(self, notification: Signed) -> None:
        body, headers = notification
        response = self.client.post(f"/api/v1/webhooks/{self.name}", content=body, headers=headers)
        assert response.status_code == 200, response.text


@pytest.fixture(params=["stripe", "alipay", "wechatpay"])
def provider(request: pytest.FixtureRequest, settings: Settings, clock: FrozenClock) -> Iterator[Provider]:
    if request.param == "stripe":
        with fake_stripe() as stripe, running(stripe_settings(settings, stripe), clock) as (runtime, client):

            def stripe_paid(ref: str) -> Signed:
                stripe.confirm(ref, "pm_card_visa")
                return stripe_notification(
                    "payment_intent.succeeded", stripe.view(stripe.intents[ref], ["latest_charge"])
                )

            def stripe_refunded(ref: str, amount: int, total: int) -> Signed:
                charge = stripe.charges[stripe.intents[ref]["latest_charge"]]
                charge.update(amount_refunded=total, refunded=total == charge["amount_captured"])
                return stripe_notification("charge.refunded", dict(charge))

            def stripe_ours(ref: str, reference: str, amount: int, total: int) -> Signed:
                charge = stripe.charges[stripe.intents[ref]["latest_charge"]]  # the fake refunded it already
                assert charge["amount_refunded"] == total
                return stripe_notification("charge.refunded", dict(charge))

            yield Provider("stripe", "card", runtime, client, stripe_paid, stripe_refunded, stripe_ours)
    elif request.param == "alipay":
        keys = alipay_keys()
        with fake_alipay(keys) as alipay, running(alipay_settings(settings, alipay, keys), clock) as (runtime, client):

            def alipay_paid(ref: str) -> Signed:
                alipay.trades[ref] = {
                    "out_trade_no": ref,
                    "trade_no": "2026112422001404560500012345",
                    "trade_status": "TRADE_SUCCESS",
                    "total_amount": major(PRICE),
                    "trans_currency": "HKD",
                    "settle_currency": "HKD",
                    "buyer_logon_id": "abc***@example.com",
                }
                return alipay_notification(keys.alipay.key, ref, major(PRICE))

            def alipay_refund_notice(ref: str, total: int, out_biz_no: str) -> Signed:
                closed = total == PRICE  # Alipay closes a trade once it is refunded in full
                return alipay_notification(
                    keys.alipay.key,
                    ref,
                    major(PRICE),
                    refund_fee=major(total),
                    gmt_refund="2026-11-24 12:00:00.000",
                    out_biz_no=out_biz_no,
                    trade_status="TRADE_CLOSED" if closed else "TRADE_SUCCESS",
                    auth_app_id=ALIPAY_APP_ID,
                )

            def alipay_refunded(ref: str, amount: int, total: int) -> Signed:
                alipay.trades[ref]["refund_fee"] = major(total)
                return alipay_refund_notice(ref, total, f"HZ{secrets.token_hex(6)}")  # the dashboard's number

            def alipay_ours(ref: str, reference: str, amount: int, total: int) -> Signed:
                return alipay_refund_notice(ref, total, reference)

            yield Provider("alipay", "alipay", runtime, client, alipay_paid, alipay_refunded, alipay_ours)
    else:
        wechat_keys = wechatpay_keys()
        with (
            fake_wechatpay(wechat_keys) as wechat,
            running(wechatpay_settings(settings, wechat, wechat_keys), clock) as (runtime, client),
        ):
            wechat.routes["POST", "/v3/pay/transactions/native"] = (200, {"code_url": "weixin://wxpay/bizpayurl?pr=D"})
            wechat.routes["POST", "/v3/refund/domestic/refunds"] = (200, {"status": "PROCESSING"})

            def wechat_paid(ref: str) -> Signed:
                trade = wechatpay_trade(ref, "SUCCESS", PRICE)
                wechat.routes["GET", f"/v3/pay/transactions/out-trade-no/{ref}"] = (200, trade)
                paid = {**trade, "success_time": "2026-11-24T10:00:03+08:00", "payer": {"openid": "oUpF8uMuAJO_M2"}}
                return wechatpay_notification(wechat_keys, paid, timestamp=int(clock.now().timestamp()))

            def wechat_refund_notice(ref: str, out_refund_no: str, amount: int) -> Signed:
                resource = {
                    "mchid": wechatpay_trade(ref, "SUCCESS", PRICE)["mchid"],
                    "out_trade_no": ref,
                    "transaction_id": "4200001234202611240000000042",
                    "out_refund_no": out_refund_no,
                    "refund_id": f"5030{secrets.randbelow(10**20):020d}",
                    "refund_status": "SUCCESS",
                    "success_time": "2026-11-24T12:00:00+08:00",
                    "user_received_account": "支付用户零钱",
                    "amount": {"total": PRICE, "refund": amount, "payer_total": PRICE, "payer_refund": amount},
                }
                return wechatpay_notification(
                    wechat_keys, resource, timestamp=int(clock.now().timestamp()), event_type="REFUND.SUCCESS"
                )

            def wechat_refunded(ref: str, amount: int, total: int) -> Signed:
                return wechat_refund_notice(ref, f"dashboard{secrets.token_hex(4)}", amount)

            def wechat_ours(ref: str, reference: str, amount: int, total: int) -> Signed:
                return wechat_refund_notice(ref, reference, amount)

            yield Provider("wechatpay", "wechatpay", runtime, client, wechat_paid, wechat_refunded, wechat_ours)


def paid_order(provider: Provider) -> tuple[dict[str, Any], dict[str, Any], str]:
    subscriber = renewal_subscriber(provider.client, provider.runtime)
    order = pending_order(provider.client, subscriber, payment_method=provider.method)
    with provider.runtime.unit_of_work() as uow:
        [payment] = uow.session.scalars(select(Payment).where(Payment.order_id == order["id"])).all()
        ref = str(payment.provider_ref)
    provider.post(provider.paid(ref))
    assert order_now(provider.client, subscriber, order["id"])["status"] == "fulfilled"
    return subscriber, order, ref


def refunds(provider: Provider) -> list[tuple[int, bool]]:
    with provider.runtime.unit_of_work() as uow:
        return [(r.amount, r.actor_id is not None) for r in uow.session.scalars(select(Refund).order_by(Refund.id))]


def credit_notes(provider: Provider, subscriber: dict[str, Any]) -> list[int]:
    items = provider.client.get("/api/v1/receipts", headers=subscriber["headers"]).json()["items"]
    return sorted(r["amount"] for r in items if r["kind"] == "credit_note")


def test_refunds_in_the_dashboard_are_recorded_once_each(provider: Provider) -> None:
    subscriber, order, ref = paid_order(provider)

    part = provider.refunded(ref, 3000, 3000)
    provider.post(part)
    provider.post(part)  # delivered again
    after_part = order_now(provider.client, subscriber, order["id"])
    assert (after_part["status"], after_part["refunded_amount"]) == ("partially_refunded", 3000)

    rest = provider.refunded(ref, PRICE - 3000, PRICE)
    provider.post(rest)
    provider.post(rest)
    provider.post(part)  # a late copy of the first

    final = order_now(provider.client, subscriber, order["id"])
    assert (final["status"], final["refunded_amount"]) == ("refunded", PRICE)
    assert final["payments"][0]["status"] == "refunded"
    assert refunds(provider) == [(3000, False), (PRICE - 3000, False)]
    assert credit_notes(provider, subscriber) == [3000, PRICE - 3000]


def test_a_refund_made_in_duckline_is_not_counted_again_when_the_provider_reports_it(provider: Provider) -> None:
    subscriber, order, ref = paid_order(provider)
    _, finance = staff(provider.runtime, Role.FINANCE, 7)
    made = provider.client.post(
        f"/api/v1/orders/{order['id']}/refunds", json={"amount": 3000, "reason": "goodwill"}, headers=finance
    )
    assert made.status_code == 200 and made.json()["status"] == "succeeded", made.text

    provider.post(provider.our_refund(ref, f"refund_{made.json()['id']}", 3000, 3000))

    final = order_now(provider.client, subscriber, order["id"])
    assert (final["status"], final["refunded_amount"]) == ("partially_refunded", 3000)
    assert refunds(provider) == [(3000, True)]
    assert credit_notes(provider, subscriber) == [3000]
