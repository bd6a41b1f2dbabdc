"""Temporary lockout: consecutive wrong passwords lock an account's sign-in for a while (on top of
the per-minute rate limits), tell the owner, and a reset by SMS code unlocks it at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts import service as accounts
from duckline.accounts.models import Account
from duckline.core.clock import FrozenClock
from duckline.core.errors import DomainError
from duckline.core.protection import Passwords
from duckline.messaging.models import Notification
from duckline.runtime import Runtime
from duckline.staff.models import AuditEntry
from tests.factories import PASSWORD, last_code, numbers, register_and_verify

WRONG = "not the password at all"
NEW_PASSWORD = "a brand new passphrase"


def login(client: TestClient, phone: str, password: str = PASSWORD, **headers: str) -> Any:
    return client.post("/api/v1/auth/login", json={"phone": phone, "password": password}, headers=headers)


def state(runtime: Runtime, phone: str) -> tuple[int, Any]:
    with runtime.unit_of_work() as uow:
        account = uow.session.scalars(select(Account).where(Account.phone == phone)).one()
        return account.failed_logins, account.locked_until


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    numbers(runtime, 1)
    return register_and_verify(client, runtime, 1)


def test_the_fifth_wrong_password_locks_sign_in_and_tells_the_owner(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    phone = subscriber["phone"]
    limit, minutes = runtime.settings.login_lockout_failures, runtime.settings.login_lockout_minutes
    answers = [login(client, phone, WRONG) for _ in range(limit)]

    assert [a.json()["error"]["code"] for a in answers] == ["login_failed"] * (limit - 1) + ["login_locked"]
    assert answers[-1].status_code == 429 and answers[-1].headers["Retry-After"] == str(minutes * 60)
    assert state(runtime, phone) == (0, clock.now() + timedelta(minutes=minutes))

    right = login(client, phone, **{"Accept-Language": "zh-HK"})  # even the right password waits
    assert right.status_code == 429 and "set-cookie" not in right.headers
    assert right.headers["Retry-After"] == str(minutes * 60)
    assert right.json()["error"]["code"] == "login_locked"
    assert f"{minutes}" in right.json()["error"]["message"] and "密碼" in right.json()["error"]["message"]
    with runtime.unit_of_work() as uow:
        told = uow.session.scalars(select(Notification).where(Notification.template == "login_locked")).all()
        assert [(n.channel, n.recipient) for n in told] == [("sms", phone)]
        assert str(limit) in told[0].body
        actions = uow.session.scalars(select(AuditEntry.action).where(AuditEntry.action == "account.login_locked"))
        assert list(actions) == ["account.login_locked"]

    clock.advance(timedelta(minutes=minutes - 1))
    assert login(client, phone).status_code == 429
    clock.advance(timedelta(minutes=1))
    assert login(client, phone).status_code == 200
    assert state(runtime, phone)[0] == 0


def test_a_good_password_starts_the_count_again(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    phone = subscriber["phone"]
    limit = runtime.settings.login_lockout_failures
    for _ in range(limit - 1):
        assert login(client, phone, WRONG).status_code == 401
    assert login(client, phone).status_code == 200
    for _ in range(limit - 1):
        assert login(client, phone, WRONG).status_code == 401

    assert state(runtime, phone) == (limit - 1, None)
    assert login(client, phone).status_code == 200


def test_a_reset_by_sms_code_unlocks_at_once(client: TestClient, runtime: Runtime, subscriber: dict[str, Any]) -> None:
    phone = subscriber["phone"]
    for _ in range(runtime.settings.login_lockout_failures):
        login(client, phone, WRONG)
    assert login(client, phone).status_code == 429

    assert client.post("/api/v1/auth/password-reset", json={"phone": phone}).status_code == 202
    confirmed = client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"phone": phone, "code": last_code(runtime, phone), "new_password": NEW_PASSWORD},
    )

    assert confirmed.status_code == 204, confirmed.text
    assert state(runtime, phone) == (0, None)
    assert login(client, phone, NEW_PASSWORD).status_code == 200


def test_racing_wrong_passwords_are_all_counted(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    """Each attempt counts in one UPDATE, so attempts at the same moment lose no count."""
    phone = subscriber["phone"]
    racers = runtime.settings.login_lockout_failures - 1

    def attempt(_: int) -> str:
        try:
            accounts.sign_in(runtime, phone, WRONG, "test", None)
        except DomainError as error:
            return error.code
        return "signed in"

    with ThreadPoolExecutor(racers) as pool:
        answers = list(pool.map(attempt, range(racers)))

    assert answers == ["login_failed"] * racers
    assert state(runtime, phone) == (racers, None)


class HeldPasswords(Passwords):
    """The real argon2 check, counted; checks of the wrong password wait until released, so a
    test can look at the account while a burst of wrong guesses is being verified."""

    def __init__(self, real: Passwords) -> None:
        self._hasher, self._dummy = real._hasher, real._dummy
        self.wrong_checks = 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def verify(self, hashed: str | None, password: str) -> bool:
        if password == WRONG:
            with self._lock:
                self.wrong_checks += 1
            self.release.wait(timeout=30)
        return super().verify(hashed, password)


@pytest.fixture
def held(runtime: Runtime) -> Iterator[HeldPasswords]:
    real = runtime.passwords
    runtime.passwords = held = HeldPasswords(real)
    yield held
    held.release.set()
    runtime.passwords = real


def burst(client: TestClient, phone: str, held: HeldPasswords, size: int) -> tuple[ThreadPoolExecutor, list[Any]]:
    """`size` wrong passwords at once, over HTTP; returns when each is either answered or
    being verified (and held there)."""
    pool = ThreadPoolExecutor(size)
    start = threading.Barrier(size)

    def attempt(_: int) -> Any:
        start.wait()
        return login(client, phone, WRONG)

    futures = [pool.submit(attempt, i) for i in range(size)]
    deadline = time.monotonic() + 30
    while held.wrong_checks + sum(f.done() for f in futures) < size:
        assert time.monotonic() < deadline, "the burst did not settle"
        time.sleep(0.01)
    return pool, futures


@pytest.mark.postgres_only
def test_a_burst_of_wrong_passwords_gets_no_more_checks_than_the_limit(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any], held: HeldPasswords
) -> None:
    """Each attempt is counted before its password is checked: with 20 at once, only `limit`
    are checked at all, and the others are refused as locked without a check."""
    phone, limit = subscriber["phone"], runtime.settings.login_lockout_failures
    pool, futures = burst(client, phone, held, 20)
    assert held.wrong_checks == limit
    held.release.set()
    with pool:
        answers = [f.result() for f in futures]

    codes = sorted(a.json()["error"]["code"] for a in answers)
    assert codes == ["login_failed"] * (limit - 1) + ["login_locked"] * (20 - limit + 1)
    assert held.wrong_checks == limit
    with runtime.unit_of_work() as uow:
        told = uow.session.scalars(select(Notification).where(Notification.template == "login_locked")).all()
        assert len(told) == 1
    assert state(runtime, phone)[1] is not None


@pytest.mark.postgres_only
def test_the_right_password_during_a_burst_of_wrong_ones_is_refused(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any], held: HeldPasswords
) -> None:
    """The guesses in flight already count: the right password that follows them waits for the
    lock to end like any other attempt."""
    phone = subscriber["phone"]
    pool, futures = burst(client, phone, held, 20)

    right = login(client, phone)  # while the wrong ones are still being verified
    held.release.set()
    with pool:
        [f.result() for f in futures]

    assert right.status_code == 429, right.text
    assert right.json()["error"]["code"] == "login_locked" and "set-cookie" not in right.headers
    assert login(client, phone).status_code == 429
