"""The renewal journey through the API with the sandbox provider: quote → order → pay →
webhook → fulfilled → receipt; and what must not happen twice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.billing.models import Order, Payment, Receipt, WebhookEvent
from duckline.catalog import service as catalog
from duckline.catalog.rules import Allowance, Unit, Validity, Zone
from duckline.core.clock import FrozenClock
from duckline.lines.models import Line
from duckline.runtime import Runtime
from duckline.usage.models import Bucket
from tests.factories import (
    idem,
    numbers,
    pay_on_sandbox,
    plan_input,
    register_and_verify,
    sandbox_post,
    staff,
)


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    numbers(runtime, 5)
    admin, admin_headers = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=8800))
        catalog.create_plan(uow, admin, plan_input("big", price=16800))
    return {**register_and_verify(client, runtime, 1), "admin_headers": admin_headers, "admin_id": admin.id}


def order(client: TestClient, subscriber: dict[str, Any], plan: str = "monthly", **extra: Any) -> Any:
    body = {"line_id": subscriber["line"]["id"], "plan_code": plan, "payment_method": "card", **extra}
    return client.post("/api/v1/orders", json=body, headers={**subscriber["headers"], **idem()})


def deliver(runtime: Runtime, client: TestClient, clock: FrozenClock) -> int:
    clock.advance(timedelta(seconds=5))
    assert runtime.sandbox is not None
    return runtime.sandbox.deliver_due(sandbox_post(client))


def test_the_renewal_journey(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    headers = subscriber["headers"]
    line_id = subscriber["line"]["id"]
    quote = client.post("/api/v1/quotes", json={"line_id": line_id, "plan_code": "monthly"}, headers=headers)
    assert quote.status_code == 200, quote.text
    assert quote.json()["total_amount"] == 8800 and quote.json()["total_display"] == "HK$88.00"
    assert quote.json()["kind"] == "activation"

    created = order(client, subscriber)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "payment_pending"
    assert body["payments"][0]["next_action"]["type"] == "redirect"

    paid = pay_on_sandbox(client, body)
    assert paid.status_code == 303
    assert deliver(runtime, client, clock) == 2  # the sandbox delivers every webhook twice

    final = client.get(f"/api/v1/orders/{body['id']}", headers=headers).json()
    assert final["status"] == "fulfilled"
    assert final["receipt_number"].startswith("R2026-")
    assert final["payments"][0]["card_last4"] == "4242" and final["payments"][0]["card_brand"] == "visa"
    status = client.get(f"/api/v1/lines/{line_id}/status", headers=headers).json()
    assert status["line"]["status"] == "active"
    assert status["expires_at"].startswith("2026-12-24")  # one calendar month, Hong Kong time
    receipts = client.get("/api/v1/receipts", headers=headers).json()["items"]
    assert [r["number"] for r in receipts] == [final["receipt_number"]]
    pdf = client.get(receipts[0]["pdf"], headers=headers)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(WebhookEvent)) == 1  # duplicate dropped


def test_same_idempotency_key_same_order_other_body_conflict(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    key = idem()
    body = {"line_id": subscriber["line"]["id"], "plan_code": "monthly", "payment_method": "card"}
    first = client.post("/api/v1/orders", json=body, headers={**subscriber["headers"], **key})
    second = client.post("/api/v1/orders", json=body, headers={**subscriber["headers"], **key})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    other = client.post("/api/v1/orders", json={**body, "plan_code": "big"}, headers={**subscriber["headers"], **key})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    missing = client.post("/api/v1/orders", json=body, headers=subscriber["headers"])
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "idempotency_key_required"
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Order)) == 1
        assert uow.session.scalar(select(func.count()).select_from(Payment)) == 1


def test_declined_card_then_retry(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    body = order(client, subscriber).json()
    pay_on_sandbox(client, body, card="4000000000000002")
    deliver(runtime, client, clock)
    failed = client.get(f"/api/v1/orders/{body['id']}", headers=subscriber["headers"]).json()
    assert failed["status"] == "failed" and failed["payments"][0]["failure_code"] == "card_declined"

    retried = client.post(
        f"/api/v1/orders/{body['id']}/payments", json={"payment_method": "card"}, headers=subscriber["headers"]
    )
    assert retried.status_code == 200, retried.text
    pay_on_sandbox(client, retried.json())
    deliver(runtime, client, clock)
    done = client.get(f"/api/v1/orders/{body['id']}", headers=subscriber["headers"]).json()
    assert done["status"] == "fulfilled" and len(done["payments"]) == 2


def test_return_url_confirms_without_waiting_for_the_webhook(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    body = order(client, subscriber).json()
    pay_on_sandbox(client, body)
    payment_id = body["payments"][0]["id"]
    returned = client.get(f"/api/v1/payments/{payment_id}/return", headers=subscriber["headers"])
    assert returned.json()["status"] == "fulfilled"
    deliver(runtime, client, clock)  # the late webhooks change nothing
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Receipt)) == 1
        line = uow.session.get(Line, subscriber["line"]["id"])
        assert line is not None
        assert uow.session.scalar(select(func.count()).select_from(Bucket).where(Bucket.line_id == line.id)) == 3


def test_renewing_an_active_line_extends_from_its_expiry(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    first = order(client, subscriber).json()
    pay_on_sandbox(client, first)
    deliver(runtime, client, clock)
    clock.advance(timedelta(days=10))
    again = order(client, subscriber).json()
    assert again["kind"] == "renewal"
    pay_on_sandbox(client, again)
    deliver(runtime, client, clock)
    status = client.get(f"/api/v1/lines/{subscriber['line']['id']}/status", headers=subscriber["headers"]).json()
    assert status["expires_at"].startswith("2027-01-24")  # 24 Dec + 1 month: no day lost


def test_a_plan_edited_before_the_payment_arrives_grants_what_was_sold(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    created = order(client, subscriber).json()  # sold: one calendar month, 6000 s, 100 SMS, 10 MB
    with runtime.unit_of_work() as uow:
        actor = uow.session.get(Account, subscriber["admin_id"])
        assert actor is not None
        edited = plan_input("monthly", validity=Validity(days=7), allowances=[Allowance(Unit.SMS, Zone.HK, 1)])
        catalog.update_plan(uow, actor, "monthly", edited)

    assert pay_on_sandbox(client, created).status_code == 303
    returned = client.get(f"/api/v1/payments/{created['payments'][0]['id']}/return", headers=subscriber["headers"])
    assert returned.json()["status"] == "fulfilled", returned.text
    with runtime.unit_of_work() as uow:
        granted = uow.session.scalars(select(Bucket).where(Bucket.source_ref == f"order:{created['id']}")).all()
        assert sorted((b.unit.value, b.initial) for b in granted) == [
            ("data_bytes", 10_000_000),
            ("sms", 100),
            ("voice_seconds", 6000),
        ]
    status = client.get(f"/api/v1/lines/{subscriber['line']['id']}/status", headers=subscriber["headers"]).json()
    assert status["expires_at"].startswith("2026-12-24")  # the month sold, not the 7 days edited in
