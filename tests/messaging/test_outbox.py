"""The outbox: messages queued with their cause, delivered once — also by two workers at once —
retried with back-off under one reference, taken back from a worker that died after a short lease;
one-time codes go first and are kept only until their message is settled."""

from __future__ import annotations

import logging
import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from duckline.accounts import otp
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.messaging import notifications
from duckline.messaging.email.log import LogEmailChannel
from duckline.messaging.models import Notification
from duckline.messaging.sms import PermanentFailure
from duckline.messaging.sms.http_gateway import HttpGatewaySmsChannel
from duckline.messaging.sms.log import LogSmsChannel
from duckline.runtime import Runtime
from tests.messaging.test_sms_channels import SECRET, serve_gateway


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

    def send(self, to: str, body: str, reference: str | None = None) -> str:
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


# -- one reference per message, outcomes recorded as they happen, short leases --


def only_row(runtime: Runtime) -> Notification:
    with runtime.unit_of_work() as uow:
        return uow.session.scalars(select(Notification)).one()


def test_every_attempt_at_a_message_carries_its_one_reference(quiet: Runtime, clock: FrozenClock) -> None:
    queue(quiet, 1)
    with serve_gateway() as gateway:
        channel = HttpGatewaySmsChannel(gateway.url, SECRET, "Duckline", timeout=5.0)
        gateway.status = 503  # the gateway took the message in but failed to say so: it is sent again
        assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 0
        gateway.status = 200
        clock.advance(timedelta(seconds=31))
        assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 1
    first, again = (message["reference"] for message in gateway.received)
    assert first == again == only_row(quiet).reference


class SlowSms:
    """An SMSC that takes 20 s per message, while a second worker keeps trying to claim work."""

    name = "slow"

    def __init__(self, runtime: Runtime, clock: FrozenClock) -> None:
        self.runtime, self.clock = runtime, clock
        self.sent: list[str] = []
        self.taken_by_the_other_worker: list[int] = []

    def send(self, to: str, body: str, reference: str | None = None) -> str:
        self.clock.advance(timedelta(seconds=20))
        other = notifications.claim(self.runtime.db, self.clock, 100, notifications.DeliveryPolicy())
        self.taken_by_the_other_worker.extend(other)
        self.sent.append(body)
        return f"slow-{len(self.sent)}"


def test_a_batch_that_takes_longer_than_its_lease_keeps_it_while_it_makes_progress(
    quiet: Runtime, clock: FrozenClock
) -> None:
    queue(quiet, 20)  # 400 s of sending in one batch
    channel = SlowSms(quiet, clock)
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 20
    assert channel.taken_by_the_other_worker == []
    assert len(set(channel.sent)) == 20
    assert statuses(quiet) == {"sent": 20}


def test_leases_are_short_beside_the_life_of_a_code(quiet: Runtime, clock: FrozenClock) -> None:
    queue(quiet, 2)
    policy = notifications.DeliveryPolicy.of(quiet.settings)
    assert len(notifications.claim(quiet.db, clock, 10, policy)) == 2
    with quiet.unit_of_work() as uow:
        leases = set(uow.session.scalars(select(Notification.lease_until)))
    (lease_until,) = leases
    assert lease_until is not None
    assert timedelta(0) < lease_until - clock.now() <= timedelta(seconds=60)
    with pytest.raises(ValidationError, match="lease"):
        Settings(notification_lease_seconds=300, otp_ttl_seconds=300)


def test_codes_go_before_other_messages(quiet: Runtime, clock: FrozenClock) -> None:
    with quiet.unit_of_work() as uow:
        for i in range(3):
            notifications.send_to(uow, "sms", f"+8526100000{i}", "line_recycled", "en", msisdn="5170 0000")
        otp.send(uow, "+85261000009", "registration", "en")
    channel = FlakySms(failures=0)
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock, limit=1) == 1
    assert "verification code" in channel.sent[0]


# -- one-time codes: in the stored message only until it is settled, never in the logs --

MASK = "••••••"


def six_digits(text: str) -> str:
    found = re.search(r"(?<!\d)\d{6}(?!\d)", text)
    assert found, text
    return found.group()


def code_of(runtime: Runtime) -> str:
    return six_digits(only_row(runtime).body)


def assert_struck(row: Notification, code: str) -> None:
    for text in (row.subject, row.body, row.html, row.last_error):
        assert code not in (text or "")
    assert MASK in row.body


def test_a_code_is_kept_only_until_its_message_is_sent(quiet: Runtime, clock: FrozenClock, tmp_path: Path) -> None:
    with quiet.unit_of_work() as uow:
        otp.send(uow, "+85261000001", "registration", "zh_Hant")
    code = code_of(quiet)  # the worker needs it until then
    outbox = tmp_path / "sms.log"
    assert notifications.deliver_due(quiet.db, LogSmsChannel(outbox), quiet.email, clock) == 1
    assert code in outbox.read_text(encoding="utf-8")  # the subscriber got it
    row = only_row(quiet)
    assert row.status == "sent"
    assert_struck(row, code)


def test_an_emailed_code_is_struck_from_the_text_and_the_html(
    quiet: Runtime, clock: FrozenClock, tmp_path: Path
) -> None:
    with quiet.unit_of_work() as uow:
        notifications.send_to(uow, "email", "wong@example.com", "email_verify", "zh_Hans", code="480213", minutes=5)
    row = only_row(quiet)
    assert "480213" in row.body and "480213" in (row.html or "")
    mail = LogEmailChannel(tmp_path / "email.log")
    assert notifications.deliver_due(quiet.db, quiet.sms, mail, clock) == 1
    assert "480213" in (tmp_path / "email.log").read_text(encoding="utf-8")
    assert_struck(only_row(quiet), "480213")


def test_a_code_is_struck_when_its_message_fails_for_good(quiet: Runtime, clock: FrozenClock) -> None:
    with quiet.unit_of_work() as uow:
        otp.send(uow, "+85261000001", "registration", "en")
    code = code_of(quiet)
    notifications.deliver_due(quiet.db, FlakySms(failures=1, permanent=True), quiet.email, clock)
    row = only_row(quiet)
    assert row.status == "failed"
    assert_struck(row, code)


def test_a_code_that_expires_before_its_message_goes_is_not_sent_and_is_struck(
    quiet: Runtime, clock: FrozenClock
) -> None:
    with quiet.unit_of_work() as uow:
        otp.send(uow, "+85261000001", "registration", "en")
    code = code_of(quiet)
    channel = FlakySms(failures=1)  # the SMSC is down ...
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 0
    clock.advance(timedelta(seconds=quiet.settings.otp_ttl_seconds))  # ... until the code no longer works
    assert notifications.deliver_due(quiet.db, channel, quiet.email, clock) == 0
    assert channel.sent == []
    row = only_row(quiet)
    assert row.status == "expired"
    assert_struck(row, code)


def test_codes_never_reach_the_logs(
    quiet: Runtime, clock: FrozenClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with quiet.unit_of_work() as uow:
        otp.send(uow, "+85261000001", "registration", "en")
        otp.send(uow, "+85261000002", "registration", "en")
    with quiet.unit_of_work() as uow:
        codes = [six_digits(body) for body in uow.session.scalars(select(Notification.body))]
    notifications.deliver_due(quiet.db, LogSmsChannel(tmp_path / "sms.log"), quiet.email, clock, limit=1)
    notifications.deliver_due(quiet.db, FlakySms(failures=1), quiet.email, clock, limit=1)
    assert statuses(quiet) == {"sent": 1, "queued": 1}
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert not any(code in logged for code in codes)
