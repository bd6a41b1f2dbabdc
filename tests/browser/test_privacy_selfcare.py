"""Self-care of one's own data in 简体中文, in a real browser, on SQLite and on PostgreSQL: see and
remove a saved card (automatic renewal goes off, and the page says so), download everything held
(JSON with the account's lines, no card number, no staff-only notes), read what closing keeps,
close the account, and then sign-in is refused."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Page
from sqlalchemy import select

from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.core.clock import FrozenClock
from duckline.lines.models import Line
from duckline.support import cases as tickets
from duckline.support import conversations as support
from tests.browser.conftest import (
    PASSWORD,
    SUBSCRIBER_EN,
    SUPPORT,
    Live,
    api_client,
    deliver_webhooks,
    log_in,
    screenshot,
    switch_language,
)

CARD_NUMBER = "4242424242424242"
STAFF_NOTE = "STAFF ONLY: the subscriber retried four times"


def save_a_card(live: Live, clock: FrozenClock) -> tuple[str, int]:
    """A renewal paid by card with "save for automatic renewals" ticked (through the API and the
    sandbox's page: only its outcome matters here). Returns the line's number and the order."""
    with api_client(live, SUBSCRIBER_EN) as http:
        line = http.get("/api/v1/lines").json()["items"][0]
        body = {"line_id": line["id"], "plan_code": "hk-data-30", "payment_method": "card", "auto_renew": True}
        order = http.post("/api/v1/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}).json()
    checkout = urlsplit(order["payments"][-1]["next_action"]["url"]).path
    with httpx.Client(base_url=live.base_url, timeout=10) as http:
        paid = http.post(checkout, data={"card_number": CARD_NUMBER, "save": "1"})
        assert paid.status_code in (200, 303), paid.text
    deliver_webhooks(live, clock)
    return str(line["msisdn"]), int(order["id"])


def support_talk(live: Live, order_id: int) -> None:
    """A ticket support answered, and a case about the order with a note staff keep to themselves."""
    with live.runtime.unit_of_work() as uow:
        me = uow.session.scalars(select(Account).where(Account.phone == SUBSCRIBER_EN)).one()
        agent = uow.session.scalars(select(Account).where(Account.phone == SUPPORT)).one()
        assert agent.role is Role.SUPPORT
        ticket = support.open_ticket(uow, me, "漫游数据", "在深圳用不了数据。")
        support.reply(uow, agent, ticket, "请重新启动手机。")
        case = tickets.open_ticket(uow, "reconciliation", "Paid, not applied", "check", me.id, order_id)
        support.reply(uow, agent, case, STAFF_NOTE)


def test_see_and_remove_a_card_download_the_data_and_close_the_account(
    page: Page, live: Live, clock: FrozenClock
) -> None:
    base, runtime = live
    msisdn, order_id = save_a_card(live, clock)
    support_talk(live, order_id)
    log_in(page, base, SUBSCRIBER_EN)
    page.goto(f"{base}/settings")
    switch_language(page, "zh_Hans")

    # The saved card: brand, last four and expiry, never the number.
    with page.expect_navigation():
        page.click("#payments-privacy a[href='/settings/payment-methods']")
    assert page.inner_text("main h1") == "付款方式"
    card = page.locator("main li.card").first
    assert "Visa •••• 4242" in card.inner_text() and "12/2034" in card.inner_text()
    assert "用于" in card.inner_text() and "的自动续费" in card.inner_text()
    assert CARD_NUMBER not in page.content()
    screenshot(page, "payment-methods", "desktop", "zh_Hans")

    with page.expect_navigation():
        card.locator("button[type=submit]").click()
    assert "Visa •••• 4242 已移除。" in page.inner_text("#removed")
    assert "的自动续费已关闭。" in page.inner_text("#auto-renew-off")
    assert page.locator("#no-methods").is_visible()
    screenshot(page, "payment-method-removed", "desktop", "zh_Hans")
    with runtime.unit_of_work() as uow:
        line = uow.session.scalars(select(Line).where(Line.msisdn == msisdn)).one()
        assert (line.auto_renew, line.auto_renew_method_id) == (False, None)

    # Everything held, as a JSON download.
    page.goto(f"{base}/settings")
    with page.expect_navigation():
        page.click("#payments-privacy a[href='/settings/privacy']")
    assert page.inner_text("main h1") == "隐私与数据"
    with page.expect_download() as downloading:
        page.click("#export button[type=submit]")
    download = downloading.value
    assert download.suggested_filename.startswith("duckline-data-") and download.suggested_filename.endswith(".json")
    content = Path(download.path()).read_text(encoding="utf-8")
    data = json.loads(content)
    assert msisdn in [line["msisdn"] for line in data["lines"]]
    assert data["account"]["phone"] == SUBSCRIBER_EN
    assert CARD_NUMBER not in content
    assert STAFF_NOTE not in content and "请重新启动手机。" in content
    assert data["identity"]["document_number_shown"] == "masked"

    # What closing does and keeps, read before confirming: in 简体中文, and in the other two languages.
    terms = page.inner_text("#closing-terms")
    assert "7 年，按香港税务法例规定（《税务条例》第51C条）" in terms
    assert "关闭后 365 天" in terms and "关闭后 30 天" in terms
    assert "号码会立即停止服务" in terms
    page.click("#closing-terms-other summary")
    assert "Inland Revenue Ordinance, s.51C" in page.inner_text("#closing-terms-en")
    assert "《稅務條例》第51C條" in page.inner_text("#closing-terms-zh_Hant")
    screenshot(page, "privacy", "desktop", "zh_Hans")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "privacy", "phone", "zh_Hans")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.check("#close input[name=confirm]")
    page.fill("#close-password", PASSWORD)
    with page.expect_navigation(url=f"{base}/login?closed=1"):
        page.click("#close button[type=submit]")
    assert "您的账户已关闭" in page.inner_text("#account-closed")
    assert page.get_attribute("html", "lang") == "zh-Hans"

    # Sign-in is refused from now on.
    page.fill("#phone", SUBSCRIBER_EN)
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("main form[action='/login'] button[type=submit]")
    assert "/login" in page.url
    assert "此账户已关闭，无法再登录。" in page.inner_text("main .error")
    screenshot(page, "login-closed", "desktop", "zh_Hans")
