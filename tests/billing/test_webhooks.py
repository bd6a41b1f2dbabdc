"""Provider notifications through the API: verified first, recorded once, applied once.

(a) The built-in sandbox: notifications that do not verify change nothing; a repeated one is
    taken once; a refund that overtakes its success cancels the order for good; a success for
    another amount is flagged for staff, never fulfilled.
(b) Stripe, Alipay and WeChat Pay end to end through Duckline: a Runtime whose Settings choose
    the real provider, pointed at a local fake of its API (tests/provider_fakes.py); the order
    is made through the API, the provider's signed notification is posted to
    /api/v1/webhooks/<provider>.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.roles import Role
from duckline.billing.models import OrderEvent, Payment, Receipt, WebhookEvent
from duckline.billing.providers.sandbox import SIGNATURE_HEADER, sign
from duckline.catalog import service as catalog
from duckline.catalog.rules import Validity
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.core.money import Money
from duckline.lines.models import Line
from duckline.messaging.models import DomainEvent
from duckline.runtime import Runtime
from duckline.usage.models import Bucket
from tests.app_pool import pooled_app
from tests.factories import deliver, numbers, pay_on_sandbox, place_order, plan_input, register_and_verify, staff
from tests.provider_fakes import (
    alipay_keys,
    alipay_notification,
    alipay_settings,
    capture_webhooks,
    fake_alipay,
    fake_stripe,
    fake_wechatpay,
    sandbox_event,
    sandbox_ref,
    stripe_notification,
    stripe_settings,
    wechatpay_keys,
    wechatpay_notification,
    wechatpay_settings,
    wechatpay_trade,
)

PRICE = 8800  # the "monthly" plan, HK$88.00


def renewal_subscriber(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    """A verified subscriber with a pending line, and the plan "monthly" (one calendar month)."""
    numbers(runtime, 3)
    admin, _ = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=PRICE))
    return register_and_verify(client, runtime, 1)


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    return renewal_subscriber(client, runtime)


def pending_order(client: TestClient, subscriber: dict[str, Any], **extra: Any) -> dict[str, Any]:
    created = place_order(client, subscriber, **extra)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "payment_pending"
    return dict(created.json())


def count(runtime: Runtime, table: type[Any], *where: Any) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def order_now(client: TestClient, subscriber: dict[str, Any], order_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/orders/{order_id}", headers=subscriber["headers"])
    assert response.status_code == 200, response.text
    return dict(response.json())


def line_now(runtime: Runtime, line_id: int) -> Line:
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, line_id)
        assert line is not None
        return line


def assert_untouched(runtime: Runtime, client: TestClient, subscriber: dict[str, Any], order_id: int) -> None:
    """A rejected notification left no trace: order and payment still waiting, nothing recorded."""
    order = order_now(client, subscriber, order_id)
    assert order["status"] == "payment_pending"
    assert [p["status"] for p in order["payments"]] == ["pending"]
    assert order["receipt_number"] is None
    assert count(runtime, WebhookEvent) == 0
    assert count(runtime, Receipt) == 0
    assert count(runtime, Bucket) == 0
    assert line_now(runtime, subscriber["line"]["id"]).status.value == "pending"


def assert_fulfilled_once(runtime: Runtime, client: TestClient, subscriber: dict[str, Any], order_id: int) -> None:
    order = order_now(client, subscriber, order_id)
    assert order["status"] == "fulfilled"
    assert order["receipt_number"] is not None
    assert count(runtime, Receipt) == 1
    assert count(runtime, Bucket, Bucket.line_id == subscriber["line"]["id"]) == 3  # one grant, not two
    assert count(runtime, OrderEvent, OrderEvent.order_id == order_id, OrderEvent.to_status == "fulfilled") == 1
    assert count(runtime, DomainEvent, DomainEvent.type == "renewal.succeeded") == 1
    line = line_now(runtime, subscriber["line"]["id"])
    assert line.status.value == "active"
    assert line.expires_at is not None and line.expires_at.isoformat().startswith("2026-12-24")  # one month, once


def rejected(response: Any) -> None:
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["code"] == "webhook_signature_invalid"


# --- (a) the sandbox --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["wrong secret", "missing header", "empty header", "stale timestamp", "future timestamp", "tampered body"]
)
def test_sandbox_notification_that_does_not_verify_changes_nothing(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any], case: str
) -> None:
    order = pending_order(client, subscriber)
    assert pay_on_sandbox(client, order).status_code == 303
    [(path, body, headers)] = capture_webhooks(runtime, clock)  # the sandbox's own "payment.succeeded"
    assert path == "/api/v1/webhooks/sandbox" and json.loads(body)["type"] == "payment.succeeded"
    secret, now = runtime.settings.sandbox_webhook_secret, int(clock.now().timestamp())

    bad_body, bad_headers = body, dict(headers)
    if case == "wrong secret":
        bad_headers[SIGNATURE_HEADER] = sign("whsec_someone_else", body, now)
    elif case == "missing header":
        del bad_headers[SIGNATURE_HEADER]
    elif case == "empty header":
        bad_headers[SIGNATURE_HEADER] = ""
    elif case == "stale timestamp":  # correctly signed, but more than 5 minutes old: a replay
        bad_headers[SIGNATURE_HEADER] = sign(secret, body, now - 301)
    elif case == "future timestamp":
        bad_headers[SIGNATURE_HEADER] = sign(secret, body, now + 301)
    elif case == "tampered body":
        bad_body = body.replace(b'"amount": 8800', b'"amount": 1')
        assert bad_body != body

    rejected(client.post(path, content=bad_body, headers=bad_headers))
    assert_untouched(runtime, client, subscriber, order["id"])

    # The genuine notification still works afterwards: nothing was half-recorded.
    assert client.post(path, content=body, headers=headers).status_code == 200
    assert_fulfilled_once(runtime, client, subscriber, order["id"])


def test_sandbox_notification_signed_just_inside_the_window_is_taken(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = pending_order(client, subscriber)
    pay_on_sandbox(client, order)
    [(path, body, _)] = capture_webhooks(runtime, clock)
    headers = {
        SIGNATURE_HEADER: sign(runtime.settings.sandbox_webhook_secret, body, int(clock.now().timestamp()) - 299)
    }
    assert client.post(path, content=body, headers=headers).status_code == 200
    assert_fulfilled_once(runtime, client, subscriber, order["id"])


def test_the_same_notification_five_times_is_taken_once(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = pending_order(client, subscriber)
    pay_on_sandbox(client, order)
    [(path, body, headers)] = capture_webhooks(runtime, clock)

    answers = [client.post(path, content=body, headers=headers) for _ in range(5)]

    assert [a.status_code for a in answers] == [200] * 5  # every copy is acknowledged, or the sender retries
    assert count(runtime, WebhookEvent) == 1
    assert_fulfilled_once(runtime, client, subscriber, order["id"])
    assert order_now(client, subscriber, order["id"])["payments"][0]["status"] == "succeeded"


def test_refund_overtaking_its_success_cancels_the_order_and_the_late_success_is_ignored(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = pending_order(client, subscriber)
    pay_on_sandbox(client, order)  # the sandbox has queued its "payment.succeeded"; it is not delivered yet
    ref = sandbox_ref(order)

    body, headers = sandbox_event(runtime, "refund.succeeded", ref, "refunded", PRICE, refunded=PRICE)
    assert client.post("/api/v1/webhooks/sandbox", content=body, headers=headers).status_code == 200

    cancelled = order_now(client, subscriber, order["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["payments"][0]["status"] == "refunded"

    assert deliver(runtime, client, clock) == 2  # now the success arrives, twice
    late = sandbox_event(runtime, "payment.succeeded", ref, "succeeded", PRICE)  # and once more, another event id
    assert client.post("/api/v1/webhooks/sandbox", content=late[0], headers=late[1]).status_code == 200
    returned = client.get(f"/api/v1/payments/{order['payments'][0]['id']}/return", headers=subscriber["headers"])
    assert returned.status_code == 200  # the sandbox says "succeeded" when asked: stale as well

    final = order_now(client, subscriber, order["id"])
    assert final["status"] == "cancelled" and final["receipt_number"] is None
    assert final["payments"][0]["status"] == "refunded"
    assert count(runtime, Receipt) == 0
    assert count(runtime, Bucket) == 0
    assert count(runtime, OrderEvent, OrderEvent.order_id == order["id"], OrderEvent.to_status == "paid") == 0
    assert line_now(runtime, subscriber["line"]["id"]).status.value == "pending"
    assert count(runtime, WebhookEvent) == 3  # the refund, the sandbox's success, the second success


@pytest.mark.parametrize(("amount", "currency"), [(880, "HKD"), (PRICE, "USD")])
def test_success_for_another_amount_is_flagged_for_staff_and_not_fulfilled(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any], amount: int, currency: str
) -> None:
    order = pending_order(client, subscriber)
    body, headers = sandbox_event(runtime, "payment.succeeded", sandbox_ref(order), "succeeded", amount, currency)

    assert client.post("/api/v1/webhooks/sandbox", content=body, headers=headers).status_code == 200

    flagged = order_now(client, subscriber, order["id"])
    assert flagged["status"] == "payment_pending" and flagged["receipt_number"] is None
    assert flagged["payments"][0]["status"] == "flagged"
    assert count(runtime, Receipt) == 0 and count(runtime, Bucket) == 0
    assert line_now(runtime, subscriber["line"]["id"]).status.value == "pending"

    # A correct success after it changes nothing: the payment stays flagged until staff decide.
    good = sandbox_event(runtime, "payment.succeeded", sandbox_ref(order), "succeeded", PRICE)
    assert client.post("/api/v1/webhooks/sandbox", content=good[0], headers=good[1]).status_code == 200
    assert order_now(client, subscriber, order["id"])["status"] == "payment_pending"

    _, support = staff(runtime, Role.SUPPORT, 2)
    cases = client.get("/api/v1/reconciliation/cases", headers=support)
    assert cases.status_code == 200, cases.text
    [case] = cases.json()["items"]
    assert case["kind"] == "payment_mismatch" and case["status"] == "open"
    assert case["order_id"] == order["id"] and case["order_status"] == "payment_pending"
    assert case["account_id"] == subscriber["account"]["id"]
    assert case["params"]["captured"] == {"amount": amount, "currency": currency}
    assert Money(amount, currency).format("en_HK") in case["body"]
    assert client.get("/api/v1/reconciliation/cases", headers=subscriber["headers"]).status_code == 403


def test_signed_notification_about_an_unknown_payment_is_acknowledged_and_changes_nothing(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    order = pending_order(client, subscriber)
    body, headers = sandbox_event(runtime, "payment.succeeded", "sbx_not_ours", "succeeded", PRICE)
    assert client.post("/api/v1/webhooks/sandbox", content=body, headers=headers).status_code == 200
    with runtime.unit_of_work() as uow:
        [event] = uow.session.scalars(select(WebhookEvent)).all()
        assert event.outcome == "no such payment"
    assert order_now(client, subscriber, order["id"])["status"] == "payment_pending"


# --- (b) real providers through Duckline ----------------------------------------------------------


Signed = tuple[bytes, dict[str, str]]


@dataclass
class Provider:
    """One provider switched on in a Runtime of its own, and how the test plays the provider's side."""

    name: str  # Duckline's name for it: the webhook path and Payment.provider
    method: str  # the order's payment_method
    next_action: str  # what the payer is given to pay with
    runtime: Runtime
    client: TestClient
    paid: Callable[[str, int], Signed]  # the payer pays; the provider's signed success notification
    forged: Callable[[str, int], Signed]  # a success notification not signed by the provider
    ack: bytes
    shown: dict[str, Any]  # how the payment shows on the order afterwards

    def post(self, notification: Signed) -> Any:
        body, headers = notification
        return self.client.post(f"/api/v1/webhooks/{self.name}", content=body, headers=headers)

    def provider_ref(self, order_id: int) -> str:
        with self.runtime.unit_of_work() as uow:
            [payment] = uow.session.scalars(select(Payment).where(Payment.order_id == order_id)).all()
            assert payment.provider == self.name and payment.provider_ref
            return payment.provider_ref


