"""Promotions through the API: staff create them; quotes show them; orders reserve their uses,
failed payments give them back; bonus gifts, first-purchase offers and free orders."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.roles import Role
from duckline.catalog import service as catalog
from duckline.catalog.rules import Validity
from duckline.core.clock import FrozenClock
from duckline.runtime import Runtime
from duckline.usage.models import Bucket
from tests.factories import (
    buy,
    deliver,
    numbers,
    pay_on_sandbox,
    place_order,
    plan_input,
    register_and_verify,
    staff,
)


@pytest.fixture
def admin_headers(runtime: Runtime) -> dict[str, str]:
    numbers(runtime, 6)
    admin, headers = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=8800))
        catalog.create_plan(uow, admin, plan_input("big", price=16800))
    return headers


@pytest.fixture
def alice(client: TestClient, runtime: Runtime, admin_headers: dict[str, str]) -> dict[str, Any]:
    return register_and_verify(client, runtime, 1)


@pytest.fixture
def bob(client: TestClient, runtime: Runtime, admin_headers: dict[str, str]) -> dict[str, Any]:
    return register_and_verify(client, runtime, 2)


def names(en: str) -> dict[str, str]:
    return {"en": en, "zh_Hant": f"{en}（繁）", "zh_Hans": f"{en}（简）"}


def create_promotion(
    client: TestClient, headers: dict[str, str], clock: FrozenClock, name: str = "Winter sale", **fields: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": names(name),
        "kind": "percent_off",
        "starts_at": (clock.now() - timedelta(hours=1)).isoformat(),
        **fields,
    }
    for key in ("starts_at", "ends_at"):
        if isinstance(body.get(key), datetime):
            body[key] = body[key].isoformat()
    response = client.post("/api/v1/promotions", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def quote(client: TestClient, subscriber: dict[str, Any], plan: str = "monthly", **extra: Any) -> Any:
    return client.post(
        "/api/v1/quotes",
        json={"line_id": subscriber["line"]["id"], "plan_code": plan, **extra},
        headers=subscriber["headers"],
    )


def error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def uses(client: TestClient, admin_headers: dict[str, str], promotion_id: int) -> int:
    listed = client.get("/api/v1/promotions", headers=admin_headers)
    assert listed.status_code == 200, listed.text
    return int(next(p["uses"] for p in listed.json() if p["id"] == promotion_id))


def get_order(client: TestClient, subscriber: dict[str, Any], order_id: int) -> dict[str, Any]:
    return dict(client.get(f"/api/v1/orders/{order_id}", headers=subscriber["headers"]).json())


# --- automatic discounts -------------------------------------------------------------------------


def test_a_time_limited_discount_is_quoted_and_applied(
    client: TestClient, runtime: Runtime, clock: FrozenClock, admin_headers: dict[str, str], alice: dict[str, Any]
) -> None:
    sale = create_promotion(client, admin_headers, clock, percent_off=10, ends_at=clock.now() + timedelta(days=1))
    assert sale["code"] is None and sale["uses"] == 0 and sale["active"] is True

    quoted = quote(client, alice).json()
    assert quoted["list_amount"] == 8800
    assert quoted["adjustments"] == [
        {"promotion_id": sale["id"], "name": "Winter sale", "amount": 880, "amount_display": "HK$8.80"}
    ]
    assert quoted["total_amount"] == 7920 and quoted["total_display"] == "HK$79.20"

    order = buy(client, runtime, clock, alice)
    assert (order["list_amount"], order["discount_amount"], order["total_amount"]) == (8800, 880, 7920)
    assert order["payments"][0]["amount"] == 7920
    receipt = client.get("/api/v1/receipts", headers=alice["headers"]).json()["items"][0]
    assert receipt["amount"] == 7920
    assert receipt["details"]["adjustments"] == [{"promotion_id": sale["id"], "name": "Winter sale", "amount": 880}]
    assert uses(client, admin_headers, sale["id"]) == 1

    clock.advance(timedelta(days=1))  # the sale has ended
    after = quote(client, alice).json()
    assert after["adjustments"] == [] and after["total_amount"] == 8800


def test_only_the_best_automatic_discount_applies_and_a_code_stacks_after_it(
    client: TestClient, runtime: Runtime, clock: FrozenClock, admin_headers: dict[str, str], alice: dict[str, Any]
) -> None:
    ten = create_promotion(client, admin_headers, clock, "Ten percent", percent_off=10)
    create_promotion(client, admin_headers, clock, "Five dollars", kind="amount_off", amount_off=500)
    code = create_promotion(client, admin_headers, clock, "Code", kind="amount_off", amount_off=1000, code="EXTRA10")

    quoted = quote(client, alice, promo_code="EXTRA10").json()
    assert [(a["promotion_id"], a["amount"]) for a in quoted["adjustments"]] == [(ten["id"], 880), (code["id"], 1000)]
    assert quoted["total_amount"] == 8800 - 880 - 1000

    solo = create_promotion(client, admin_headers, clock, "Solo", percent_off=5, code="SOLO5", exclusive=True)
    quoted = quote(client, alice, promo_code="solo5").json()
    assert [(a["promotion_id"], a["amount"]) for a in quoted["adjustments"]] == [(solo["id"], 440)]
    assert quoted["total_amount"] == 8360


def test_current_promotions_lists_automatic_ones_but_never_codes(
    client: TestClient, clock: FrozenClock, admin_headers: dict[str, str], alice: dict[str, Any]
) -> None:
    running = create_promotion(client, admin_headers, clock, "Running", percent_off=10)
    create_promotion(client, admin_headers, clock, "Secret", percent_off=50, code="SECRET50")
    create_promotion(
        client,
        admin_headers,
        clock,
        "Over",
        percent_off=10,
        starts_at=clock.now() - timedelta(days=3),
        ends_at=clock.now() - timedelta(days=1),
    )
    create_promotion(client, admin_headers, clock, "Soon", percent_off=10, starts_at=clock.now() + timedelta(days=1))
    stopped = create_promotion(client, admin_headers, clock, "Stopped", percent_off=10)
    assert client.post(f"/api/v1/promotions/{stopped['id']}/deactivate", headers=admin_headers).status_code == 200

    anyone: list[dict[str, str]] = [alice["headers"], {}]
    for headers in anyone:
        current = client.get("/api/v1/promotions/current", headers=headers)
        assert current.status_code == 200, current.text
        assert [p["id"] for p in current.json()] == [running["id"]]
        assert all(p["code"] is None for p in current.json())
    assert len(client.get("/api/v1/promotions", headers=admin_headers).json()) == 5  # staff see them all


def test_only_admins_create_promotions(
    client: TestClient, runtime: Runtime, clock: FrozenClock, admin_headers: dict[str, str], alice: dict[str, Any]
) -> None:
    body = {"name": names("Mine"), "kind": "percent_off", "percent_off": 99, "starts_at": clock.now().isoformat()}
    refused = client.post("/api/v1/promotions", json=body, headers=alice["headers"])
    assert error(refused) == (403, "forbidden")
    for n, role in enumerate((Role.SUPPORT, Role.FINANCE), start=2):
        _, headers = staff(runtime, role, n)
        assert client.post("/api/v1/promotions", json=body, headers=headers).status_code == 403
    assert client.post("/api/v1/promotions", json=body).status_code == 401
    assert client.get("/api/v1/promotions", headers=alice["headers"]).status_code == 403
    assert client.get("/api/v1/promotions", headers=admin_headers).json() == []


def test_promotions_are_validated(client: TestClient, clock: FrozenClock, admin_headers: dict[str, str]) -> None:
    start = clock.now().isoformat()
    base: dict[str, Any] = {"name": names("Bad"), "starts_at": start}
    cases: list[dict[str, Any]] = [
        {"kind": "percent_off", "percent_off": 0},
        {"kind": "percent_off", "percent_off": 101},
        {"kind": "amount_off", "amount_off": 0},
        {"kind": "bonus"},
        {"kind": "percent_off", "percent_off": 10, "ends_at": start},
        {"kind": "percent_off", "percent_off": 10, "code": "no spaces"},
        {"kind": "percent_off", "percent_off": 10, "starts_at": "2026-11-24T10:00:00"},  # no zone
    ]
    for case in cases:
        response = client.post("/api/v1/promotions", json={**base, **case}, headers=admin_headers)
        assert error(response) == (422, "validation_failed"), case
    create_promotion(client, admin_headers, clock, percent_off=10, code="ONCE")
    again = client.post(
        "/api/v1/promotions",
        json={**base, "kind": "percent_off", "percent_off": 5, "code": "once"},
        headers=admin_headers,
    )
    assert error(again) == (422, "validation_failed") and again.json()["error"]["field"] == "code"


def test_a_promotion_name_needs_every_language(
    client: TestClient, clock: FrozenClock, admin_headers: dict[str, str]
) -> None:
    body = {
        "name": {"en": "English only"},
        "kind": "percent_off",
        "percent_off": 10,
        "starts_at": clock.now().isoformat(),
    }
    response = client.post("/api/v1/promotions", json=body, headers=admin_headers)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "name"
    assert response.json()["error"]["code"] == "validation_failed"


# --- codes ------------------------------------------------------------------------------------


def test_a_promo_code_is_case_insensitive_and_applied(
    client: TestClient, runtime: Runtime, clock: FrozenClock, admin_headers: dict[str, str], alice: dict[str, Any]
) -> None:
    promo = create_promotion(
        client, admin_headers, clock, "Welcome", kind="amount_off", amount_off=2000, code="Welcome-20"
    )
    assert promo["code"] == "WELCOME-20"
    assert quote(client, alice).json()["total_amount"] == 8800  # a code only applies when given
    for given in ("welcome-20", "WELCOME-20", "  Welcome-20 "):
        quoted = quote(client, alice, promo_code=given)
        assert quoted.status_code == 200, quoted.text
        assert quoted.json()["total_amount"] == 6800

    order = buy(client, runtime, clock, alice, promo_code="welcome-20")
    assert order["discount_amount"] == 2000 and order["total_amount"] == 6800
    assert uses(client, admin_headers, promo["id"]) == 1


def test_expired_inapplicable_and_unknown_codes_are_refused(
    client: TestClient, runtime: Runtime, clock: FrozenClock, admin_headers: dict[str, str], alice: dict[str, Any]
) -> None:
    create_promotion(
        client,
        admin_headers,
        clock,
        percent_off=10,
        code="LASTWEEK",
        starts_at=clock.now() - timedelta(days=10),
        ends_at=clock.now() - timedelta(days=3),
    )
    create_promotion(client, admin_headers, clock, percent_off=10, code="BIGONLY", plan_codes=["big"])
    create_promotion(
        client, admin_headers, clock, percent_off=10, code="NEXTWEEK", starts_at=clock.now() + timedelta(days=7)
    )
    stopped = create_promotion(client, admin_headers, clock, percent_off=10, code="STOPPED")
    client.post(f"/api/v1/promotions/{stopped['id']}/deactivate", headers=admin_headers)

    expected = {
        "lastweek": (422, "promo_code_expired"),
        "BIGONLY": (422, "promo_code_not_applicable"),
        "NOSUCHCODE": (422, "promo_code_invalid"),
        "NEXTWEEK": (422, "promo_code_invalid"),  # not started: not revealed either
        "STOPPED": (422, "promo_code_invalid"),
    }
    for code, outcome in expected.items():
        refused = quote(client, alice, promo_code=code)
        assert error(refused) == outcome, code
        assert refused.json()["error"]["field"] == "promo_code"
        assert error(place_order(client, alice, promo_code=code)) == outcome, code
    assert client.get("/api/v1/orders", headers=alice["headers"]).json()["items"] == []
    assert quote(client, alice, "big", promo_code="bigonly").json()["total_amount"] == 15120


def test_a_code_with_one_use_cannot_be_used_twice(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    admin_headers: dict[str, str],
    alice: dict[str, Any],
    bob: dict[str, Any],
) -> None:
    promo = create_promotion(client, admin_headers, clock, percent_off=50, code="HALF", max_uses=1)
    first = place_order(client, alice, promo_code="HALF")
    assert first.status_code == 201 and first.json()["total_amount"] == 4400
    assert uses(client, admin_headers, promo["id"]) == 1  # reserved while the order awaits payment

    assert error(quote(client, bob, promo_code="HALF")) == (409, "promo_code_used_up")
    assert error(place_order(client, bob, promo_code="HALF")) == (409, "promo_code_used_up")
    assert client.get("/api/v1/orders", headers=bob["headers"]).json()["items"] == []
    assert place_order(client, bob).status_code == 201  # without the code, fine
    assert uses(client, admin_headers, promo["id"]) == 1


def test_a_code_limited_per_account(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    admin_headers: dict[str, str],
    alice: dict[str, Any],
    bob: dict[str, Any],
) -> None:
    promo = create_promotion(
        client, admin_headers, clock, kind="amount_off", amount_off=1000, code="ONEEACH", max_uses_per_account=1
    )
    buy(client, runtime, clock, alice, promo_code="oneeach")
    assert error(quote(client, alice, promo_code="ONEEACH")) == (409, "promo_code_already_used")
    assert error(place_order(client, alice, promo_code="ONEEACH")) == (409, "promo_code_already_used")
    assert buy(client, runtime, clock, bob, promo_code="ONEEACH")["total_amount"] == 7800
    assert uses(client, admin_headers, promo["id"]) == 2


def test_a_failed_payment_gives_the_use_back(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    admin_headers: dict[str, str],
    alice: dict[str, Any],
    bob: dict[str, Any],
) -> None:
    promo = create_promotion(client, admin_headers, clock, percent_off=20, code="ONLYONE", max_uses=1)
    declined = place_order(client, alice, promo_code="ONLYONE").json()
    pay_on_sandbox(client, declined, card="4000000000000002")
    deliver(runtime, client, clock)
    assert get_order(client, alice, declined["id"])["status"] == "failed"
    assert uses(client, admin_headers, promo["id"]) == 0

    taken = buy(client, runtime, clock, bob, promo_code="onlyone")
    assert taken["total_amount"] == 7040
    assert uses(client, admin_headers, promo["id"]) == 1
    # Alice's failed order was priced with the code; its use has gone to Bob, so it cannot be retried.
    retried = client.post(
        f"/api/v1/orders/{declined['id']}/payments", json={"payment_method": "card"}, headers=alice["headers"]
    )
    assert error(retried) == (409, "promo_code_used_up")
    assert get_order(client, alice, declined["id"])["status"] == "failed"
    assert uses(client, admin_headers, promo["id"]) == 1


def test_a_cancelled_order_gives_the_use_back(
    client: TestClient, clock: FrozenClock, admin_headers: dict[str, str], alice: dict[str, Any], bob: dict[str, Any]
) -> None:
    promo = create_promotion(client, admin_headers, clock, percent_off=20, code="ONLYONE", max_uses=1)
    mine = place_order(client, alice, promo_code="ONLYONE").json()
    cancelled = client.post(f"/api/v1/orders/{mine['id']}/cancel", headers=alice["headers"])
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert uses(client, admin_headers, promo["id"]) == 0
    assert place_order(client, bob, promo_code="ONLYONE").status_code == 201


def test_a_used_up_automatic_promotion_stops_applying_without_blocking_orders(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    admin_headers: dict[str, str],
    alice: dict[str, Any],
    bob: dict[str, Any],
) -> None:
    first_hundred = create_promotion(client, admin_headers, clock, "First customer", percent_off=10, max_uses=1)
    assert buy(client, runtime, clock, alice)["discount_amount"] == 880
    assert uses(client, admin_headers, first_hundred["id"]) == 1

    quoted = quote(client, bob)
    assert quoted.status_code == 200
    ordered = place_order(client, bob)
    assert ordered.status_code == 201, ordered.text  # 409 promo_code_used_up today
    assert ordered.json()["total_amount"] == quoted.json()["total_amount"] == 8800


# --- gifts, first purchase, free orders ----------------------------------------------------------


def test_a_bonus_gift_is_quoted_and_granted_as_a_promotion_bucket(
    client: TestClient, runtime: Runtime, clock: FrozenClock, admin_headers: dict[str, str], alice: dict[str, Any]
) -> None:
    gift = create_promotion(
        client,
        admin_headers,
        clock,
        "Bonus data",
        kind="bonus",
        bonus=[{"unit": "data_bytes", "zone": "HK", "amount": 5_000_000}],
        plan_codes=["monthly"],
    )
    quoted = quote(client, alice).json()
    assert quoted["total_amount"] == 8800 and quoted["adjustments"] == []  # a gift, not a discount
    assert quoted["bonuses"] == [
        {"promotion_id": gift["id"], "name": "Bonus data", "unit": "data_bytes", "zone": "HK", "amount": 5_000_000}
    ]
    assert quote(client, alice, "big").json()["bonuses"] == []

    order = buy(client, runtime, clock, alice)
    status = client.get(f"/api/v1/lines/{alice['line']['id']}/status", headers=alice["headers"]).json()
    data = next(a for a in status["allowances"] if a["unit"] == "data_bytes")
    assert data["initial"] == 10_000_000 + 5_000_000
    with runtime.unit_of_work() as uow:
        bonus = uow.session.scalars(
            select(Bucket).where(Bucket.line_id == alice["line"]["id"], Bucket.source == "promotion")
        ).one()
        assert bonus.initial == bonus.remaining == 5_000_000
        assert bonus.source_ref == f"order:{order['id']}:promotion:{gift['id']}"
        assert bonus.valid_until.isoformat() == datetime.fromisoformat(order["period_end"]).isoformat()
    receipt = client.get("/api/v1/receipts", headers=alice["headers"]).json()["items"][0]
    assert receipt["details"]["bonuses"][0]["amount"] == 5_000_000
    assert uses(client, admin_headers, gift["id"]) == 1


def test_a_first_purchase_offer_applies_to_the_lines_first_purchase_only(
    client: TestClient, runtime: Runtime, clock: FrozenClock, admin_headers: dict[str, str], alice: dict[str, Any]
) -> None:
    """`first_renewal_only` (the name is kept) means a line's first purchase: a new line's activation."""
    offer = create_promotion(client, admin_headers, clock, "Come back", percent_off=20, first_renewal_only=True)

    activation = quote(client, alice).json()
    assert activation["kind"] == "activation"
    assert [(a["promotion_id"], a["amount"]) for a in activation["adjustments"]] == [(offer["id"], 1760)]
    # An unpaid activation does not use up the offer.
    unpaid = place_order(client, alice).json()
    client.post(f"/api/v1/orders/{unpaid['id']}/cancel", headers=alice["headers"])
    assert quote(client, alice).json()["total_amount"] == 7040
    assert buy(client, runtime, clock, alice)["total_amount"] == 7040

    second = quote(client, alice).json()
    assert second["kind"] == "renewal" and second["adjustments"] == [] and second["total_amount"] == 8800
    assert quote(client, alice, "big").json()["adjustments"] == []  # nor to a later plan change


def test_a_fully_discounted_order_is_fulfilled_at_once_without_payment(
    client: TestClient, runtime: Runtime, clock: FrozenClock, admin_headers: dict[str, str], alice: dict[str, Any]
) -> None:
    promo = create_promotion(client, admin_headers, clock, "On us", percent_off=100, code="FREEMONTH")
    quoted = quote(client, alice, promo_code="freemonth").json()
    assert quoted["total_amount"] == 0 and quoted["total_display"] == "HK$0.00"

    created = place_order(client, alice, promo_code="freemonth")
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["status"] == "fulfilled" and order["payments"] == []
    assert (order["list_amount"], order["discount_amount"], order["total_amount"]) == (8800, 8800, 0)
    assert order["receipt_number"].startswith("R2026-")
    status = client.get(f"/api/v1/lines/{alice['line']['id']}/status", headers=alice["headers"]).json()
    assert status["line"]["status"] == "active"
    receipt = client.get("/api/v1/receipts", headers=alice["headers"]).json()["items"][0]
    assert receipt["amount"] == 0 and receipt["details"]["payment"]["method"] == "none"
    assert uses(client, admin_headers, promo["id"]) == 1
    assert deliver(runtime, client, clock) == 0  # no provider was involved
