"""The renewal journey through the portal's pages, as a browser walks it: log in, choose, see the
exact price, pay on the sandbox's hosted page, come back to the result; retry after a decline;
wait while processing; one order for a double submit; bills and receipt PDFs; Chinese pages."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.billing.models import Order, Payment, Receipt
from duckline.billing.order_states import OrderStatus
from duckline.billing.pricing import PromotionKind
from duckline.billing.renew_pages import provider_origins
from duckline.catalog import promotions
from duckline.catalog import service as catalog
from duckline.catalog.rules import Allowance, PlanKind, Unit, Validity, Zone
from duckline.core import i18n
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.lines.models import Line
from duckline.lines.states import LineStatus
from duckline.messaging import events
from duckline.messaging.event_types import AutoRenewFailed
from duckline.messaging.models import Notification
from duckline.runtime import Runtime
from duckline.web.portal import rendering
from tests.factories import PASSWORD, buy, numbers, plan_input, register_and_verify, staff

GOOD, DECLINED, HANGS = "4242424242424242", "4000000000000002", "4000000000000119"


@pytest.fixture
def world(client: TestClient, runtime: Runtime, clock: FrozenClock) -> dict[str, Any]:
    """A subscriber whose line is active on "monthly", a catalogue with another plan and an
    add-on pack, an automatic 10 % off "big" and a promo code; logged in to the portal."""
    numbers(runtime, 5)
    admin, _ = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=8800))
        catalog.create_plan(uow, admin, plan_input("big", price=16800))
        catalog.create_plan(
            uow,
            admin,
            plan_input(
                "pack", kind=PlanKind.ADDON, price=5000, allowances=[Allowance(Unit.DATA_BYTES, Zone.HK, 5 * 1024**3)]
            ),
        )
        promotions.create(
            uow,
            admin,
            promotions.PromotionInput(
                name={"en": "Big 10% off", "zh_Hant": "大計劃九折", "zh_Hans": "大套餐九折"},
                kind=PromotionKind.PERCENT_OFF,
                percent_off=10,
                plan_codes=("big",),
                starts_at=clock.now() - timedelta(days=1),
            ),
        )
        promotions.create(
            uow,
            admin,
            promotions.PromotionInput(
                name={"en": "Spring code", "zh_Hant": "春季優惠碼", "zh_Hans": "春季优惠码"},
                kind=PromotionKind.AMOUNT_OFF,
                amount_off=1000,
                code="SPRING10",
                starts_at=clock.now() - timedelta(days=1),
            ),
        )
    subscriber = register_and_verify(client, runtime, 1)
    buy(client, runtime, clock, subscriber, "monthly")  # active until 24 Dec 2026
    login(client, subscriber["phone"])
    return {**subscriber, "line_id": subscriber["line"]["id"]}


def login(client: TestClient, phone: str) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    done = client.post(
        "/login",
        data={"phone": phone, "password": PASSWORD, "csrf_token": field(page.text, "csrf_token"), "next": "/"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text


def field(page: str, name: str, form: int = 0) -> str:
    """The value of a hidden field in the page's n-th form that has it."""
    found = re.findall(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no field {name}"
    return html.unescape(found[form])


def text(page: str) -> str:
    """The page's visible text, tags dropped and whitespace squeezed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def pay_form(page: str) -> dict[str, str]:
    post = page[page.index('<form method="post" action="/lines/') :]
    post = post[: post.index("</form>")]
    return {name: field(post, name) for name in ("csrf_token", "idempotency_key", "plan", "promo", "method")}


def submit_renewal(client: TestClient, line_id: int, query: str) -> tuple[str, Any]:
    quote = client.get(f"/lines/{line_id}/renew?{query}")
    assert quote.status_code == 200, quote.text
    placed = client.post(f"/lines/{line_id}/renew", data=pay_form(quote.text), follow_redirects=False)
    return quote.text, placed


def back_from_sandbox(client: TestClient, location: str, card: str) -> Any:
    """Pay on the hosted page, follow the provider's return URL to our result page."""
    assert urlsplit(location).path.startswith("/sandbox/checkout/"), location
    paid = client.post(urlsplit(location).path, data={"card_number": card}, follow_redirects=False)
    assert paid.status_code == 303
    returned = client.get(urlsplit(paid.headers["location"]).path, follow_redirects=False)
    assert returned.status_code == 303, returned.text
    result_url = returned.headers["location"]
    assert re.fullmatch(r"/orders/\d+/result\?payment=\d+", result_url), result_url
    return client.get(result_url)


def count(runtime: Runtime, table: Any) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table)) or 0)


