"""Temporary lockout: consecutive wrong passwords lock an account's sign-in for a while (on top of
the per-minute rate limits), tell the owner, and a reset by SMS code unlocks it at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.adapters.db.tables import Account, AuditEntry, Notification
from duckline.clock import FrozenClock
from duckline.errors import DomainError
from duckline.runtime import Runtime
from duckline.services import accounts
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
    assert answers[-1].status_code == 429
    assert state(runtime, phone) == (0, clock.now() + timedelta(minutes=minutes))

    right = login(client, phone, **{"Accept-Language": "zh-HK"})  # even the right password waits
    assert right.status_code == 429 and "set-cookie" not in right.headers
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
            with runtime.unit_of_work() as uow:
                accounts.authenticate(uow, phone, WRONG)
        except DomainError as error:
            return error.code
        return "signed in"

    with ThreadPoolExecutor(racers) as pool:
        answers = list(pool.map(attempt, range(racers)))

    assert answers == ["login_failed"] * racers
    assert state(runtime, phone) == (racers, None)
