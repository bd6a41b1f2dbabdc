"""Refunds made at the provider (from its dashboard), not through Duckline: learnt of by a
notification or by reconciliation's status query, they are treated as a refund made in Duckline
(refund row, order state, credit note, unused allowances taken back, the subscriber told) and
staff see a case; nothing is counted twice, whatever the order and number of the notices, and a
refund Duckline asked for is not counted again when its notice arrives.

The sandbox plays the provider here; tests/billing/test_provider_refunds_real.py does the same
through Stripe, Alipay and WeChat Pay's notifications.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.roles import Role
from duckline.billing import checkout
from duckline.billing.models import Payment, Receipt, Refund
from duckline.catalog import service as catalog
from duckline.catalog.rules import Validity
from duckline.core.clock import FrozenClock
from duckline.messaging.models import DomainEvent, Notification
from duckline.runtime import Runtime
from duckline.usage import balances
from duckline.usage.models import Bucket, LedgerEntry
from tests.factories import buy, deliver, numbers, pay_on_sandbox, place_order, plan_input, register_and_verify, staff
from tests.provider_fakes import capture_webhooks, sandbox_event

PRICE = 8800
LOSE_WEBHOOK = "4000000000000077"  # succeeds, but its notification never arrives


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    return subscriber_and_staff(client, runtime)


def subscriber_and_staff(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    """A verified subscriber with a pending line, staff of each kind (their headers), plan "monthly"."""
    numbers(runtime, 3)
    admin, admin_headers = staff(runtime, Role.ADMIN, 1)
    _, support = staff(runtime, Role.SUPPORT, 2)
    _, finance = staff(runtime, Role.FINANCE, 3)
    _, network = staff(runtime, Role.NETWORK, 4)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=PRICE))
    return {
        **register_and_verify(client, runtime, 1),
        "admin": admin_headers,
        "support": support,
        "finance": finance,
        "network": network,
    }


def order_now(client: TestClient, subscriber: dict[str, Any], order_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/orders/{order_id}", headers=subscriber["headers"])
    assert response.status_code == 200, response.text
    return dict(response.json())


def provider_ref(runtime: Runtime, payment_id: int) -> str:
    with runtime.unit_of_work() as uow:
        payment = uow.session.get(Payment, payment_id)
        assert payment is not None and payment.provider_ref
        return payment.provider_ref


def refund_in_dashboard(runtime: Runtime, order: dict[str, Any], amount: int, lose_webhook: bool = False) -> None:
    """The operator refunds in the sandbox's dashboard: Duckline is not asked."""
    assert runtime.sandbox is not None
    runtime.sandbox.refund_in_dashboard(provider_ref(runtime, order["payments"][-1]["id"]), amount, lose_webhook)


def post(client: TestClient, notice: tuple[str, bytes, dict[str, str]]) -> None:
    path, body, headers = notice
    assert client.post(path, content=body, headers=headers).status_code == 200


def again(runtime: Runtime, notice: tuple[str, bytes, dict[str, str]]) -> tuple[str, bytes, dict[str, str]]:
    """The same news under another event id, as a provider's retry or a second event type may bring it."""
    path, body, _ = notice
    event = json.loads(body)
    data = event["data"]
    repeated = sandbox_event(
        runtime, event["type"], data["ref"], data["status"], data["amount"], refunded=data["refunded"]
    )
    return path, *repeated


def credit_notes(client: TestClient, subscriber: dict[str, Any]) -> list[tuple[str, int]]:
    items = client.get("/api/v1/receipts", headers=subscriber["headers"]).json()["items"]
    return sorted((r["number"], r["amount"]) for r in items if r["kind"] == "credit_note")


def cases(client: TestClient, subscriber: dict[str, Any], state: str = "all") -> list[dict[str, Any]]:
    response = client.get("/api/v1/reconciliation/cases", params={"state": state}, headers=subscriber["support"])
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def order_buckets(runtime: Runtime, order_id: int) -> list[Bucket]:
    with runtime.unit_of_work() as uow:
        rows = list(
            uow.session.scalars(
                select(Bucket)
                .where(Bucket.source_ref.like(f"order:{order_id}:%") | (Bucket.source_ref == f"order:{order_id}"))
                .order_by(Bucket.id)
            )
        )
        uow.session.expunge_all()
        return rows


def count(runtime: Runtime, table: type[Any], *where: Any) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def refunds_of(runtime: Runtime, order_id: int) -> list[tuple[int, str, int | None]]:
    with runtime.unit_of_work() as uow:
        rows = uow.session.scalars(select(Refund).where(Refund.order_id == order_id).order_by(Refund.id))
        return [(r.amount, r.status, r.actor_id) for r in rows]