def test_renew_page_offers_plans_packs_promotions_and_methods(client: TestClient, world: dict[str, Any]) -> None:
    page = client.get(f"/lines/{world['line_id']}/renew")

    assert page.status_code == 200
    shown = text(page.text)
    for label in ("The same plan again", "Another plan", "Add-on packs", "Plan monthly", "Plan big", "Plan pack"):
        assert label in shown
    assert "HK$88.00" in shown and "HK$168.00" in shown and "1 calendar month" in shown and "30 days" in shown
    assert "100 minutes · Hong Kong" in shown and "100 SMS" in shown and "5 GB of data" in shown
    assert "Big 10% off" in shown and "10% off" in shown and "Spring code" not in shown  # codes stay secret
    assert re.search(r'value="monthly"\s+checked', page.text)  # the same plan again, ticked
    methods = re.findall(r'name="method" value="([a-z]+)"', page.text)
    assert methods == ["card", "alipay", "wechatpay"]  # card first, and never the internal "sandbox"
    assert "See the exact price" in shown and 'name="promo"' in page.text


def test_renew_pay_and_see_the_receipt(client: TestClient, runtime: Runtime, world: dict[str, Any]) -> None:
    quote, placed = submit_renewal(client, world["line_id"], "plan=big&promo=spring10&method=card")

    shown = text(quote)
    assert "The exact price" in shown
    # 168.00 − 10 % (16.80) − HK$10 code = 141.20; the period starts at the current expiry
    assert "HK$168.00" in shown and "−HK$16.80" in shown and "−HK$10.00" in shown
    assert "Big 10% off" in shown and "Spring code" in shown
    assert "Total to pay HK$141.20" in shown and "Pay HK$141.20" in shown
    assert "New expiry 23 Jan 2027" in shown and "New plan starts 24 Dec 2026" in shown
    assert placed.status_code == 303, placed.text

    result = back_from_sandbox(client, placed.headers["location"], GOOD)

    assert result.status_code == 200
    shown = text(result.text)
    assert "Done: your line is renewed" in shown
    receipt = re.search(r"R2026-\d+", shown)
    assert receipt, shown
    with runtime.unit_of_work() as uow:
        order = uow.session.scalars(select(Order).order_by(Order.id.desc())).first()
        assert order is not None and order.status is OrderStatus.FULFILLED and order.total_amount == 14120
        row = uow.session.scalars(select(Receipt).where(Receipt.order_id == order.id)).one()
        assert row.display_number == receipt.group()
    assert f'href="/bills/receipts/{row.id}.pdf"' in result.text
    assert f'href="/lines/{world["line_id"]}"' in result.text
    assert "New expiry 23 Jan 2027" in shown
    pdf = client.get(f"/bills/receipts/{row.id}.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_quote_errors_are_shown_next_to_their_field(
    client: TestClient, runtime: Runtime, world: dict[str, Any]
) -> None:
    bad_code = client.get(f"/lines/{world['line_id']}/renew?plan=monthly&promo=NOPE&method=card")

    assert bad_code.status_code == 422
    assert re.search(r'id="promo-error">This promo code is not valid\.<', bad_code.text)
    assert 'aria-describedby="promo-error"' in bad_code.text and "Pay HK$" not in bad_code.text

    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, world["line_id"])
        assert line is not None
        line.status = LineStatus.RECYCLED
    recycled = client.get(f"/lines/{world['line_id']}/renew?plan=monthly&method=card")

    assert recycled.status_code == 409
    assert "This number has been recycled and can no longer be renewed." in text(recycled.text)
    assert "Pay HK$" not in recycled.text


def test_someone_elses_line_looks_missing(client: TestClient, runtime: Runtime, world: dict[str, Any]) -> None:
    other = register_and_verify(client, runtime, 2)

    page = client.get(f"/lines/{other['line']['id']}/renew")

    assert page.status_code == 404 and "Not found." in page.text


