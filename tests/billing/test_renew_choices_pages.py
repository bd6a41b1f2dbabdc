"""The portal's side of issue 10's items 5, 8 and 15, in 简体中文: automatic renewal is offered with
a card only and explained for a wallet (a wallet form sent with it anyway is shown again with the
reason, and nothing is ordered); a new line's first purchase reads as an activation; the result page
says whether automatic renewal was turned on; a line renewed ahead shows its current and queued
periods on the line page and the lines list."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.billing.models import Order
from duckline.catalog import service as catalog
from duckline.catalog.rules import Allowance, Unit, Validity, Zone
from duckline.core.clock import FrozenClock
from duckline.runtime import Runtime
from tests.billing.test_renew_pages import GOOD, back_from_sandbox, login, pay_form, text
from tests.factories import buy, numbers, plan_input, register_and_verify, staff

GB = 1024**3


@pytest.fixture
def subscriber(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    """A verified subscriber reading 简体中文, with a new line (no plan yet), logged in."""
    numbers(runtime, 4)
    admin, _ = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=8800))
        catalog.create_plan(
            uow,
            admin,
            plan_input(
                "big",
                validity=Validity(months=1),
                price=16800,
                allowances=[Allowance(Unit.DATA_BYTES, Zone.HK, 20 * GB)],
            ),
        )
    registered = register_and_verify(client, runtime, 1)
    with runtime.unit_of_work() as uow:
        uow.session.scalars(select(Account).where(Account.phone == registered["phone"])).one().language = "zh_Hans"
    login(client, registered["phone"])
    return {**registered, "line_id": registered["line"]["id"]}


def orders(runtime: Runtime) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(Order)) or 0)


def pay(client: TestClient, line_id: int, query: str, auto_renew: bool = False, save: bool = False) -> str:
    """Quote, submit the pay form (ticking automatic renewal if asked), pay on the sandbox: the result page."""
    quote = client.get(f"/lines/{line_id}/renew?{query}")
    assert quote.status_code == 200, quote.text
    form = pay_form(quote.text) | ({"auto_renew": "1"} if auto_renew else {})
    placed = client.post(f"/lines/{line_id}/renew", data=form, follow_redirects=False)
    assert placed.status_code == 303, placed.text
    location = placed.headers["location"]
    if not save:
        result = back_from_sandbox(client, location, GOOD)
    else:
        from urllib.parse import urlsplit

        paid = client.post(urlsplit(location).path, data={"card_number": GOOD, "save": "1"}, follow_redirects=False)
        returned = client.get(urlsplit(paid.headers["location"]).path, follow_redirects=False)
        result = client.get(returned.headers["location"])
    assert result.status_code == 200
    return result.text


# --- item 5 ---------------------------------------------------------------------------------------


def test_auto_renew_is_offered_with_a_card_and_explained_with_a_wallet(
    client: TestClient, subscriber: dict[str, Any]
) -> None:
    line_id = subscriber["line_id"]
    with_card = client.get(f"/lines/{line_id}/renew?plan=monthly&method=card").text
    assert 'name="auto_renew"' in with_card
    assert "到期前用这张银行卡自动续费（可在设置中关闭）" in text(with_card)

    for wallet, name in (("alipay", "支付宝"), ("wechatpay", "微信支付")):
        page = client.get(f"/lines/{line_id}/renew?plan=monthly&method={wallet}").text
        assert 'name="auto_renew"' not in page
        assert f"使用{name}时无法自动续费：自动续费需要银行卡" in text(page)
    # The note by the methods (shown by portal.js only while a wallet is chosen).
    assert 'id="wallet-auto-renew-hint" data-wallet-hint' in with_card


def test_a_wallet_form_sent_with_auto_renew_is_shown_again_with_the_reason_and_orders_nothing(
    client: TestClient, runtime: Runtime, subscriber: dict[str, Any]
) -> None:
    line_id = subscriber["line_id"]
    quote = client.get(f"/lines/{line_id}/renew?plan=monthly&method=alipay")
    form = pay_form(quote.text) | {"auto_renew": "1"}  # as a page without the script, or an old tab, sends it

    refused = client.post(f"/lines/{line_id}/renew", data=form, follow_redirects=False)

    assert refused.status_code == 422
    shown = text(refused.text)
    assert "自动续费需要使用银行卡：支付宝和微信支付无法自动扣款。请用银行卡付款，或不开启自动续费直接付款。" in shown
    assert 'id="quote"' in refused.text  # the price stays, to pay without it or to choose the card
    assert orders(runtime) == 0


def test_the_result_page_says_whether_auto_renew_was_turned_on(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    line_id = subscriber["line_id"]
    not_saved = text(pay(client, line_id, "plan=monthly&method=card", auto_renew=True))
    assert "自动续费未开启：付款页面上未保存银行卡。" in not_saved

    saved = text(pay(client, line_id, "plan=monthly&method=card", auto_renew=True, save=True))
    assert "自动续费已开启：号码到期前会用您保存的银行卡自动续费。" in saved


def test_settings_says_auto_renew_needs_a_saved_card(client: TestClient, subscriber: dict[str, Any]) -> None:
    shown = text(client.get("/settings").text)
    assert "自动续费会从您以往用银行卡付款时保存的银行卡扣款，而您尚未保存银行卡。" in shown
    assert "支付宝和微信支付无法自动扣款。" in shown
    assert "Save for automatic renewals" not in shown


# --- item 8 ---------------------------------------------------------------------------------------


def test_a_new_lines_first_purchase_reads_as_an_activation_and_the_next_as_a_renewal(
    client: TestClient, subscriber: dict[str, Any]
) -> None:
    line_id = subscriber["line_id"]
    page = client.get(f"/lines/{line_id}/renew").text
    assert re.search(r"<h1>开通 [^<]+</h1>", page), page
    assert "<title>开通" in page and "续费" not in re.findall(r"<h1>([^<]+)</h1>", page)[0]

    activated = text(pay(client, line_id, "plan=monthly&method=card"))
    assert "完成：您的号码已开通" in activated and "有效期至" in activated and "已续费" not in activated

    renewed = text(pay(client, line_id, "plan=monthly&method=card"))
    assert "完成：您的号码已续费" in renewed and "新到期日" in renewed


# --- item 15 --------------------------------------------------------------------------------------


def test_a_line_renewed_ahead_shows_its_current_and_queued_periods(
    client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]
) -> None:
    line_id = subscriber["line_id"]
    first = buy(client, runtime, clock, subscriber, "monthly")
    ahead = buy(client, runtime, clock, subscriber, "big")

    page = client.get(f"/lines/{line_id}").text
    section = text(page[page.index('aria-labelledby="plan-title"') : page.index('aria-labelledby="allowances-title"')])
    # The current period's plan first, then when it ends, then what is queued after it.
    assert section.index("套餐 monthly") < section.index("本期结束") < section.index("已付费至")
    assert section.index("已付费至") < section.index("已提前续费") < section.index("套餐 big：")
    assert re.search(r"套餐 big：.+ 至 .+", section), section
    period_ends = re.findall(r'<dd id="period-end"><time datetime="([^"]+)"', page)
    assert [p[:19] for p in period_ends] == [first["period_end"][:19]]
    assert ahead["period_start"][:19] == first["period_end"][:19]
    allowances = text(page[page.index('aria-labelledby="allowances-title"') :])
    assert "剩余用量 本期用量，有效至" in allowances

    home = text(client.get("/").text)
    assert "本期结束" in home and "已提前续费" in home and "套餐 big：" in home
