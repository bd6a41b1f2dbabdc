"""The console's dashboard counts an order captured twice once, and shows the second capture apart:
money held to be refunded, never revenue."""

from __future__ import annotations

from fastapi.testclient import TestClient

from duckline.accounts.roles import Role
from duckline.core.clock import FrozenClock
from duckline.runtime import Runtime
from tests.billing.test_provider_refunds import captured_twice, subscriber_and_staff
from tests.factories import staff
from tests.staff.test_console import browser, text


def test_the_dashboard_shows_a_second_capture_apart_from_revenue(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    subscriber = subscriber_and_staff(client, runtime)
    finance, _ = staff(runtime, Role.FINANCE, 9)
    captured_twice(client, runtime, clock, subscriber)

    page = browser(client, runtime, finance.phone).get("/console")

    assert page.status_code == 200, page.text
    shown = text(page.text)
    assert "Revenue, last 30 days HK$88.00" in shown  # once, not HK$176.00
    assert "Not revenue: HK$88.00 captured twice or for a wrong amount, to refund." in shown


def test_the_dashboard_says_nothing_of_held_money_when_there_is_none(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    subscriber_and_staff(client, runtime)
    finance, _ = staff(runtime, Role.FINANCE, 9)
    assert "Not revenue" not in text(browser(client, runtime, finance.phone).get("/console").text)
