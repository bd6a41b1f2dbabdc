"""Every try at delivering a message, an integrator's webhook or a sandbox webhook leaves an attempt
row (delivery_attempts): its number, when it started and finished, its outcome, the error and the
receiver's HTTP status — never a one-time code. Both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from duckline.billing.models import SandboxWebhook
from duckline.billing.order_states import PaymentMethod
from duckline.billing.providers import PaymentRequest
from duckline.core.clock import FrozenClock
from duckline.core.money import Money
from duckline.messaging import delivery, events, notifications
from duckline.messaging.event_types import LineSuspended
from duckline.messaging.models import DeliveryAttempt, DomainEvent, Notification
from duckline.runtime import Runtime

CODE = "480213"


class EchoingSms:
    """An SMSC whose refusals quote the message back, code and all (some do), then takes it."""

    name = "echoing"

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def send(self, to: str, body: str, reference: str | None = None) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError(f"throttled, try again: {body}")
        return "smsc-1"


@pytest.fixture
def quiet(runtime: Runtime) -> Runtime:
    runtime.settings.deliver_after_commit = False  # these tests drive delivery themselves
    return runtime


def tries(runtime: Runtime, subject: str, subject_id: int) -> list[delivery.AttemptView]:
    with runtime.unit_of_work() as uow:
        return delivery.attempts(uow.session, subject, subject_id)


def queue_code(runtime: Runtime) -> int:
    with runtime.unit_of_work() as uow:
        row = notifications.send_to(uow, "sms", "+85261000001", "otp", "en", code=CODE, minutes=5)
        assert row is not None
        return row.id


def test_each_try_at_a_message_is_an_attempt_row_without_its_code(quiet: Runtime, clock: FrozenClock) -> None:
    message = queue_code(quiet)
    channel = EchoingSms(failures=1)
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 0
    clock.advance(timedelta(seconds=31))
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 1

    first, second = tries(quiet, "notification", message)
    assert (first.attempt, first.outcome, second.attempt, second.outcome) == (1, "error", 2, "sent")
    assert first.error is not None and "throttled" in first.error and CODE not in first.error
    assert notifications.MASK in first.error  # the code was struck out, the rest of the error kept
    assert second.error is None and second.status_code is None
    for attempt in (first, second):
        assert attempt.finished_at is not None and attempt.started_at <= attempt.finished_at
        assert attempt.started_at.utcoffset() == timedelta(0)
    with quiet.unit_of_work() as uow:
        stored = uow.session.scalars(select(DeliveryAttempt.error)).all()
    assert all(CODE not in (error or "") for error in stored)


def test_a_try_whose_worker_died_stays_without_an_outcome(quiet: Runtime, clock: FrozenClock) -> None:
    message = queue_code(quiet)
    policy = notifications.DeliveryPolicy()
    assert notifications.claim(quiet.db, clock, 10, policy) == [message]  # this worker "dies" here
    (abandoned,) = tries(quiet, "notification", message)
    assert (abandoned.attempt, abandoned.outcome, abandoned.finished_at) == (1, None, None)

    clock.advance(policy.lease + timedelta(seconds=1))
    assert notifications.deliver_due(quiet.db, EchoingSms(failures=0), quiet.email, clock) == 1
    assert [(t.attempt, t.outcome) for t in tries(quiet, "notification", message)] == [(1, None), (2, "sent")]


def test_a_refused_message_and_one_whose_code_expired_say_so(quiet: Runtime, clock: FrozenClock) -> None:
    with quiet.unit_of_work() as uow:
        late = notifications.send_to(
            uow, "sms", "+85261000002", "otp", "en", valid_until=clock.now() + timedelta(seconds=1), code="1", minutes=5
        )
        assert late is not None
    clock.advance(timedelta(seconds=2))
    notifications.deliver_due(quiet.db, EchoingSms(failures=0), quiet.email, clock)
    assert [(t.outcome, t.error) for t in tries(quiet, "notification", late.id)] == [
        ("expired", "not sent: its code had expired")
    ]
    with quiet.unit_of_work() as uow:
        assert uow.session.get(Notification, late.id).status == "expired"  # type: ignore[union-attr]


def test_each_post_of_a_sandbox_webhook_is_an_attempt_with_the_answer(runtime: Runtime, clock: FrozenClock) -> None:
    sandbox = runtime.sandbox
    assert sandbox is not None
    payment = sandbox.create_payment(
        PaymentRequest("attempts-1", Money(5000, "HKD"), "test", PaymentMethod.CARD, "http://x/return", "http://x/hook")
    )
    sandbox.pay(payment.provider_ref, "4242 4242 4242 4242")
    answers = [503, 503, 200, 200]  # two copies per try: both refused, then both taken

    def post(url: str, body: bytes, headers: dict[str, str]) -> int:
        return answers.pop(0)

    clock.advance(timedelta(seconds=5))
    assert sandbox.deliver_due(post) == 2
    assert sandbox.deliver_due(post) == 0  # backing off
    clock.advance(timedelta(seconds=2))
    assert sandbox.deliver_due(post) == 2
    assert sandbox.deliver_due(post) == 0  # delivered: never again
    with runtime.unit_of_work() as uow:
        hook = uow.session.scalars(select(SandboxWebhook)).one()
        assert (hook.status, hook.attempts, hook.deliveries, hook.claim) == ("delivered", 2, 2, None)
    first, second = tries(runtime, "sandbox_webhook", hook.id)
    assert (first.attempt, first.outcome, first.status_code) == (1, "error", 503)
    assert (second.attempt, second.outcome, second.status_code) == (2, "sent", 200)


def test_a_lost_sandbox_webhook_is_never_tried(runtime: Runtime, clock: FrozenClock) -> None:
    sandbox = runtime.sandbox
    assert sandbox is not None
    payment = sandbox.create_payment(
        PaymentRequest("attempts-2", Money(5000, "HKD"), "test", PaymentMethod.CARD, "http://x/return", "http://x/hook")
    )
    sandbox.pay(payment.provider_ref, "4000 0000 0000 0077")  # succeeds, its webhook is lost
    clock.advance(timedelta(minutes=5))
    assert sandbox.deliver_due(lambda url, body, headers: 200) == 0
    with runtime.unit_of_work() as uow:
        assert uow.session.scalars(select(SandboxWebhook.status)).one() == "lost"
        assert uow.session.scalars(select(DeliveryAttempt)).all() == []


def test_an_emitted_event_is_stored_as_before_and_read_back_typed(quiet: Runtime) -> None:
    with quiet.unit_of_work() as uow:
        event = LineSuspended(account_id=None, line_id=5, reason="lost")
        events.emit(uow, event)
    with quiet.unit_of_work() as uow:
        row = uow.session.scalars(select(DomainEvent)).one()
        assert (row.type, row.account_id, row.order_id, row.payload) == (
            "line.suspended",
            None,
            None,
            {"line_id": 5, "reason": "lost"},
        )
        assert events.stored(row) == event
        assert events.as_dict(row)["data"] == {"line_id": 5, "reason": "lost"}
