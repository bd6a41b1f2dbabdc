"""The console's audit log in 简体中文, as an administrator uses it: filter by action and by days,
and read what happened as a sentence with the old and new phone number formatted."""

from __future__ import annotations

from datetime import timedelta

from playwright.sync_api import Browser, Page

from duckline.accounts.phone import display
from duckline.core.clock import FrozenClock
from tests.browser.conftest import (
    ADMIN,
    PASSWORD,
    SUBSCRIBER_HANT,
    Live,
    api_client,
    log_in,
    new_context,
    screenshot,
    switch_language,
)
from tests.factories import hk_mobile, last_code

NEW_PHONE = hk_mobile(93)


def rows(page: Page) -> list[str]:
    return [" ".join(t.split()) for t in page.locator("table.console-audit tbody tr").all_inner_texts()]


def filter_by(page: Page, action_label: str | None = None, since: str = "", until: str = "") -> None:
    if action_label is not None:
        page.select_option("#audit-action", label=action_label)
    page.fill("#audit-since", since)
    page.fill("#audit-until", until)
    with page.expect_navigation():
        page.click("form.console-audit-filters button[type=submit]")


def test_an_administrator_filters_the_audit_log_by_action_and_day(page: Page, live: Live, clock: FrozenClock) -> None:
    base, runtime = live
    with api_client(live, SUBSCRIBER_HANT) as http:
        line_id = http.get("/api/v1/lines").json()["items"][0]["id"]
        assert http.patch(f"/api/v1/lines/{line_id}/features", json={"voicemail": True}).status_code == 200
        clock.advance(timedelta(days=3))  # the phone changes three days later (27 Nov in Hong Kong)
        assert http.post("/api/v1/me/phone", json={"phone": NEW_PHONE, "password": PASSWORD}).status_code == 202
        verified = http.post("/api/v1/me/phone/verify", json={"code": last_code(runtime, NEW_PHONE)})
        assert verified.status_code == 200, verified.text

    log_in(page, base, ADMIN)
    switch_language(page, "zh_Hans")
    page.goto(f"{base}/console/audit")
    assert page.inner_text("main h1") == "审计日志"
    assert "Asia/Hong_Kong" in page.inner_text("#audit-days-hint")

    filter_by(page, "登录手机号码变更")
    [changed] = rows(page)
    assert f"的登录手机号码由 {display(SUBSCRIBER_HANT)} 改为 {display(NEW_PHONE)}。" in changed
    assert "account.phone_changed" not in page.inner_text("main")
    subject = page.locator("table.console-audit tbody tr .audit-sentence a").first
    assert subject.inner_text().startswith("账户 #")
    screenshot(page, "console-audit", "desktop", "zh_Hans")

    # The day of the features change: that entry, and no phone change yet.
    filter_by(page, "任何操作", since="2026-11-24", until="2026-11-24")
    on_the_first_day = rows(page)
    assert any("语音信箱 已关闭 → 已开启" in r for r in on_the_first_day), on_the_first_day
    assert not any("登录手机号码" in r for r in on_the_first_day)
    assert page.input_value("#audit-since") == "2026-11-24"

    # From the day of the phone change: the change, and the password proof that it needed.
    filter_by(page, since="2026-11-27", until="")
    later = rows(page)
    assert len(later) == 2 and any("登录手机号码" in r for r in later), later
    assert not any("语音信箱" in r for r in later)

    with page.expect_navigation():
        page.click("form.console-audit-filters a[href='/console/audit']")
    assert len(rows(page)) > 2
    with page.expect_navigation():
        page.click(".audit-sentence a[href^='/console/subscribers/']")
    assert "/console/subscribers/" in page.url


def test_the_audit_page_fits_a_phone(browser: Browser, live: Live) -> None:
    context = new_context(browser, "phone")
    page = context.new_page()
    try:
        log_in(page, live.base_url, ADMIN)
        switch_language(page, "zh_Hans")
        page.goto(f"{live.base_url}/console/audit")
        assert page.locator("table.console-audit tbody tr").count() > 1
        # Each entry is a block whose sentence wraps: nothing is wider than the screen.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        sentence = page.locator(".audit-sentence").first.bounding_box()
        assert sentence is not None and sentence["x"] + sentence["width"] <= 390
        screenshot(page, "console-audit", "phone", "zh_Hans")
    finally:
        context.close()
