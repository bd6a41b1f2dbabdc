"""Line self-care in a real browser, in 简体中文: report the phone lost and see the line's service
stopped, turn it back on with the password (a wrong one first), then move the eSIM to a new phone
and see the new QR code. Staff see why the line was stopped in the console."""

from __future__ import annotations

from playwright.sync_api import Browser, Page

from duckline.usage.ingest import UsageKind
from duckline.usage.quota import CreditRequest, RequestType, ResultCode, handle
from tests.browser.conftest import (
    PASSWORD,
    SUBSCRIBER_EN,
    SUPPORT,
    Live,
    api_client,
    log_in,
    log_out,
    new_context,
    screenshot,
    switch_language,
)


def quota_answer(live: Live, msisdn: str, session: str) -> ResultCode:
    """What the network hears when it asks for data on the line."""
    with live.runtime.unit_of_work() as uow:
        request = CreditRequest(session, 0, RequestType.INITIAL, msisdn, UsageKind.DATA, requested=1_000_000)
        return handle(uow, request).result_code


def test_report_lost_resume_and_move_the_esim_in_simplified_chinese(page: Page, live: Live, browser: Browser) -> None:
    with api_client(live, SUBSCRIBER_EN) as http:
        account_id = http.get("/api/v1/me").json()["id"]
        line = http.get("/api/v1/lines").json()["items"][0]
        old_code = http.get(f"/api/v1/lines/{line['id']}/esim").json()["activation_code"]
    log_in(page, live.base_url, SUBSCRIBER_EN)
    switch_language(page, "zh_Hans")
    page.goto(f"{live.base_url}/lines/{line['id']}")
    assert quota_answer(live, line["msisdn"], "pgw;before") is ResultCode.SUCCESS

    # Report the phone lost: a confirmation page first, then the line shows its service stopped.
    page.click("#line-care a[href$='/report-lost']")
    assert page.locator("h1").inner_text() == "报告手机遗失或被盗"
    page.check("input[name=reason][value=lost]")
    with page.expect_navigation():
        page.click("main form[action$='/report-lost'] button[type=submit]")
    assert page.locator(".line-head .status.suspended").inner_text() == "已停止服务"
    assert "您报告了手机遗失" in page.locator("#suspension-reason").inner_text()
    assert "此号码已停止服务" in page.locator("#line-care .notice").inner_text()
    assert quota_answer(live, line["msisdn"], "pgw;lost") is ResultCode.END_USER_SERVICE_DENIED
    screenshot(page, "line-suspended", "desktop", "zh_Hans")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "line-suspended", "phone", "zh_Hans")
    page.set_viewport_size({"width": 1280, "height": 900})

    # Staff see why, in the console.
    staff = new_context(browser)
    staff_page = staff.new_page()
    log_in(staff_page, live.base_url, SUPPORT)
    switch_language(staff_page, "zh_Hans")
    staff_page.goto(f"{live.base_url}/console/subscribers/{account_id}")
    assert "用户报告手机遗失" in staff_page.locator("#suspended-lines").inner_text()
    assert staff_page.locator("#suspended-lines form[action$='/resume'] textarea[name=reason]").is_visible()
    staff.close()

    # Turn it back on: a wrong password is refused and changes nothing, the right one works.
    page.click("#line-care a[href$='/resume']")
    page.fill("#resume-password", "not the password")
    with page.expect_navigation():
        page.click("main form[action$='/resume'] button[type=submit]")
    assert page.locator("#form-problem").inner_text() == "密码错误。"
    assert page.get_attribute("#resume-password", "aria-invalid") == "true"
    assert quota_answer(live, line["msisdn"], "pgw;wrong") is ResultCode.END_USER_SERVICE_DENIED
    page.fill("#resume-password", PASSWORD)
    with page.expect_navigation():
        page.click("main form[action$='/resume'] button[type=submit]")
    assert page.locator("#line-care .notice").inner_text() == "此号码的通话、短信和流量已恢复。"
    assert page.locator(".line-head .status.suspended").count() == 0
    assert quota_answer(live, line["msisdn"], "pgw;back") is ResultCode.SUCCESS

    # Move the eSIM: confirm with the password, and the new QR code is shown.
    page.click("#line-care a[href$='/esim/move']")
    assert page.locator("h1").inner_text() == "将 eSIM 转移到新手机"
    page.fill("#move-password", PASSWORD)
    with page.expect_navigation():
        page.click("main form[action$='/esim/move'] button[type=submit]")
    assert page.locator("h1").inner_text() == "您的新 eSIM"
    new_code = page.locator("code.activation").inner_text()
    assert new_code.startswith("LPA:1$") and new_code != old_code
    qr = page.locator("#new-esim-qr")
    qr.wait_for()
    assert page.evaluate("document.querySelector('#new-esim-qr').complete")
    assert page.evaluate("document.querySelector('#new-esim-qr').naturalWidth") > 0
    screenshot(page, "esim-moved", "desktop", "zh_Hans")
    with api_client(live, SUBSCRIBER_EN) as http:
        assert http.get(f"/api/v1/lines/{line['id']}/esim").json()["activation_code"] == new_code
    log_out(page)
