"""The support desk in a browser, in 简体中文: a subscriber opens a ticket in the portal; support
finds it in the console's queue with a filter, assigns it to themselves, adds an internal note,
replies and closes it with a reason; the subscriber sees the reply and never the note.
Screenshots of the queue and of a ticket with a reply and an internal note, on a desktop and a
phone (test-artifacts/screenshots/support-*-<viewport>-zh_Hans.png); on the phone nothing makes
the page scroll sideways."""

from __future__ import annotations

import re
from datetime import timedelta

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page
from sqlalchemy import select

from duckline.core.clock import FrozenClock
from duckline.messaging.models import Notification
from tests.browser.conftest import (
    SUBSCRIBER_EN,
    SUPPORT,
    Live,
    log_in,
    log_out,
    new_context,
    screenshot,
    switch_language,
)
from tests.browser.test_accessibility import WCAG_AA

LANGUAGE = "zh_Hans"
NOTE = "Roaming profile on the SM-DP+ looks stale; checked with the network team."
REPLY = "Please restart your phone and turn data roaming on again."


def no_sideways_scroll(page: Page) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide on a {widths[1]} px screen"


def accessibility_problems(page: Page) -> list[str]:
    """WCAG 2.1 A and AA violations axe-core finds on the page (as tests/browser/test_accessibility.py)."""
    response = Axe().run(page, options=WCAG_AA).response
    return [f"{page.url}: {v['id']} {v['help']} — {v['nodes'][0]['target']}" for v in response["violations"]]


def open_ticket_in_the_portal(page: Page, base: str) -> int:
    page.goto(f"{base}/support")
    page.fill("#subject", "深圳没有数据")
    page.select_option("#topic", "line")
    page.fill("#body", "I crossed the border this morning and mobile data stopped.")
    with page.expect_navigation(url=re.compile(r"/support/\d+")):
        page.click("form[action='/support'] button[type=submit]")
    found = re.search(r"/support/(\d+)", page.url)
    assert found, page.url
    return int(found.group(1))


def test_support_answers_a_ticket_in_the_console_and_the_subscriber_never_sees_the_note(
    page: Page, browser: Browser, live: Live, clock: FrozenClock
) -> None:
    base, runtime = live
    # The subscriber, in 简体中文, asks for help.
    log_in(page, base, SUBSCRIBER_EN)
    switch_language(page, LANGUAGE)
    ticket = open_ticket_in_the_portal(page, base)
    log_out(page)
    clock.advance(timedelta(days=2, hours=3))  # support comes to it two days later

    # Support, in 简体中文, finds it in the queue with a filter.
    log_in(page, base, SUPPORT)
    switch_language(page, LANGUAGE)
    with page.expect_navigation():
        page.click("nav a[href='/console/support']")
    assert page.inner_text("main h1") == "客服工作台"
    page.select_option("#f-topic", "line")
    page.select_option("#f-language", LANGUAGE)
    page.select_option("#f-age", "1")
    with page.expect_navigation():
        page.click("form.desk-filters button[type=submit]")
    assert "topic=line" in page.url and "older_than=1" in page.url
    assert "2天前提交" in page.inner_text(f"#ticket-{ticket}")
    assert page.locator(f"#ticket-{ticket}").is_visible()
    screenshot(page, "support-queue", "desktop", LANGUAGE)
    assert accessibility_problems(page) == []
    with page.expect_navigation():
        page.click(f"#ticket-{ticket} a")

    # … assigns it to themselves, notes, replies.
    with page.expect_navigation():
        page.click("button[name=assignee][value=me]")
    assert "（您）" in page.inner_text("main")
    page.fill("#note-body", NOTE)
    with page.expect_navigation():
        page.click("form[action$='/note'] button[type=submit]")
    assert "已添加内部备注" in page.inner_text("main")
    page.fill("#reply-body", REPLY)
    with page.expect_navigation():
        page.click("form[action$='/reply'] button[type=submit]")
    main = page.inner_text("main")
    assert NOTE in main and REPLY in main and "内部备注" in main and "等待用户回复" in main
    screenshot(page, "support-ticket", "desktop", LANGUAGE)
    assert accessibility_problems(page) == []

    # The same pages on a phone: nothing is wider than the screen.
    phone = new_context(browser, "phone")
    try:
        small = phone.new_page()
        log_in(small, base, SUPPORT)  # the account keeps 简体中文
        small.goto(f"{base}/console/support?topic=line&status=all")
        assert small.locator(f"#ticket-{ticket}").is_visible()
        no_sideways_scroll(small)
        screenshot(small, "support-queue", "phone", LANGUAGE)
        small.goto(f"{base}/console/support/{ticket}")
        assert NOTE in small.inner_text("main")
        no_sideways_scroll(small)
        screenshot(small, "support-ticket", "phone", LANGUAGE)
    finally:
        phone.close()

    # … and closes it with a reason.
    page.check("input[name=reason][value=answered]")
    page.fill("#close-text", "Restarting fixed it.")
    with page.expect_navigation():
        page.click("form[action$='/close'] button[type=submit]")
    assert "工单已关闭" in page.inner_text("main")
    assert "已答复" in page.inner_text("main")
    log_out(page)

    # The subscriber was told, and sees the reply in the portal, but not the note.
    with runtime.unit_of_work() as uow:
        told = list(uow.session.scalars(select(Notification).where(Notification.template == "ticket_answered")))
    assert [n.language for n in told] == [LANGUAGE] and NOTE not in told[0].body
    log_in(page, base, SUBSCRIBER_EN)
    page.goto(f"{base}/support/{ticket}")
    seen = page.inner_text("main")
    assert REPLY in seen
    assert NOTE not in seen and "Restarting fixed it." not in seen and "内部备注" not in seen
    assert NOTE not in page.content()
