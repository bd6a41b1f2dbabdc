"""The HK$3,000 monthly cap holds for every payment that can still capture: checked again when a
failed order is paid again, and at capture itself (a capture beyond the cap is refunded, never
applied)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.roles import Role
from duckline.billing import orders
from duckline.billing.models import Payment, SandboxPayment
from duckline.catalog import service as catalog
from duckline.core import jobs
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.runtime import Runtime
from tests.app_pool import pooled_app
from tests.factories import buy, deliver, numbers, pay_on_sandbox, place_order, plan_input, register_and_verify, staff
from tests.provider_fakes import FakeStripe, fake_stripe, stripe_settings

DECLINED_CARD = "4000000000000002"


def setup(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    """A subscriber, and a plan that costs the per-order maximum: three of them fill the month."""
    settings = runtime.settings
    assert settings.monthly_line_limit == 3 * settings.order_maximum
    numbers(runtime, 1)
    admin, _ = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("max", price=settings.order_maximum))
    return register_and_verify(client, runtime, 1)


def order_now(client: TestClient, subscriber: dict[str, Any], order_id: int) -> dict[str, Any]:
    return dict(client.get(f"/api/v1/orders/{order_id}", headers=subscriber["headers"]).json())


def captured_this_month(runtime: Runtime, subscriber: dict[str, Any]) -> int:
    with runtime.unit_of_work() as uow:
        return orders.captured_spend(uow, subscriber["line"]["id"])


def test_a_failed_order_cannot_be_paid_again_once_other_orders_filled_the_month(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    subscriber = setup(client, runtime)
    failed = place_order(client, subscriber, "max").json()
    pay_on_sandbox(client, failed, card=DECLINED_CARD)
    deliver(runtime, client, clock)
    assert order_now(client, subscriber, failed["id"])["status"] == "failed"
    for _ in range(3):  # the failed order holds no money: three others fill the month
        buy(client, runtime, clock, subscriber, "max")

    again = client.post(
        f"/api/v1/orders/{failed['id']}/payments", json={"payment_method": "card"}, headers=subscriber["headers"]
    )

    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "monthly_limit_reached"
    assert order_now(client, subscriber, failed["id"])["status"] == "failed"
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).where(Payment.order_id == failed["id"])) == 1
        assert uow.session.scalar(select(func.count()).select_from(SandboxPayment)) == 4
    assert captured_this_month(runtime, subscriber) == runtime.settings.monthly_line_limit


@contextmanager
def with_stripe(settings: Settings, clock: FrozenClock) -> Iterator[tuple[FakeStripe, Runtime, TestClient]]:
    with fake_stripe() as stripe:
        runtime = Runtime(stripe_settings(settings, stripe), clock=clock)
        try:
            with pooled_app(runtime) as app, TestClient(app, base_url="http://127.0.0.1") as client:
                yield stripe, runtime, client
        finally:
            runtime.close()


def pay_by_card(
    client: TestClient,
    runtime: Runtime,
    stripe: FakeStripe,
    subscriber: dict[str, Any],
    order: dict[str, Any],
    card: str,
) -> dict[str, Any]:
    """The payer confirms the order's card payment (Stripe.js) and comes back to the return URL."""
    payment_id = order["payments"][-1]["id"]
    with runtime.unit_of_work() as uow:
        payment = uow.session.get(Payment, payment_id)
        assert payment is not None and payment.provider_ref
        intent_id = payment.provider_ref
    stripe.confirm(intent_id, card)
    back = client.get(f"/api/v1/payments/{payment_id}/return", headers=subscriber["headers"])
    assert back.status_code == 200, back.text
    return dict(back.json())


def test_a_declined_card_payment_completed_later_beyond_the_cap_is_refunded_not_applied(
    settings: Settings, clock: FrozenClock
) -> None:
    with with_stripe(settings, clock) as (stripe, runtime, client):
        subscriber = setup(client, runtime)
        first = place_order(client, subscriber, "max").json()
        assert pay_by_card(client, runtime, stripe, subscriber, first, "pm_card_chargeDeclined")["status"] == "failed"
        for _ in range(3):
            order = place_order(client, subscriber, "max").json()
            assert pay_by_card(client, runtime, stripe, subscriber, order, "pm_card_visa")["status"] == "fulfilled"
        fulfilled_until = order_now(client, subscriber, order["id"])["period_end"]

        # The payer goes back to the first order's card page and pays its declined intent again.
        late = pay_by_card(client, runtime, stripe, subscriber, first, "pm_card_visa")

        assert late["status"] == "paid" and late["payments"][-1]["status"] == "succeeded"
        assert late["receipt_number"] is None and late["period_end"] is None
        assert order_now(client, subscriber, order["id"])["period_end"] == fulfilled_until
        _, staff_headers = staff(runtime, Role.SUPPORT, 2)
        cases = client.get("/api/v1/reconciliation/cases", headers=staff_headers).json()["items"]
        [case] = [c for c in cases if c["order_id"] == first["id"]]
        assert (case["topic"], case["params"]["reason"]["error"]) == ("paid_not_applied", "monthly_limit_reached")

        clock.advance(timedelta(minutes=runtime.settings.reconcile_after_minutes))
        assert jobs.run(runtime, "reconcile")["refunded"] == [first["id"]]
        refunded = order_now(client, subscriber, first["id"])
        assert refunded["status"] == "refunded" and refunded["refunded_amount"] == runtime.settings.order_maximum
        assert [r["amount"] for r in stripe.refunds.values()] == [runtime.settings.order_maximum]
        assert captured_this_month(runtime, subscriber) == runtime.settings.monthly_line_limit
