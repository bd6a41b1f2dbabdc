"""Renewal rules through the API: lapsed and recycled lines, plan changes, add-ons, the Hong Kong
top-up limits, retired plans and unverified identities — on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.models import Account, Person
from duckline.accounts.roles import Role
from duckline.billing.models import Order
from duckline.catalog import service as catalog
from duckline.catalog.rules import Allowance, PlanKind, Unit, Validity, Zone
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.runtime import Runtime
from duckline.usage.models import Bucket
from tests.app_pool import pooled_app
from tests.factories import (
    PASSWORD,
    buy,
    deliver,
    numbers,
    pay_on_sandbox,
    place_order,
    plan_input,
    register_and_verify,
    staff,
)

HK = ZoneInfo("Asia/Hong_Kong")
BIG_ALLOWANCES = [
    Allowance(Unit.VOICE_SECONDS, Zone.HK, 12_000),
    Allowance(Unit.SMS, Zone.HK, 300),
    Allowance(Unit.DATA_BYTES, Zone.HK, 50_000_000),
]
ADDON_DATA = 5_000_000


@pytest.fixture
def admin_headers(runtime: Runtime) -> dict[str, str]:
    numbers(runtime, 6)
    admin, headers = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=8800))
        catalog.create_plan(uow, admin, plan_input("big", price=16800, allowances=BIG_ALLOWANCES))
        catalog.create_plan(
            uow,
            admin,
            plan_input(
                "data-pack",
                kind=PlanKind.ADDON,
                price=5000,
                allowances=[Allowance(Unit.DATA_BYTES, Zone.HK, ADDON_DATA)],
            ),
        )
        catalog.create_plan(uow, admin, plan_input("too-cheap", price=4999))
        catalog.create_plan(uow, admin, plan_input("too-dear", price=100_001))
        catalog.create_plan(uow, admin, plan_input("max", price=100_000))
        catalog.create_plan(uow, admin, plan_input("p90k", price=90_000))
        catalog.create_plan(uow, admin, plan_input("p10k", price=10_000))
    return headers


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime, admin_headers: dict[str, str]) -> dict[str, Any]:
    return {**register_and_verify(client, runtime, 1), "admin_headers": admin_headers}


def jump(client: TestClient, clock: FrozenClock, subscriber: dict[str, Any], to: datetime) -> None:
    """Move the clock far ahead; the subscriber's 30-day API token may have lapsed, so log in again."""
    clock.set(to)
    token = client.post("/api/v1/auth/tokens", json={"phone": subscriber["phone"], "password": PASSWORD})
    assert token.status_code in (200, 201), token.text
    subscriber["headers"] = {"Authorization": f"Bearer {token.json()['token']}"}


def quote(client: TestClient, subscriber: dict[str, Any], plan: str, **extra: Any) -> Any:
    return client.post(
        "/api/v1/quotes",
        json={"line_id": subscriber["line"]["id"], "plan_code": plan, **extra},
        headers=subscriber["headers"],
    )


def line_status(client: TestClient, subscriber: dict[str, Any]) -> dict[str, Any]:
    response = client.get(f"/api/v1/lines/{subscriber['line']['id']}/status", headers=subscriber["headers"])
    assert response.status_code == 200, response.text
    return dict(response.json())


def run_lifecycle(client: TestClient, subscriber: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/jobs/lifecycle", headers=subscriber["admin_headers"])
    assert response.status_code == 200, response.text
    return dict(response.json())


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def month_after(start: datetime) -> datetime:
    return Validity(months=1).end_of_period(start)


def order_count(runtime: Runtime) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(Order)) or 0)


# --- lapsed lines ---------------------------------------------------------------------------