@contextmanager
def running(settings: Settings, clock: FrozenClock) -> Iterator[tuple[Runtime, TestClient]]:
    runtime = Runtime(settings, clock=clock)
    try:
        with pooled_app(runtime) as app, TestClient(app, base_url="http://127.0.0.1") as client:
            yield runtime, client
    finally:
        runtime.close()


def major(amount: int) -> str:
    return f"{Decimal(amount).scaleb(-2):.2f}"


@pytest.fixture
def provider(request: pytest.FixtureRequest, settings: Settings, clock: FrozenClock) -> Iterator[Provider]:
    name = request.param
    if name == "sandbox":
        with running(settings, clock) as (runtime, client):
            sandbox = runtime.sandbox
            assert sandbox is not None

            def sandbox_paid(ref: str, amount: int) -> Signed:
                sandbox.pay(ref, "4242424242424242")  # the payer on the hosted page
                [(_, body, headers)] = capture_webhooks(runtime, clock)
                return body, headers

            def sandbox_forged(ref: str, amount: int) -> Signed:
                return sandbox_event(runtime, "payment.succeeded", ref, "succeeded", amount, secret="whsec_not_ours")

            yield Provider(
                "sandbox", "card", "redirect", runtime, client, sandbox_paid, sandbox_forged, b'{"received": true}', {}
            )
    elif name == "stripe":
        with fake_stripe() as stripe, running(stripe_settings(settings, stripe), clock) as (runtime, client):

            def stripe_paid(ref: str, amount: int) -> Signed:
                stripe.confirm(ref, "pm_card_visa")  # Stripe.js confirms the intent in the browser
                return stripe_notification(
                    "payment_intent.succeeded", stripe.view(stripe.intents[ref], ["latest_charge"])
                )

            def stripe_forged(ref: str, amount: int) -> Signed:
                intent = {**stripe.view(stripe.intents[ref], []), "status": "succeeded", "amount_received": amount}
                return stripe_notification("payment_intent.succeeded", intent, secret="whsec_someone_else")

            yield Provider(
                "stripe",
                "card",
                "stripe_client_secret",
                runtime,
                client,
                stripe_paid,
                stripe_forged,
                b'{"received": true}',
                {"card_brand": "visa", "card_last4": "4242"},
            )
    elif name == "alipay":
        keys = alipay_keys()
        with fake_alipay(keys) as alipay, running(alipay_settings(settings, alipay, keys), clock) as (runtime, client):

            def alipay_paid(ref: str, amount: int) -> Signed:
                alipay.trades[ref] = {  # the payer paid on Alipay's page: a query would now agree
                    "out_trade_no": ref,
                    "trade_no": "2026112422001404560500012345",
                    "trade_status": "TRADE_SUCCESS",
                    "total_amount": major(amount),
                    "trans_currency": "HKD",
                    "settle_currency": "HKD",
                    "buyer_logon_id": "abc***@example.com",
                }
                return alipay_notification(keys.alipay.key, ref, major(amount))

            def alipay_forged(ref: str, amount: int) -> Signed:
                return alipay_notification(keys.stranger.key, ref, major(amount))

            yield Provider(
                "alipay",
                "alipay",
                "redirect",
                runtime,
                client,
                alipay_paid,
                alipay_forged,
                b"success",
                {"wallet_account": "abc***@example.com"},
            )
    elif name == "wechatpay":
        wechat_keys = wechatpay_keys()
        with (
            fake_wechatpay(wechat_keys) as wechat,
            running(wechatpay_settings(settings, wechat, wechat_keys), clock) as (runtime, client),
        ):
            wechat.routes["POST", "/v3/pay/transactions/native"] = (
                200,
                {"code_url": "weixin://wxpay/bizpayurl?pr=Duck"},
            )

            def wechat_paid(ref: str, amount: int) -> Signed:
                trade = wechatpay_trade(ref, "SUCCESS", amount)
                wechat.routes["GET", f"/v3/pay/transactions/out-trade-no/{ref}"] = (200, trade)
                paid = {**trade, "success_time": "2026-11-24T10:00:03+08:00", "payer": {"openid": "oUpF8uMuAJO_M2"}}
                return wechatpay_notification(wechat_keys, paid, timestamp=int(clock.now().timestamp()))

            def wechat_forged(ref: str, amount: int) -> Signed:
                trade = wechatpay_trade(ref, "SUCCESS", amount)
                return wechatpay_notification(
                    wechat_keys, trade, timestamp=int(clock.now().timestamp()), signing_key=wechat_keys.stranger
                )

            yield Provider(
                "wechatpay",
                "wechatpay",
                "qr",
                runtime,
                client,
                wechat_paid,
                wechat_forged,
                b'{"code": "SUCCESS", "message": "OK"}',
                {},
            )
    else:
        raise AssertionError(name)


