"""Renewal choices in a real browser, in 简体中文, on the demo world (issue 10, items 5, 8 and 15):
choosing 支付宝 hides automatic renewal and says why; a brand-new line's first purchase with the
demo's WELCOME20 is confirmed as an activation (开通); a line renewed ahead shows the period running
now and the one queued after it."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page
from sqlalchemy import select

from duckline.accounts.models import Account
from duckline.core.clock import FrozenClock
from duckline.lines import service as lines
from duckline.lines.models import Line
from duckline.staff import demo
from tests.browser.conftest import (
    GOOD_CARD,
    Live,
    api_client,
    api_order,
    deliver_webhooks,
    log_in,
    new_context,
    pay_on_sandbox,
    pay_the_quote,
    screenshot,
)

SUBSCRIBER_HANS = next(s.phone for s in demo.SUBSCRIBERS if s.language == "zh_Hans")  # 李娜


def first_line_id(live: Live) -> int:
    with live.runtime.unit_of_work() as uow:
        account = uow.session.scalars(select(Account).where(Account.phone == SUBSCRIBER_HANS)).one()
        return int(uow.session.scalars(select(Line.id).where(Line.account_id == account.id).order_by(Line.id)).first())


def to_renew_page(page: Page, base_url: str, line_id: int) -> None:
    page.goto(f"{base_url}/lines/{line_id}")
    with page.expect_navigation(url=re.compile(r"/lines/\d+/renew")):
        page.click("main a.button[href$='/renew']")


def test_choosing_alipay_hides_auto_renew_and_says_why(page: Page, live: Live) -> None:
    log_in(page, live.base_url, SUBSCRIBER_HANS)
    to_renew_page(page, live.base_url, first_line_id(live))

    hint = page.locator("#wallet-auto-renew-hint")
    page.check("#method-card")
    assert hint.is_hidden()
    page.check("#method-alipay")  # 支付宝
    assert hint.is_visible() and "自动续费仅支持银行卡" in hint.inner_text()

    with page.expect_navigation():
        page.click("form.renew-form button[type=submit]")  # 查看准确价格
    assert page.locator("#quote").is_visible(), page.inner_text("main")
    assert "支付宝" in page.inner_text("#quote")
    assert page.locator("#auto-renew").count() == 0  # no box to tick
    note = page.locator("#auto-renew-note")
    assert note.is_visible()
    assert "使用支付宝时无法自动续费：自动续费需要银行卡" in note.inner_text()
    screenshot(page, "renew-alipay-no-auto-renew", "desktop", "zh_Hans")

    # Back to the card: the box is there again.
    page.check("#method-card")
    with page.expect_navigation():
        page.click("form.renew-form button[type=submit]")
    assert page.locator("#auto-renew").is_visible()
    assert page.locator("#auto-renew-note").count() == 0


def test_a_new_lines_first_purchase_with_welcome20_is_confirmed_as_an_activation(
    browser: Browser, live: Live, clock: FrozenClock
) -> None:
    with live.runtime.unit_of_work() as uow:
        account = uow.session.scalars(select(Account).where(Account.phone == SUBSCRIBER_HANS)).one()
        new_line = lines.open_line(uow, account).id

    context = new_context(browser, "phone")
    page = context.new_page()
    try:
        log_in(page, live.base_url, SUBSCRIBER_HANS)
        to_renew_page(page, live.base_url, new_line)
        assert page.inner_text("h1").startswith("开通 "), page.inner_text("h1")
        page.check("#plan-hk-voice-30")
        page.fill("#promo", "WELCOME20")
        page.check("#method-card")
        with page.expect_navigation():
            page.click("form.renew-form button[type=submit]")
        quote = page.inner_text("#quote")
        assert "首次购买八折" in quote and "HK$70.40" in quote, quote  # 20 % off HK$88.00
        assert "有效期至" in quote
        screenshot(page, "activate-welcome20-quote", "phone", "zh_Hans")

        pay_the_quote(page)
        pay_on_sandbox(page, GOOD_CARD)
        success = page.locator("section.result.success")
        assert success.is_visible(), page.inner_text("main")
        assert page.inner_text("#result-heading") == "完成：您的号码已开通"
        assert "续费" not in page.inner_text("#result-heading")
        screenshot(page, "activate-welcome20-result", "phone", "zh_Hans")
        deliver_webhooks(live, clock)
    finally:
        context.close()


def test_a_line_renewed_ahead_shows_the_current_and_the_queued_period(
    page: Page, live: Live, clock: FrozenClock
) -> None:
    line_id = first_line_id(live)
    with api_client(live, SUBSCRIBER_HANS) as http:
        api_order(http, "hk-data-30", card=GOOD_CARD)  # a plan change, from the end of this period
    deliver_webhooks(live, clock)

    log_in(page, live.base_url, SUBSCRIBER_HANS)
    page.goto(f"{live.base_url}/lines/{line_id}")
    plan = page.inner_text("section[aria-labelledby='plan-title']")
    assert "本期结束" in plan and "已付费至" in plan and "已提前续费" in plan, plan
    current, queued = plan.index("本期结束"), plan.index("已提前续费")
    assert plan.index("中港澳") < current < queued  # the current plan (cross-border) comes first
    queued_items = page.locator("ul.queued-periods li").all_inner_texts()
    assert len(queued_items) == 1 and queued_items[0].startswith("数据王"), queued_items
    assert " 至 " in queued_items[0]
    assert page.locator("#allowances-period").inner_text().startswith("本期用量，有效至")
    screenshot(page, "line-renewed-ahead", "desktop", "zh_Hans")

    page.goto(f"{live.base_url}/")
    card = page.locator("article.line-card").first.inner_text()
    assert "本期结束" in card and "已提前续费" in card and "数据王" in card, card
