"""Accessibility of the main pages, checked by axe-core (Deque's engine, as shipped by
axe-playwright-python) in the real browser: WCAG 2.1 A and AA rules — a label on every input,
names on buttons and links, contrast, headings, landmarks, language of the page, ARIA used
correctly. On a desktop in English and on a phone in 繁體中文, subscriber pages and the console.
Taken once, on SQLite (this module's `database_url`): the markup does not depend on the database."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page

from tests.browser.conftest import (
    ADMIN,
    GOOD_CARD,
    SUBSCRIBER_HANT,
    Live,
    api_client,
    api_order,
    deliver_webhooks,
    log_in,
    log_out,
    new_context,
    switch_language,
)

WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
RUNS = (("desktop", "en"), ("phone", "zh_Hant"))


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    path = tmp_path / "duckline.db"
    shutil.copy(sqlite_template, path)
    yield f"sqlite:///{path}"


def problems(axe: Axe, page: Page, passed: set[str]) -> list[str]:
    """Each violation: the rule, its impact, and the first few elements it names. The rules the
    page passed are added to `passed` (proof that axe ran, with the CSP in force)."""
    found: list[str] = []
    response = axe.run(page, options=WCAG_AA).response
    passed.update(rule["id"] for rule in response["passes"])
    for violation in response["violations"]:
        nodes: list[dict[str, Any]] = violation["nodes"]
        targets = "; ".join(" ".join(map(str, node["target"])) for node in nodes[:3])
        found.append(f"{page.url}: {violation['id']} ({violation['impact']}) {violation['help']} — {targets}")
    return found


def test_main_pages_meet_wcag_21_aa(browser: Browser, live: Live, clock: Any) -> None:
    base, _ = live
    with api_client(live, SUBSCRIBER_HANT) as http:
        paid = api_order(http, "hk-voice-30", card=GOOD_CARD)
    deliver_webhooks(live, clock)
    line = f"/lines/{paid['line_id']}"
    anonymous_pages = ("/login", "/register", "/password-reset")
    subscriber_pages = (
        "/",
        line,
        f"{line}/usage",
        f"{line}/renew?plan=hk-data-30&method=card",
        f"/orders/{paid['id']}/result",
        "/bills",
        "/settings",
        "/settings/security",
        "/settings/payment-methods",
        "/settings/privacy",
        "/support",
    )
    console_pages = (
        "/console",
        "/console/subscribers?q=chan",
        "/console/reconciliation",
        "/console/plans",
        "/console/plans/new",
        "/console/promotions",
        "/console/numbers",
        "/console/audit",
        "/console/deliveries",
    )
    axe = Axe()
    found: list[str] = []
    passed: set[str] = set()
    checked = 0
    for viewport, language in RUNS:
        context = new_context(browser, viewport)
        page = context.new_page()
        log_in(page, base, SUBSCRIBER_HANT)
        switch_language(page, language)
        for path in subscriber_pages:
            page.goto(f"{base}{path}")
            found += problems(axe, page, passed)
        log_out(page)
        for path in anonymous_pages:
            page.goto(f"{base}{path}")
            found += problems(axe, page, passed)
        log_in(page, base, ADMIN)
        switch_language(page, language)
        for path in console_pages:
            page.goto(f"{base}{path}")
            found += problems(axe, page, passed)
        checked += len(subscriber_pages) + len(anonymous_pages) + len(console_pages)
        context.close()

    assert checked == 2 * 23
    assert {"label", "color-contrast", "button-name", "link-name", "html-has-lang", "document-title"} <= passed
    assert not found, "\n".join(found)
