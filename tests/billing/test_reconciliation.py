"""Reconciliation: money and renewals that disagree are found, put right, and shown to staff.

The job (POST /api/v1/jobs/reconcile, admin) asks the provider about payments still open after
settings.reconcile_after_minutes, expires orders nobody paid by their pay_by, and applies or
refunds orders that were paid but not applied. Staff settle the remaining cases.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.roles import Role
from duckline.billing.models import (
    Order,
    OrderEvent,
    Payment,
    Receipt,
    Refund,
    SandboxPayment,
    SandboxWebhook,
    WebhookEvent,
)
from duckline.catalog import service as catalog
from duckline.catalog.models import Promotion, PromotionRedemption
from duckline.catalog.rules import Validity
from duckline.core import jobs
from duckline.core.clock import FrozenClock
from duckline.lines import lifecycle
from duckline.lines import service as lines
from duckline.lines.models import Line, PoolNumber
from duckline.lines.states import LineStatus
from duckline.messaging.models import DomainEvent
from duckline.runtime import Runtime
from duckline.staff.models import AuditEntry
from duckline.support.models import Ticket
from duckline.usage.models import Bucket
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
from tests.provider_fakes import sandbox_event, sandbox_ref

PRICE = 8800
LOSE_WEBHOOK = "4000000000000077"  # succeeds, but its notification never arrives
HANG = "4000000000000119"  # stays processing: never completes


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    numbers(runtime, 3)
    admin, admin_headers = staff(runtime, Role.ADMIN, 1)
    support, support_headers = staff(runtime, Role.SUPPORT, 2)
    finance, finance_headers = staff(runtime, Role.FINANCE, 3)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=PRICE))
    return {
        **register_and_verify(client, runtime, 1),
        "admin": admin_headers,
        "support": support_headers,
        "finance": finance_headers,
        "ids": {"admin": admin.id, "support": support.id, "finance": finance.id},
    }


def pending_order(client: TestClient, subscriber: dict[str, Any], **extra: Any) -> dict[str, Any]:
    created = place_order(client, subscriber, **extra)
    assert created.status_code == 201, created.text
    return dict(created.json())


def order_now(client: TestClient, subscriber: dict[str, Any], order_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/orders/{order_id}", headers=subscriber["headers"])
    assert response.status_code == 200, response.text
    return dict(response.json())


def log_in_again(client: TestClient, subscriber: dict[str, Any]) -> None:
    """After a long jump of the clock the subscriber's API token has expired (api_token_ttl_days)."""
    token = client.post("/api/v1/auth/tokens", json={"phone": subscriber["phone"], "password": PASSWORD})
    assert token.status_code == 201, token.text
    subscriber["headers"] = {"Authorization": f"Bearer {token.json()['token']}"}


def reconcile(client: TestClient, subscriber: dict[str, Any]) -> dict[str, list[int]]:
    response = client.post("/api/v1/jobs/reconcile", headers=subscriber["admin"])
    assert response.status_code == 200, response.text
    return dict(response.json())


NOTHING: dict[str, list[int]] = {"applied": [], "expired": [], "refunded": [], "unreachable": []}


def cases(client: TestClient, headers: dict[str, str], state: str = "open") -> list[dict[str, Any]]:
    response = client.get("/api/v1/reconciliation/cases", params={"state": state, "limit": 200}, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def resolve(client: TestClient, headers: dict[str, str], case_id: int, action: str, reason: str) -> Any:
    return client.post(
        f"/api/v1/reconciliation/cases/{case_id}/resolve", json={"action": action, "reason": reason}, headers=headers
    )


def count(runtime: Runtime, table: type[Any], *where: Any) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def the_line(runtime: Runtime, subscriber: dict[str, Any]) -> Line:
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, subscriber["line"]["id"])
        assert line is not None
        return line


def set_line_status(runtime: Runtime, subscriber: dict[str, Any], status: LineStatus, reason: str) -> None:
    """Staff suspend or restore a line (there is no endpoint for it yet; the service is the same)."""
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, subscriber["line"]["id"])
        assert line is not None
        lines.transition(uow, line, status, reason)


