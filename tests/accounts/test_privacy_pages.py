"""The portal's payment methods and "Privacy & data" pages as a browser uses them (CSRF forms, the
answers shown on the page), and the closure as staff see it in the console."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from duckline.accounts.roles import Role
from duckline.catalog import service as catalog
from duckline.catalog.rules import Validity
from duckline.core.clock import FrozenClock
from duckline.runtime import Runtime
from tests.accounts.test_account_pages import field, log_in, submit, text
from tests.factories import (
    PASSWORD,
    deliver,
    numbers,
    pay_on_sandbox,
    place_order,
    plan_input,
    register_and_verify,
    staff,
)


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime, clock: FrozenClock) -> dict[str, Any]:
    """Signed in to the portal, with a line renewed by card saved for automatic renewal."""
    numbers(runtime, 3)
    admin, _ = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=8800))
    person = register_and_verify(client, runtime, 1)
    order = place_order(client, person, auto_renew=True).json()
    assert pay_on_sandbox(client, order, save=True).status_code == 303
    deliver(runtime, client, clock)
    log_in(client, person["phone"])
    return person


def test_settings_link_to_both_pages(client: TestClient, subscriber: dict[str, Any]) -> None:
    page = client.get("/settings").text
    assert 'href="/settings/payment-methods"' in page and 'href="/settings/privacy"' in page


def test_removing_the_card_auto_renew_uses_says_auto_renew_is_off(
    client: TestClient, subscriber: dict[str, Any]
) -> None:
    page = client.get("/settings/payment-methods")
    assert page.status_code == 200
    shown = text(page.text)
    assert "Visa •••• 4242" in shown and "12/2034" in shown and "4242424242424242" not in page.text
    method_id = page.text.split('action="/settings/payment-methods/')[1].split("/")[0]

    removed = submit(client, "/settings/payment-methods", f"/settings/payment-methods/{method_id}/remove")

    assert removed.status_code == 200
    shown = text(removed.text)
    assert "Visa •••• 4242 is removed." in shown
    assert "Automatic renewal is off for +852" in shown
    assert "You have no saved payment methods." in shown
    again = submit(client, "/settings/payment-methods", f"/settings/payment-methods/{method_id}/remove")
    assert again.status_code == 404 and "Not found." in text(again.text)


def test_a_form_without_its_token_changes_nothing(client: TestClient, subscriber: dict[str, Any]) -> None:
    page = client.get("/settings/payment-methods").text
    method_id = page.split('action="/settings/payment-methods/')[1].split("/")[0]
    refused = client.post(f"/settings/payment-methods/{method_id}/remove", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    assert "Visa •••• 4242" in text(client.get("/settings/payment-methods").text)


def test_the_privacy_page_states_what_closing_keeps_in_every_language(
    client: TestClient, subscriber: dict[str, Any]
) -> None:
    page = client.get("/settings/privacy")

    assert page.status_code == 200
    shown = text(page.text)
    assert "7 years, as Hong Kong tax law requires (Inland Revenue Ordinance, s.51C)" in shown
    assert "365 days after closing" in shown and "30 days after closing" in shown
    assert "7 年，按香港稅務法例規定（《稅務條例》第51C條）" in shown  # 繁體中文
    assert "7 年，按香港税务法例规定（《税务条例》第51C条）" in shown  # 简体中文
    assert 'id="closing-terms-zh_Hans"' in page.text and 'lang="zh-Hans"' in page.text


def test_the_export_downloads_from_the_page(client: TestClient, subscriber: dict[str, Any]) -> None:
    download = submit(client, "/settings/privacy", "/settings/privacy/export", {"format": "json"})

    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith("attachment;")
    assert json.loads(download.content)["lines"][0]["msisdn"] == subscriber["line"]["msisdn"]

    wrong = submit(client, "/settings/privacy", "/settings/privacy/export", {"format": "json", "password": "nope"})
    assert wrong.status_code == 422
    assert 'id="export_password-problem"' in wrong.text and "The password is wrong." in text(wrong.text)


def test_closing_from_the_page_signs_out_and_staff_see_it(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    unconfirmed = submit(client, "/settings/privacy", "/settings/privacy/close", {"password": PASSWORD})
    assert unconfirmed.status_code == 422 and 'id="close_confirm-problem"' in unconfirmed.text

    closed = submit(client, "/settings/privacy", "/settings/privacy/close", {"password": PASSWORD, "confirm": "yes"})

    assert closed.status_code == 303 and closed.headers["location"] == "/login?closed=1"
    login_page = client.get("/login?closed=1")
    assert "Your account is closed and you are signed out." in text(login_page.text)
    assert client.get("/settings", follow_redirects=False).status_code == 303  # signed out
    refused = client.post(
        "/login",
        data={"phone": subscriber["phone"], "password": PASSWORD, "csrf_token": field(login_page.text, "csrf_token")},
    )
    assert refused.status_code == 401 and "This account is closed and can no longer log in." in text(refused.text)

    console = TestClient(client.app, base_url="http://127.0.0.1")
    staff(runtime, Role.SUPPORT, 2)
    log_in(console, "+85251000002")
    shown = text(console.get(f"/console/subscribers/{subscriber['account']['id']}").text)
    assert "Closed by the subscriber on" in shown and "Sign-in is refused and the lines have ended." in shown
