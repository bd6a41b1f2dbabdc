"""The portal's journeys in a real browser (Chromium), against the app served on loopback, on
SQLite and on PostgreSQL: sign up and renew in English and in 繁體中文, a declined card and its
retry, a staff member resolving a reconciliation case, the login form by keyboard alone, and
no Content-Security-Policy violation on the main pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, ConsoleMessage, Page
from sqlalchemy import func, select

from duckline.accounts.models import Account
from duckline.billing.models import Order, Payment, Receipt
from duckline.billing.order_states import OrderStatus
from duckline.core import i18n, jobs
from duckline.core.clock import FrozenClock
from duckline.staff.models import AuditEntry
from duckline.support.models import Ticket
from tests.browser.conftest import (
    ADMIN,
    DECLINED_CARD,
    GOOD_CARD,
    LOST_WEBHOOK_CARD,
    SUBSCRIBER_EN,
    SUBSCRIBER_HANT,
    SUPPORT,
    Live,
    api_client,
    api_order,
    choose_and_quote,
    deliver_webhooks,
    headings,
    log_in,
    log_out,
    mismatched_capture,
    new_context,
    pay_on_sandbox,
    pay_the_quote,
    renew_with_card,
    switch_language,
)
from tests.browser.conftest import PASSWORD as DEMO_PASSWORD
from tests.factories import PASSWORD, PNG, hk_mobile, hkid, last_code

RECEIPT_NUMBER = re.compile(r"R\d{4}-\d+")
# Chromium words it "Refused to load …" or "… violates the following Content Security Policy directive".
CSP_MESSAGE = re.compile(r"content[- ]security[- ]policy|refused to", re.IGNORECASE)
# Latin text a Chinese heading may keep: names, units, the receipt number, the document format.
LATIN_KEPT = re.compile(r"Duckline|eSIM|SIM|SIP|iPhone|Android|PDF|SM-DP\+|ICCID|HK\$|GB|MB|SMS|Wi-Fi|ID|R\d{4}-\d+")


def english_leftovers(texts: list[str]) -> list[str]:
    return [t for t in texts if re.search(r"[A-Za-z]{2,}", LATIN_KEPT.sub("", t))]


def count(live: Live, table: type[Any], *where: Any) -> int:
    with live.runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


# --- (a) and (b): register, verify, the line, renew, the result, bills, the receipt PDF -----------


# Labels written out in 繁體中文, one per page, so a catalogue that lost its Chinese (or a page
# that stopped using it) would not pass by comparing gettext with itself.
HANT_LABELS = {
    "login": "手提電話號碼",
    "register": "你的身份證明文件",
    "verify": "驗證你的手提電話號碼",
    "line": "eSIM 設定檔",
    "renew": "確實價錢",
    "result": "收據編號",
    "bills": "每月開支",
}


def sign_up_and_renew(page: Page, live: Live, clock: FrozenClock, n: int, language: str) -> None:
    """The acceptance story for a new subscriber, in `language` (chosen with the header switcher
    before registering, so the account is created in it). Checks each page's words in that
    language and, in Chinese, that no heading is left in English."""
    base, runtime = live
    t: Callable[[str], str] = lambda message: i18n.gettext(language, message)  # noqa: E731
    seen_headings: dict[str, list[str]] = {}
    phone = hk_mobile(n)

    def seen(name: str, heading: str) -> None:
        assert page.inner_text("main h1") == t(heading), name
        if language == "zh_Hant":
            assert HANT_LABELS[name] in page.inner_text("main"), name
            assert t("Bills") in page.inner_text("header") or name in ("login", "register", "verify"), name
        seen_headings[name] = headings(page)

    page.goto(f"{base}/login")
    if language != "en":
        switch_language(page, language)
    seen("login", "Log in")

    with page.expect_navigation():
        page.click("main a[href='/register']")
    seen("register", "Register")
    page.fill("#phone", phone)
    page.fill("#password", PASSWORD)
    page.select_option("#document_type", "hkid")
    page.fill("#document_number", hkid(n))
    page.fill("#name_en", "CHAN Siu Ming")
    page.fill("#name_zh", "陳小明")
    page.fill("#birth_date", "1991-03-02")
    page.set_input_files("#document_image", files=[{"name": "id.png", "mimeType": "image/png", "buffer": PNG}])
    with page.expect_navigation(url=re.compile(r"/register/verify")):
        page.click("form.stacked > button[type=submit]")

    seen("verify", "Verify your mobile number")
    assert page.input_value("#phone") == phone
    page.fill("#code", last_code(runtime, phone))
    with page.expect_navigation(url=re.compile(r"/lines/\d+$")):
        page.click("button[value=verify]")

    # The line's page: the eSIM's QR code is an image the browser could load and decode.
    seen_headings["line"] = headings(page)
    assert page.inner_text("#esim-title") == t("eSIM profile")
    assert page.inner_text("#plan-title") == t("Plan and expiry")
    if language == "zh_Hant":
        assert HANT_LABELS["line"] in page.inner_text("main")
    qr = page.locator("img.qr")
    qr.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=qr.element_handle())
    assert page.locator("code.activation").inner_text().startswith("LPA:1$")
    assert page.inner_text("main a.button[href$='/renew']") == t("Choose a plan")  # the line is pending

    # A pending line needs no staff activation: its first plan, once paid, activates it.
    choose_and_quote(page, "hk-voice-30")
    seen_headings["renew"] = headings(page)
    assert page.inner_text("#quote-heading") == t("The exact price")
    assert "HK$88.00" in page.inner_text("#quote tfoot")
    if language == "zh_Hant":
        assert HANT_LABELS["renew"] in page.inner_text("main")
    pay_the_quote(page)  # the sandbox's hosted page is the provider's, in English only
    assert "HK$88.00" in page.inner_text("main .amount")
    pay_on_sandbox(page, GOOD_CARD)

    # The result page asked the provider at once (the return URL): done, with the receipt number.
    success = page.locator("section.result.success")
    assert success.is_visible(), page.inner_text("main")
    seen("result", "Done: your line is activated")  # the new line's first purchase
    assert t("Receipt number") in success.inner_text()
    receipt_number = page.inner_text(".receipt-number")
    assert RECEIPT_NUMBER.fullmatch(receipt_number), receipt_number

    with page.expect_navigation(url=re.compile(r"/bills$")):
        page.click("header nav a[href='/bills']")
    seen("bills", "Bills")
    assert page.inner_text("#spending-heading") == t("Spending per month")
    assert receipt_number in page.inner_text("ul.documents")
    with page.expect_download() as download_info:
        page.click(f"a.doc-link[aria-label*='{receipt_number}']")
    download = download_info.value
    assert download.suggested_filename == f"{receipt_number}.pdf"
    assert Path(download.path()).read_bytes().startswith(b"%PDF")

    # The sandbox's webhooks arrive later (twice each): already applied, nothing happens twice.
    assert deliver_webhooks(live, clock) == 2
    with runtime.unit_of_work() as uow:
        account = uow.session.scalars(select(Account).where(Account.phone == phone)).one()
        assert account.language == language
        orders = uow.session.scalars(select(Order).where(Order.account_id == account.id)).all()
        assert [o.status for o in orders] == [OrderStatus.FULFILLED]
        receipts = uow.session.scalars(select(Receipt.display_number).where(Receipt.account_id == account.id)).all()
        assert receipts == [receipt_number]

    if language != "en":
        leftovers = {name: english_leftovers(texts) for name, texts in seen_headings.items()}
        assert not any(leftovers.values()), leftovers


def test_register_verify_renew_and_download_the_receipt(page: Page, live: Live, clock: FrozenClock) -> None:
    sign_up_and_renew(page, live, clock, 41, "en")


def test_the_same_journey_in_traditional_chinese(page: Page, live: Live, clock: FrozenClock) -> None:
    sign_up_and_renew(page, live, clock, 42, "zh_Hant")
    assert page.get_attribute("html", "lang") == "zh-Hant-HK"
    assert "收據及退款單" in page.inner_text("#receipts-heading")
    assert "我的號碼" in page.inner_text("header nav")


# --- (c) a declined card, then the retry -------------------------------------------------------


def test_a_declined_card_then_a_retry_succeeds(page: Page, live: Live, clock: FrozenClock) -> None:
    base, runtime = live
    log_in(page, base, SUBSCRIBER_EN)
    with page.expect_navigation(url=re.compile(r"/lines/\d+$")):
        page.click("main a.button[href^='/lines/']:not([href$='/renew'])")
    renew_with_card(page)  # the same plan again is ticked on arrival
    pay_on_sandbox(page, DECLINED_CARD)

    failed = page.locator("section.result.failed")
    assert failed.is_visible(), page.inner_text("main")
    assert page.inner_text("#result-heading") == "The payment did not go through"
    assert "Your card was declined. Try another card or another payment method." in failed.inner_text()
    assert "Nothing was charged." in failed.inner_text()
    order_id = int(re.search(r"/orders/(\d+)/result", page.url).group(1))  # type: ignore[union-attr]
    assert page.is_checked("#retry-card")

    with page.expect_navigation(url=re.compile(r"/sandbox/checkout/")):
        page.click(f"form[action='/orders/{order_id}/retry'] button[type=submit]")
    pay_on_sandbox(page, GOOD_CARD)

    assert page.locator("section.result.success").is_visible(), page.inner_text("main")
    assert page.inner_text("#result-heading") == "Done: your line is renewed"
    assert RECEIPT_NUMBER.fullmatch(page.inner_text(".receipt-number"))
    assert "•••• 4242" in page.inner_text("#order-heading + dl")

    assert deliver_webhooks(live, clock) == 4  # the failure and the success, twice each
    with runtime.unit_of_work() as uow:
        order = uow.session.get(Order, order_id)
        assert order is not None and order.status is OrderStatus.FULFILLED
        attempts = uow.session.scalars(select(Payment.card_last4).where(Payment.order_id == order_id)).all()
        assert sorted(attempts) == ["0002", "4242"]
    assert count(live, Receipt, Receipt.order_id == order_id) == 1


# --- (d) staff: the reconciliation queue --------------------------------------------------------


def test_support_resolves_an_open_reconciliation_case(page: Page, live: Live, clock: FrozenClock) -> None:
    base, runtime = live
    # A lost webhook: paid on the hosted page, the tab closed before coming back. Reconciliation
    # finds it once it has been open long enough, and applies it by itself.
    with api_client(live, SUBSCRIBER_EN) as http:
        lost = api_order(http, "hk-data-30", card=LOST_WEBHOOK_CARD)
    assert deliver_webhooks(live, clock) == 0
    clock.advance(timedelta(minutes=runtime.settings.reconcile_after_minutes + 1))
    report = jobs.run(runtime, "reconcile")
    assert report["applied"] == [lost["id"]], report
    # An amount mismatch: the provider captured HK$1.00 for an HK$88.00 order. It needs a person.
    with api_client(live, SUBSCRIBER_HANT) as http:
        mismatched = api_order(http, "hk-voice-30")
    assert mismatched_capture(live, mismatched, 100).status_code == 200
    with runtime.unit_of_work() as uow:
        case_id = uow.session.scalars(select(Ticket.id).where(Ticket.status == "open")).one()

    log_in(page, base, SUPPORT)
    assert page.url == f"{base}/console"
    with page.expect_navigation():
        page.click("header nav a[href='/console/reconciliation']")
    assert page.inner_text("#open-heading") == "Open cases (1)"
    case = page.locator(f"#case-{case_id}")
    assert "Amount mismatch" in case.inner_text()
    assert f"#{mismatched['id']}" in case.inner_text()
    assert case.locator("input[value=refund]").count() == 0  # support may not refund; finance may
    assert case.locator("input[value=close]").is_checked()  # the one action support has here
    assert f"Order {lost['id']} applied by reconciliation" in page.inner_text("#resolved")

    # No reason: the browser does not even send the form.
    case.locator("button[type=submit]").click()
    assert page.url.endswith("/console/reconciliation")
    assert page.evaluate(f"document.querySelector('#reason-{case_id}').matches(':invalid')")

    reason = "HK$1 test capture voided with the provider"
    page.fill(f"#reason-{case_id}", reason)
    with page.expect_navigation(url=re.compile(r"done=case_close")):
        case.locator("button[type=submit]").click()
    assert page.inner_text("main p.notice") == "The case was closed."
    assert page.inner_text("#open-heading") == "Open cases (0)"
    assert f"close: {reason}" in page.inner_text("#resolved")
    with runtime.unit_of_work() as uow:
        ticket = uow.session.get(Ticket, case_id)
        support_id = uow.session.scalars(select(Account.id).where(Account.phone == SUPPORT)).one()
        assert ticket is not None and ticket.status == "resolved" and ticket.resolved_by == support_id
        actions = uow.session.scalars(select(AuditEntry.action).where(AuditEntry.target == f"ticket:{case_id}")).all()
        assert sorted(actions) == ["reconciliation.close", "ticket.resolved"]


# --- (e) the keyboard alone ---------------------------------------------------------------------


def focused_outline(page: Page) -> dict[str, str]:
    return page.evaluate(
        """() => { const el = document.activeElement; const s = getComputedStyle(el);
        return {id: el.id, tag: el.tagName, style: s.outlineStyle, width: s.outlineWidth, color: s.outlineColor,
                ring: s.boxShadow}; }"""
    )


def assert_visible_outline(page: Page, expected_id: str | None = None, expected_tag: str | None = None) -> None:
    focus = focused_outline(page)
    assert expected_id is None or focus["id"] == expected_id, focus
    assert expected_tag is None or focus["tag"] == expected_tag, focus
    assert focus["style"] != "none" and float(focus["width"].removesuffix("px")) >= 2, focus
    # The yellow outline alone is too pale on white (1.8:1): a dark inner ring goes with it (portal.css).
    assert focus["ring"] != "none", focus


def test_log_in_with_the_keyboard_alone(page: Page, live: Live) -> None:
    page.goto(f"{live.base_url}/login")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"  # first: skip to content
    assert_visible_outline(page)
    for _ in range(6):  # past the language switcher
        if page.evaluate("document.activeElement.id") == "phone":
            break
        page.keyboard.press("Tab")
    assert_visible_outline(page, "phone")
    page.keyboard.type(SUBSCRIBER_EN)
    page.keyboard.press("Tab")
    assert_visible_outline(page, "password")
    page.keyboard.type(DEMO_PASSWORD)
    page.keyboard.press("Tab")
    assert_visible_outline(page, expected_tag="BUTTON")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{live.base_url}/", page.inner_text("main")
    assert page.inner_text("main h1") == "My lines"


def test_enter_in_the_password_field_submits(page: Page, live: Live) -> None:
    page.goto(f"{live.base_url}/login")
    page.focus("#phone")
    page.keyboard.type(SUPPORT)
    page.keyboard.press("Tab")
    page.keyboard.type(DEMO_PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{live.base_url}/console"


# --- (f) Content-Security-Policy: no violation on the main pages ----------------------------------


def test_no_content_security_policy_violations(browser: Browser, live: Live, clock: FrozenClock) -> None:
    base = live.base_url
    with api_client(live, SUBSCRIBER_EN) as http:
        paid = api_order(http, "hk-data-30", card=GOOD_CARD)
        pending = api_order(http, "addon-data-5gb")  # left on the sandbox's page: a processing result
    deliver_webhooks(live, clock)
    line_id = paid["line_id"]
    context = new_context(browser)
    page = context.new_page()
    messages: list[str] = []
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        source = message.location.get("url", "")
        if source.endswith("/favicon.ico"):
            return  # no favicon is served (reported); the browser's own request, not the page's
        if message.type in ("error", "warning") or CSP_MESSAGE.search(message.text):
            messages.append(f"{page.url}: [{message.type}] {message.text} ({source})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))

    def visit(path: str) -> None:
        response = page.goto(f"{base}{path}")
        assert response is not None and response.status == 200, (path, response and response.status)
        assert response.headers.get("content-security-policy"), path
        page.wait_for_load_state("load")

    for path in ("/login", "/register", "/register/verify?phone=%2B85261000001", "/password-reset"):
        visit(path)
    log_in(page, base, SUBSCRIBER_EN)
    for path in (
        "/",
        f"/lines/{line_id}",
        f"/lines/{line_id}/usage",
        f"/lines/{line_id}/renew",
        f"/lines/{line_id}/renew?plan=hk-data-30&method=card",
        f"/orders/{paid['id']}/result",
        "/bills",
        "/settings",
        "/support",
        f"/orders/{pending['id']}/result",  # still processing: portal.js reloads it
    ):
        visit(path)
    page.wait_for_function("() => performance.getEntriesByType('navigation')[0].type === 'reload'", timeout=5000)
    visit(urlsplit(pending["payments"][-1]["next_action"]["url"]).path)  # the sandbox's hosted page
    visit("/")
    log_out(page)
    log_in(page, base, ADMIN)  # every console page
    for path in (
        "/console",
        "/console/subscribers?q=chan",
        "/console/reconciliation",
        "/console/plans",
        "/console/plans/new",
        "/console/plans/hk-voice-30/edit",
        "/console/promotions",
        "/console/numbers",
        "/console/audit",
    ):
        visit(path)
    # The listener hears a violation when there is one: an inline script, refused by the policy.
    canary = len(messages)
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = '1'; document.head.append(s); }")
    page.wait_for_timeout(200)
    assert any(CSP_MESSAGE.search(m) for m in messages[canary:]), messages[canary:]
    del messages[canary:]
    context.close()

    violations = [m for m in messages if CSP_MESSAGE.search(m)]
    assert not violations, "\n".join(violations)
    assert not errors, "\n".join(errors)
    assert not messages, "\n".join(messages)