def use_data(client: TestClient, subscriber: dict[str, Any], quantity: int) -> None:
    record = {
        "record_id": "cdr-1",
        "msisdn": subscriber["line"]["msisdn"],
        "kind": "data",
        "zone": "HK",
        "quantity": quantity,
        "started_at": "2026-11-24T10:05:00+08:00",
    }
    response = client.post("/api/v1/usage/batches", json={"records": [record]}, headers=subscriber["network"])
    assert response.status_code == 200 and response.json()["applied"] == 1, response.text


def told(runtime: Runtime, subscriber: dict[str, Any]) -> list[str]:
    """The refund messages queued for the subscriber."""
    with runtime.unit_of_work() as uow:
        return list(
            uow.session.scalars(
                select(Notification.body)
                .where(Notification.account_id == subscriber["account"]["id"], Notification.template == "refund_issued")
                .order_by(Notification.id)
            )
        )


# --- a refund in the dashboard of a renewal already applied -------------------------------------


def test_a_full_refund_in_the_dashboard_is_treated_like_a_refund_in_duckline(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = buy(client, runtime, clock, subscriber)
    use_data(client, subscriber, 4_000_000)
    refund_in_dashboard(runtime, order, PRICE)
    [notice] = capture_webhooks(runtime, clock)

    post(client, notice)
    post(client, notice)  # delivered twice
    post(client, again(runtime, notice))  # and reported once more under another event id

    final = order_now(client, subscriber, order["id"])
    assert (final["status"], final["refunded_amount"]) == ("refunded", PRICE)
    assert final["payments"][0]["status"] == "refunded"
    assert refunds_of(runtime, order["id"]) == [(PRICE, "succeeded", None)]
    [(number, amount)] = credit_notes(client, subscriber)
    assert (number, amount) == ("CN2026-000001", PRICE)
    note = next(r for r in client.get("/api/v1/receipts", headers=subscriber["headers"]).json()["items"])
    assert note["details"]["refund_of"] == order["receipt_number"]
    assert note["details"]["reason"] == "refunded at Sandbox"

    # What was unused is taken back (ledger entries); the 4 MB used cannot be.
    assert [(b.unit.value, b.remaining) for b in order_buckets(runtime, order["id"])] == [
        ("voice_seconds", 0),
        ("sms", 0),
        ("data_bytes", 0),
    ]
    with runtime.unit_of_work() as uow:
        voided = uow.session.scalars(select(LedgerEntry.delta).where(LedgerEntry.reason == "refund")).all()
        assert sorted(voided) == [-6_000_000, -6000, -100]
        line_id = subscriber["line"]["id"]
        assert balances.rebuild_remaining(uow, line_id) == balances.projected_remaining(uow, line_id)

    # The subscriber is told, once, as for a refund made in Duckline; integrators get the event.
    [message] = told(runtime, subscriber)
    assert "HK$88.00" in message and "CN2026-000001" in message
    assert count(runtime, DomainEvent, DomainEvent.type == "renewal.refunded") == 1

    # Staff see it, open: what was used cannot be taken back.
    [case] = cases(client, subscriber)
    assert (case["topic"], case["status"], case["order_status"]) == (
        "refunded_at_provider_after_use",
        "open",
        "refunded",
    )
    assert case["params"]["amount"] == {"amount": PRICE, "currency": "HKD"}
    assert case["params"]["credit_note"] == "CN2026-000001"
    assert "HK$88.00" in case["body"] and "Sandbox" in case["subject"]


def test_partial_refunds_in_the_dashboard_whose_notices_come_late_out_of_order_and_twice(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = buy(client, runtime, clock, subscriber)
    refund_in_dashboard(runtime, order, 3000)
    [first] = capture_webhooks(runtime, clock)
    refund_in_dashboard(runtime, order, 2000)
    [second] = capture_webhooks(runtime, clock)  # says 5000 refunded in all

    post(client, second)  # the later notice first: both refunds are in it
    post(client, first)  # the earlier one then brings nothing new
    post(client, again(runtime, second))

    part = order_now(client, subscriber, order["id"])
    assert (part["status"], part["refunded_amount"]) == ("partially_refunded", 5000)
    assert part["payments"][0]["status"] == "succeeded"
    assert refunds_of(runtime, order["id"]) == [(5000, "succeeded", None)]
    assert credit_notes(client, subscriber) == [("CN2026-000001", 5000)]
    assert all(b.remaining == b.initial for b in order_buckets(runtime, order["id"]))  # a partial refund keeps them
    [case] = cases(client, subscriber)
    assert (case["topic"], case["status"]) == ("partly_refunded_at_provider", "open")

    refund_in_dashboard(runtime, order, PRICE - 5000)  # the rest
    for notice in capture_webhooks(runtime, clock):
        post(client, notice)
    post(client, first)  # a very late copy of the first changes nothing

    final = order_now(client, subscriber, order["id"])
    assert (final["status"], final["refunded_amount"]) == ("refunded", PRICE)
    assert credit_notes(client, subscriber) == [("CN2026-000001", 5000), ("CN2026-000002", 3800)]
    assert [b.remaining for b in order_buckets(runtime, order["id"])] == [0, 0, 0]
    assert len(told(runtime, subscriber)) == 2
    settled = [c for c in cases(client, subscriber) if c["topic"] == "refunded_at_provider"]
    assert [(c["status"], c["resolution"]) for c in settled] == [("resolved", "Recorded automatically")]


def test_a_refund_made_in_duckline_is_not_counted_again_when_its_notice_arrives(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any], monkeypatch: Any
) -> None:
    order = buy(client, runtime, clock, subscriber)
    made = client.post(
        f"/api/v1/orders/{order['id']}/refunds",
        json={"amount": 3000, "reason": "goodwill"},
        headers=subscriber["finance"],
    )
    assert made.status_code == 200, made.text
    [notice] = capture_webhooks(runtime, clock)  # the sandbox's notice of our refund, after its answer
    post(client, notice)
    post(client, again(runtime, notice))  # even under another event id (no reference of ours then)

    # The provider's notice of the rest overtakes its answer: it arrives while the refund is pending.
    assert runtime.sandbox is not None
    asked = runtime.sandbox.refund

    def notice_first(*args: Any) -> Any:
        answer = asked(*args)
        for path, body, headers in capture_webhooks(runtime, clock):
            assert path == "/api/v1/webhooks/sandbox"
            checkout.handle_webhook(runtime, "sandbox", headers, body)
        return answer

    monkeypatch.setattr(runtime.sandbox, "refund", notice_first)
    rest = client.post(
        f"/api/v1/orders/{order['id']}/refunds", json={"reason": "customer left"}, headers=subscriber["finance"]
    )
    assert rest.status_code == 200 and rest.json()["amount"] == PRICE - 3000, rest.text

    final = order_now(client, subscriber, order["id"])
    assert (final["status"], final["refunded_amount"]) == ("refunded", PRICE)
    assert [(amount, actor is not None) for amount, _, actor in refunds_of(runtime, order["id"])] == [
        (3000, True),
        (PRICE - 3000, True),
    ]
    assert credit_notes(client, subscriber) == [("CN2026-000001", 3000), ("CN2026-000002", PRICE - 3000)]
    assert len(told(runtime, subscriber)) == 2
    assert cases(client, subscriber) == []


def test_reconciliation_finds_a_payment_captured_and_partly_refunded_whose_notices_were_lost(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = place_order(client, subscriber).json()
    assert pay_on_sandbox(client, order, card=LOSE_WEBHOOK).status_code == 303
    refund_in_dashboard(runtime, order, 3000, lose_webhook=True)
    assert deliver(runtime, client, clock) == 0  # both notices are lost
    clock.advance(timedelta(minutes=runtime.settings.reconcile_after_minutes))

    assert client.post("/api/v1/jobs/reconcile", headers=subscriber["admin"]).status_code == 200

    final = order_now(client, subscriber, order["id"])
    assert (final["status"], final["refunded_amount"]) == ("partially_refunded", 3000)
    assert final["receipt_number"] is not None  # applied: the subscriber paid 88 and got 30 back
    assert credit_notes(client, subscriber) == [("CN2026-000001", 3000)]
    assert refunds_of(runtime, order["id"]) == [(3000, "succeeded", None)]
    assert [c["topic"] for c in cases(client, subscriber, "open")] == ["partly_refunded_at_provider"]

    assert client.post("/api/v1/jobs/reconcile", headers=subscriber["admin"]).status_code == 200
    assert credit_notes(client, subscriber) == [("CN2026-000001", 3000)]  # asking again finds nothing new


# --- money the order did not need ------------------------------------------------------------------


def captured_twice(client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]) -> Any:
    """An order paid by its second attempt, then captured again by the first one, left open."""
    order = place_order(client, subscriber).json()
    first = order["payments"][0]
    retried = client.post(
        f"/api/v1/orders/{order['id']}/payments", json={"payment_method": "card"}, headers=subscriber["headers"]
    )
    assert retried.status_code in (200, 201), retried.text
    paid = order_now(client, subscriber, order["id"])
    assert pay_on_sandbox(client, paid).status_code == 303
    deliver(runtime, client, clock)
    assert order_now(client, subscriber, order["id"])["status"] == "fulfilled"
    assert pay_on_sandbox(client, {"payments": [first]}).status_code == 303  # the old page, paid later
    deliver(runtime, client, clock)
    final = order_now(client, subscriber, order["id"])
    assert [p["status"] for p in final["payments"]] == ["succeeded", "succeeded"]
    return final


@pytest.mark.parametrize("which", [0, 1])
def test_a_second_capture_refunded_in_the_dashboard_gives_the_extra_back_and_keeps_the_order(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any], which: int
) -> None:
    order = captured_twice(client, runtime, clock, subscriber)
    [second_capture] = cases(client, subscriber, "open")
    assert second_capture["topic"] == "second_capture"

    # Either capture may be the one refunded in the dashboard: the money the order did not need goes back.
    assert runtime.sandbox is not None
    runtime.sandbox.refund_in_dashboard(provider_ref(runtime, order["payments"][which]["id"]), PRICE)
    for notice in capture_webhooks(runtime, clock):
        post(client, notice)
        post(client, again(runtime, notice))

    final = order_now(client, subscriber, order["id"])
    assert (final["status"], final["refunded_amount"]) == ("fulfilled", 0)
    assert sorted(p["status"] for p in final["payments"]) == ["refunded", "succeeded"]
    assert credit_notes(client, subscriber) == []  # the order's price was not refunded
    assert [b.remaining == b.initial for b in order_buckets(runtime, order["id"])] == [True] * 3
    assert count(runtime, Receipt, Receipt.kind == "receipt") == 1
    assert len(told(runtime, subscriber)) == 1
    by_topic = {c["topic"]: c for c in cases(client, subscriber)}
    assert by_topic["second_capture"]["status"] == "resolved"
    assert by_topic["second_capture"]["resolution"] == "Refunded at the payment provider"
    assert by_topic["extra_refunded_at_provider"]["status"] == "resolved"


