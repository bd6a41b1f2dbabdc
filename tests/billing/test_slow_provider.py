"""A provider that charges but answers after Duckline stopped waiting (Stripe, its local fake).

The auto-renew charge reaches Stripe, which takes the money; its answer comes after the client's
timeout (the library's one retry times out too). Duckline must not tell the subscriber that
nothing was charged, must not charge again at the next dunning slot, and finds the capture by
its own reference — through the webhook, or through reconciliation asking Stripe.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.roles import Role
from duckline.billing.models import Order, Payment
from duckline.billing.order_states import OrderStatus, PaymentStatus
from duckline.catalog import service as catalog
from duckline.catalog.rules import Validity
from duckline.core import jobs
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.lines.models import Line
from duckline.messaging.models import DomainEvent, Notification
from duckline.runtime import Runtime
from tests.factories import numbers, place_order, plan_input, register_and_verify, staff
from tests.provider_fakes import FakeStripe, fake_stripe, stripe_notification, stripe_settings, with_settings

PRICE = 8800
TIMEOUT = 0.5  # Duckline's patience with Stripe, in seconds
SLOW = 1.0  # how long the fake Stripe takes to answer


@pytest.fixture
def stripe() -> Iterator[FakeStripe]:
    with fake_stripe() as fake:
        yield fake


@pytest.fixture
def settings(settings: Settings, stripe: FakeStripe) -> Settings:
    return with_settings(stripe_settings(settings, stripe), stripe_timeout_seconds=TIMEOUT)


def count(runtime: Runtime, table: type[Any], *where: Any) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def the_line(runtime: Runtime, line_id: int) -> Line:
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, line_id)
        assert line is not None
        return line


def notifications(runtime: Runtime) -> list[Notification]:
    with runtime.unit_of_work() as uow:
        return list(uow.session.scalars(select(Notification).order_by(Notification.id)))


def renewal_payment(runtime: Runtime, order_id: int) -> Payment:
    with runtime.unit_of_work() as uow:
        [payment] = uow.session.scalars(select(Payment).where(Payment.order_id == order_id)).all()
        return payment


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime, stripe: FakeStripe) -> dict[str, Any]:
    """A line paid by card through Stripe with auto-renew on: the card is saved at Stripe."""
    numbers(runtime, 1)
    admin, _ = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=PRICE))
    subscriber = register_and_verify(client, runtime, 1)
    order = place_order(client, subscriber, auto_renew=True).json()
    [payment] = order["payments"]
    with runtime.unit_of_work() as uow:
        intent_id = uow.session.get(Payment, payment["id"]).provider_ref  # type: ignore[union-attr]
    stripe.confirm(str(intent_id), "pm_card_visa")  # the payer, on the card page
    back = client.get(f"/api/v1/payments/{payment['id']}/return", headers=subscriber["headers"])
    assert back.json()["status"] == "fulfilled", back.text
    line = the_line(runtime, subscriber["line"]["id"])
    assert line.auto_renew and line.auto_renew_method_id is not None
    return subscriber


def slow_charge(runtime: Runtime, stripe: FakeStripe) -> None:
    """Run auto-renew while Stripe takes longer than Duckline waits; let Stripe finish its work."""
    stripe.delay = SLOW
    jobs.run(runtime, "auto-renew")
    deadline = time.monotonic() + 15
    while len(stripe.calls("POST", "/v1/payment_intents")) < 3:  # the first month, the charge, its retry
        assert time.monotonic() < deadline, "Stripe never got the renewal"
        time.sleep(0.05)
    time.sleep(SLOW)  # the retry's answer is on its way to nobody
    stripe.delay = 0.0


@pytest.mark.parametrize("truth_from", ["webhook", "reconciliation"])
def test_a_charge_answered_after_the_timeout_is_found_by_our_reference_and_never_repeated(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    stripe: FakeStripe,
    subscriber: dict[str, Any],
    truth_from: str,
) -> None:
    line_id = subscriber["line"]["id"]
    period_end = the_line(runtime, line_id).expires_at
    assert period_end is not None
    first_try = period_end - timedelta(hours=runtime.settings.auto_renew_hours_before)
    clock.set(first_try)

    slow_charge(runtime, stripe)

    _, charged = stripe.intents.values()  # the first month's intent, then the renewal's
    assert (charged["status"], charged["amount_received"]) == ("succeeded", PRICE)  # Stripe took the money
    with runtime.unit_of_work() as uow:
        renewal = uow.session.scalars(select(Order).where(Order.id > 1)).one()
        renewal_id = renewal.id
        assert renewal.status is OrderStatus.PAYMENT_PENDING  # not failed: nobody knows yet
    attempt = renewal_payment(runtime, renewal_id)
    assert attempt.status is PaymentStatus.UNKNOWN and attempt.provider_ref is None
    assert charged["metadata"] == {"duckline_reference": attempt.reference}
    assert count(runtime, Notification, Notification.body.contains("Nothing was charged")) == 0
    assert count(runtime, DomainEvent, DomainEvent.type.in_(("payment.failed", "auto_renew.failed"))) == 0
    [told] = [n.body for n in notifications(runtime) if n.template == "payment_unconfirmed" and n.channel == "sms"]
    assert "has not confirmed yet" in told and "never be charged twice" in told

    clock.set(first_try + timedelta(hours=runtime.settings.auto_renew_retry_hours[1]))  # the next dunning slot
    if truth_from == "webhook":
        body, headers = stripe_notification("payment_intent.succeeded", stripe.view(charged, ["latest_charge"]))
        assert client.post("/api/v1/webhooks/stripe", content=body, headers=headers).status_code == 200
    else:
        assert jobs.run(runtime, "reconcile")["applied"] == [renewal_id]
    jobs.run(runtime, "auto-renew")

    with runtime.unit_of_work() as uow:
        done = uow.session.get(Order, renewal_id)
        assert done is not None and done.status is OrderStatus.FULFILLED
        assert uow.session.scalar(select(func.count()).select_from(Order)) == 2
    paid = renewal_payment(runtime, renewal_id)
    assert (paid.status, paid.provider_ref, paid.card_last4) == (PaymentStatus.SUCCEEDED, charged["id"], "4242")
    assert the_line(runtime, line_id).expires_at == done.period_end
    assert len(stripe.intents) == 2  # the first month and this renewal: never a second charge
    assert count(runtime, Notification, Notification.body.contains("Nothing was charged")) == 0
    # One confirmation each (by SMS: no email address): the first month's activation, this renewal.
    assert count(runtime, Notification, Notification.template == "activation_succeeded") == 1
    assert count(runtime, Notification, Notification.template == "renewal_succeeded") == 1