REAL_PROVIDERS = ["stripe", "alipay", "wechatpay"]


@pytest.mark.parametrize("provider", REAL_PROVIDERS, indirect=True)
def test_provider_notification_fulfils_the_order_exactly_once(provider: Provider) -> None:
    runtime, client = provider.runtime, provider.client
    subscriber = renewal_subscriber(client, runtime)
    order = pending_order(client, subscriber, payment_method=provider.method)
    [payment] = order["payments"]
    assert payment["provider"] == provider.name
    assert payment["next_action"]["type"] == provider.next_action
    notification = provider.paid(provider.provider_ref(order["id"]), PRICE)

    first, second = provider.post(notification), provider.post(notification)  # providers deliver at least once

    assert (first.status_code, second.status_code) == (200, 200), first.text
    assert first.content == second.content == provider.ack
    assert count(runtime, WebhookEvent) == 1
    assert_fulfilled_once(runtime, client, subscriber, order["id"])
    [paid] = order_now(client, subscriber, order["id"])["payments"]
    assert paid["status"] == "succeeded"
    assert {k: paid[k] for k in provider.shown} == provider.shown


@pytest.mark.parametrize("provider", REAL_PROVIDERS, indirect=True)
def test_provider_notification_not_signed_by_the_provider_changes_nothing(provider: Provider) -> None:
    runtime, client = provider.runtime, provider.client
    subscriber = renewal_subscriber(client, runtime)
    order = pending_order(client, subscriber, payment_method=provider.method)
    ref = provider.provider_ref(order["id"])

    rejected(provider.post(provider.forged(ref, PRICE)))
    assert_untouched(runtime, client, subscriber, order["id"])

    assert provider.post(provider.paid(ref, PRICE)).status_code == 200
    assert_fulfilled_once(runtime, client, subscriber, order["id"])


@pytest.mark.parametrize("provider", ["sandbox", *REAL_PROVIDERS], indirect=True)
def test_notification_that_does_not_verify_is_answered_400(provider: Provider) -> None:
    subscriber = renewal_subscriber(provider.client, provider.runtime)
    order = pending_order(provider.client, subscriber, payment_method=provider.method)
    response = provider.post(provider.forged(provider.provider_ref(order["id"]), PRICE))
    assert response.json()["error"]["code"] == "webhook_signature_invalid"
    assert response.status_code == 400
