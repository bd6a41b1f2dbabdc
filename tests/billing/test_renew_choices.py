"""What the subscriber chose when buying, and what they are told (issue 10, items 5, 8 and 15):

- automatic renewal charges a saved card, so it is refused with a wallet (auto_renew_needs_card)
  and nothing is created; a card order retried with a wallet is paid without saving anything;
- a new line's first purchase is an activation (messages, receipt), a "first purchase" promo code
  (the demo's WELCOME20) applies to it, and a code already used says so (promo_code_already_used);
- a line renewed ahead shows the period running now and the periods queued after it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.billing import receipt_documents
from duckline.billing.models import Order, Payment, Receipt, SavedPaymentMethod
from duckline.catalog import promotions
from duckline.catalog import service as catalog
from duckline.catalog.rules import Allowance, Unit, Validity, Zone
from duckline.core.clock import FrozenClock
from duckline.lines import service as lines
from duckline.lines.models import Line
from duckline.messaging.models import DomainEvent, Notification
from duckline.runtime import Runtime
from duckline.staff import demo
from tests.factories import (
    PASSWORD,
    buy,
    deliver,
    idem,
    numbers,
    pay_on_sandbox,
    place_order,
    plan_input,
    register_and_verify,
    staff,
)

MONTHLY, BIG = 8800, 16800
GB = 1024**3


@pytest.fixture
def admin(runtime: Runtime, clock: FrozenClock) -> Any:
    """The catalogue ("monthly", "big" with more data) and the demo's own WELCOME20."""
    numbers(runtime, 6)
    admin, _ = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=MONTHLY))
        catalog.create_plan(
            uow,
            admin,
            plan_input(
                "big",
                validity=Validity(months=1),
                price=BIG,
                allowances=[Allowance(Unit.DATA_BYTES, Zone.HK, 20 * GB)],
            ),
        )
        welcome = [p for p in demo._promotions(uow) if p.code == "WELCOME20"]
        assert len(welcome) == 1 and welcome[0].first_renewal_only and welcome[0].max_uses_per_account == 1
        promotions.create(uow, admin, welcome[0])
    return admin


@pytest.fixture
def alice(client: TestClient, runtime: Runtime, admin: Any) -> dict[str, Any]:
    subscriber = register_and_verify(client, runtime, 1)
    with runtime.unit_of_work() as uow:
        account = uow.session.scalars(select(Account).where(Account.phone == subscriber["phone"])).one()
        account.language = "zh_Hans"
    return subscriber


def count(runtime: Runtime, table: Any, *where: Any) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def error(response: Any) -> tuple[int, str, str | None]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["field"]


ZH = {"Accept-Language": "zh-CN"}


# --- item 5: automatic renewal only with a card ---------------------------------------------------


@pytest.mark.parametrize("wallet", ["alipay", "wechatpay"])
def test_auto_renew_with_a_wallet_is_refused_and_nothing_is_created(
    client: TestClient, runtime: Runtime, alice: dict[str, Any], wallet: str
) -> None:
    body = {"line_id": alice["line"]["id"], "plan_code": "monthly", "payment_method": wallet, "auto_renew": True}
    refused = client.post("/api/v1/orders", json=body, headers={**alice["headers"], **idem(), **ZH})

    assert error(refused) == (422, "auto_renew_needs_card", "auto_renew")
    assert "支付宝和微信支付无法自动扣款" in refused.json()["error"]["message"]
    assert count(runtime, Order) == count(runtime, Payment) == 0
    assert client.get("/api/v1/orders", headers=alice["headers"]).json()["items"] == []

    # The same without automatic renewal is a plain wallet order.
    body["auto_renew"] = False
    placed = client.post("/api/v1/orders", json=body, headers={**alice["headers"], **idem()})
    assert placed.status_code == 201, placed.text
    assert placed.json()["payments"][0]["method"] == wallet


