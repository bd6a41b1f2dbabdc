"""A renewal charged at the provider by a process that dies before it records the answer.

The auto-renew job runs in a real subprocess against the PostgreSQL test database. The sandbox
provider charges the saved card and commits it on its side; the subprocess announces it and is
killed with SIGKILL right there, before Duckline records the provider's answer. Then the truth
reaches Duckline one of three ways — the provider's webhook, reconciliation asking the
provider, or the next dunning run asking first — and the renewal is applied once, and never
charged a second time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.roles import Role
from duckline.billing.models import Order, Payment, SandboxPayment
from duckline.billing.order_states import OrderKind, OrderStatus, PaymentStatus
from duckline.catalog import service as catalog
from duckline.catalog.rules import Validity
from duckline.core import jobs
from duckline.core.clock import FrozenClock
from duckline.lines.models import Line
from duckline.messaging.models import DomainEvent, Notification
from duckline.runtime import Runtime
from tests.factories import deliver, numbers, pay_on_sandbox, place_order, plan_input, register_and_verify, staff
from tests.provider_fakes import capture_webhooks

ROOT = Path(__file__).resolve().parents[2]
PRICE = 8800

# The auto-renew job, with a sandbox whose answer never comes back: it charges the card (and
# commits that on its side), says so on stdout, and hangs until the test kills the process.
CRASHING_JOB = """
import os, sys, time
from datetime import datetime
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.runtime import Runtime
from duckline.core import jobs

settings = Settings.model_validate_json(os.environ["CRASH_SETTINGS"])
runtime = Runtime(settings, clock=FrozenClock(datetime.fromisoformat(os.environ["CRASH_NOW"])))
charge = runtime.sandbox.create_payment

def charged_then_silent(request):
    answer = charge(request)
    print("charged", request.reference, answer.provider_ref, answer.status.value, flush=True)
    time.sleep(600)
    return answer

runtime.sandbox.create_payment = charged_then_silent
jobs.run(runtime, "auto-renew")
print("finished", flush=True)
"""


def count(runtime: Runtime, table: type[Any], *where: Any) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def expiry(runtime: Runtime, line_id: int) -> datetime:
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, line_id)
        assert line is not None and line.expires_at is not None
        return line.expires_at


def renewals(runtime: Runtime) -> list[Order]:
    with runtime.unit_of_work() as uow:
        return list(uow.session.scalars(select(Order).where(Order.id > 1).order_by(Order.id)))


def run_auto_renew_and_kill_it_after_the_charge(runtime: Runtime) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CRASH_SETTINGS": runtime.settings.model_dump_json(),
        "CRASH_NOW": runtime.clock.now().isoformat(),
    }
    job = subprocess.Popen(  # noqa: S603 (our own script)
        [sys.executable, "-c", CRASHING_JOB], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(60, job.kill)
    watchdog.start()
    try:
        assert job.stdout is not None
        said = job.stdout.readline().split()
        assert said[:1] == ["charged"], (said, job.stderr.read() if job.stderr else "")
        os.kill(job.pid, signal.SIGKILL)  # after the provider charged, before Duckline heard
        assert job.wait(10) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        job.kill()
        job.wait(10)
    assert said[3] == "succeeded"
    return said[1]


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime, clock: FrozenClock) -> dict[str, Any]:
    """A line paid for a month with a saved sandbox card and auto-renew on."""
    numbers(runtime, 1)
    admin, _ = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=PRICE))
    subscriber = register_and_verify(client, runtime, 1)
    order = place_order(client, subscriber, auto_renew=True).json()
    assert pay_on_sandbox(client, order, save=True).status_code == 303
    deliver(runtime, client, clock)
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, subscriber["line"]["id"])
        assert line is not None and line.auto_renew and line.auto_renew_method_id is not None
    return subscriber


@pytest.mark.postgres_only
@pytest.mark.parametrize("truth_from", ["webhook", "reconciliation", "next dunning run"])
def test_a_renewal_charged_by_a_process_killed_before_it_heard_back_is_applied_once_and_never_charged_again(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any], truth_from: str
) -> None:
    line_id = subscriber["line"]["id"]
    period_end = expiry(runtime, line_id)
    first_try = period_end - timedelta(hours=runtime.settings.auto_renew_hours_before)
    clock.set(first_try)
    sandbox = runtime.sandbox
    assert sandbox is not None

    reference = run_auto_renew_and_kill_it_after_the_charge(runtime)

    [renewal] = renewals(runtime)
    assert renewal.kind is OrderKind.RENEWAL and renewal.status is OrderStatus.PAYMENT_PENDING
    with runtime.unit_of_work() as uow:  # what the dead process left: the attempt, under our reference
        [attempt] = uow.session.scalars(select(Payment).where(Payment.order_id == renewal.id)).all()
        assert attempt.reference == reference and attempt.provider_ref is None
        assert attempt.status is PaymentStatus.UNKNOWN
    assert count(runtime, SandboxPayment, SandboxPayment.status == "succeeded") == 2  # charged at the provider

    if truth_from == "webhook":
        assert deliver(runtime, client, clock) == 2  # the provider's notification (sent twice)
    elif truth_from == "reconciliation":
        capture_webhooks(runtime, clock)  # lost on the way
        clock.advance(timedelta(minutes=runtime.settings.reconcile_after_minutes))
        assert jobs.run(runtime, "reconcile")["applied"] == [renewal.id]
    else:
        capture_webhooks(runtime, clock)  # lost on the way
        clock.set(first_try + timedelta(hours=runtime.settings.auto_renew_retry_hours[1]))
        sandbox.available = False  # the provider cannot be asked: nothing new may be charged
        jobs.run(runtime, "auto-renew")
        assert [o.id for o in renewals(runtime)] == [renewal.id]
        assert count(runtime, Payment, Payment.order_id == renewal.id) == 1
        sandbox.available = True
        jobs.run(runtime, "auto-renew")

    [applied] = renewals(runtime)
    assert applied.id == renewal.id and applied.status is OrderStatus.FULFILLED
    renewed_until = expiry(runtime, line_id)
    assert applied.period_start == period_end and applied.period_end == renewed_until > period_end
    for hours in runtime.settings.auto_renew_retry_hours:  # every later dunning slot of that period
        clock.set(first_try + timedelta(hours=hours, minutes=1))
        jobs.run(runtime, "auto-renew")
        clock.advance(timedelta(minutes=runtime.settings.reconcile_after_minutes))
        jobs.run(runtime, "reconcile")
    deliver(runtime, client, clock)
    assert [o.id for o in renewals(runtime)] == [renewal.id]
    assert count(runtime, SandboxPayment) == 2  # the first month and this renewal: charged once each
    assert expiry(runtime, line_id) == renewed_until
    assert count(runtime, DomainEvent, DomainEvent.type.in_(("payment.failed", "auto_renew.failed"))) == 0
    assert count(runtime, Notification, Notification.body.contains("Nothing was charged")) == 0
