"""Cancelling an order cancels its payment at the provider, so it can no longer be paid; a promo
code's use is given back only once no payment of the order can still capture."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.roles import Role
from duckline.billing.models import Receipt, SandboxPayment
from duckline.catalog import service as catalog
from duckline.catalog.models import PromotionRedemption
from duckline.catalog.rules import Validity
from duckline.core import jobs
from duckline.core.clock import FrozenClock
from duckline.runtime import Runtime
from tests.factories import buy, deliver, numbers, pay_on_sandbox, place_order, plan_input, register_and_verify, staff
from tests.provider_fakes import sandbox_ref

PRICE = 8800


@pytest.fixture
def world(client: TestClient, runtime: Runtime, clock: FrozenClock) -> dict[str, Any]:
    """Alice and Bob, a monthly plan, and a promo code that can be used once."""
    numbers(runtime, 2)
    admin, admin_headers = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=PRICE))
    promo = client.post(
        "/api/v1/promotions",
        json={
            "name": {"en": "HK$10 off", "zh_Hant": "減 10 港元", "zh_Hans": "减 10 港元"},
            "kind": "amount_off",
            "amount_off": 1000,
            "code": "ONCE",
            "starts_at": clock.now().isoformat(),
            "max_uses": 1,
        },
        headers=admin_headers,
    )
    assert promo.status_code == 201, promo.text
    return {
        "alice": register_and_verify(client, runtime, 1),
        "bob": register_and_verify(client, runtime, 2),
        "admin": admin_headers,
        "promotion_id": promo.json()["id"],
    }


def uses(client: TestClient, world: dict[str, Any]) -> int:
    listed = client.get("/api/v1/promotions", headers=world["admin"]).json()
    return int(next(p["uses"] for p in listed if p["id"] == world["promotion_id"]))


def order_now(client: TestClient, subscriber: dict[str, Any], order_id: int) -> dict[str, Any]:
    return dict(client.get(f"/api/v1/orders/{order_id}", headers=subscriber["headers"]).json())


def sandbox_status(runtime: Runtime, order: dict[str, Any]) -> str:
    with runtime.unit_of_work() as uow:
        return uow.session.scalars(select(SandboxPayment.status).where(SandboxPayment.ref == sandbox_ref(order))).one()


def test_a_cancelled_order_can_no_longer_be_paid_so_its_freed_code_stays_with_who_took_it(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    alice, bob = world["alice"], world["bob"]
    mine = place_order(client, alice, promo_code="once").json()
    assert mine["total_amount"] == PRICE - 1000

    cancelled = client.post(f"/api/v1/orders/{mine['id']}/cancel", headers=alice["headers"])

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["payments"][0]["status"] == "cancelled"
    assert sandbox_status(runtime, mine) == "cancelled"  # the provider will not take money for it
    assert uses(client, world) == 0
    assert buy(client, runtime, clock, bob, promo_code="ONCE")["total_amount"] == PRICE - 1000
    assert uses(client, world) == 1

    pay_on_sandbox(client, mine)  # Alice's old payment page, still open in a tab
    deliver(runtime, client, clock)
    clock.advance(timedelta(minutes=runtime.settings.reconcile_after_minutes))
    jobs.run(runtime, "reconcile")

    final = order_now(client, alice, mine["id"])
    assert final["status"] == "cancelled" and final["receipt_number"] is None
    assert sandbox_status(runtime, mine) == "cancelled"
    assert uses(client, world) == 1
    bobs = [o["id"] for o in client.get("/api/v1/orders", headers=bob["headers"]).json()["items"]]
    with runtime.unit_of_work() as uow:
        assert uow.session.scalars(select(PromotionRedemption.status)).all().count("confirmed") == 1
        assert [r.order_id for r in uow.session.scalars(select(Receipt))] == bobs


def test_while_the_provider_cannot_be_told_the_cancelled_order_keeps_its_code(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    alice, bob = world["alice"], world["bob"]
    mine = place_order(client, alice, promo_code="ONCE").json()
    sandbox = runtime.sandbox
    assert sandbox is not None
    sandbox.available = False

    cancelled = client.post(f"/api/v1/orders/{mine['id']}/cancel", headers=alice["headers"])

    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["payments"][0]["status"] == "pending"  # it can still be paid: the code is held
    assert uses(client, world) == 1
    refused = place_order(client, bob, promo_code="ONCE")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "promo_code_used_up"

    sandbox.available = True
    clock.advance(timedelta(minutes=runtime.settings.reconcile_after_minutes))
    jobs.run(runtime, "reconcile")  # tells the provider, then gives the use back

    assert sandbox_status(runtime, mine) == "cancelled"
    assert order_now(client, alice, mine["id"])["payments"][0]["status"] == "cancelled"
    assert uses(client, world) == 0
    assert buy(client, runtime, clock, bob, promo_code="ONCE")["total_amount"] == PRICE - 1000
