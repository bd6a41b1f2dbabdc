"""A notification worker killed (kill -9) in the middle of a batch of one-time codes, on PostgreSQL,
sending to a real SMSC on loopback (tests/smsc.py). What it had sent stays sent; the message it was
sending when it died goes again with the same reference, so the SMSC can tell the repeat; the rest of
its batch goes out as soon as its short lease runs out, long before the codes expire."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from duckline.accounts import otp
from duckline.accounts.models import OtpChallenge
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.messaging.models import Notification
from duckline.runtime import Runtime
from tests.smsc import Smsc

pytestmark = pytest.mark.postgres_only

PHONES = [f"+8526100{i:04d}" for i in range(6)]
ANSWERED = 3  # the SMSC acknowledges three messages, takes in the fourth and says nothing: the worker dies then

# One round of `duckline worker`'s message delivery, at the instant given on the command line.
WORKER = """
import sys
from datetime import datetime
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.runtime import Runtime

runtime = Runtime(Settings(), clock=FrozenClock(datetime.fromisoformat(sys.argv[1])))
runtime.deliver_messages()
"""


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    with Smsc("duckline", "secret12") as server:
        yield server


def smpp_settings(smsc: Smsc) -> dict[str, object]:
    return {
        "sms_channel": "smpp",
        "smpp_host": "127.0.0.1",
        "smpp_port": smsc.port,
        "smpp_system_id": "duckline",
        "smpp_password": "secret12",
        "smpp_source_addr": "Duckline",
        "deliver_after_commit": False,
    }


def worker_env(settings: Settings, smsc: Smsc, log_dir: Path) -> dict[str, str]:
    values = {
        "environment": "test",
        "database_url": settings.database_url,
        "secret_key": settings.secret_key,
        "data_key": settings.data_key,
        "log_dir": str(log_dir),
        "sandbox_enabled": "false",
        **smpp_settings(smsc),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCKLINE_")}
    env.update({f"DUCKLINE_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()})
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def kill_after_submissions(worker: subprocess.Popen[bytes], smsc: Smsc, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(smsc.submissions) < count:
        if worker.poll() is not None:
            raise AssertionError(f"the worker ended on its own ({worker.returncode}): {worker.stderr.read()!r}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise AssertionError(f"the SMSC got {len(smsc.submissions)} of {count} messages")
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)


def rows(runtime: Runtime) -> list[Notification]:
    with runtime.unit_of_work() as uow:
        return list(uow.session.scalars(select(Notification).order_by(Notification.id)))


def test_a_worker_killed_mid_batch_loses_nothing_and_sends_nothing_twice_under_a_new_reference(
    settings: Settings, clock: FrozenClock, smsc: Smsc, tmp_path: Path
) -> None:
    runtime = Runtime(settings.model_copy(update=smpp_settings(smsc)), clock=clock)
    try:
        with runtime.unit_of_work() as uow:
            for phone in PHONES:
                otp.send(uow, phone, "registration", "en")
        with runtime.unit_of_work() as uow:
            code_expires = min(uow.session.scalars(select(OtpChallenge.expires_at)))

        smsc.answer_first = ANSWERED
        command = [sys.executable, "-c", WORKER, clock.now().isoformat()]
        worker = subprocess.Popen(  # noqa: S603 (our own interpreter and script)
            command, env=worker_env(settings, smsc, tmp_path / "worker"), cwd=tmp_path, stderr=subprocess.PIPE
        )
        try:
            kill_after_submissions(worker, smsc, ANSWERED + 1)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        assert worker.returncode == -signal.SIGKILL

        # What the SMSC acknowledged was recorded as it happened; the rest is held by a short lease.
        after_crash = rows(runtime)
        assert [r.status for r in after_crash] == ["sent"] * ANSWERED + ["sending"] * (len(PHONES) - ANSWERED)
        for row in after_crash[ANSWERED:]:
            assert row.lease_until is not None
            lease = row.lease_until - clock.now()
            assert timedelta(0) < lease <= timedelta(seconds=60)

        # A second worker: nothing is taken while the dead one's lease holds, everything once it has run out.
        smsc.answer_first = None
        clock.advance(timedelta(seconds=1))
        assert runtime.deliver_messages() == 0
        clock.set(max(r.lease_until for r in after_crash[ANSWERED:] if r.lease_until) + timedelta(seconds=1))
        assert runtime.deliver_messages() == len(PHONES) - ANSWERED
        assert clock.now() < code_expires - timedelta(minutes=4)  # well within the codes' five minutes

        final = rows(runtime)
        assert [r.status for r in final] == ["sent"] * len(PHONES)
        submissions = Counter(s.destination_addr for s in smsc.submissions)
        destinations = [phone.lstrip("+") for phone in PHONES]
        # Sent and recorded: once. In flight when the worker died: again, under the same reference.
        assert [submissions[d] for d in destinations] == [1, 1, 1, 2, 1, 1]
        for destination in destinations:
            references = {s.user_message_reference for s in smsc.submissions if s.destination_addr == destination}
            assert len(references) == 1 and None not in references
        for destination, row in zip(destinations, final, strict=True):
            texts = smsc.messages(destination)
            assert texts and all("verification code" in text for text in texts)
            code = re.search(r"\d{6}", texts[0])
            assert code and code.group() not in row.body  # the stored message keeps no code once sent
    finally:
        runtime.close()
