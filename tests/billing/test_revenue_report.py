"""The revenue report counts each order once, whatever number of payments it took: money captured
twice is shown apart, as money held to be refunded, never as revenue."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from duckline.core.clock import FrozenClock
from duckline.runtime import Runtime
from tests.billing.test_provider_refunds import PRICE, captured_twice, cases, subscriber_and_staff


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    return subscriber_and_staff(client, runtime)


def report(client: TestClient, subscriber: dict[str, Any], by: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/reports/revenue", params={"by": by}, headers=subscriber["finance"])
    assert response.status_code == 200, response.text
    return list(response.json())


def test_an_order_captured_twice_is_counted_once_and_the_second_capture_is_shown_apart(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = captured_twice(client, runtime, clock, subscriber)
    once = {"currency": "HKD", "orders": 1, "gross": PRICE, "refunded": 0, "net": PRICE}

    assert report(client, subscriber, "plan") == [{"plan": "monthly", **once, "captured": 2 * PRICE, "held": PRICE}]
    assert report(client, subscriber, "method") == [{"method": "card", **once, "captured": 2 * PRICE, "held": PRICE}]
    assert report(client, subscriber, "day") == [{"day": "2026-11-24", **once, "captured": 2 * PRICE, "held": PRICE}]

    # Finance gives the second capture back: nothing is held any more, the revenue is unchanged.
    [case] = cases(client, subscriber, "open")
    resolved = client.post(
        f"/api/v1/reconciliation/cases/{case['id']}/resolve",
        json={"action": "refund", "reason": "charged twice"},
        headers=subscriber["finance"],
    )
    assert resolved.status_code == 200, resolved.text
    assert report(client, subscriber, "plan") == [{"plan": "monthly", **once, "captured": 2 * PRICE, "held": 0}]

    # A refund of the order itself is the revenue's.
    part = client.post(
        f"/api/v1/orders/{order['id']}/refunds",
        json={"amount": 3000, "reason": "goodwill"},
        headers=subscriber["finance"],
    )
    assert part.status_code == 200, part.text
    assert report(client, subscriber, "method") == [
        {"method": "card", **once, "refunded": 3000, "net": PRICE - 3000, "captured": 2 * PRICE, "held": 0}
    ]
