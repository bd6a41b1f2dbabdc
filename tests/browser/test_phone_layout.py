"""On a phone-sized screen (390×844) nothing is cut off and nothing is wider than the screen: the
main portal pages for a subscriber and the console pages for staff, in 简体中文 and in English.

- the page never scrolls sideways: document.documentElement.scrollWidth <= window.innerWidth;
- no text is clipped by an ellipsis: every element whose text-overflow is `ellipsis` shows all of
  its text (scrollWidth <= clientWidth);
- the Bills page's monthly table shows each net amount in full (issue 10, item 14: it read
  "HK$148…"): the whole amount is inside the screen and inside the table's own box.

On SQLite only (this module's `database_url`): the layout does not depend on the database.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import select

from duckline.accounts.models import Account
from duckline.core.clock import FrozenClock
from tests.browser.conftest import (
    ADMIN,
    GOOD_CARD,
    PASSWORD,
    SUBSCRIBER_EN,
    SUBSCRIBER_HANT,
    Live,
    api_client,
    api_order,
    deliver_webhooks,
    log_in,
    new_context,
    screenshot,
    switch_language,
)
from tests.factories import last_emailed_code

LANGUAGES = ("zh_Hans", "en")
SUBSCRIBER_HANS = "+8613800138000"  # 李娜, Mainland resident ID
LONG_EMAIL = "li.na.cross-border.household.account@example-family-mail.com.hk"
AMOUNT = re.compile(r"^HK\$\d{1,3}(,\d{3})*\.\d{2}$")


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """SQLite only, for this module (see the docstring)."""
    path = tmp_path / "duckline.db"
    shutil.copy(sqlite_template, path)
    yield f"sqlite:///{path}"


def layout_problems(page: Page) -> dict[str, Any]:
    """How much wider than the screen the page is, and which elements clip text with an ellipsis."""
    return page.evaluate(
        """() => {
        const root = document.documentElement;
        const clipped = [];
        for (const el of document.querySelectorAll('body *')) {
            const style = getComputedStyle(el);
            if (style.textOverflow !== 'ellipsis' || el.clientWidth === 0) continue;
            if (el.scrollWidth > el.clientWidth) clipped.push(`${el.tagName.toLowerCase()}: ${el.textContent.trim()}`);
        }
        const wide = [];
        for (const el of document.querySelectorAll('body *')) {
            const box = el.getBoundingClientRect();
            if (box.width === 0 || box.right <= screen.width + 0.5) continue;
            let inside = false;  // content of a box that scrolls on its own (a wide console table)
            for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
                const o = getComputedStyle(p).overflowX;
                if (o === 'auto' || o === 'scroll' || o === 'hidden') { inside = true; break; }
            }
            if (!inside) wide.push(`${el.tagName.toLowerCase()}.${el.className}: right=${box.right.toFixed(1)}`);
        }
        return {scroll: root.scrollWidth, inner: window.innerWidth, screen: screen.width, clipped: clipped,
                wide: wide.slice(0, 8)};
    }"""
    )


def net_amounts(page: Page) -> list[dict[str, Any]]:
    """Each month's net amount on the Bills page: its text and whether all of it is on screen and
    inside the boxes around it that clip (the table's scroll box, the card)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('#spending-heading ~ .table-scroll tbody tr td:last-child')].map(td => {
            const box = td.getBoundingClientRect();
            let visible = box.left >= 0 && box.right <= screen.width + 0.5;
            for (let p = td.parentElement; p && p !== document.body; p = p.parentElement) {
                const o = getComputedStyle(p).overflowX;
                if (o === 'visible') continue;
                const outer = p.getBoundingClientRect();
                if (box.left < outer.left - 0.5 || box.right > outer.right + 0.5) visible = false;
            }
            return {text: td.innerText.trim(), visible: visible, fits: td.scrollWidth <= td.clientWidth};
        })"""
    )


def test_portal_and_console_fit_a_phone(browser: Browser, live: Live, clock: FrozenClock) -> None:
    base, runtime = live
    with api_client(live, SUBSCRIBER_HANT) as http:
        paid = api_order(http, "hk-voice-30", card=GOOD_CARD)
        line_id = paid["line_id"]
    with api_client(live, SUBSCRIBER_EN) as http:
        api_order(http, "hk-data-30", card=GOOD_CARD)
    with api_client(live, SUBSCRIBER_HANS) as http:  # a long address, as real ones can be
        assert http.post("/api/v1/me/email", json={"email": LONG_EMAIL, "password": PASSWORD}).status_code == 202
        code = last_emailed_code(runtime, LONG_EMAIL)
        assert http.post("/api/v1/me/email/verify", json={"code": code}).status_code == 200
    deliver_webhooks(live, clock)
    with runtime.unit_of_work() as uow:
        ids = {
            phone: uow.session.scalar(select(Account.id).where(Account.phone == phone))
            for phone in (SUBSCRIBER_HANT, SUBSCRIBER_HANS, SUBSCRIBER_EN)
        }

    portal = {
        "lines": "/",
        "line": f"/lines/{line_id}",
        "bills": "/bills",
        "settings": "/settings",
        "support": "/support",
        "renew": f"/lines/{line_id}/renew?plan=cross-border-month&method=card",
    }
    console = {
        "dashboard": "/console",
        "subscribers": "/console/subscribers?q=6123",
        "subscriber": f"/console/subscribers/{ids[SUBSCRIBER_HANT]}",
        "subscriber-mainland": f"/console/subscribers/{ids[SUBSCRIBER_HANS]}",  # Mainland ID, long email
        "subscriber-passport": f"/console/subscribers/{ids[SUBSCRIBER_EN]}",
        "audit": "/console/audit",
        "reconciliation": "/console/reconciliation",
        "plans": "/console/plans",
    }
    problems: list[str] = []
    nets: list[str] = []

    def check(page: Page, name: str, language: str) -> None:
        assert page.locator("main").count() == 1, (name, page.url)
        found = layout_problems(page)
        # A phone's browser widens its layout viewport to content wider than the screen (and zooms
        # out), so window.innerWidth is also held to the screen's 390 px.
        if found["scroll"] > found["inner"] or found["inner"] > found["screen"]:
            problems.append(f"{name} ({language}): {found['scroll']} px wide on a {found['screen']} px screen")
            problems.extend(f"    {item}" for item in found["wide"])
        problems.extend(f"{name} ({language}) cut off: {item}" for item in found["clipped"])
        screenshot(page, f"layout-{name}", "phone", language)

    for language in LANGUAGES:
        context = new_context(browser, "phone")
        page = context.new_page()
        log_in(page, base, SUBSCRIBER_HANT)
        switch_language(page, language)
        for name, path in portal.items():
            page.goto(f"{base}{path}")
            check(page, name, language)
            if name == "bills":
                amounts = net_amounts(page)
                assert amounts, "no monthly table on the Bills page"
                for amount in amounts:
                    assert AMOUNT.match(amount["text"]), amount
                    if not (amount["visible"] and amount["fits"]):
                        problems.append(f"bills ({language}): the net amount {amount['text']} is cut off")
                nets.extend(amount["text"] for amount in amounts)
        context.close()

        context = new_context(browser, "phone")
        page = context.new_page()
        log_in(page, base, ADMIN)
        switch_language(page, language)
        for name, path in console.items():
            page.goto(f"{base}{path}")
            check(page, f"console-{name}", language)
        context.close()

    assert not problems, "on a 390 px phone:\n" + "\n".join(problems)
    # This month's net is what the subscriber paid (the same figure in both languages).
    assert len(set(nets)) == len(nets) // len(LANGUAGES), nets