def test_a_dashboard_refund_reported_while_one_of_ours_is_pending_is_counted_in_full_once_ours_is_done(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any], monkeypatch: Any
) -> None:
    order = buy(client, runtime, clock, subscriber)
    refund_in_dashboard(runtime, order, 3000)
    [dashboard] = capture_webhooks(runtime, clock)  # "3000 refunded in all", sent before ours is made
    assert runtime.sandbox is not None
    asked = runtime.sandbox.refund

    def dashboard_notice_meanwhile(*args: Any) -> Any:
        _, body, headers = dashboard  # arrives while our refund is pending, which it leaves out
        checkout.handle_webhook(runtime, "sandbox", headers, body)
        return asked(*args)

    monkeypatch.setattr(runtime.sandbox, "refund", dashboard_notice_meanwhile)
    ours = client.post(
        f"/api/v1/orders/{order['id']}/refunds",
        json={"amount": 2000, "reason": "goodwill"},
        headers=subscriber["finance"],
    )
    assert ours.status_code == 200, ours.text
    for notice in capture_webhooks(runtime, clock):  # the sandbox's notice of ours: "5000 in all"
        post(client, notice)
    post(client, dashboard)

    final = order_now(client, subscriber, order["id"])
    assert (final["status"], final["refunded_amount"]) == ("partially_refunded", 5000)
    assert sum(amount for _, amount in credit_notes(client, subscriber)) == 5000
    assert sum(amount for amount, _, actor in refunds_of(runtime, order["id"]) if actor is None) == 3000


@pytest.mark.postgres_only
def test_copies_of_a_refund_notice_arriving_at_once_record_it_once(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = buy(client, runtime, clock, subscriber)
    refund_in_dashboard(runtime, order, 3000)
    [notice] = capture_webhooks(runtime, clock)
    copies = [notice] + [again(runtime, notice) for _ in range(7)]  # other event ids: all get past the dedup
    start = threading.Barrier(len(copies))

    def deliver_copy(i: int) -> None:
        _, body, headers = copies[i]
        start.wait()
        checkout.handle_webhook(runtime, "sandbox", headers, body)

    with ThreadPoolExecutor(max_workers=len(copies)) as pool:
        list(pool.map(deliver_copy, range(len(copies))))

    assert order_now(client, subscriber, order["id"])["refunded_amount"] == 3000
    assert refunds_of(runtime, order["id"]) == [(3000, "succeeded", None)]
    assert credit_notes(client, subscriber) == [("CN2026-000001", 3000)]
    assert len(told(runtime, subscriber)) == 1