def test_the_openapi_document_says_auto_renew_needs_a_card(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    described = schema["components"]["schemas"]["OrderIn"]["properties"]["auto_renew"]["description"]
    assert "auto_renew_needs_card" in described
    line = schema["components"]["schemas"]["LineOut"]["properties"]
    assert {"current_period", "queued_periods"} <= set(line)
    status = schema["components"]["schemas"]["LineStatusOut"]["properties"]
    assert {"current_period", "queued_periods"} <= set(status)


def test_a_card_order_retried_with_a_wallet_saves_nothing_and_leaves_auto_renew_off(
    client: TestClient, runtime: Runtime, clock: FrozenClock, alice: dict[str, Any]
) -> None:
    order = place_order(client, alice, auto_renew=True).json()
    assert pay_on_sandbox(client, order, card="4000000000000002").status_code == 303  # declined
    deliver(runtime, client, clock)

    retried = client.post(
        f"/api/v1/orders/{order['id']}/payments", json={"payment_method": "alipay"}, headers=alice["headers"]
    )
    assert retried.status_code == 200, retried.text
    assert pay_on_sandbox(client, retried.json(), save=True).status_code == 303  # "save" ticked all the same
    deliver(runtime, client, clock)

    final = client.get(f"/api/v1/orders/{order['id']}", headers=alice["headers"]).json()
    assert final["status"] == "fulfilled" and final["payments"][-1]["method"] == "alipay"
    assert count(runtime, SavedPaymentMethod) == 0
    line = client.get("/api/v1/lines", headers=alice["headers"]).json()["items"][0]
    assert line["auto_renew"] is False


def test_turning_auto_renew_on_needs_a_saved_card(
    client: TestClient, runtime: Runtime, clock: FrozenClock, alice: dict[str, Any]
) -> None:
    buy(client, runtime, clock, alice)
    turned = client.patch(
        f"/api/v1/lines/{alice['line']['id']}/auto-renew", json={"enabled": True}, headers={**alice["headers"], **ZH}
    )
    assert error(turned) == (409, "saved_method_required", "auto_renew")
    assert turned.json()["error"]["message"] == "自动续费需要您以往用银行卡付款时保存的银行卡。"


# --- item 8: activation, first purchase and used codes ---------------------------------------------


def test_a_new_lines_first_purchase_is_an_activation_and_welcome20_applies(
    client: TestClient, runtime: Runtime, clock: FrozenClock, alice: dict[str, Any]
) -> None:
    quoted = client.post(
        "/api/v1/quotes",
        json={"line_id": alice["line"]["id"], "plan_code": "monthly", "promo_code": "welcome20"},
        headers=alice["headers"],
    ).json()
    assert quoted["kind"] == "activation" and quoted["total_amount"] == MONTHLY - 1760

    order = buy(client, runtime, clock, alice, promo_code="WELCOME20")
    assert order["kind"] == "activation" and order["total_amount"] == 7040

    with runtime.unit_of_work() as uow:
        sent = uow.session.scalars(select(Notification).where(Notification.account_id.is_not(None))).all()
        confirmations = [n for n in sent if n.template.endswith("_succeeded")]
        assert {n.template for n in confirmations} == {"activation_succeeded"}
        sms = next(n for n in confirmations if n.channel == "sms")
        assert sms.language == "zh_Hans" and sms.body.startswith("您的号码") and "已开通" in sms.body
        assert "续费" not in sms.body
        event = uow.session.scalars(select(DomainEvent).where(DomainEvent.type == "renewal.succeeded")).one()
        assert event.payload["kind"] == "activation"
        receipt = uow.session.scalars(select(Receipt)).one()
        document = receipt_documents.document(uow, receipt, "zh_Hans")
        assert document.items[0][0].startswith("开通：")
        assert receipt_documents.document(uow, receipt, "en").items[0][0].startswith("Activation: ")

    renewal = buy(client, runtime, clock, alice)  # the second purchase: a renewal, at full price
    assert renewal["kind"] == "renewal" and renewal["total_amount"] == MONTHLY
    with runtime.unit_of_work() as uow:
        latest = uow.session.scalars(select(Notification).order_by(Notification.id.desc())).first()
        assert latest is not None and latest.template == "renewal_succeeded"
        receipt = uow.session.scalars(select(Receipt).where(Receipt.order_id == renewal["id"])).one()
        assert receipt_documents.document(uow, receipt, "zh_Hans").items[0][0].startswith("续费：")


def test_a_promo_code_already_used_says_so_on_this_line_and_on_a_new_one(
    client: TestClient, runtime: Runtime, clock: FrozenClock, alice: dict[str, Any]
) -> None:
    buy(client, runtime, clock, alice, promo_code="WELCOME20")
    quote = {"line_id": alice["line"]["id"], "plan_code": "monthly", "promo_code": "WELCOME20"}

    again = client.post("/api/v1/quotes", json=quote, headers={**alice["headers"], **ZH})
    assert error(again) == (409, "promo_code_already_used", "promo_code")
    assert again.json()["error"]["message"] == "您已使用过该优惠码。"

    # A second line's first purchase: one use per subscriber, so already used there too.
    second = client.post("/api/v1/lines", headers=alice["headers"])
    assert second.status_code == 201, second.text
    quote["line_id"] = second.json()["id"]
    refused = place_order(client, {**alice, "line": second.json()}, promo_code="WELCOME20")
    assert error(refused) == (409, "promo_code_already_used", "promo_code")
    assert count(runtime, Order, Order.line_id == second.json()["id"]) == 0


def test_a_first_purchase_code_on_a_later_purchase_is_refused_as_first_purchase_only(
    client: TestClient, runtime: Runtime, clock: FrozenClock, alice: dict[str, Any]
) -> None:
    buy(client, runtime, clock, alice)  # activated without the code
    refused = client.post(
        "/api/v1/quotes",
        json={"line_id": alice["line"]["id"], "plan_code": "monthly", "promo_code": "WELCOME20"},
        headers={**alice["headers"], **ZH},
    )
    assert error(refused) == (422, "promo_code_first_renewal_only", "promo_code")
    assert refused.json()["error"]["message"] == "该优惠码仅限号码首次购买时使用。"


def test_a_line_started_by_staff_makes_its_first_purchase_at_its_first_renewal(
    client: TestClient, runtime: Runtime, clock: FrozenClock, alice: dict[str, Any], admin: Any
) -> None:
    """As the demo's lines are: activated by staff, with no order; WELCOME20 fits their first renewal
    (here a plan change)."""
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, alice["line"]["id"])
        assert line is not None
        lines.activate(uow, uow.session.merge(admin), line, catalog.get_plan(uow, "monthly"))
    first = buy(client, runtime, clock, alice, "big", promo_code="WELCOME20")  # a plan change, queued
    assert first["kind"] == "change" and first["total_amount"] == 13440

    # The period staff started has no order; it runs on the plan the queued change was bought on.
    status = client.get(f"/api/v1/lines/{alice['line']['id']}/status", headers=alice["headers"]).json()
    assert status["current_period"]["plan_code"] == "monthly" and status["current_period"]["order_id"] is None
    assert status["current_period"]["ends_at"] == first["period_start"]
    assert [(p["plan_code"], p["order_id"]) for p in status["queued_periods"]] == [("big", first["id"])]


