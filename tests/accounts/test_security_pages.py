"""Settings › Security as a browser uses it: the proof asked for before a contact change, the
password form, the list of sessions with sign-out, all with CSRF tokens and on 简体中文 pages."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.models import Account, ContactChange
from duckline.core import i18n
from duckline.runtime import Runtime
from duckline.web.portal import rendering
from tests.accounts.test_account_pages import account_row, log_in, submit, text
from tests.factories import PASSWORD, last_code, numbers, register_and_verify

NEW_PASSWORD = "a-new-password-2026"


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    numbers(runtime, 2)
    person = register_and_verify(client, runtime, 1)
    with runtime.unit_of_work() as uow:
        uow.session.scalars(select(Account).where(Account.phone == person["phone"])).one().language = "zh_Hans"
    log_in(client, person["phone"])
    return person


def zh(message: str, **params: Any) -> str:
    translated = i18n.gettext("zh_Hans", message)
    assert translated != message
    return translated.format(**params) if params else translated


def test_the_pages_are_fully_translated(client: TestClient, subscriber: dict[str, Any]) -> None:
    rendering.missing_translations = set()
    try:
        client.get("/settings/security")
        client.get("/settings")
        missing = rendering.missing_translations
    finally:
        rendering.missing_translations = None
    assert missing == set()


def test_an_email_change_asks_for_the_password_first(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    refused = submit(client, "/settings", "/settings/email", {"email": "wong@example.com"})

    assert refused.status_code == 403
    problem = re.search(r'<p class="field-error" id="email-password-problem">([^<]*)</p>', refused.text)
    assert problem and text(problem.group(1)) == zh(
        "For your security, confirm it is you first: enter your password, or a code we send to your current number."
    )
    wrong = submit(client, "/settings", "/settings/email", {"email": "wong@example.com", "password": "nope-nope-nope"})
    assert wrong.status_code == 422 and zh("The password is wrong.") in text(wrong.text)
    with runtime.unit_of_work() as uow:
        assert uow.session.scalars(select(ContactChange)).all() == []

    sent = submit(client, "/settings", "/settings/email", {"email": "wong@example.com", "password": PASSWORD})

    assert sent.headers["location"] == "/settings?saved=email_code_sent"
    page = client.get("/settings").text
    assert 'id="email-code"' in page
    assert 'name="password"' not in page  # the session proved it a moment ago: no second ask


def test_a_code_to_the_current_number_proves_it_too(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    sent = submit(client, "/settings/security", "/settings/security/code")
    assert sent.headers["location"].startswith("/settings/security?saved=code_sent")
    page = client.get("/settings/security").text
    assert 'id="confirm-code"' in page

    confirmed = submit(
        client, "/settings/security", "/settings/security/confirm", {"code": last_code(runtime, subscriber["phone"])}
    )

    assert confirmed.headers["location"] == "/settings/security?saved=confirmed"
    assert zh("Confirmed") in text(client.get("/settings/security").text)
    changed = submit(client, "/settings", "/settings/phone", {"phone": "+852 6100 0077"})
    assert changed.headers["location"] == "/settings?saved=phone_code_sent"


def test_changing_the_password_keeps_this_session_and_ends_the_others(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    other = subscriber["headers"]  # the API token made at registration
    differ = submit(
        client,
        "/settings/security",
        "/settings/security/password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "repeat_password": "something-else"},
    )
    assert differ.status_code == 422 and zh("The two new passwords are not the same.") in text(differ.text)
    before = account_row(runtime, subscriber["phone"]).password_hash

    changed = submit(
        client,
        "/settings/security",
        "/settings/security/password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "repeat_password": NEW_PASSWORD},
    )

    assert changed.headers["location"] == "/settings/security?saved=password"
    assert account_row(runtime, subscriber["phone"]).password_hash != before
    assert client.get("/api/v1/me", headers=other).status_code == 401
    assert zh("Your password is changed. Every other session was signed out.") in text(
        client.get(changed.headers["location"]).text
    )


def test_sessions_are_listed_and_one_is_signed_out(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    page = client.get("/settings/security").text
    assert zh("This session") in text(page)
    revoke = re.findall(r'action="(/settings/security/sessions/\d+/revoke)"', page)
    assert len(revoke) == 1  # the API token; the current session is not offered

    done = submit(client, "/settings/security", revoke[0])

    assert done.headers["location"].startswith("/settings/security?saved=revoked")
    assert client.get("/api/v1/me", headers=subscriber["headers"]).status_code == 401
    after = client.get("/settings/security").text
    assert "/revoke" not in after.replace("/revoke-others", "") and zh("No other session is signed in.") in text(after)
    assert client.get("/settings").status_code == 200  # still signed in here