def test_a_line_in_grace_renewed_restarts_from_now_and_is_active_again(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    first = buy(client, runtime, clock, subscriber)
    expiry = at(first["period_end"])
    jump(client, clock, subscriber, expiry + timedelta(days=3))
    assert run_lifecycle(client, subscriber)["grace"] == 1
    assert line_status(client, subscriber)["line"]["status"] == "grace"

    now = clock.now()
    quoted = quote(client, subscriber, "monthly")
    assert quoted.status_code == 200, quoted.text
    assert quoted.json()["kind"] == "renewal"
    assert at(quoted.json()["period_start"]) == now
    assert at(quoted.json()["period_end"]) == month_after(now)

    renewed = buy(client, runtime, clock, subscriber)
    start = at(renewed["period_start"])
    assert now <= start <= clock.now()  # from when it was applied, not from the old expiry
    assert at(renewed["period_end"]) == month_after(start)
    status = line_status(client, subscriber)
    assert status["line"]["status"] == "active"
    assert at(status["expires_at"]) == month_after(start)
    assert {a["unit"]: a["remaining"] for a in status["allowances"]}["data_bytes"] == 10_000_000


def test_an_expired_line_within_retention_renewed_restarts_from_now(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    first = buy(client, runtime, clock, subscriber)
    # Past the 30 days of grace, within the 60 of retention.
    jump(client, clock, subscriber, at(first["period_end"]) + timedelta(days=45))
    assert run_lifecycle(client, subscriber) == {"grace": 1, "expired": 1, "recycled": 0}
    assert line_status(client, subscriber)["line"]["status"] == "expired"

    renewed = buy(client, runtime, clock, subscriber)
    assert renewed["kind"] == "renewal"
    start = at(renewed["period_start"])
    assert clock.now() - timedelta(seconds=10) <= start <= clock.now()
    status = line_status(client, subscriber)
    assert status["line"]["status"] == "active"
    assert at(status["expires_at"]) == month_after(start)
    assert status["line"]["msisdn"] == subscriber["line"]["msisdn"]  # the same number kept


def test_a_recycled_number_cannot_be_quoted_or_ordered(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    first = buy(client, runtime, clock, subscriber)
    jump(client, clock, subscriber, at(first["period_end"]) + timedelta(days=91))
    assert run_lifecycle(client, subscriber) == {"grace": 1, "expired": 1, "recycled": 1}
    assert line_status(client, subscriber)["line"]["status"] == "recycled"
    before = order_count(runtime)

    assert error(quote(client, subscriber, "monthly")) == (409, "line_recycled")
    assert error(quote(client, subscriber, "big")) == (409, "line_recycled")
    assert error(place_order(client, subscriber, "monthly")) == (409, "line_recycled")
    assert order_count(runtime) == before


# --- plan change and add-ons ------------------------------------------------------------------


def test_a_plan_change_takes_effect_at_the_next_period(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    first = buy(client, runtime, clock, subscriber)
    expiry = at(first["period_end"])
    clock.advance(timedelta(days=5))

    quoted = quote(client, subscriber, "big")
    assert quoted.status_code == 200, quoted.text
    assert quoted.json()["kind"] == "change"
    assert at(quoted.json()["period_start"]) == expiry
    assert at(quoted.json()["period_end"]) == expiry + timedelta(days=30)

    changed = buy(client, runtime, clock, subscriber, "big")
    assert changed["kind"] == "change"
    assert at(changed["period_start"]) == expiry
    status = line_status(client, subscriber)
    assert status["line"]["status"] == "active" and status["line"]["plan_code"] == "big"
    assert at(status["expires_at"]) == expiry + timedelta(days=30)
    # Until the old expiry, the old plan's allowances are what the line has; the new ones wait.
    now_allowances = {(a["unit"], a["zone"]): a["initial"] for a in status["allowances"]}
    assert now_allowances == {("voice_seconds", "HK"): 6000, ("sms", "HK"): 100, ("data_bytes", "HK"): 10_000_000}

    with runtime.unit_of_work() as uow:
        buckets = uow.session.scalars(
            select(Bucket).where(Bucket.line_id == subscriber["line"]["id"]).order_by(Bucket.id)
        ).all()
        old = [b for b in buckets if b.source_ref == f"order:{first['id']}"]
        new = [b for b in buckets if b.source_ref == f"order:{changed['id']}"]
        assert len(old) == 3 and len(new) == 3 and len(buckets) == 6
        assert all(b.valid_until == expiry and b.remaining == b.initial for b in old)  # kept, untouched
        assert all(b.valid_from == expiry and b.valid_until == expiry + timedelta(days=30) for b in new)
        assert sorted(b.initial for b in new) == [300, 12_000, 50_000_000]

    jump(client, clock, subscriber, expiry + timedelta(minutes=1))
    later = {(a["unit"], a["zone"]): a["initial"] for a in line_status(client, subscriber)["allowances"]}
    assert later == {("voice_seconds", "HK"): 12_000, ("sms", "HK"): 300, ("data_bytes", "HK"): 50_000_000}


def test_an_addon_adds_buckets_and_keeps_the_expiry(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    first = buy(client, runtime, clock, subscriber)
    expiry = at(first["period_end"])
    clock.advance(timedelta(days=2))

    quoted = quote(client, subscriber, "data-pack")
    assert quoted.status_code == 200, quoted.text
    assert quoted.json()["kind"] == "addon"
    assert at(quoted.json()["period_end"]) == expiry

    pack = buy(client, runtime, clock, subscriber, "data-pack")
    assert pack["kind"] == "addon" and at(pack["period_end"]) == expiry
    status = line_status(client, subscriber)
    assert at(status["expires_at"]) == expiry
    assert status["line"]["plan_code"] == "monthly"  # an add-on never becomes the line's plan
    data = next(a for a in status["allowances"] if a["unit"] == "data_bytes")
    assert data["initial"] == 10_000_000 + ADDON_DATA
    with runtime.unit_of_work() as uow:
        added = uow.session.scalars(select(Bucket).where(Bucket.source_ref == f"order:{pack['id']}")).all()
        assert [(b.source, b.unit, b.initial, b.valid_until) for b in added] == [
            ("addon", Unit.DATA_BYTES, ADDON_DATA, expiry)
        ]


def test_an_addon_on_a_pending_line_is_refused(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    assert error(quote(client, subscriber, "data-pack")) == (409, "addon_needs_active_line")
    assert error(place_order(client, subscriber, "data-pack")) == (409, "addon_needs_active_line")
    assert order_count(runtime) == 0


def test_an_addon_on_a_line_in_grace_is_refused(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    first = buy(client, runtime, clock, subscriber)
    jump(client, clock, subscriber, at(first["period_end"]) + timedelta(hours=1))
    run_lifecycle(client, subscriber)
    assert error(quote(client, subscriber, "data-pack")) == (409, "addon_needs_active_line")


# --- Hong Kong top-up limits ------------------------------------------------------------------


def test_a_plan_priced_below_the_minimum_cannot_be_ordered(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    response = quote(client, subscriber, "too-cheap")
    assert error(response) == (422, "order_below_minimum")
    assert "HK$50.00" in response.json()["error"]["message"]
    assert error(place_order(client, subscriber, "too-cheap")) == (422, "order_below_minimum")
    assert order_count(runtime) == 0


def test_a_plan_priced_above_the_maximum_cannot_be_ordered(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    response = quote(client, subscriber, "too-dear")
    assert error(response) == (422, "order_above_maximum")
    assert "HK$1,000.00" in response.json()["error"]["message"]
    assert error(place_order(client, subscriber, "too-dear")) == (422, "order_above_maximum")
    assert quote(client, subscriber, "max").status_code == 200  # exactly the maximum is fine
    assert order_count(runtime) == 0


def test_monthly_limit_per_line_counts_unpaid_orders_but_not_failed_or_expired_ones(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    buy(client, runtime, clock, subscriber, "max")
    buy(client, runtime, clock, subscriber, "max")  # HK$2,000 paid this month
    pending = place_order(client, subscriber, "p90k")  # HK$900 about to be paid
    assert pending.status_code == 201 and pending.json()["status"] == "payment_pending"

    refused = quote(client, subscriber, "max")
    assert error(refused) == (409, "monthly_limit_reached")
    message = refused.json()["error"]["message"]
    assert "HK$3,000.00" in message and "HK$100.00 is left" in message
    assert error(place_order(client, subscriber, "max")) == (409, "monthly_limit_reached")
    assert quote(client, subscriber, "p10k").status_code == 200  # exactly what is left

    # The pending order's card is declined: it no longer counts.
    pay_on_sandbox(client, pending.json(), card="4000000000000002")
    deliver(runtime, client, clock)
    failed = client.get(f"/api/v1/orders/{pending.json()['id']}", headers=subscriber["headers"]).json()
    assert failed["status"] == "failed"
    assert quote(client, subscriber, "max").status_code == 200

    # An unpaid order that expires no longer counts either.
    unpaid = place_order(client, subscriber, "max")
    assert unpaid.status_code == 201
    refused = quote(client, subscriber, "p10k")
    assert error(refused) == (409, "monthly_limit_reached")
    assert "HK$0.00 is left" in refused.json()["error"]["message"]
    clock.advance(timedelta(minutes=runtime.settings.order_payment_minutes + 1))
    reconciled = client.post("/api/v1/jobs/reconcile", headers=subscriber["admin_headers"])
    assert reconciled.status_code == 200 and unpaid.json()["id"] in reconciled.json()["expired"]
    assert client.get(f"/api/v1/orders/{unpaid.json()['id']}", headers=subscriber["headers"]).json()["status"] == (
        "expired"
    )
    assert quote(client, subscriber, "max").status_code == 200


def test_monthly_limit_resets_on_the_first_of_the_month_in_hong_kong(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    for _ in range(3):
        buy(client, runtime, clock, subscriber, "max")
    assert error(quote(client, subscriber, "monthly")) == (409, "monthly_limit_reached")
    clock.set(datetime(2026, 11, 30, 23, 59, tzinfo=HK))  # 15:59 UTC: still November in Hong Kong
    assert error(quote(client, subscriber, "monthly")) == (409, "monthly_limit_reached")
    clock.set(datetime(2026, 12, 1, 0, 0, tzinfo=HK))  # 30 Nov 16:00 UTC
    assert quote(client, subscriber, "monthly").status_code == 200


def test_the_monthly_limit_is_per_line(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    for _ in range(3):
        buy(client, runtime, clock, subscriber, "max")
    second_line = client.post("/api/v1/lines", headers=subscriber["headers"])
    assert second_line.status_code == 201, second_line.text
    other = {**subscriber, "line": second_line.json()}
    assert error(quote(client, subscriber, "monthly")) == (409, "monthly_limit_reached")
    assert quote(client, other, "monthly").status_code == 200


# --- catalogue and identity -------------------------------------------------------------------


def test_a_retired_plan_cannot_be_ordered(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    buy(client, runtime, clock, subscriber, "monthly")
    retired = client.post("/api/v1/plans/monthly/retire", headers=subscriber["admin_headers"])
    assert retired.status_code == 200, retired.text
    assert error(quote(client, subscriber, "monthly")) == (409, "plan_retired")
    assert error(place_order(client, subscriber, "monthly")) == (409, "plan_retired")
    assert line_status(client, subscriber)["line"]["status"] == "active"  # the line keeps running
    assert quote(client, subscriber, "big").status_code == 200  # another plan still can


@pytest.fixture
def manual_kyc(settings: Settings, clock: FrozenClock) -> Iterator[tuple[Runtime, TestClient]]:
    reviewed = Runtime(settings.model_copy(update={"kyc_auto_approve": False}), clock=clock)
    with pooled_app(reviewed) as app, TestClient(app, base_url="http://127.0.0.1") as reviewed_client:
        yield reviewed, reviewed_client
    reviewed.close()


def _person_id(runtime: Runtime, account_id: int) -> int:
    with runtime.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        assert account is not None and account.person_id is not None
        person = uow.session.get(Person, account.person_id)
        assert person is not None and person.kyc_status.value == "pending_review"
        return person.id


def test_an_unverified_identity_cannot_activate(
    admin_headers: dict[str, str], manual_kyc: tuple[Runtime, TestClient]
) -> None:
    reviewed, client = manual_kyc
    subscriber = {**register_and_verify(client, reviewed, 2), "admin_headers": admin_headers}
    assert subscriber["line"]["status"] == "pending"

    assert error(quote(client, subscriber, "monthly")) == (409, "kyc_not_verified")
    assert error(place_order(client, subscriber, "monthly")) == (409, "kyc_not_verified")
    assert order_count(reviewed) == 0

    person_id = _person_id(reviewed, subscriber["account"]["id"])
    approved = client.post(f"/api/v1/persons/{person_id}/kyc", json={"status": "verified"}, headers=admin_headers)
    assert approved.status_code == 200, approved.text
    quoted = quote(client, subscriber, "monthly")
    assert quoted.status_code == 200 and quoted.json()["kind"] == "activation"


def test_a_rejected_identity_cannot_activate(
    admin_headers: dict[str, str], manual_kyc: tuple[Runtime, TestClient]
) -> None:
    reviewed, client = manual_kyc
    subscriber = register_and_verify(client, reviewed, 3)
    person_id = _person_id(reviewed, subscriber["account"]["id"])
    rejected = client.post(
        f"/api/v1/persons/{person_id}/kyc",
        json={"status": "rejected", "reason": "the scan is unreadable"},
        headers=admin_headers,
    )
    assert rejected.status_code == 200, rejected.text
    refused = quote(client, subscriber, "monthly")
    assert error(refused) == (409, "kyc_rejected")
    assert "the scan is unreadable" in refused.json()["error"]["message"]
