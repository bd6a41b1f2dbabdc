"""Settings › Security in a browser, in 简体中文: the signed-in sessions, signing another browser
out (it is logged out at once), changing the password with the current one, and an email change
that asks for the password again."""

from __future__ import annotations

from playwright.sync_api import Browser, Page

from duckline.core import i18n
from tests.browser.conftest import (
    PASSWORD,
    SUBSCRIBER_EN,
    Live,
    log_in,
    new_context,
    screenshot,
    switch_language,
)
from tests.factories import last_emailed_code

NEW_PASSWORD = "a-new-password-2026"


def zh(message: str, **params: str) -> str:
    translated = i18n.gettext("zh_Hans", message)
    assert translated != message, message
    return translated.format(**params) if params else translated


def test_sessions_password_and_an_email_change_that_asks_for_the_password(
    page: Page, browser: Browser, live: Live
) -> None:
    log_in(page, live.base_url, SUBSCRIBER_EN)
    switch_language(page, "zh_Hans")
    elsewhere = new_context(browser)  # the same subscriber on another computer
    other = elsewhere.new_page()
    try:
        log_in(other, live.base_url, SUBSCRIBER_EN)

        # Settings links to the security page; it lists both browsers, this one marked.
        page.goto(f"{live.base_url}/settings")
        with page.expect_navigation():
            page.click("main a.button[href='/settings/security']")
        assert page.locator("h1").inner_text() == zh("Security")
        sessions = page.locator("#sessions li.session")
        assert sessions.count() == 2
        assert page.locator("#sessions li.session.current").inner_text().count(zh("This session")) == 1
        assert zh("Web browser") in sessions.nth(1).inner_text()
        screenshot(page, "account-security", "desktop", "zh_Hans")

        # Signing the other browser out ends it at once: its next page is the login page.
        with page.expect_navigation():
            page.click("#sessions li.session:not(.current) form button[type=submit]")
        assert page.locator("p.notice").inner_text() == zh("The session is signed out.")
        assert page.locator("#sessions li.session").count() == 1
        other.goto(f"{live.base_url}/settings")
        assert "/login" in other.url

        # The password, changed with the current one.
        page.fill("#current-password", PASSWORD)
        page.fill("#new-password", NEW_PASSWORD)
        page.fill("#repeat-password", NEW_PASSWORD)
        with page.expect_navigation():
            page.click("form[action='/settings/security/password'] button[type=submit]")
        assert page.locator("p.notice").inner_text() == zh(
            "Your password is changed. Every other session was signed out."
        )
        log_in(other, live.base_url, SUBSCRIBER_EN, NEW_PASSWORD)  # the new one works elsewhere

        # An email change asks for the password again, by the field, in Chinese; then goes ahead.
        page.goto(f"{live.base_url}/settings")
        form = page.locator("form[action='/settings/email']")
        if not form.is_visible():
            page.click("details:has(#new-email) summary")
        page.fill("#new-email", "security.check@example.com")
        with page.expect_navigation():
            form.locator("button[type=submit]").click()
        assert page.locator("#email-password-problem").inner_text() == zh(
            "For your security, confirm it is you first: enter your password, or a code we send to your current number."
        )
        assert page.locator("#email-password").get_attribute("aria-invalid") == "true"
        page.fill("#new-email", "security.check@example.com")
        page.fill("#email-password", NEW_PASSWORD)
        with page.expect_navigation():
            form.locator("button[type=submit]").click()
        assert page.locator("p.notice").inner_text() == zh(
            "We sent a code to your new email address. Enter it below to confirm the change."
        )
        page.fill("#email-code", last_emailed_code(live.runtime, "security.check@example.com"))
        with page.expect_navigation():
            page.click("form[action='/settings/email/verify'] button[type=submit]")
        assert page.locator("p.notice").inner_text() == zh("Your email address is changed.")
        assert "security.check@example.com" in page.locator("#contact").inner_text()

        phone = new_context(browser, "phone")
        small = phone.new_page()
        log_in(small, live.base_url, SUBSCRIBER_EN, NEW_PASSWORD)
        small.goto(f"{live.base_url}/settings/security")
        assert small.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        screenshot(small, "account-security", "phone", "zh_Hans")
        phone.close()
    finally:
        elsewhere.close()
