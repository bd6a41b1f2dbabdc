"""Issue 10, item 2, in 简体中文 and in the browser: a renewal paid with Alipay (through the sandbox,
whose hosted page takes a test card for any method) is named 支付宝 on the result page, in the
receipt PDF downloaded from Bills and in the console's payments; no card digits anywhere."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, Page
from sqlalchemy import select

from duckline.accounts.models import Account
from duckline.billing.models import Order
from duckline.billing.order_states import OrderStatus
from duckline.core.clock import FrozenClock
from tests.billing.test_receipt_pdf import poppler, squash
from tests.browser.conftest import (
    GOOD_CARD,
    SUPPORT,
    Live,
    deliver_webhooks,
    log_in,
    new_context,
    pay_on_sandbox,
    pay_the_quote,
    screenshot,
    switch_language,
)

SUBSCRIBER = "+85261234567"  # the demo's passport holder, on Data Max 30


def test_an_alipay_renewal_is_named_alipay_on_the_receipt_and_in_the_console(
    page: Page, browser: Browser, live: Live, clock: FrozenClock, tmp_path: Path
) -> None:
    base, runtime = live
    log_in(page, base, SUBSCRIBER)
    switch_language(page, "zh_Hans")
    with page.expect_navigation(url=re.compile(r"/lines/\d+$")):
        page.click("main a.button[href^='/lines/']:not([href$='/renew'])")
    with page.expect_navigation(url=re.compile(r"/lines/\d+/renew")):
        page.click("main a.button[href$='/renew']")
    page.check("#method-alipay")
    with page.expect_navigation():
        page.click("form.renew-form button[type=submit]")
    assert "支付宝" in page.inner_text("#quote"), page.inner_text("main")
    pay_the_quote(page)
    pay_on_sandbox(page, GOOD_CARD)  # the sandbox's stand-in for the wallet's own page

    details = page.inner_text("#order-heading + dl")
    assert "支付宝" in details, details
    assert "4242" not in page.inner_text("main") and "Visa" not in page.inner_text("main")
    screenshot(page, "alipay-result", "desktop", "zh_Hans")
    deliver_webhooks(live, clock)
    with runtime.unit_of_work() as uow:
        account = uow.session.scalars(select(Account).where(Account.phone == SUBSCRIBER)).one()
        paid = uow.session.scalars(
            select(Order).where(Order.account_id == account.id).order_by(Order.id.desc()).limit(1)
        ).one()
        assert paid.status is OrderStatus.FULFILLED
        account_id, order_id = account.id, paid.id

    with page.expect_navigation(url=re.compile(r"/bills$")):
        page.click("header nav a[href='/bills']")
    assert "4242" not in page.inner_text("main")
    with page.expect_download() as download_info:
        page.click("ul.documents a.doc-link >> nth=0")
    pdf = tmp_path / "receipt.pdf"
    pdf.write_bytes(Path(download_info.value.path()).read_bytes())
    receipt = squash(poppler("pdftotext", pdf, "-"))
    assert "支付宝" in receipt and "4242" not in receipt and "Visa" not in receipt

    staff = new_context(browser)
    console = staff.new_page()
    try:
        log_in(console, base, SUPPORT)
        switch_language(console, "zh_Hans")
        console.goto(f"{base}/console/subscribers/{account_id}")
        row = console.inner_text(f"#order-{order_id}")  # the demo's earlier orders were paid by card
        assert "支付宝" in console.locator(f"#order-{order_id} .console-payment").first.inner_text(), row
        assert "4242" not in row and "VISA" not in row.upper()
        screenshot(console, "console-alipay-payment", "desktop", "zh_Hans")
    finally:
        staff.close()
