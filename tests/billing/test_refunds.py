"""Refunds through the API: finance refunds to the original payment method through the provider,
a credit note is issued, a full refund takes back what is unused; spending and revenue reports."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.roles import Role
from duckline.billing.models import Payment, SandboxPayment, SandboxWebhook
from duckline.catalog import service as catalog
from duckline.catalog.rules import Validity
from duckline.core.clock import FrozenClock
from duckline.runtime import Runtime
from duckline.usage import balances
from duckline.usage.models import Bucket, LedgerEntry
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

HK = ZoneInfo("Asia/Hong_Kong")


@pytest.fixture
def people(runtime: Runtime) -> dict[str, dict[str, str]]:
    numbers(runtime, 6)
    admin, admin_headers = staff(runtime, Role.ADMIN, 1)
    _, finance = staff(runtime, Role.FINANCE, 2)
    _, support = staff(runtime, Role.SUPPORT, 3)
    _, network = staff(runtime, Role.NETWORK, 4)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=8800))
        catalog.create_plan(uow, admin, plan_input("big", price=16800))
    return {"admin": admin_headers, "finance": finance, "support": support, "network": network}


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime, people: dict[str, dict[str, str]]) -> dict[str, Any]:
    return register_and_verify(client, runtime, 1)


def refund(client: TestClient, headers: dict[str, str], order_id: int, **body: Any) -> Any:
    return client.post(f"/api/v1/orders/{order_id}/refunds", json=body, headers=headers)


def error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def get_order(client: TestClient, subscriber: dict[str, Any], order_id: int) -> dict[str, Any]:
    return dict(client.get(f"/api/v1/orders/{order_id}", headers=subscriber["headers"]).json())


def sandbox_payment(runtime: Runtime, order_id: int) -> tuple[Payment, SandboxPayment]:
    with runtime.unit_of_work() as uow:
        ours = uow.session.scalars(select(Payment).where(Payment.order_id == order_id)).one()
        theirs = uow.session.scalars(select(SandboxPayment).where(SandboxPayment.ref == ours.provider_ref)).one()
        uow.session.expunge_all()
        return ours, theirs


def order_buckets(runtime: Runtime, order_id: int) -> list[Bucket]:
    with runtime.unit_of_work() as uow:
        rows = list(
            uow.session.scalars(
                select(Bucket).where(
                    Bucket.source_ref.like(f"order:{order_id}:%") | (Bucket.source_ref == f"order:{order_id}")
                )
            ).all()
        )
        uow.session.expunge_all()
        return rows


def ledger_is_consistent(runtime: Runtime, line_id: int) -> bool:
    with runtime.unit_of_work() as uow:
        return balances.rebuild_remaining(uow, line_id) == balances.projected_remaining(uow, line_id)


def use_data(client: TestClient, network: dict[str, str], msisdn: str, record_id: str, quantity: int) -> None:
    record = {
        "record_id": record_id,
        "msisdn": msisdn,
        "kind": "data",
        "zone": "HK",
        "quantity": quantity,
        "started_at": "2026-11-24T10:05:00+08:00",
    }
    response = client.post("/api/v1/usage/batches", json={"records": [record]}, headers=network)
    assert response.status_code == 200 and response.json()["applied"] == 1, response.text


# --- refunding ------------------------------------------------------------------------------


def test_a_partial_refund_then_the_rest(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    people: dict[str, dict[str, str]],
    subscriber: dict[str, Any],
) -> None:
    order = buy(client, runtime, clock, subscriber)
    receipt_number = order["receipt_number"]

    partial = refund(client, people["finance"], order["id"], amount=3000, reason="service outage goodwill")
    assert partial.status_code == 200, partial.text
    assert partial.json() == {
        "id": partial.json()["id"],
        "order_id": order["id"],
        "amount": 3000,
        "currency": "HKD",
        "status": "succeeded",
        "reason": "service outage goodwill",
    }
    after = get_order(client, subscriber, order["id"])
    assert after["status"] == "partially_refunded" and after["refunded_amount"] == 3000
    assert after["receipt_number"] == receipt_number  # the receipt stays; a credit note is added

    receipts = client.get("/api/v1/receipts", headers=subscriber["headers"]).json()["items"]
    assert [r["kind"] for r in receipts] == ["credit_note", "receipt"]  # newest first
    note = receipts[0]
    assert note["number"] == "CN2026-000001" and note["amount"] == 3000 and note["order_id"] == order["id"]
    assert note["amount_display"] == "HK$30.00"
    assert note["details"]["refund_of"] == receipt_number
    assert note["details"]["reason"] == "service outage goodwill"
    assert note["details"]["payment"]["last4"] == "4242"

    ours, theirs = sandbox_payment(runtime, order["id"])
    assert (theirs.refunded, theirs.status) == (3000, "succeeded")
    assert (ours.refunded_amount, ours.status.value) == (3000, "succeeded")
    deliver(runtime, client, clock)  # the provider's refund webhooks change nothing more
    assert get_order(client, subscriber, order["id"])["status"] == "partially_refunded"
    assert all(b.remaining == b.initial for b in order_buckets(runtime, order["id"]))  # service kept

    rest = refund(client, people["finance"], order["id"], reason="customer left")
    assert rest.status_code == 200, rest.text
    assert rest.json()["amount"] == 5800
    final = get_order(client, subscriber, order["id"])
    assert final["status"] == "refunded" and final["refunded_amount"] == 8800
    ours, theirs = sandbox_payment(runtime, order["id"])
    assert (theirs.refunded, theirs.status) == (8800, "refunded")
    assert (ours.refunded_amount, ours.status.value) == (8800, "refunded")
    with runtime.unit_of_work() as uow:
        events = uow.session.scalars(
            select(SandboxWebhook.event_id).where(SandboxWebhook.event_id.like("evt_refund_%"))
        )
        assert len(events.all()) == 2
    notes = [r for r in client.get("/api/v1/receipts", headers=subscriber["headers"]).json()["items"]]
    assert [(r["number"], r["amount"]) for r in notes if r["kind"] == "credit_note"] == [
        ("CN2026-000002", 5800),
        ("CN2026-000001", 3000),
    ]
    deliver(runtime, client, clock)
    assert get_order(client, subscriber, order["id"])["status"] == "refunded"


def test_a_full_refund_takes_back_what_the_order_granted_and_is_unused(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    people: dict[str, dict[str, str]],
    subscriber: dict[str, Any],
) -> None:
    order = buy(client, runtime, clock, subscriber)
    use_data(client, people["network"], subscriber["line"]["msisdn"], "cdr-1", 4_000_000)

    full = refund(client, people["finance"], order["id"], reason="cancelled within cooling-off")
    assert full.status_code == 200 and full.json()["amount"] == 8800
    assert get_order(client, subscriber, order["id"])["status"] == "refunded"

    buckets = order_buckets(runtime, order["id"])
    assert len(buckets) == 3 and all(b.remaining == 0 for b in buckets)
    with runtime.unit_of_work() as uow:
        voided = uow.session.execute(
            select(Bucket.unit, LedgerEntry.delta)
            .join(Bucket, Bucket.id == LedgerEntry.bucket_id)
            .where(LedgerEntry.reason == "refund", LedgerEntry.line_id == subscriber["line"]["id"])
        ).all()
    assert sorted((u.value, d) for u, d in voided) == [
        ("data_bytes", -6_000_000),  # what was left of 10 MB after 4 MB used
        ("sms", -100),
        ("voice_seconds", -6000),
    ]
    assert ledger_is_consistent(runtime, subscriber["line"]["id"])


def test_refunding_the_rest_after_a_partial_refund_voids_the_unused_buckets(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    people: dict[str, dict[str, str]],
    subscriber: dict[str, Any],
) -> None:
    order = buy(client, runtime, clock, subscriber)
    assert refund(client, people["finance"], order["id"], amount=3000, reason="goodwill").status_code == 200
    assert refund(client, people["finance"], order["id"], reason="the rest").status_code == 200
    assert get_order(client, subscriber, order["id"])["status"] == "refunded"

    buckets = order_buckets(runtime, order["id"])
    assert len(buckets) == 3
    assert [b.remaining for b in buckets] == [0, 0, 0]  # today: still 6000, 100, 10_000_000
    with runtime.unit_of_work() as uow:
        refunds = uow.session.scalars(select(LedgerEntry).where(LedgerEntry.reason == "refund")).all()
        assert len(refunds) == 3
    assert ledger_is_consistent(runtime, subscriber["line"]["id"])


def test_a_full_refund_voids_only_its_own_order_buckets(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    people: dict[str, dict[str, str]],
    subscriber: dict[str, Any],
) -> None:
    first = buy(client, runtime, clock, subscriber)
    lookalike = int(f"{first['id']}0")  # e.g. order 10 after order 1
    renewal: dict[str, Any] | None = None
    for _ in range(lookalike):
        created = place_order(client, subscriber).json()
        if created["id"] == lookalike:
            pay_on_sandbox(client, created)
            deliver(runtime, client, clock)
            renewal = get_order(client, subscriber, created["id"])
            break
        cancelled = client.post(f"/api/v1/orders/{created['id']}/cancel", headers=subscriber["headers"])
        assert cancelled.status_code == 200, cancelled.text
    assert renewal is not None and renewal["status"] == "fulfilled"
    assert len(order_buckets(runtime, renewal["id"])) == 3

    assert refund(client, people["finance"], first["id"], reason="refund the first month").status_code == 200
    assert all(b.remaining == 0 for b in order_buckets(runtime, first["id"]))
    kept = order_buckets(runtime, renewal["id"])
    assert [b.remaining for b in kept] == [b.initial for b in kept]  # today: voided too


def test_refunding_more_than_is_left_is_refused(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    people: dict[str, dict[str, str]],
    subscriber: dict[str, Any],
) -> None:
    order = buy(client, runtime, clock, subscriber)
    too_much = refund(client, people["finance"], order["id"], amount=8801, reason="oops")
    assert error(too_much) == (422, "refund_amount_invalid") and too_much.json()["error"]["field"] == "amount"
    assert "8800" in too_much.json()["error"]["message"]
    assert refund(client, people["finance"], order["id"], amount=3000, reason="part").status_code == 200
    assert error(refund(client, people["finance"], order["id"], amount=5801, reason="oops")) == (
        422,
        "refund_amount_invalid",
    )
    assert error(refund(client, people["finance"], order["id"], amount=0, reason="zero")) == (422, "validation_failed")
    assert error(refund(client, people["finance"], order["id"], amount=-5, reason="neg")) == (422, "validation_failed")
    assert refund(client, people["finance"], order["id"], amount=5800, reason="exactly the rest").status_code == 200
    after = get_order(client, subscriber, order["id"])
    assert after["status"] == "refunded" and after["refunded_amount"] == 8800
    _, theirs = sandbox_payment(runtime, order["id"])
    assert theirs.refunded == 8800


def test_a_refund_needs_a_reason(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    people: dict[str, dict[str, str]],
    subscriber: dict[str, Any],
) -> None:
    order = buy(client, runtime, clock, subscriber)
    missing = client.post(f"/api/v1/orders/{order['id']}/refunds", json={"amount": 100}, headers=people["finance"])
    assert error(missing) == (422, "validation_failed") and missing.json()["error"]["field"] == "reason"
    assert error(refund(client, people["finance"], order["id"], amount=100, reason="")) == (422, "validation_failed")
    assert error(refund(client, people["finance"], order["id"], amount=100, reason="   ")) == (422, "reason_required")
    assert get_order(client, subscriber, order["id"])["status"] == "fulfilled"
    _, theirs = sandbox_payment(runtime, order["id"])
    assert theirs.refunded == 0


def test_only_finance_and_admins_refund(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    people: dict[str, dict[str, str]],
    subscriber: dict[str, Any],
) -> None:
    order = buy(client, runtime, clock, subscriber)
    assert error(refund(client, people["support"], order["id"], amount=100, reason="x")) == (403, "forbidden")
    assert error(refund(client, subscriber["headers"], order["id"], amount=100, reason="x")) == (403, "forbidden")
    assert refund(client, {}, order["id"], amount=100, reason="x").status_code == 401
    assert get_order(client, subscriber, order["id"])["refunded_amount"] == 0
    assert refund(client, people["admin"], order["id"], amount=100, reason="admin may").status_code == 200


def test_orders_that_took_no_money_cannot_be_refunded(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    people: dict[str, dict[str, str]],
    subscriber: dict[str, Any],
) -> None:
    unpaid = place_order(client, subscriber).json()
    assert unpaid["status"] == "payment_pending"
    refused = refund(client, people["finance"], unpaid["id"], reason="nothing to give back")
    assert error(refused) == (409, "refund_not_allowed")
    assert "payment_pending" in refused.json()["error"]["message"]

    pay_on_sandbox(client, unpaid, card="4000000000000002")
    deliver(runtime, client, clock)
    assert get_order(client, subscriber, unpaid["id"])["status"] == "failed"
    assert error(refund(client, people["finance"], unpaid["id"], reason="declined")) == (409, "refund_not_allowed")

    assert error(refund(client, people["finance"], 999_999, reason="no such order")) == (404, "not_found")

    paid = buy(client, runtime, clock, subscriber)
    assert refund(client, people["finance"], paid["id"], reason="all").status_code == 200
    assert error(refund(client, people["finance"], paid["id"], amount=1, reason="again")) == (
        409,
        "refund_not_allowed",
    )
    with runtime.unit_of_work() as uow:
        assert uow.session.scalars(select(SandboxPayment.refunded).order_by(SandboxPayment.id)).all() == [0, 8800]


def test_a_free_order_has_nothing_to_refund(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    people: dict[str, dict[str, str]],
    subscriber: dict[str, Any],
) -> None:
    promo = {
        "name": {"en": "Free", "zh_Hant": "免費", "zh_Hans": "免费"},
        "kind": "percent_off",
        "percent_off": 100,
        "code": "FREE",
        "starts_at": clock.now().isoformat(),
    }
    assert client.post("/api/v1/promotions", json=promo, headers=people["admin"]).status_code == 201
    free = place_order(client, subscriber, promo_code="FREE").json()
    assert free["status"] == "fulfilled"
    refused = refund(client, people["finance"], free["id"], reason="nothing was paid")
    assert error(refused) == (409, "refund_not_allowed")


# --- what was spent, what was earned ---------------------------------------------------------


def test_spending_by_month(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    people: dict[str, dict[str, str]],
    subscriber: dict[str, Any],
) -> None:
    assert client.get("/api/v1/billing/months", headers=subscriber["headers"]).json() == []
    november = buy(client, runtime, clock, subscriber)
    refund(client, people["finance"], november["id"], amount=3000, reason="goodwill")
    place_order(client, subscriber)  # unpaid: not spent
    clock.set(datetime(2026, 12, 1, 0, 30, tzinfo=HK))  # 30 Nov 16:30 UTC is already December here
    buy(client, runtime, clock, subscriber, "big")

    months = client.get("/api/v1/billing/months", headers=subscriber["headers"])
    assert months.status_code == 200, months.text
    assert months.json() == [
        {"month": "2026-12", "paid": 16800, "refunded": 0, "net": 16800, "currency": "HKD"},
        {"month": "2026-11", "paid": 8800, "refunded": 3000, "net": 5800, "currency": "HKD"},
    ]
    # A subscriber's own spending: not everyone's, and no staff report (that is /reports/revenue).
    refused = client.get("/api/v1/billing/months", headers=people["finance"])
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


def test_revenue_report_by_plan_method_and_day(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    people: dict[str, dict[str, str]],
    subscriber: dict[str, Any],
) -> None:
    first = buy(client, runtime, clock, subscriber)
    refund(client, people["finance"], first["id"], amount=3000, reason="goodwill")
    declined = place_order(client, subscriber, "big").json()
    pay_on_sandbox(client, declined, card="4000000000000002")
    deliver(runtime, client, clock)
    retried = client.post(
        f"/api/v1/orders/{declined['id']}/payments", json={"payment_method": "alipay"}, headers=subscriber["headers"]
    ).json()
    pay_on_sandbox(client, retried)
    deliver(runtime, client, clock)
    assert get_order(client, subscriber, declined["id"])["status"] == "fulfilled"
    clock.advance(timedelta(days=1))
    buy(client, runtime, clock, subscriber)
    place_order(client, subscriber)  # unpaid: no revenue

    def report(by: str, headers: dict[str, str] | None = None, **params: str) -> Any:
        return client.get("/api/v1/reports/revenue", params={"by": by, **params}, headers=headers or people["finance"])

    def revenue(response: Any) -> list[dict[str, Any]]:
        """The rows without `captured` and `held`: each order was paid once, so nothing beyond its price."""
        rows = list(response.json())
        assert [(row.pop("captured"), row.pop("held")) for row in rows] == [(row["gross"], 0) for row in rows]
        return rows

    by_plan = report("plan")
    assert by_plan.status_code == 200, by_plan.text
    assert revenue(by_plan) == [
        {"plan": "big", "currency": "HKD", "orders": 1, "gross": 16800, "refunded": 0, "net": 16800},
        {"plan": "monthly", "currency": "HKD", "orders": 2, "gross": 17600, "refunded": 3000, "net": 14600},
    ]
    assert revenue(report("method")) == [
        {"method": "alipay", "currency": "HKD", "orders": 1, "gross": 16800, "refunded": 0, "net": 16800},
        {"method": "card", "currency": "HKD", "orders": 2, "gross": 17600, "refunded": 3000, "net": 14600},
    ]
    assert revenue(report("day")) == [
        {"day": "2026-11-24", "currency": "HKD", "orders": 2, "gross": 25600, "refunded": 3000, "net": 22600},
        {"day": "2026-11-25", "currency": "HKD", "orders": 1, "gross": 8800, "refunded": 0, "net": 8800},
    ]
    assert report("day", since="2026-11-25", until="2026-11-25").json()[0]["gross"] == 8800
    assert report("day", since="2026-12-01", until="2026-12-31").json() == []

    assert report("plan", people["support"]).status_code == 200
    assert report("plan", people["admin"]).status_code == 200
    assert error(report("plan", subscriber["headers"])) == (403, "forbidden")
    assert error(report("method", subscriber["headers"])) == (403, "forbidden")
    assert error(report("day", subscriber["headers"])) == (403, "forbidden")
    assert error(report("account")) == (422, "validation_failed")
    assert error(report("day", since="2026-11-25", until="2026-11-24")) == (422, "validation_failed")


def test_a_credit_note_downloads_as_pdf(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    people: dict[str, dict[str, str]],
    subscriber: dict[str, Any],
) -> None:
    order = buy(client, runtime, clock, subscriber)
    refund(client, people["finance"], order["id"], amount=1234, reason="dropped calls")
    note = next(
        r
        for r in client.get("/api/v1/receipts", headers=subscriber["headers"]).json()["items"]
        if r["kind"] == "credit_note"
    )
    pdf = client.get(note["pdf"], headers=subscriber["headers"])
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert f'filename="{note["number"]}.pdf"' in pdf.headers["content-disposition"]
    assert client.get(note["pdf"], headers=people["finance"]).status_code == 200  # staff may read it
    other = register_and_verify(client, runtime, 2)
    assert client.get(note["pdf"], headers=other["headers"]).status_code == 404  # nobody else