def test_declined_card_then_retry_succeeds(client: TestClient, runtime: Runtime, world: dict[str, Any]) -> None:
    _, placed = submit_renewal(client, world["line_id"], "plan=monthly&method=card")

    failed = back_from_sandbox(client, placed.headers["location"], DECLINED)

    shown = text(failed.text)
    assert "The payment did not go through" in shown
    assert "Your card was declined. Try another card or another payment method." in shown
    order_id = int(re.search(r'action="/orders/(\d+)/retry"', failed.text).group(1))  # type: ignore[union-attr]
    retry = {
        "csrf_token": field(failed.text, "csrf_token", -1),
        "attempt": field(failed.text, "attempt"),
        "method": "card",
    }
    retried = client.post(f"/orders/{order_id}/retry", data=retry, follow_redirects=False)
    assert retried.status_code == 303
    again = client.post(f"/orders/{order_id}/retry", data=retry, follow_redirects=False)  # sent twice
    assert again.headers["location"] == retried.headers["location"]

    done = back_from_sandbox(client, retried.headers["location"], GOOD)

    assert "Done: your line is renewed" in text(done.text)
    with runtime.unit_of_work() as uow:
        order = uow.session.get(Order, order_id)
        assert order is not None and order.status is OrderStatus.FULFILLED
        payments = uow.session.scalars(select(Payment).where(Payment.order_id == order_id)).all()
        assert len(payments) == 2  # the declined one and the retry: the double retry made no third


