"""The outbox: messages queued with their cause, delivered once — also by two workers at once —
retried with back-off, and taken back from a worker that died."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from duckline.adapters.db.tables import Notification
from duckline.adapters.sms import PermanentFailure
from duckline.adapters.sms.log import LogSmsChannel
from duckline.clock import FrozenClock
from duckline.runtime import Runtime
from duckline.services import notifications


def queue(runtime: Runtime, count: int, to: str = "+85261000001") -> None:
    with runtime.unit_of_work() as uow:
        for i in range(count):
            notifications.send_to(uow, "sms", to, "otp", "zh_Hant", code=f"{i:06d}", minutes=5)


def statuses(runtime: Runtime) -> dict[str, int]:
    with runtime.unit_of_work() as uow:
        rows = uow.session.execute(select(Notification.status, func.count()).group_by(Notification.status)).all()
    return {status: count for status, count in rows}


class FlakySms:
    """An SMS channel whose far end fails the first `failures` sends (a throttling SMSC)."""

    name = "flaky"

    def __init__(self, failures: int, permanent: bool = False) -> None:
        self.failures, self.permanent, self.sent = failures, permanent, []

    def send(self, to: str, body: str) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise PermanentFailure("number barred") if self.permanent else ConnectionError("SMSC busy")
        self.sent.append(body)
        return f"id-{len(self.sent)}"


@pytest.fixture
def quiet(runtime: Runtime) -> Runtime:
    runtime.settings.deliver_after_commit = False  # these tests drive delivery themselves
    return runtime


def test_two_workers_deliver_1000_messages_exactly_once(quiet: Runtime, tmp_path: Path) -> None:
    queue(quiet, 1000)
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    channels = [LogSmsChannel(path) for path in logs]
    start = threading.Barrier(2)

    def work(channel: LogSmsChannel) -> None:
        start.wait()
        while notifications.deliver_due(quiet.db, channel, quiet.email, quiet.clock, limit=25):
            pass

    threads = [threading.Thread(target=work, args=(channel,)) for channel in channels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bodies = [line.split("\t", 3)[3] for path in logs if path.exists() for line in path.read_text().splitlines()]
    assert len(bodies) == 1000
    assert len(set(bodies)) == 1000  # each code once: nothing sent twice, nothing lost
    assert statuses(quiet) == {"sent": 1000}
    assert all("驗證碼" in body for body in bodies)


def test_temporary_failures_are_retried_with_back_off(quiet: Runtime, clock: FrozenClock) -> None:
    queue(quiet, 1)
    channel = FlakySms(failures=2)
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 0
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 0  # not due yet: backing off
    clock.advance(timedelta(seconds=31))
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 0  # second failure
    clock.advance(timedelta(seconds=59))
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 0  # back-off doubled: 60 s
    clock.advance(timedelta(seconds=2))
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 1
    with quiet.unit_of_work() as uow:
        row = uow.session.scalars(select(Notification)).one()
        assert (row.status, row.attempts, row.provider_ref) == ("sent", 3, "id-1")


def test_permanent_failure_is_not_retried(quiet: Runtime, clock: FrozenClock) -> None:
    queue(quiet, 1)
    channel = FlakySms(failures=1, permanent=True)
    notifications.deliver_due(quiet.db, channel, quiet.email, clock)
    clock.advance(timedelta(hours=1))
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 0
    with quiet.unit_of_work() as uow:
        row = uow.session.scalars(select(Notification)).one()
        assert row.status == "failed" and "barred" in (row.last_error or "")


def test_gives_up_after_the_last_attempt(quiet: Runtime, clock: FrozenClock) -> None:
    queue(quiet, 1)
    channel = FlakySms(failures=100)
    policy = notifications.DeliveryPolicy(max_attempts=3, base_delay=timedelta(seconds=1))
    for _ in range(5):
        notifications.deliver_due(quiet.db, channel, quiet.email, clock, policy=policy)
        clock.advance(timedelta(minutes=1))
    assert statuses(quiet) == {"failed": 1}


def test_a_claim_of_a_worker_that_died_is_taken_back(quiet: Runtime, clock: FrozenClock) -> None:
    queue(quiet, 3)
    policy = notifications.DeliveryPolicy()
    claimed = notifications.claim(quiet.db, clock, 10, policy)  # this worker "dies" here
    assert len(claimed) == 3
    channel = FlakySms(failures=0)
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 0  # still leased
    clock.advance(policy.lease + timedelta(seconds=1))
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 3
    assert statuses(quiet) == {"sent": 3}


def test_dedupe_key_queues_once(quiet: Runtime) -> None:
    with quiet.unit_of_work() as uow:
        first = notifications.send_to(uow, "sms", "+85261000001", "otp", "en", dedupe_key="k", code="1", minutes=5)
        again = notifications.send_to(uow, "sms", "+85261000001", "otp", "en", dedupe_key="k", code="2", minutes=5)
    assert first is not None and again is None
    assert statuses(quiet) == {"queued": 1}