def snapshot(runtime: Runtime) -> dict[str, Any]:
    """Everything reconciliation could touch."""
    with runtime.unit_of_work() as uow:
        s = uow.session
        return {
            "orders": s.execute(select(Order.id, Order.status, Order.refunded_amount).order_by(Order.id)).all(),
            "payments": s.execute(select(Payment.id, Payment.status).order_by(Payment.id)).all(),
            "lines": s.execute(select(Line.id, Line.status, Line.expires_at).order_by(Line.id)).all(),
            "tickets": s.execute(select(Ticket.id, Ticket.status, Ticket.resolution).order_by(Ticket.id)).all(),
            "sandbox": s.execute(
                select(SandboxPayment.ref, SandboxPayment.status, SandboxPayment.refunded).order_by(SandboxPayment.ref)
            ).all(),
            **{
                table.__tablename__: s.scalar(select(func.count()).select_from(table))
                for table in (
                    OrderEvent,
                    Receipt,
                    Refund,
                    Bucket,
                    DomainEvent,
                    WebhookEvent,
                    SandboxWebhook,
                    AuditEntry,
                    PromotionRedemption,
                )
            },
            "promotion_uses": s.execute(select(Promotion.id, Promotion.uses).order_by(Promotion.id)).all(),
        }


def promo(client: TestClient, subscriber: dict[str, Any], clock: FrozenClock, code: str = "DUCK10") -> dict[str, Any]:
    names = {"en": "HK$10 off", "zh_Hant": "減 10 港元", "zh_Hans": "减 10 港元"}
    response = client.post(
        "/api/v1/promotions",
        json={
            "name": names,
            "kind": "amount_off",
            "amount_off": 1000,
            "code": code,
            "starts_at": clock.now().isoformat(),
            "max_uses": 5,
        },
        headers=subscriber["admin"],
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def promotion_uses(client: TestClient, subscriber: dict[str, Any], promotion_id: int) -> int:
    listed = client.get("/api/v1/promotions", headers=subscriber["support"]).json()
    return int(next(p["uses"] for p in listed if p["id"] == promotion_id))


# --- what the job finds -----------------------------------------------------------------------


def test_lost_webhook_is_found_by_asking_the_provider_and_the_order_is_applied(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = pending_order(client, subscriber)
    assert pay_on_sandbox(client, order, card=LOSE_WEBHOOK).status_code == 303
    assert deliver(runtime, client, clock) == 0  # the notification is lost
    assert order_now(client, subscriber, order["id"])["status"] == "payment_pending"

    assert reconcile(client, subscriber) == NOTHING  # too early to ask
    clock.advance(timedelta(minutes=runtime.settings.reconcile_after_minutes))
    report = reconcile(client, subscriber)

    assert report == {**NOTHING, "applied": [order["id"]]}
    final = order_now(client, subscriber, order["id"])
    assert final["status"] == "fulfilled" and final["receipt_number"] is not None
    assert final["payments"][0]["status"] == "succeeded" and final["payments"][0]["card_last4"] == "0077"
    assert the_line(runtime, subscriber).status is LineStatus.ACTIVE
    assert cases(client, subscriber["support"]) == []
    [case] = cases(client, subscriber["support"], "resolved")
    assert case["kind"] == "reconciliation" and case["order_id"] == order["id"]
    assert case["order_status"] == "fulfilled" and case["resolution"] == "Applied automatically by reconciliation"
    assert count(runtime, Receipt) == 1

    before = snapshot(runtime)
    assert reconcile(client, subscriber) == NOTHING
    assert snapshot(runtime) == before


def test_payment_that_never_completes_expires_after_pay_by_and_gives_the_promo_use_back(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    promotion = promo(client, subscriber, clock)
    order = pending_order(client, subscriber, promo_code="duck10")
    assert order["total_amount"] == PRICE - 1000
    assert promotion_uses(client, subscriber, promotion["id"]) == 1
    assert pay_on_sandbox(client, order, card=HANG).status_code == 303
    assert deliver(runtime, client, clock) == 0

    clock.advance(timedelta(minutes=runtime.settings.reconcile_after_minutes))
    assert reconcile(client, subscriber) == NOTHING  # asked: still processing, and still time to pay
    assert order_now(client, subscriber, order["id"])["status"] == "payment_pending"
    assert promotion_uses(client, subscriber, promotion["id"]) == 1

    clock.advance(timedelta(minutes=runtime.settings.order_payment_minutes))  # past pay_by
    assert reconcile(client, subscriber) == {**NOTHING, "expired": [order["id"]]}

    final = order_now(client, subscriber, order["id"])
    assert final["status"] == "expired" and final["receipt_number"] is None
    assert final["payments"][0]["status"] == "cancelled"
    assert promotion_uses(client, subscriber, promotion["id"]) == 0
    with runtime.unit_of_work() as uow:
        assert uow.session.scalars(select(PromotionRedemption.status)).all() == ["released"]
    assert the_line(runtime, subscriber).status is LineStatus.PENDING
    assert count(runtime, Receipt) == 0

    before = snapshot(runtime)
    assert reconcile(client, subscriber) == NOTHING
    assert snapshot(runtime) == before


def test_unpaid_order_without_an_open_payment_expires_too(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = pending_order(client, subscriber)
    pay_on_sandbox(client, order, card="4000000000000002")  # declined: the order is failed, open for a retry
    deliver(runtime, client, clock)
    assert order_now(client, subscriber, order["id"])["status"] == "failed"

    clock.advance(timedelta(minutes=runtime.settings.order_payment_minutes))
    assert reconcile(client, subscriber) == {**NOTHING, "expired": [order["id"]]}
    assert order_now(client, subscriber, order["id"])["status"] == "expired"
    assert reconcile(client, subscriber) == NOTHING


def test_renewal_paid_after_the_number_was_recycled_is_refunded_through_the_sandbox(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    buy(client, runtime, clock, subscriber)  # the line is active for a month
    renewal = pending_order(client, subscriber)
    assert renewal["kind"] == "renewal"
    pay_on_sandbox(client, renewal)  # paid at the provider; its notification will come very late

    line = the_line(runtime, subscriber)
    assert line.expires_at is not None
    settings = runtime.settings
    clock.set(line.expires_at + timedelta(days=settings.grace_days + settings.retention_days, minutes=1))
    with runtime.unit_of_work() as uow:
        assert lifecycle.advance(uow) == {"grace": 1, "expired": 1, "recycled": 1}
    assert the_line(runtime, subscriber).status is LineStatus.RECYCLED
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(PoolNumber.available).where(PoolNumber.msisdn == line.msisdn)) is True

    assert deliver(runtime, client, clock) == 2  # the success finally arrives
    log_in_again(client, subscriber)
    paid = order_now(client, subscriber, renewal["id"])
    assert paid["status"] == "paid" and paid["payments"][0]["status"] == "succeeded"
    [case] = cases(client, subscriber["support"])
    assert case["order_id"] == renewal["id"] and case["order_status"] == "paid"
    assert (case["topic"], case["params"]["reason"]["error"]) == ("paid_not_applied", "line_recycled")
    assert case["body"] == (
        "The renewal could not be applied: This number has been recycled and can no longer be renewed."
    )

    clock.advance(timedelta(minutes=settings.reconcile_after_minutes))
    assert reconcile(client, subscriber) == {**NOTHING, "refunded": [renewal["id"]]}

    refunded = order_now(client, subscriber, renewal["id"])
    assert refunded["status"] == "refunded" and refunded["refunded_amount"] == PRICE
    assert refunded["payments"][0]["status"] == "refunded"
    with runtime.unit_of_work() as uow:
        sandbox = uow.session.scalars(
            select(SandboxPayment).where(SandboxPayment.ref == sandbox_ref(renewal))
        ).one()  # the money went back through the provider
        assert (sandbox.status, sandbox.refunded) == ("refunded", PRICE)
        [refund] = uow.session.scalars(select(Refund)).all()
        assert (refund.order_id, refund.amount, refund.status, refund.actor_id) == (
            renewal["id"],
            PRICE,
            "succeeded",
            None,
        )
        credit_notes = uow.session.scalars(select(Receipt).where(Receipt.kind == "credit_note")).all()
        assert [(c.order_id, c.amount) for c in credit_notes] == [(renewal["id"], PRICE)]
    visible = [c for c in cases(client, subscriber["support"], "all") if c["order_id"] == renewal["id"]]
    refunded_cases = [c for c in visible if c["status"] == "resolved"]
    assert refunded_cases and {c["resolution"] for c in refunded_cases} == {"Refunded automatically by reconciliation"}
    assert all(c["order_status"] == "refunded" for c in visible)

    deliver(runtime, client, clock)  # the sandbox's refund notification changes nothing more
    before = snapshot(runtime)
    assert reconcile(client, subscriber) == NOTHING
    assert snapshot(runtime) == before
    assert order_now(client, subscriber, renewal["id"])["status"] == "refunded"


@pytest.mark.parametrize("outcome", ["refunded", "applied"])
def test_no_case_stays_open_once_the_job_has_settled_the_order(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any], outcome: str
) -> None:
    buy(client, runtime, clock, subscriber)
    settings = runtime.settings
    if outcome == "refunded":  # the number was recycled before the payment arrived
        renewal = pending_order(client, subscriber)
        pay_on_sandbox(client, renewal)
        line = the_line(runtime, subscriber)
        assert line.expires_at is not None
        clock.set(line.expires_at + timedelta(days=settings.grace_days + settings.retention_days, minutes=1))
        with runtime.unit_of_work() as uow:
            lifecycle.advance(uow)
        deliver(runtime, client, clock)
        log_in_again(client, subscriber)
    else:  # paid while the line was suspended; the line is restored before staff get to the case
        renewal, _ = paid_but_not_applied(client, runtime, clock, subscriber)
        set_line_status(runtime, subscriber, LineStatus.ACTIVE, "fraud review cleared")
    assert len(cases(client, subscriber["support"])) == 1
    clock.advance(timedelta(minutes=settings.reconcile_after_minutes))

    assert reconcile(client, subscriber)[outcome] == [renewal["id"]]
    assert order_now(client, subscriber, renewal["id"])["status"] == (
        "refunded" if outcome == "refunded" else "fulfilled"
    )

    assert [c for c in cases(client, subscriber["support"]) if c["order_id"] == renewal["id"]] == []


def test_running_the_job_twice_changes_nothing_the_second_time(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    promotion = promo(client, subscriber, clock)
    lost = pending_order(client, subscriber)
    pay_on_sandbox(client, lost, card=LOSE_WEBHOOK)
    hanging = pending_order(client, subscriber, promo_code="DUCK10")
    pay_on_sandbox(client, hanging, card=HANG)
    deliver(runtime, client, clock)

    clock.advance(timedelta(minutes=runtime.settings.reconcile_after_minutes))
    assert reconcile(client, subscriber) == {**NOTHING, "applied": [lost["id"]]}
    first = snapshot(runtime)
    assert jobs.run(runtime, "reconcile") == NOTHING
    assert snapshot(runtime) == first

    clock.advance(timedelta(minutes=runtime.settings.order_payment_minutes))
    assert reconcile(client, subscriber) == {**NOTHING, "expired": [hanging["id"]]}
    second = snapshot(runtime)
    assert jobs.run(runtime, "reconcile") == NOTHING
    assert snapshot(runtime) == second
    assert [o[1].value for o in second["orders"]] == ["fulfilled", "expired"]
    assert promotion_uses(client, subscriber, promotion["id"]) == 0
    assert second["receipts"] == 1


def test_only_admins_run_jobs(client: TestClient, subscriber: dict[str, Any]) -> None:
    for who in ("support", "finance", "headers"):
        response = client.post("/api/v1/jobs/reconcile", headers=subscriber[who])
        assert response.status_code == 403, (who, response.text)
    assert client.post("/api/v1/jobs/reconcile").status_code == 401


# --- staff settle the cases -------------------------------------------------------------------


def paid_but_not_applied(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A renewal paid while the line was suspended: the money is in, the renewal was not applied."""
    renewal = pending_order(client, subscriber)
    pay_on_sandbox(client, renewal)
    set_line_status(runtime, subscriber, LineStatus.SUSPENDED, "suspended for a fraud review")
    deliver(runtime, client, clock)
    assert order_now(client, subscriber, renewal["id"])["status"] == "paid"
    [case] = [c for c in cases(client, subscriber["support"]) if c["order_id"] == renewal["id"]]
    assert case["kind"] == "reconciliation" and case["params"]["reason"]["error"] == "line_not_renewable"
    return renewal, case


def audit(client: TestClient, subscriber: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.get("/api/v1/audit", params={"limit": 200}, headers=subscriber["admin"])
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_staff_apply_a_paid_renewal_once_the_line_can_take_it(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    buy(client, runtime, clock, subscriber)
    expiry = the_line(runtime, subscriber).expires_at
    renewal, case = paid_but_not_applied(client, runtime, clock, subscriber)

    refused = resolve(client, subscriber["support"], case["id"], "apply", "subscriber asked")
    assert refused.status_code == 409, refused.text  # the line is still suspended: nothing changes
    assert order_now(client, subscriber, renewal["id"])["status"] == "paid"
    assert [c["id"] for c in cases(client, subscriber["support"])] == [case["id"]]

    set_line_status(runtime, subscriber, LineStatus.ACTIVE, "fraud review cleared")
    done = resolve(client, subscriber["support"], case["id"], "apply", "fraud review cleared, renewal applied")

    assert done.status_code == 200, done.text
    assert done.json()["status"] == "resolved" and done.json()["order_status"] == "fulfilled"
    assert done.json()["resolution"] == "apply: fraud review cleared, renewal applied"
    final = order_now(client, subscriber, renewal["id"])
    assert final["status"] == "fulfilled" and final["receipt_number"] is not None
    assert expiry is not None and the_line(runtime, subscriber).expires_at == expiry.replace(year=2027, month=1)
    assert cases(client, subscriber["support"]) == []
    entries = [e for e in audit(client, subscriber) if e["target"] == f"ticket:{case['id']}"]
    support = subscriber["ids"]["support"]
    assert sorted((e["action"], e["actor_id"]) for e in entries) == [
        ("reconciliation.apply", support),
        ("ticket.resolved", support),
    ]
    applied = next(e for e in entries if e["action"] == "reconciliation.apply")
    assert applied["detail"] == {"order": renewal["id"], "reason": "fraud review cleared, renewal applied"}


def test_support_cannot_refund_finance_can(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    buy(client, runtime, clock, subscriber)
    renewal, case = paid_but_not_applied(client, runtime, clock, subscriber)

    forbidden = resolve(client, subscriber["support"], case["id"], "refund", "subscriber wants the money back")
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
    assert order_now(client, subscriber, renewal["id"])["status"] == "paid"
    assert count(runtime, Refund) == 0
    assert [c["id"] for c in cases(client, subscriber["support"])] == [case["id"]]

    done = resolve(client, subscriber["finance"], case["id"], "refund", "subscriber wants the money back")

    assert done.status_code == 200, done.text
    assert done.json()["status"] == "resolved" and done.json()["order_status"] == "refunded"
    final = order_now(client, subscriber, renewal["id"])
    assert final["status"] == "refunded" and final["refunded_amount"] == PRICE
    with runtime.unit_of_work() as uow:
        sandbox = uow.session.scalars(select(SandboxPayment).where(SandboxPayment.ref == sandbox_ref(renewal))).one()
        assert (sandbox.status, sandbox.refunded) == ("refunded", PRICE)
        [refund] = uow.session.scalars(select(Refund)).all()
        assert refund.status == "succeeded" and refund.reason == "subscriber wants the money back"
    assert count(runtime, Receipt, Receipt.kind == "credit_note") == 1
    assert cases(client, subscriber["support"]) == []

    actions = {(e["action"], e["target"]) for e in audit(client, subscriber)}
    assert ("reconciliation.refund", f"ticket:{case['id']}") in actions
    assert ("ticket.resolved", f"ticket:{case['id']}") in actions
    assert ("order.refunded", f"order:{renewal['id']}") in actions


def test_staff_close_a_mismatch_case_with_a_reason(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = pending_order(client, subscriber)
    body, headers = sandbox_event(runtime, "payment.succeeded", sandbox_ref(order), "succeeded", 100)
    assert client.post("/api/v1/webhooks/sandbox", content=body, headers=headers).status_code == 200
    [case] = cases(client, subscriber["support"])
    assert case["kind"] == "payment_mismatch"

    for bad in ({"action": "close"}, {"action": "close", "reason": ""}, {"action": "close", "reason": "   "}):
        response = client.post(
            f"/api/v1/reconciliation/cases/{case['id']}/resolve", json=bad, headers=subscriber["support"]
        )
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["code"] in ("validation_failed", "reason_required")
    assert [c["id"] for c in cases(client, subscriber["support"])] == [case["id"]]
    assert resolve(client, subscriber["support"], case["id"], "forget", "no").status_code == 422
    assert resolve(client, subscriber["headers"], case["id"], "close", "mine").status_code == 403

    done = resolve(client, subscriber["support"], case["id"], "close", "HK$1 test charge, voided at the provider")

    assert done.status_code == 200, done.text
    assert done.json()["resolution"] == "close: HK$1 test charge, voided at the provider"
    assert cases(client, subscriber["support"]) == []
    final = order_now(client, subscriber, order["id"])
    assert final["status"] == "payment_pending" and final["payments"][0]["status"] == "flagged"
    closed = [e for e in audit(client, subscriber) if e["target"] == f"ticket:{case['id']}"]
    assert {e["action"] for e in closed} == {"reconciliation.close", "ticket.resolved"}


def test_a_case_is_machine_readable_and_reads_in_the_callers_language(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    order = pending_order(client, subscriber)
    body, headers = sandbox_event(runtime, "payment.succeeded", sandbox_ref(order), "succeeded", 100)
    assert client.post("/api/v1/webhooks/sandbox", content=body, headers=headers).status_code == 200
    payment_id = order["payments"][0]["id"]

    [english] = cases(client, subscriber["support"])
    switched = client.patch("/api/v1/me", json={"language": "zh_Hans"}, headers=subscriber["support"])
    assert switched.status_code == 200, switched.text
    [simplified] = cases(client, subscriber["support"])

    assert english["topic"] == simplified["topic"] == "amount_mismatch"
    assert english["params"] == {
        "payment": payment_id,
        "order": order["id"],
        "provider": "sandbox",
        "expected": {"amount": PRICE, "currency": "HKD"},
        "captured": {"amount": 100, "currency": "HKD"},
    }
    assert english["subject"] == f"Payment {payment_id} captured a different amount"
    assert simplified["subject"] == f"付款 {payment_id} 收取的金额不符"
    assert "实收 HK$1.00" in simplified["body"]


def test_every_action_is_in_the_audit_log_with_who_and_why(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    buy(client, runtime, clock, subscriber)
    _, to_apply = paid_but_not_applied(client, runtime, clock, subscriber)
    set_line_status(runtime, subscriber, LineStatus.ACTIVE, "cleared")
    assert resolve(client, subscriber["support"], to_apply["id"], "apply", "cleared").status_code == 200
    _, to_refund = paid_but_not_applied(client, runtime, clock, subscriber)
    assert resolve(client, subscriber["finance"], to_refund["id"], "refund", "asked for it").status_code == 200
    set_line_status(runtime, subscriber, LineStatus.ACTIVE, "cleared again")
    _, to_close = paid_but_not_applied(client, runtime, clock, subscriber)
    assert resolve(client, subscriber["admin"], to_close["id"], "close", "handled by phone").status_code == 200

    actors = subscriber["ids"]
    logged = {
        (e["action"], e["target"], e["actor_id"], e["detail"].get("reason"))
        for e in audit(client, subscriber)
        if e["action"].startswith("reconciliation.")
    }
    assert logged == {
        ("reconciliation.apply", f"ticket:{to_apply['id']}", actors["support"], "cleared"),
        ("reconciliation.refund", f"ticket:{to_refund['id']}", actors["finance"], "asked for it"),
        ("reconciliation.close", f"ticket:{to_close['id']}", actors["admin"], "handled by phone"),
    }
    resolved = [e for e in audit(client, subscriber) if e["action"] == "ticket.resolved"]
    assert sorted(e["target"] for e in resolved) == sorted(f"ticket:{c['id']}" for c in (to_apply, to_refund, to_close))


def test_a_resolved_case_cannot_be_resolved_again(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = pending_order(client, subscriber)
    pay_on_sandbox(client, order, card=LOSE_WEBHOOK)
    clock.advance(timedelta(minutes=runtime.settings.reconcile_after_minutes))
    assert reconcile(client, subscriber)["applied"] == [order["id"]]
    [case] = cases(client, subscriber["support"], "resolved")

    again = resolve(client, subscriber["support"], case["id"], "close", "looked at it again")

    resolved = cases(client, subscriber["support"], "resolved")
    assert [c["resolution"] for c in resolved] == ["Applied automatically by reconciliation"]
    assert again.status_code == 409
