"""Logging in and out: the signed session cookie and its CSRF token, bearer tokens, rate limits,
and the production refusal of development keys."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner
from pydantic import ValidationError
from sqlalchemy import select

from duckline.accounts.models import ApiToken
from duckline.core.clock import FrozenClock
from duckline.core.config import DEV_SECRET, Settings
from duckline.runtime import Runtime
from duckline.web.app import create_app
from tests.app_pool import pooled_app
from tests.conftest import START
from tests.factories import PASSWORD, hk_mobile, hkid, numbers, register, register_and_verify

COOKIE = "duckline_session"


def login(client: TestClient, phone: str, password: str = PASSWORD) -> Any:
    return client.post("/api/v1/auth/login", json={"phone": phone, "password": password})


def with_cookie(value: str) -> dict[str, str]:
    """Send exactly this session cookie (the client's own jar is emptied first by the caller)."""
    return {"Cookie": f"{COOKIE}={value}"}


def set_cookie_header(response: Any) -> str:
    headers = response.headers.get_list("set-cookie")
    cookies = [h for h in headers if h.startswith(f"{COOKIE}=")]
    assert len(cookies) == 1, headers
    return str(cookies[0])


def assert_auth_required(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "auth_required"


@contextmanager
def client_with(
    settings: Settings, clock: FrozenClock, address: str = "testclient", **update: Any
) -> Iterator[TestClient]:
    """A second app on the same database, built with changed settings."""
    runtime = Runtime(settings.model_copy(update=update), clock=clock)
    try:
        with pooled_app(runtime) as app, TestClient(app, base_url="http://127.0.0.1", client=(address, 50000)) as other:
            yield other
    finally:
        runtime.close()


def test_login_sets_an_httponly_samesite_signed_cookie(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 1)

    response = login(client, subscriber["phone"])
    assert response.status_code == 200, response.text
    assert response.json()["account"]["phone"] == subscriber["phone"]
    assert len(response.json()["csrf_token"]) >= 32
    header = set_cookie_header(response)
    attributes = [part.strip().lower() for part in header.split(";")]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    assert f"max-age={runtime.settings.session_max_age_seconds}" in attributes
    assert "secure" not in attributes  # plain http in test; production is checked below

    cookie = client.cookies[COOKIE]
    me = client.get("/api/v1/me")
    assert me.status_code == 200, me.text
    assert me.json()["phone"] == subscriber["phone"]

    # The cookie is the session token with a signature over it: change anything and it is refused.
    token, _, _ = cookie.rsplit(".", 2)
    client.cookies.clear()
    assert client.get("/api/v1/me", headers=with_cookie(cookie)).status_code == 200
    flipped = ("B" if token[0] != "B" else "C") + cookie[1:]
    assert_auth_required(client.get("/api/v1/me", headers=with_cookie(flipped)))
    assert_auth_required(client.get("/api/v1/me", headers=with_cookie(token)))  # the bare token, unsigned
    forged = TimestampSigner("some-other-key-of-sufficient-length-0000", salt="duckline.session").sign(token)
    assert_auth_required(client.get("/api/v1/me", headers=with_cookie(forged.decode())))
    assert_auth_required(client.get("/api/v1/me"))
    assert client.get("/api/v1/me").headers["www-authenticate"] == "Bearer"


def test_production_cookie_is_secure(client: TestClient, runtime: Runtime, clock: FrozenClock) -> None:
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 1)
    with client_with(runtime.settings, clock, environment="production") as production:
        response = login(production, subscriber["phone"])
        assert response.status_code == 200, response.text
        attributes = [part.strip().lower() for part in set_cookie_header(response).split(";")]
        assert "secure" in attributes and "httponly" in attributes


def test_cookie_requests_that_change_things_need_the_csrf_token(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 3)
    subscriber = register_and_verify(client, runtime, 1)
    line_id = subscriber["line"]["id"]
    other = register_and_verify(client, runtime, 2)
    csrf = login(client, subscriber["phone"]).json()["csrf_token"]
    with TestClient(client.app, base_url="http://127.0.0.1") as other_browser:
        other_csrf = login(other_browser, other["phone"]).json()["csrf_token"]
    assert other_csrf != csrf

    def lines_seen() -> list[dict[str, Any]]:
        listed = client.get("/api/v1/lines")  # GET needs no CSRF token
        assert listed.status_code == 200, listed.text
        return list(listed.json()["items"])

    before = lines_seen()
    assert [(line["id"], line["voicemail"]) for line in before] == [(line_id, False)]

    for headers in ({}, {"X-CSRF-Token": ""}, {"X-CSRF-Token": other_csrf}, {"X-CSRF-Token": csrf[:-1]}):
        patched = client.patch(f"/api/v1/lines/{line_id}/features", json={"voicemail": True}, headers=headers)
        assert patched.status_code == 403, patched.text
        assert patched.json()["error"]["code"] == "csrf_failed"
        opened = client.post("/api/v1/lines", headers=headers)
        assert opened.status_code == 403 and opened.json()["error"]["code"] == "csrf_failed"
    assert lines_seen() == before

    patched = client.patch(
        f"/api/v1/lines/{line_id}/features", json={"voicemail": True}, headers={"X-CSRF-Token": csrf}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["voicemail"] is True
    opened = client.post("/api/v1/lines", headers={"X-CSRF-Token": csrf})
    assert opened.status_code == 201, opened.text
    assert {line["id"]: line["voicemail"] for line in lines_seen()} == {line_id: True, opened.json()["id"]: False}

    # A bearer token is not sent by browsers on their own, so it needs no CSRF token.
    client.cookies.clear()
    by_token = client.patch(
        f"/api/v1/lines/{line_id}/features", json={"caller_id": False}, headers=subscriber["headers"]
    )
    assert by_token.status_code == 200, by_token.text
    assert by_token.json()["caller_id"] is False and by_token.json()["voicemail"] is True


def test_logout_revokes_the_session(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 1)
    csrf = login(client, subscriber["phone"]).json()["csrf_token"]
    cookie = client.cookies[COOKIE]
    assert client.get("/api/v1/auth/session").json()["csrf_token"] == csrf

    refused = client.post("/api/v1/auth/logout")  # logging out is a change too: CSRF token needed
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert client.get("/api/v1/me").status_code == 200

    out = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204, out.text
    cleared = [part.strip().lower() for part in set_cookie_header(out).split(";")]
    assert f"{COOKIE}=" in cleared or 'duckline_session=""' in cleared
    assert "max-age=0" in cleared
    assert COOKIE not in client.cookies
    assert_auth_required(client.get("/api/v1/me"))

    # The old cookie, kept by someone, is dead on the server side too.
    assert_auth_required(client.get("/api/v1/me", headers=with_cookie(cookie)))
    again = client.patch(
        f"/api/v1/lines/{subscriber['line']['id']}/features",
        json={"voicemail": True},
        headers={**with_cookie(cookie), "X-CSRF-Token": csrf},
    )
    assert_auth_required(again)
    # Other credentials of the account are untouched.
    assert client.get("/api/v1/me", headers=subscriber["headers"]).status_code == 200


def test_logout_with_a_bearer_token_revokes_that_token_only(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 1)

    def new_token(name: str) -> dict[str, str]:
        body = {"phone": subscriber["phone"], "password": PASSWORD, "name": name}
        return {"Authorization": f"Bearer {client.post('/api/v1/auth/tokens', json=body).json()['token']}"}

    laptop, script = new_token("laptop"), new_token("script")
    csrf = login(client, subscriber["phone"]).json()["csrf_token"]  # a browser session too

    out = client.post("/api/v1/auth/logout", headers=laptop)
    assert out.status_code == 204, out.text
    assert_auth_required(client.get("/api/v1/me", headers=laptop))
    assert_auth_required(client.get(f"/api/v1/lines/{subscriber['line']['id']}/status", headers=laptop))
    assert_auth_required(client.post("/api/v1/auth/logout", headers=laptop))
    with runtime.unit_of_work() as uow:
        revoked = uow.session.scalars(select(ApiToken.name).where(ApiToken.revoked_at.is_not(None))).all()
        assert revoked == ["laptop"]

    # The account's other tokens and its browser session go on working.
    for headers in (script, subscriber["headers"]):
        assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.get("/api/v1/auth/session").json()["csrf_token"] == csrf


def test_a_session_ends_after_its_maximum_age(client: TestClient, runtime: Runtime, clock: FrozenClock) -> None:
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 1)
    assert login(client, subscriber["phone"]).status_code == 200
    clock.advance(timedelta(seconds=runtime.settings.session_max_age_seconds - 60))
    assert client.get("/api/v1/me").status_code == 200
    clock.advance(timedelta(seconds=120))
    assert_auth_required(client.get("/api/v1/me"))


def test_wrong_password_gets_the_same_answer_as_an_unknown_phone(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 1)
    answers = [
        login(client, subscriber["phone"], "not the password at all"),
        login(client, hk_mobile(99)),  # a valid number nobody registered
        login(client, "not a phone number"),
        client.post("/api/v1/auth/tokens", json={"phone": subscriber["phone"], "password": "wrong password!"}),
        client.post("/api/v1/auth/tokens", json={"phone": hk_mobile(99), "password": PASSWORD}),
    ]
    for answer in answers:
        assert answer.status_code == 401, answer.text
        assert answer.json() == answers[0].json()
        assert answer.json()["error"]["code"] == "login_failed"
        assert answer.json()["error"]["field"] is None
        assert "set-cookie" not in answer.headers
    assert COOKIE not in client.cookies


def test_unverified_account_cannot_log_in(client: TestClient, runtime: Runtime) -> None:
    phone = hk_mobile(3)
    assert register(client, phone, hkid(3)).status_code == 201
    refused = login(client, phone)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "account_not_verified"
    assert "set-cookie" not in refused.headers
    token = client.post("/api/v1/auth/tokens", json={"phone": phone, "password": PASSWORD})
    assert token.status_code == 409 and token.json()["error"]["code"] == "account_not_verified"
    # Without the right password the account's existence is not revealed.
    wrong = login(client, phone, "not the password at all")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "login_failed"
    with runtime.unit_of_work() as uow:
        assert uow.session.scalars(select(ApiToken)).all() == []


def test_bearer_tokens_work_until_they_expire(client: TestClient, runtime: Runtime, clock: FrozenClock) -> None:
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 1)
    response = client.post(
        "/api/v1/auth/tokens", json={"phone": subscriber["phone"], "password": PASSWORD, "name": "my script"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    ttl = timedelta(days=runtime.settings.api_token_ttl_days)
    assert body["token_type"] == "bearer"
    assert body["expires_at"].replace("Z", "+00:00") == (START + ttl).isoformat()
    headers = {"Authorization": f"Bearer {body['token']}"}
    with runtime.unit_of_work() as uow:
        stored = uow.session.scalars(select(ApiToken).where(ApiToken.name == "my script")).one()
        assert body["token"] not in stored.token_hash  # only a hash is kept

    assert client.get("/api/v1/me", headers=headers).json()["phone"] == subscriber["phone"]
    assert client.get("/api/v1/lines", headers=headers).status_code == 200
    assert_auth_required(client.get("/api/v1/me", headers={"Authorization": "Bearer not-a-token"}))
    assert_auth_required(client.get("/api/v1/me", headers={"Authorization": f"Basic {body['token']}"}))

    clock.advance(ttl - timedelta(minutes=1))
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    clock.advance(timedelta(minutes=2))
    assert_auth_required(client.get("/api/v1/me", headers=headers))
    assert_auth_required(client.get(f"/api/v1/lines/{subscriber['line']['id']}/status", headers=headers))


def test_login_is_rate_limited_even_with_the_right_password(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 1)
    with client_with(runtime.settings, clock, login_rate_limit="3/minute") as limited:
        for _ in range(3):
            assert login(limited, subscriber["phone"], "not the password at all").status_code == 401
        fourth = login(limited, subscriber["phone"])
        assert fourth.status_code == 429, fourth.text
        assert fourth.json()["error"]["code"] == "rate_limited"
        assert "set-cookie" not in fourth.headers
        token = limited.post("/api/v1/auth/tokens", json={"phone": subscriber["phone"], "password": PASSWORD})
        assert token.status_code == 429 and token.json()["error"]["code"] == "rate_limited"
        # The address is limited too: another phone from it is refused as well.
        assert login(limited, hk_mobile(50)).status_code == 429


def test_login_limit_per_phone_holds_across_addresses(client: TestClient, runtime: Runtime, clock: FrozenClock) -> None:
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 1)
    limited_runtime = Runtime(runtime.settings.model_copy(update={"login_rate_limit": "3/minute"}), clock=clock)
    try:
        app = create_app(runtime=limited_runtime)
        answers = []
        for n in range(4):
            with TestClient(app, base_url="http://127.0.0.1", client=(f"10.0.0.{n + 1}", 50000)) as from_address:
                answers.append(login(from_address, subscriber["phone"], "not the password at all"))
        assert [a.status_code for a in answers] == [401, 401, 401, 429]
    finally:
        limited_runtime.close()


def test_login_limit_per_phone_counts_the_number_not_how_it_is_written(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    numbers(runtime, 1)
    subscriber = register_and_verify(client, runtime, 1)
    national = subscriber["phone"].removeprefix("+852")
    spellings = [subscriber["phone"], national, f"{national[:4]} {national[4:]}", f"+852 {national}"]
    limited_runtime = Runtime(runtime.settings.model_copy(update={"login_rate_limit": "3/minute"}), clock=clock)
    try:
        app = create_app(runtime=limited_runtime)
        answers = []
        for n, spelling in enumerate(spellings):
            with TestClient(app, base_url="http://127.0.0.1", client=(f"10.0.1.{n + 1}", 50000)) as from_address:
                answers.append(login(from_address, spelling, "not the password at all"))
        assert [a.status_code for a in answers] == [401, 401, 401, 429]
    finally:
        limited_runtime.close()


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No DUCKLINE_* variables and no .env file: only what the test passes counts."""
    for name in ("DUCKLINE_SECRET_KEY", "DUCKLINE_DATA_KEY", "DUCKLINE_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize(
    "keys",
    [
        {},
        {"secret_key": DEV_SECRET, "data_key": DEV_SECRET},
        {"secret_key": "random"},  # data key left at the development default
        {"data_key": "random"},  # secret key left at the development default
        {"secret_key": "random", "data_key": "short"},
        {"secret_key": "short", "data_key": "random"},
        {"secret_key": "", "data_key": "random"},
    ],
)
def test_production_refuses_default_or_short_keys(keys: dict[str, str]) -> None:
    values = {
        name: secrets.token_urlsafe(30) if kind == "random" else "k" * 31 if kind == "short" else kind
        for name, kind in keys.items()
    }
    with pytest.raises(ValidationError) as raised:
        Settings(environment="production", **values)
    assert "DUCKLINE_" in str(raised.value)
    # The same keys are fine outside production.
    assert Settings(environment="development", **values).environment == "development"


@pytest.mark.usefixtures("clean_environment")
def test_production_accepts_long_random_keys() -> None:
    secret_key, data_key = secrets.token_urlsafe(30), secrets.token_urlsafe(30)
    assert len(secret_key) == len(data_key) == 40
    settings = Settings(environment="production", secret_key=secret_key, data_key=data_key)
    assert settings.secret_key == secret_key and settings.data_key == data_key


REDIS_URL = os.environ.get("DUCKLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def test_processes_sharing_redis_share_the_login_limit(runtime: Runtime, clock: FrozenClock) -> None:
    """Two server processes (two runtimes) count against one limit when it lives in Redis, so
    `serve --workers 2` does not double what an attacker may try."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.ConnectionError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {REDIS_URL}")
    shared = {
        "rate_limit_storage": REDIS_URL,
        "rate_limit_prefix": f"duckline-test-{secrets.token_hex(6)}",  # nothing left from another run
        "login_rate_limit": "3/minute",
    }
    first, second = (Runtime(runtime.settings.model_copy(update=shared), clock=clock) for _ in range(2))
    try:
        hits = [first.rate_limits.hit("login", "phone:1"), second.rate_limits.hit("login", "phone:1")]
        hits += [first.rate_limits.hit("login", "phone:1"), second.rate_limits.hit("login", "phone:1")]
        assert hits == [True, True, True, False]
        assert second.rate_limits.hit("login", "phone:2")  # another key has its own count
    finally:
        first.close()
        second.close()