# --- item 15: the current period and the queued ones ----------------------------------------------


def test_a_line_renewed_ahead_shows_the_current_period_and_what_is_queued(
    client: TestClient, runtime: Runtime, clock: FrozenClock, alice: dict[str, Any]
) -> None:
    line_id = alice["line"]["id"]
    activation = buy(client, runtime, clock, alice)
    ahead = buy(client, runtime, clock, alice, "big")  # a plan change, from the end of this period
    first_end, second_end = activation["period_end"], ahead["period_end"]
    assert ahead["period_start"] == first_end

    status = client.get(f"/api/v1/lines/{line_id}/status", headers=alice["headers"]).json()
    assert status["expires_at"] == second_end  # unchanged meaning: paid until
    assert status["line"]["plan_code"] == "big"  # unchanged meaning: the plan last bought
    assert status["current_period"] == {
        "plan_code": "monthly",
        "starts_at": activation["period_start"],
        "ends_at": first_end,
        "order_id": activation["id"],
    }
    assert status["queued_periods"] == [
        {"plan_code": "big", "starts_at": first_end, "ends_at": second_end, "order_id": ahead["id"]}
    ]
    # The allowances listed are the current period's (monthly's 10 MB, not big's 20 GB), until its end.
    data = [a for a in status["allowances"] if a["unit"] == "data_bytes"]
    assert [a["initial"] for a in data] == [10_000_000] and data[0]["valid_until"] == first_end

    listed = client.get("/api/v1/lines", headers=alice["headers"]).json()["items"][0]
    assert listed["current_period"] == status["current_period"] and listed["queued_periods"] == status["queued_periods"]
    assert listed["expires_at"] == second_end

    clock.set(datetime.fromisoformat(first_end) + timedelta(hours=1))  # into the queued period
    token = client.post("/api/v1/auth/tokens", json={"phone": alice["phone"], "password": PASSWORD}).json()["token"]
    later = client.get(f"/api/v1/lines/{line_id}/status", headers={"Authorization": f"Bearer {token}"}).json()
    assert later["queued_periods"] == []
    assert later["current_period"]["plan_code"] == "big" and later["current_period"]["ends_at"] == second_end
    assert [a["initial"] for a in later["allowances"] if a["unit"] == "data_bytes"] == [20 * GB]


def test_a_line_with_nothing_queued_has_its_expiry_as_the_current_periods_end(
    client: TestClient, runtime: Runtime, clock: FrozenClock, alice: dict[str, Any]
) -> None:
    pending = client.get(f"/api/v1/lines/{alice['line']['id']}/status", headers=alice["headers"]).json()
    assert pending["current_period"] is None and pending["queued_periods"] == []

    order = buy(client, runtime, clock, alice)
    status = client.get(f"/api/v1/lines/{alice['line']['id']}/status", headers=alice["headers"]).json()
    assert status["current_period"]["ends_at"] == status["expires_at"] == order["period_end"]
    assert status["queued_periods"] == []
