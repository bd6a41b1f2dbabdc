"""Auto-renew and the line lifecycle with the sandbox provider.

A renewal ordered with auto_renew=true and paid with "save this card" on the sandbox's page
keeps the card (the sandbox's reusable token) and switches auto-renew on. Within
settings.auto_renew_hours_before of expiry the auto-renew job charges it off-session; a card
that declines is retried on settings.auto_renew_retry_hours, and after the last failure the
line is left to the lifecycle: grace, expired, recycled, the number back in the pool.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.roles import Role
from duckline.billing.models import AutoRenewAttempt, Order, Payment, Receipt, SavedPaymentMethod
from duckline.billing.order_states import OrderKind, OrderStatus, PaymentStatus
from duckline.catalog import service as catalog
from duckline.catalog.rules import Validity
from duckline.core import jobs
from duckline.core.clock import FrozenClock
from duckline.lines import lifecycle
from duckline.lines.models import Line, PoolNumber
from duckline.lines.states import LineStatus
from duckline.messaging.models import DomainEvent
from duckline.runtime import Runtime
from tests.factories import deliver, numbers, pay_on_sandbox, place_order, plan_input, register_and_verify, staff

PRICE = 8800
DECLINED_CARD = "4000000000000002"
NOTHING: dict[str, list[int]] = {"renewed": [], "declined": [], "gave_up": []}


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    numbers(runtime, 3)
    admin, _ = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=PRICE))
    return register_and_verify(client, runtime, 1)


def paid_order(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    subscriber: dict[str, Any],
    auto_renew: bool,
    save: bool,
) -> dict[str, Any]:
    created = place_order(client, subscriber, auto_renew=auto_renew)
    assert created.status_code == 201, created.text
    assert pay_on_sandbox(client, created.json(), save=save).status_code == 303
    deliver(runtime, client, clock)
    final = client.get(f"/api/v1/orders/{created.json()['id']}", headers=subscriber["headers"]).json()
    assert final["status"] == "fulfilled", final
    return dict(final)


def the_line(runtime: Runtime, subscriber: dict[str, Any]) -> Line:
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, subscriber["line"]["id"])
        assert line is not None
        return line


def saved_methods(runtime: Runtime) -> list[SavedPaymentMethod]:
    with runtime.unit_of_work() as uow:
        return list(uow.session.scalars(select(SavedPaymentMethod).order_by(SavedPaymentMethod.id)).all())


def orders_of(runtime: Runtime) -> list[Order]:
    with runtime.unit_of_work() as uow:
        return list(uow.session.scalars(select(Order).order_by(Order.id)).all())


def auto_renew(runtime: Runtime) -> dict[str, object]:
    return jobs.run(runtime, "auto-renew")


def advance_lifecycle(runtime: Runtime) -> dict[str, int]:
    with runtime.unit_of_work() as uow:
        return lifecycle.advance(uow)


def events(runtime: Runtime, event_type: str) -> list[dict[str, Any]]:
    with runtime.unit_of_work() as uow:
        return [
            dict(e.payload)
            for e in uow.session.scalars(
                select(DomainEvent).where(DomainEvent.type == event_type).order_by(DomainEvent.id)
            )
        ]


def count(runtime: Runtime, table: type[Any], *where: Any) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def expiry_of(runtime: Runtime, subscriber: dict[str, Any]) -> datetime:
    expires_at = the_line(runtime, subscriber).expires_at
    assert expires_at is not None
    return expires_at


# --- saving the card --------------------------------------------------------------------------


def test_paying_with_save_and_auto_renew_keeps_the_card_and_turns_auto_renew_on(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    order = paid_order(client, runtime, clock, subscriber, auto_renew=True, save=True)

    [saved] = saved_methods(runtime)
    assert (saved.provider, saved.method.value) == ("sandbox", "card")
    assert (saved.card_brand, saved.card_last4) == ("visa", "4242")
    assert saved.account_id == subscriber["account"]["id"] and saved.revoked_at is None
    assert saved.token.startswith("sbxtok_4242424242424242_")  # the provider's token, not the card number
    line = the_line(runtime, subscriber)
    assert line.auto_renew is True and line.auto_renew_method_id == saved.id
    with runtime.unit_of_work() as uow:
        payment = uow.session.get(Payment, order["payments"][0]["id"])
        assert payment is not None and payment.saved_method_id == saved.id


@pytest.mark.parametrize(("auto_renew", "save"), [(True, False), (False, True)])
def test_no_card_is_kept_without_both_auto_renew_and_save(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any], auto_renew: bool, save: bool
) -> None:
    paid_order(client, runtime, clock, subscriber, auto_renew=auto_renew, save=save)
    assert saved_methods(runtime) == []
    line = the_line(runtime, subscriber)
    assert line.auto_renew is False and line.auto_renew_method_id is None


# --- renewing with it -------------------------------------------------------------------------


def test_auto_renew_charges_the_saved_card_off_session_once(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    paid_order(client, runtime, clock, subscriber, auto_renew=True, save=True)
    line_id = subscriber["line"]["id"]
    expiry = expiry_of(runtime, subscriber)
    window = expiry - timedelta(hours=runtime.settings.auto_renew_hours_before)

    clock.set(window - timedelta(minutes=1))
    assert auto_renew(runtime) == NOTHING  # not yet
    clock.set(window)
    assert auto_renew(runtime) == {**NOTHING, "renewed": [line_id]}

    first, renewal = orders_of(runtime)
    assert (renewal.kind, renewal.status) == (OrderKind.RENEWAL, OrderStatus.FULFILLED)
    assert (renewal.total_amount, renewal.line_id) == (PRICE, line_id)
    with runtime.unit_of_work() as uow:
        [payment] = uow.session.scalars(select(Payment).where(Payment.order_id == renewal.id)).all()
        [saved] = uow.session.scalars(select(SavedPaymentMethod)).all()
        assert payment.status is PaymentStatus.SUCCEEDED and payment.saved_method_id == saved.id
        assert (payment.provider, payment.card_last4) == ("sandbox", "4242")
        assert payment.next_action is None  # off-session: nobody was asked to do anything
        [attempt] = uow.session.scalars(select(AutoRenewAttempt)).all()
        assert (attempt.attempt, attempt.outcome, attempt.order_id) == (0, "paid", renewal.id)
    assert expiry_of(runtime, subscriber) == expiry.replace(year=2027, month=1)  # one calendar month more
    assert renewal.period_start == expiry
    assert count(runtime, Receipt) == 2

    assert auto_renew(runtime) == NOTHING  # again, at once
    clock.advance(timedelta(hours=12))
    assert auto_renew(runtime) == NOTHING  # and later in the same window
    deliver(runtime, client, clock)  # the sandbox's notification of the off-session charge changes nothing
    assert [o.id for o in orders_of(runtime)] == [first.id, renewal.id]
    assert count(runtime, Receipt) == 2
    assert expiry_of(runtime, subscriber) == expiry.replace(year=2027, month=1)
    assert events(runtime, "auto_renew.failed") == []


def test_a_declining_saved_card_is_retried_on_schedule_then_the_line_runs_its_lifecycle(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    paid_order(client, runtime, clock, subscriber, auto_renew=True, save=True)
    line = the_line(runtime, subscriber)
    with runtime.unit_of_work() as uow:  # the card has since been cancelled: the sandbox declines its token
        saved = uow.session.get(SavedPaymentMethod, line.auto_renew_method_id)
        assert saved is not None
        saved.token = f"sbxtok_{DECLINED_CARD}_0badc0de0002"
    settings = runtime.settings
    expiry = expiry_of(runtime, subscriber)
    first_try = expiry - timedelta(hours=settings.auto_renew_hours_before)
    schedule = settings.auto_renew_retry_hours
    assert len(schedule) >= 2

    for n, hours in enumerate(schedule):
        due = first_try + timedelta(hours=hours)
        if n > 0:
            clock.set(due - timedelta(minutes=1))
            assert auto_renew(runtime) == NOTHING, f"attempt {n + 1} came early"
        clock.set(due)
        last = n == len(schedule) - 1
        assert auto_renew(runtime) == {**NOTHING, "declined": [line.id], "gave_up": [line.id] if last else []}
        if due < expiry:
            assert advance_lifecycle(runtime) == {"grace": 0, "expired": 0, "recycled": 0}
            assert the_line(runtime, subscriber).status is LineStatus.ACTIVE
        elif the_line(runtime, subscriber).status is LineStatus.ACTIVE:
            assert advance_lifecycle(runtime) == {"grace": 1, "expired": 0, "recycled": 0}
        assert the_line(runtime, subscriber).status is (LineStatus.ACTIVE if due < expiry else LineStatus.GRACE)

    failures = events(runtime, "auto_renew.failed")
    assert [f["attempt"] for f in failures] == list(range(1, len(schedule) + 1))
    assert [f["final"] for f in failures] == [False] * (len(schedule) - 1) + [True]
    assert {(f["line_id"], f["msisdn"], f["reason"]) for f in failures} == {(line.id, line.msisdn, "card_declined")}
    renewals = orders_of(runtime)[1:]
    assert [(o.kind, o.status) for o in renewals] == [(OrderKind.RENEWAL, OrderStatus.FAILED)] * len(schedule)
    with runtime.unit_of_work() as uow:
        attempts = uow.session.scalars(select(AutoRenewAttempt).order_by(AutoRenewAttempt.attempt)).all()
        assert [(a.attempt, a.outcome) for a in attempts] == [(n, "declined") for n in range(len(schedule))]
        assert {a.period_end for a in attempts} == {expiry}
    assert count(runtime, Receipt) == 1
    assert expiry_of(runtime, subscriber) == expiry

    clock.advance(timedelta(days=2))
    assert auto_renew(runtime) == NOTHING  # the schedule is used up: no further charge

    # grace -> expired after grace_days -> recycled after retention_days
    grace, retention = timedelta(days=settings.grace_days), timedelta(days=settings.retention_days)
    clock.set(expiry + grace - timedelta(minutes=1))
    assert advance_lifecycle(runtime) == {"grace": 0, "expired": 0, "recycled": 0}
    clock.set(expiry + grace)
    assert advance_lifecycle(runtime) == {"grace": 0, "expired": 1, "recycled": 0}
    assert the_line(runtime, subscriber).status is LineStatus.EXPIRED
    assert auto_renew(runtime) == NOTHING
    clock.set(expiry + grace + retention - timedelta(minutes=1))
    assert advance_lifecycle(runtime) == {"grace": 0, "expired": 0, "recycled": 0}
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(PoolNumber.available).where(PoolNumber.msisdn == line.msisdn)) is False
    clock.set(expiry + grace + retention)
    assert advance_lifecycle(runtime) == {"grace": 0, "expired": 0, "recycled": 1}

    assert the_line(runtime, subscriber).status is LineStatus.RECYCLED
    with runtime.unit_of_work() as uow:
        number = uow.session.scalars(select(PoolNumber).where(PoolNumber.msisdn == line.msisdn)).one()
        assert number.available is True and number.allocated_at is None
    for event_type in ("line.grace", "line.expired", "line.recycled"):
        [payload] = events(runtime, event_type)
        assert (payload["line_id"], payload["msisdn"]) == (line.id, line.msisdn)
        assert payload["expires_at"] == expiry.isoformat()
    assert advance_lifecycle(runtime) == {"grace": 0, "expired": 0, "recycled": 0}
    clock.advance(timedelta(days=400))
    assert advance_lifecycle(runtime) == {"grace": 0, "expired": 0, "recycled": 0}
    assert auto_renew(runtime) == NOTHING


def test_the_scheduled_jobs_run_auto_renew_before_lifecycle(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    """A line whose first auto-renew try falls due only at its expiry is renewed, never put in grace."""
    paid_order(client, runtime, clock, subscriber, auto_renew=True, save=True)
    expiry = expiry_of(runtime, subscriber)
    clock.set(expiry)

    results = jobs.run_all(runtime)

    assert results["auto-renew"] == {**NOTHING, "renewed": [subscriber["line"]["id"]]}
    assert results["lifecycle"] == {"grace": 0, "expired": 0, "recycled": 0}
    assert the_line(runtime, subscriber).status is LineStatus.ACTIVE
    assert events(runtime, "line.grace") == []


def test_auto_renew_that_cannot_even_place_the_order_tells_the_subscriber(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    paid_order(client, runtime, clock, subscriber, auto_renew=True, save=True)
    _, admin = staff(runtime, Role.ADMIN, 2)
    assert client.post("/api/v1/plans/monthly/retire", headers=admin).status_code == 200
    expiry = expiry_of(runtime, subscriber)
    clock.set(expiry - timedelta(hours=runtime.settings.auto_renew_hours_before))

    auto_renew(runtime)

    failures = events(runtime, "auto_renew.failed")
    assert [(f["line_id"], f["attempt"]) for f in failures] == [(subscriber["line"]["id"], 1)]
    assert count(runtime, AutoRenewAttempt) == 1


def test_auto_renew_is_switched_through_the_api_and_needs_a_saved_method(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    url = f"/api/v1/lines/{subscriber['line']['id']}/auto-renew"
    paid_order(client, runtime, clock, subscriber, auto_renew=False, save=False)
    refused = client.patch(url, json={"enabled": True}, headers=subscriber["headers"])
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "saved_method_required"
    assert the_line(runtime, subscriber).auto_renew is False

    paid_order(client, runtime, clock, subscriber, auto_renew=True, save=True)
    off = client.patch(url, json={"enabled": False}, headers=subscriber["headers"])
    assert off.status_code == 200 and off.json()["auto_renew"] is False
    on = client.patch(url, json={"enabled": True}, headers=subscriber["headers"])
    assert on.status_code == 200 and on.json()["auto_renew"] is True
    assert the_line(runtime, subscriber).auto_renew_method_id is not None
