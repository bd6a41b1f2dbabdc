"""Risky changes need a fresh proof of the account holder, bound to the session that gave it;
the password changes while signed in; sessions and tokens are listed and end at once when
revoked. Over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.models import Account, ApiToken, ContactChange
from duckline.core import i18n
from duckline.core.clock import FrozenClock
from duckline.core.errors import ErrorCode
from duckline.messaging.models import Notification
from duckline.runtime import RateLimits, Runtime
from duckline.staff.models import AuditEntry
from tests.factories import PASSWORD, last_code, numbers, register_and_verify

NEW_PASSWORD = "a-new-password-2026"


@pytest.fixture
def holder(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    """A verified subscriber reading 简体中文, with a bearer token."""
    numbers(runtime, 2)
    person = register_and_verify(client, runtime, 1)
    assert client.patch("/api/v1/me", json={"language": "zh_Hans"}, headers=person["headers"]).status_code == 200
    return person


def account(runtime: Runtime, account_id: int) -> Account:
    with runtime.unit_of_work() as uow:
        found = uow.session.get(Account, account_id)
        assert found is not None
        return found


def another_token(client: TestClient, phone: str, password: str = PASSWORD, name: str = "laptop") -> dict[str, str]:
    response = client.post(
        "/api/v1/auth/tokens",
        json={"phone": phone, "password": password, "name": name},
        headers={"User-Agent": f"{name}-client/1.0"},
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def refused_for_proof(response: Any) -> bool:
    error = response.json()["error"]
    expected = i18n.gettext("zh_Hans", ErrorCode.REAUTHENTICATION_REQUIRED.message)
    assert expected != ErrorCode.REAUTHENTICATION_REQUIRED.message
    return bool(
        response.status_code == 403 and error["code"] == "reauthentication_required" and error["message"] == expected
    )


def notifications_to(runtime: Runtime, recipient: str) -> list[Notification]:
    with runtime.unit_of_work() as uow:
        return list(uow.session.scalars(select(Notification).where(Notification.recipient == recipient)).all())


def test_changes_without_a_fresh_proof_are_refused_and_change_nothing(
    client: TestClient, runtime: Runtime, holder: dict[str, Any]
) -> None:
    headers, account_id = holder["headers"], holder["account"]["id"]
    before = account(runtime, account_id)

    email = client.post("/api/v1/me/email", json={"email": "wong@example.com"}, headers=headers)
    phone = client.post("/api/v1/me/phone", json={"phone": "+85261009999"}, headers=headers)
    password = client.post("/api/v1/me/password", json={"new_password": NEW_PASSWORD}, headers=headers)
    wrong = client.post(
        "/api/v1/me/email", json={"email": "wong@example.com", "password": "not-it-at-all"}, headers=headers
    )

    assert refused_for_proof(email) and refused_for_proof(phone) and refused_for_proof(password)
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "password_wrong"
    assert wrong.json()["error"]["message"] == i18n.gettext("zh_Hans", "The password is wrong.")
    after = account(runtime, account_id)
    assert (after.email, after.phone, after.password_hash) == (before.email, before.phone, before.password_hash)
    with runtime.unit_of_work() as uow:
        assert uow.session.scalars(select(ContactChange)).all() == []
    assert notifications_to(runtime, "wong@example.com") == [] and notifications_to(runtime, "+85261009999") == []
    assert client.post("/api/v1/auth/tokens", json={"phone": holder["phone"], "password": PASSWORD}).status_code == 201


def test_a_password_proof_lets_this_session_change_the_email_for_five_minutes(
    client: TestClient, runtime: Runtime, clock: FrozenClock, holder: dict[str, Any]
) -> None:
    headers = holder["headers"]
    proved = client.post("/api/v1/me/reauthenticate", json={"password": PASSWORD}, headers=headers)
    assert proved.status_code == 200, proved.text
    other = another_token(client, holder["phone"])

    elsewhere = client.post("/api/v1/me/email", json={"email": "wong@example.com"}, headers=other)
    clock.advance(timedelta(minutes=4))
    here = client.post("/api/v1/me/email", json={"email": "wong@example.com"}, headers=headers)

    assert refused_for_proof(elsewhere)  # the proof belongs to the session that gave it
    assert here.status_code == 202, here.text
    clock.advance(timedelta(minutes=1, seconds=1))
    expired = client.post("/api/v1/me/email", json={"email": "lee@example.com"}, headers=headers)
    assert refused_for_proof(expired)
    with runtime.unit_of_work() as uow:
        assert [c.new_value for c in uow.session.scalars(select(ContactChange)).all()] == ["wong@example.com"]
        entry = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "account.reauthenticated")).one()
    assert entry.detail["via"] == "password" and PASSWORD not in str(entry.detail)


def test_a_code_to_the_current_phone_proves_it_and_the_old_number_is_still_told(
    client: TestClient, runtime: Runtime, holder: dict[str, Any]
) -> None:
    headers = holder["headers"]
    assert client.post("/api/v1/me/reauthenticate/code", headers=headers).status_code == 202
    code = last_code(runtime, holder["phone"])
    wrong = client.post(
        "/api/v1/me/reauthenticate", json={"code": "000000" if code != "000000" else "111111"}, headers=headers
    )
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "otp_invalid"
    assert refused_for_proof(client.post("/api/v1/me/phone", json={"phone": "+85261009999"}, headers=headers))

    assert client.post("/api/v1/me/reauthenticate", json={"code": code}, headers=headers).status_code == 200
    sent = client.post("/api/v1/me/phone", json={"phone": "+85261009999"}, headers=headers)
    assert sent.status_code == 202, sent.text
    done = client.post("/api/v1/me/phone/verify", json={"code": last_code(runtime, "+85261009999")}, headers=headers)

    assert done.status_code == 200 and done.json()["phone"] == "+85261009999"
    told = [n for n in notifications_to(runtime, holder["phone"]) if n.template == "phone_changed"]
    assert len(told) == 1
    with runtime.unit_of_work() as uow:
        entry = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "account.phone_changed")).one()
    assert entry.detail == {"old": "+85261000001", "new": "+85261009999"}
    used_again = client.post("/api/v1/me/reauthenticate", json={"code": code}, headers=headers)
    assert used_again.status_code == 422  # a code proves once


def test_changing_the_password_signs_out_every_other_session_at_once(
    client: TestClient, runtime: Runtime, holder: dict[str, Any]
) -> None:
    headers = holder["headers"]
    other = another_token(client, holder["phone"])
    assert client.get("/api/v1/me", headers=other).status_code == 200
    weak = client.post(
        "/api/v1/me/password", json={"new_password": "short", "current_password": PASSWORD}, headers=headers
    )
    assert weak.status_code == 422 and weak.json()["error"]["code"] == "password_too_weak"

    changed = client.post(
        "/api/v1/me/password", json={"new_password": NEW_PASSWORD, "current_password": PASSWORD}, headers=headers
    )

    assert changed.status_code == 200 and changed.json() == {"sessions_revoked": 1}
    assert client.get("/api/v1/me", headers=other).status_code == 401
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    old = client.post("/api/v1/auth/tokens", json={"phone": holder["phone"], "password": PASSWORD})
    assert old.status_code == 401
    assert (
        client.post("/api/v1/auth/tokens", json={"phone": holder["phone"], "password": NEW_PASSWORD}).status_code == 201
    )
    told = [n for n in notifications_to(runtime, holder["phone"]) if n.template == "password_changed"]
    assert len(told) == 1 and "密码" in told[0].body
    with runtime.unit_of_work() as uow:
        entry = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "account.password_changed")).one()
    assert entry.detail == {"via": "password", "sessions_revoked": 1}


def test_a_fresh_proof_stands_in_for_the_current_password(
    client: TestClient, runtime: Runtime, holder: dict[str, Any]
) -> None:
    headers = holder["headers"]
    assert client.post("/api/v1/me/reauthenticate/code", headers=headers).status_code == 202
    code = last_code(runtime, holder["phone"])
    assert client.post("/api/v1/me/reauthenticate", json={"code": code}, headers=headers).status_code == 200

    changed = client.post("/api/v1/me/password", json={"new_password": NEW_PASSWORD}, headers=headers)

    assert changed.status_code == 200
    assert (
        client.post("/api/v1/auth/tokens", json={"phone": holder["phone"], "password": NEW_PASSWORD}).status_code == 201
    )


def test_sessions_are_listed_and_a_revoked_one_stops_working_at_once(
    client: TestClient, runtime: Runtime, clock: FrozenClock, holder: dict[str, Any]
) -> None:
    headers = holder["headers"]
    laptop = another_token(client, holder["phone"], name="laptop")
    phone = another_token(client, holder["phone"], name="phone")
    clock.advance(timedelta(minutes=2))
    assert client.get("/api/v1/me", headers=laptop).status_code == 200

    listed = client.get("/api/v1/me/sessions", headers=headers).json()

    assert [s["current"] for s in listed] == [True, False, False]
    by_name = {s["name"]: s for s in listed}
    assert by_name["laptop"]["user_agent"] == "laptop-client/1.0" and by_name["laptop"]["kind"] == "api"
    assert by_name["laptop"]["last_used_at"] is not None and by_name["phone"]["last_used_at"] is None

    assert client.delete(f"/api/v1/me/sessions/{by_name['laptop']['id']}", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=laptop).status_code == 401
    assert client.get("/api/v1/me", headers=phone).status_code == 200

    kept = client.post("/api/v1/me/sessions/revoke-others", headers=headers)
    assert kept.status_code == 200 and kept.json() == {"revoked": 1}
    assert client.get("/api/v1/me", headers=phone).status_code == 401
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert [s["current"] for s in client.get("/api/v1/me/sessions", headers=headers).json()] == [True]


def test_another_accounts_session_cannot_be_revoked(
    client: TestClient, runtime: Runtime, holder: dict[str, Any]
) -> None:
    stranger = register_and_verify(client, runtime, 2)
    with runtime.unit_of_work() as uow:
        theirs = uow.session.scalars(select(ApiToken.id).where(ApiToken.account_id == stranger["account"]["id"])).one()

    response = client.delete(f"/api/v1/me/sessions/{theirs}", headers=holder["headers"])

    assert response.status_code == 404
    assert client.get("/api/v1/me", headers=stranger["headers"]).status_code == 200


def test_a_browser_session_keeps_its_proof_and_the_others_end(
    client: TestClient, runtime: Runtime, holder: dict[str, Any]
) -> None:
    """The portal's cookie session (with CSRF) works the same: revoke-others keeps the caller."""
    login = client.post("/api/v1/auth/login", json={"phone": holder["phone"], "password": PASSWORD})
    csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
    listed = client.get("/api/v1/me/sessions", headers=csrf).json()
    assert listed[0]["current"] and listed[0]["kind"] == "browser"

    assert client.post("/api/v1/me/sessions/revoke-others", headers=csrf).json() == {"revoked": 1}
    assert client.get("/api/v1/me", headers=holder["headers"]).status_code == 401
    assert client.get("/api/v1/me").status_code == 200


def test_password_proofs_are_rate_limited_and_count_towards_the_lock(
    client: TestClient, runtime: Runtime, holder: dict[str, Any]
) -> None:
    headers = holder["headers"]
    for _ in range(runtime.settings.login_lockout_failures - 1):
        wrong = client.post("/api/v1/me/reauthenticate", json={"password": "guess-guess-guess"}, headers=headers)
        assert wrong.status_code == 422
    locked = client.post("/api/v1/me/reauthenticate", json={"password": "guess-guess-guess"}, headers=headers)
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "login_locked"
    right_but_locked = client.post("/api/v1/me/reauthenticate", json={"password": PASSWORD}, headers=headers)
    assert right_but_locked.status_code == 429

    runtime.rate_limits = RateLimits(runtime.settings.model_copy(update={"otp_rate_limit": "2/minute"}))
    answers = [client.post("/api/v1/me/reauthenticate", json={"code": "123456"}, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers][-1] == 429 and answers[-1].json()["error"]["code"] == "rate_limited"
