"""Screenshots of the main pages for people to look at: test-artifacts/screenshots/
<page>-<viewport>-<language>.png, on a phone (390×844 at 2×) and a desktop (1280×900), in English
and 繁體中文. Taken once, on SQLite (this module's `database_url`): the pages do not depend on the
database, and a second run would only overwrite the same files.

Besides saving them, the test checks what a screenshot cannot be trusted to show by eye: the page
is in the asked language and nothing is wider than the viewport (no sideways scrolling)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from duckline.core import jobs
from duckline.core.clock import FrozenClock
from tests.browser.conftest import (
    ADMIN,
    GOOD_CARD,
    LOST_WEBHOOK_CARD,
    SUBSCRIBER_EN,
    SUBSCRIBER_HANT,
    Live,
    api_client,
    api_order,
    deliver_webhooks,
    log_in,
    log_out,
    mismatched_capture,
    new_context,
    screenshot,
    switch_language,
)

LANGUAGES = ("en", "zh_Hant")
VIEWPORT_NAMES = ("phone", "desktop")


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """SQLite only, for this module (see the docstring)."""
    path = tmp_path / "duckline.db"
    shutil.copy(sqlite_template, path)
    yield f"sqlite:///{path}"


def overflow(page: Page) -> list[str]:
    """Elements whose right edge is past the viewport's (what makes a phone scroll sideways)."""
    return page.evaluate(
        """() => {
        const width = document.documentElement.clientWidth;
        const out = [];
        for (const el of document.querySelectorAll('body *')) {
            const box = el.getBoundingClientRect();
            if (box.width === 0 || box.right <= width + 1) continue;
            let clipped = false;  // inside a scrolling box (a wide table in .table-scroll) is fine
            for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
                const o = getComputedStyle(p).overflowX;
                if (o === 'auto' || o === 'scroll' || o === 'hidden') { clipped = true; break; }
            }
            if (!clipped) out.push(`${el.tagName.toLowerCase()}.${el.className}: right=${Math.round(box.right)}`);
        }
        return out.slice(0, 10);
    }"""
    )


def test_screenshots_of_the_main_pages(browser: Browser, live: Live, clock: FrozenClock) -> None:
    base, runtime = live
    # What the pages show: a paid renewal (result, bills), a case reconciliation settled by itself
    # and an open one for staff (an amount mismatch).
    with api_client(live, SUBSCRIBER_HANT) as http:
        paid = api_order(http, "hk-voice-30", card=GOOD_CARD)
        line_id = paid["line_id"]
    with api_client(live, SUBSCRIBER_EN) as http:
        api_order(http, "hk-data-30", card=LOST_WEBHOOK_CARD)
        mismatched = api_order(http, "addon-data-5gb")
    deliver_webhooks(live, clock)
    clock.advance(timedelta(minutes=runtime.settings.reconcile_after_minutes + 1))
    jobs.run(runtime, "reconcile")
    assert mismatched_capture(live, mismatched, 1000).status_code == 200

    subscriber_pages = {
        "dashboard": "/",
        "line": f"/lines/{line_id}",
        "renew": f"/lines/{line_id}/renew?plan=cross-border-month&method=card",  # a plan change, 10 % off
        "result": f"/orders/{paid['id']}/result",
        "bills": "/bills",
    }
    staff_pages = {"console": "/console", "reconciliation": "/console/reconciliation"}
    saved: list[Path] = []
    problems: list[str] = []

    def shoot(page: Page, name: str, viewport: str, language: str) -> None:
        expected = {"en": "en", "zh_Hant": "zh-Hant-HK"}[language]
        assert page.get_attribute("html", "lang") == expected, (name, language)
        if viewport == "phone":
            problems.extend(f"{name}-{viewport}-{language}: {item}" for item in overflow(page))
        saved.append(screenshot(page, name, viewport, language))

    for viewport in VIEWPORT_NAMES:
        for language in LANGUAGES:
            context = new_context(browser, viewport)
            page = context.new_page()
            log_in(page, base, SUBSCRIBER_HANT)
            switch_language(page, language)
            for name, path in subscriber_pages.items():
                page.goto(f"{base}{path}")
                shoot(page, name, viewport, language)
            log_out(page)  # the language cookie stays: the login page is in it too
            shoot(page, "login", viewport, language)
            log_in(page, base, ADMIN)
            switch_language(page, language)
            for name, path in staff_pages.items():
                page.goto(f"{base}{path}")
                shoot(page, name, viewport, language)
            context.close()

    assert len(saved) == len(VIEWPORT_NAMES) * len(LANGUAGES) * (len(subscriber_pages) + 1 + len(staff_pages))
    assert all(path.stat().st_size > 10_000 for path in saved)
    assert not problems, "wider than the phone's screen:\n" + "\n".join(problems)