def test_processing_payment_page_reloads_itself(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    _, placed = submit_renewal(client, world["line_id"], "plan=monthly&method=card")

    waiting = back_from_sandbox(client, placed.headers["location"], HANGS)

    assert waiting.status_code == 200
    assert 'data-refresh-seconds="2"' in waiting.text
    assert "Waiting for the payment to be confirmed" in text(waiting.text)
    assert "<script" not in waiting.text.split("</head>", 1)[1]  # no inline script: CSP
    assert "script-src 'self'" in waiting.headers["content-security-policy"]


def test_double_submit_makes_one_order(client: TestClient, runtime: Runtime, world: dict[str, Any]) -> None:
    before = count(runtime, Order)
    quote = client.get(f"/lines/{world['line_id']}/renew?plan=monthly&method=card")
    form = pay_form(quote.text)

    first = client.post(f"/lines/{world['line_id']}/renew", data=form, follow_redirects=False)
    second = client.post(f"/lines/{world['line_id']}/renew", data=form, follow_redirects=False)

    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert count(runtime, Order) == before + 1
    with runtime.unit_of_work() as uow:
        newest = uow.session.scalars(select(Order).order_by(Order.id.desc())).first()
        assert newest is not None
        assert uow.session.scalar(select(func.count()).select_from(Payment).where(Payment.order_id == newest.id)) == 1
    fresh = client.get(f"/lines/{world['line_id']}/renew?plan=monthly&method=card")
    assert pay_form(fresh.text)["idempotency_key"] != form["idempotency_key"]  # a new page, a new order


def test_the_form_needs_its_csrf_token(client: TestClient, runtime: Runtime, world: dict[str, Any]) -> None:
    quote = client.get(f"/lines/{world['line_id']}/renew?plan=monthly&method=card")
    form = {**pay_form(quote.text), "csrf_token": "forged"}

    refused = client.post(f"/lines/{world['line_id']}/renew", data=form, follow_redirects=False)

    assert refused.status_code == 403
    assert count(runtime, Order) == 1  # only the purchase the fixture made


def test_wallet_qr_code_page(client: TestClient, runtime: Runtime, world: dict[str, Any]) -> None:
    _, placed = submit_renewal(client, world["line_id"], "plan=monthly&method=wechatpay")
    assert placed.status_code == 303
    with runtime.unit_of_work() as uow:
        payment = uow.session.scalars(select(Payment).order_by(Payment.id.desc())).first()
        assert payment is not None
        payment.next_action = {"type": "qr", "code_url": "weixin://wxpay/bizpayurl?pr=abc"}  # as WeChat Native
        order_id = payment.order_id

    page = client.get(f"/orders/{order_id}/pay")

    assert page.status_code == 200
    assert 'src="data:image/png;base64,' in page.text and 'data-refresh-seconds="3"' in page.text
    assert "Scan to pay with WeChat Pay" in text(page.text)


def test_bills_list_orders_receipts_and_spending(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    page = client.get("/bills")

    assert page.status_code == 200
    shown = text(page.text)
    with runtime.unit_of_work() as uow:
        receipt = uow.session.scalars(select(Receipt)).one()
    assert receipt.display_number in shown and f'href="/bills/receipts/{receipt.id}.pdf"' in page.text
    assert "Plan monthly" in shown and "Completed" in shown and "+852 5170 0000" in shown
    assert "Nov 2026 HK$88.00 HK$0.00 HK$88.00" in shown
    assert '<svg class="chart"' in page.text and 'class="bar-money"' in page.text
    assert " style=" not in page.text  # CSP: no inline styles
    pdf = client.get(f"/bills/receipts/{receipt.id}.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and receipt.display_number in pdf.headers["content-disposition"]

    other = register_and_verify(client, runtime, 2)
    theirs = buy(client, runtime, clock, other, "monthly")
    with runtime.unit_of_work() as uow:
        their_receipt = uow.session.scalars(select(Receipt).where(Receipt.order_id == theirs["id"])).one()
    assert client.get(f"/bills/receipts/{their_receipt.id}.pdf").status_code == 404
    assert theirs["receipt_number"] not in text(client.get("/bills").text)


def test_pages_need_a_login(client: TestClient, world: dict[str, Any]) -> None:
    client.cookies.clear()
    for path in ("/bills", f"/lines/{world['line_id']}/renew", "/bills/receipts/1.pdf", "/orders/1/result"):
        page = client.get(path, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")


def test_pages_in_traditional_chinese(
    client: TestClient, runtime: Runtime, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = client.get("/bills")
    switched = client.post(
        "/language",
        data={"language": "zh_Hant", "csrf_token": field(home.text, "csrf_token"), "next": "/bills"},
        follow_redirects=False,
    )
    assert switched.status_code == 303
    missing: set[tuple[str, str]] = set()
    monkeypatch.setattr(rendering, "missing_translations", missing)

    renew = client.get(f"/lines/{world['line_id']}/renew")
    quote = client.get(f"/lines/{world['line_id']}/renew?plan=big&promo=NOPE&method=card")
    bills = client.get("/bills")
    _, placed = submit_renewal(client, world["line_id"], "plan=monthly&method=card")
    failed = back_from_sandbox(client, placed.headers["location"], DECLINED)

    assert 'lang="zh-Hant-HK"' in renew.text
    assert "查看確實價錢" in text(renew.text) and "大計劃九折" in text(renew.text) and "信用卡" in text(renew.text)
    assert i18n.gettext("zh_Hant", "This promo code is not valid.") in text(quote.text)
    assert "每月開支" in text(bills.text)
    assert "付款未能完成" in text(failed.text)
    ours = {message for message, name in i18n.template_messages() if "renew" in name or "bills" in name}
    ours |= {message for message, name in i18n.template_messages() if "order_result" in name or "pay_qr" in name}
    assert not {message for language, message in missing if message in ours}


def test_paying_pages_let_the_form_redirect_to_the_provider(client: TestClient, world: dict[str, Any]) -> None:
    """Browsers check the redirect answering a form against the page's CSP form-action."""
    page = client.get(f"/lines/{world['line_id']}/renew?plan=monthly&method=card")

    policy = page.headers["content-security-policy"]
    assert policy.endswith("form-action 'self' http://127.0.0.1:8000") and "script-src 'self'" in policy
    live = Settings(
        database_url="sqlite://",
        base_url="https://duckline.example",
        alipay_provider="alipay",
        alipay_app_id="2021000000000000",
        alipay_app_private_key="key",
        alipay_public_key="key",
    )
    assert provider_origins(live) == ["https://duckline.example", "https://openapi.alipay.com"]


@pytest.mark.parametrize("language", ["en", "zh_Hant", "zh_Hans"])
def test_the_failed_payment_message_links_to_the_portal(
    client: TestClient, runtime: Runtime, world: dict[str, Any], language: str
) -> None:
    """The SMS after a decline says where to try again: the order's page in the web portal (there is no app)."""
    with runtime.unit_of_work() as uow:
        account = uow.session.scalars(select(Account).where(Account.phone == world["phone"])).one()
        account.language = language
    _, placed = submit_renewal(client, world["line_id"], "plan=monthly&method=card")

    failed = back_from_sandbox(client, placed.headers["location"], DECLINED)

    order_id = int(re.search(r'action="/orders/(\d+)/retry"', failed.text).group(1))  # type: ignore[union-attr]
    with runtime.unit_of_work() as uow:
        sms = uow.session.scalars(
            select(Notification).where(Notification.template == "payment_failed", Notification.channel == "sms")
        ).one()
    assert sms.language == language
    assert f"{runtime.settings.base_url}/orders/{order_id}/result" in sms.body
    assert "app" not in sms.body.lower() and "App" not in sms.body and "應用程式" not in sms.body


@pytest.mark.parametrize("language", ["en", "zh_Hant", "zh_Hans"])
def test_the_failed_automatic_renewal_message_links_to_the_renew_page(
    runtime: Runtime, world: dict[str, Any], language: str
) -> None:
    with runtime.unit_of_work() as uow:
        account = uow.session.scalars(select(Account).where(Account.phone == world["phone"])).one()
        account.language = language
        failed = AutoRenewFailed(
            account_id=account.id,
            order_id=None,
            line_id=world["line_id"],
            msisdn="+85251700000",
            attempt=1,
            final=False,
            reason="card_declined",
        )
        events.emit(uow, failed)

    with runtime.unit_of_work() as uow:
        sms = uow.session.scalars(
            select(Notification).where(Notification.template == "auto_renew_failed", Notification.channel == "sms")
        ).one()
    assert f"{runtime.settings.base_url}/lines/{world['line_id']}/renew" in sms.body
    assert "app" not in sms.body.lower() and "應用程式" not in sms.body


def test_a_payment_abandoned_past_its_time_to_pay_is_no_longer_awaited(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    """Left on the provider's page: until the order's pay_by the result page waits (and reloads);
    after it, Bills and the result page say the payment was not completed, and nothing reloads,
    even before reconciliation gets round to expiring the order."""
    _, placed = submit_renewal(client, world["line_id"], "plan=monthly&method=card")
    result_url = back_from_sandbox(client, placed.headers["location"], HANGS).url
    with runtime.unit_of_work() as uow:
        order = uow.session.scalars(select(Order).order_by(Order.id.desc())).first()
        assert order is not None
        order_id, pay_by = order.id, order.pay_by

    clock.set(pay_by - timedelta(seconds=1))
    waiting = client.get(result_url)
    assert 'data-refresh-seconds="2"' in waiting.text and 'http-equiv="refresh"' not in waiting.text
    assert "Waiting for the payment to be confirmed" in text(waiting.text)
    assert "Waiting for payment" in text(client.get("/bills").text)

    clock.set(pay_by + timedelta(seconds=1))
    lapsed = client.get(result_url)
    assert lapsed.status_code == 200
    assert "data-refresh-seconds" not in lapsed.text and 'http-equiv="refresh"' not in lapsed.text
    assert "The payment was not completed" in text(lapsed.text)
    assert "Not completed" in text(lapsed.text)
    bills = text(client.get("/bills").text)
    assert "Not completed" in bills and "Waiting for payment" not in bills
    with runtime.unit_of_work() as uow:  # only what is shown changed: expiring it is reconciliation's job
        still = uow.session.get(Order, order_id)
        assert still is not None and still.status in (OrderStatus.PAYMENT_PENDING, OrderStatus.CREATED)

    with runtime.unit_of_work() as uow:
        account = uow.session.scalars(select(Account).where(Account.phone == world["phone"])).one()
        account.language = "zh_Hans"
    assert i18n.gettext("zh_Hans", "Not completed") in text(client.get("/bills").text)
    assert i18n.gettext("zh_Hans", "The payment was not completed") in text(client.get(result_url).text)
