"""The console's delivery attempts over HTTP: support and administrators see the latest tries and
one item's tries, in their language; finance and subscribers get 403, nobody signed in goes to log in."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from duckline.runtime import Runtime
from duckline.web.portal import rendering
from tests.staff import test_console
from tests.staff.test_console import browser, csrf, text

world = test_console.world


def attempt_rows(page: str) -> list[str]:
    return re.findall(r'<tr id="attempt-\d+" data-outcome="([a-z]+)"', page)


def test_support_sees_the_tries_and_an_items_tries(client: TestClient, runtime: Runtime, world: dict[str, Any]) -> None:
    support = browser(client, runtime, world["phones"]["support"])
    page = support.get("/console/deliveries")
    assert page.status_code == 200, page.text
    assert 'href="/console/deliveries" aria-current="page"' in page.text  # in the menu, as the page shown
    assert attempt_rows(page.text) and set(attempt_rows(page.text)) <= {"sent"}  # the registration's code
    item = re.search(r'href="(/console/deliveries/notification/\d+)"', page.text)
    assert item is not None
    shown = support.get(item.group(1))
    assert shown.status_code == 200
    assert "SMS #" in text(shown.text) and "Delivered" in text(shown.text)
    assert attempt_rows(shown.text) == ["sent"]

    assert attempt_rows(support.get("/console/deliveries?kind=webhook").text) == []
    assert attempt_rows(support.get("/console/deliveries?kind=sms&outcome=sent").text)
    refused = support.get("/console/deliveries?kind=fax")
    assert refused.status_code == 422 and 'name="kind" aria-invalid="true"' in refused.text
    assert support.get("/console/deliveries/notification/999999").status_code == 404
    assert support.get("/console/deliveries/fax/1").status_code == 404


def test_the_page_is_in_the_readers_language(
    client: TestClient, runtime: Runtime, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = browser(client, runtime, world["phones"]["admin"])
    missing: set[tuple[str, str]] = set()
    monkeypatch.setattr(rendering, "missing_translations", missing)
    for language in ("zh_Hant", "zh_Hans"):
        switched = admin.post("/language", data={"language": language, "csrf_token": csrf(runtime, admin), "next": "/"})
        assert switched.status_code == 200
        page = admin.get("/console/deliveries")
        assert page.status_code == 200
        item = re.search(r'href="(/console/deliveries/notification/\d+)"', page.text)
        assert item is not None and admin.get(item.group(1)).status_code == 200
    assert "發送記錄" in page.text or "发送记录" in page.text
    assert missing == set()


def test_finance_and_subscribers_are_refused(client: TestClient, runtime: Runtime, world: dict[str, Any]) -> None:
    finance = browser(client, runtime, world["phones"]["finance"])
    assert finance.get("/console/deliveries").status_code == 403
    assert finance.get("/console/deliveries/notification/1").status_code == 403
    assert 'href="/console/deliveries"' not in finance.get("/console").text  # not offered in the menu
    subscriber = browser(client, runtime, world["subscriber"]["phone"])
    assert subscriber.get("/console/deliveries").status_code == 403
    anonymous = TestClient(client.app, base_url="http://127.0.0.1")
    sent = anonymous.get("/console/deliveries", follow_redirects=False)
    assert sent.status_code in (302, 303) and sent.headers["location"].startswith("/login")
