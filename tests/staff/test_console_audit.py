"""The console's audit log as an administrator reads it: each entry a sentence in the reader's
language with formatted values (money, phone numbers, on/off, statuses), subjects linked to their
pages, every change with its old and new value, and filters by who, subject, action and days."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.phone import display
from duckline.core.clock import FrozenClock
from duckline.runtime import Runtime
from duckline.staff import audit
from duckline.staff.console_audit import subject_href
from duckline.staff.models import AuditEntry
from tests.factories import PASSWORD, buy, hk_mobile, last_code
from tests.staff import test_console
from tests.staff.test_console import browser, csrf, field, text

world = test_console.world
# Words the page showed untranslated before: detail keys and Python's booleans.
RAW_KEYS = ("True", "False", "None", "amount", "code", "kyc", "msisdn", "new", "old", "reason", "preferences")


def switch(runtime: Runtime, page: TestClient, language: str) -> None:
    switched = page.post("/language", data={"language": language, "csrf_token": csrf(runtime, page), "next": "/"})
    assert switched.status_code == 200


def refund_ten_dollars(client: TestClient, runtime: Runtime, clock: FrozenClock, w: dict[str, Any]) -> int:
    order = buy(client, runtime, clock, w["subscriber"])
    finance = browser(client, runtime, w["phones"]["finance"])
    page = finance.get(f"/console/subscribers/{w['account_id']}")
    done = finance.post(
        f"/console/orders/{order['id']}/refund",
        data={"csrf_token": field(page.text, "csrf_token"), "amount": "10.00", "reason": "慢速数据补偿"},
    )
    assert done.status_code == 200, done.text
    return int(order["id"])


def change_phone(client: TestClient, runtime: Runtime, subscriber: dict[str, Any], new: str) -> None:
    asked = client.post("/api/v1/me/phone", json={"phone": new, "password": PASSWORD}, headers=subscriber["headers"])
    assert asked.status_code == 202, asked.text
    done = client.post("/api/v1/me/phone/verify", json={"code": last_code(runtime, new)}, headers=subscriber["headers"])
    assert done.status_code == 200, done.text


def rows(page: str) -> list[str]:
    """The visible text of each entry of the audit table."""
    return [text(row) for row in re.findall(r'<tr id="audit-\d+".*?</tr>', page, re.S)]


def actions(page: str) -> list[str]:
    return re.findall(r'<tr id="audit-\d+" data-action="([^"]+)"', page)


@pytest.fixture
def admin(client: TestClient, runtime: Runtime, world: dict[str, Any]) -> TestClient:
    signed_in = browser(client, runtime, world["phones"]["admin"])
    switch(runtime, signed_in, "zh_Hans")
    return signed_in


def test_a_simplified_chinese_page_reads_as_sentences_with_formatted_values(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any], admin: TestClient
) -> None:
    order_id = refund_ten_dollars(client, runtime, clock, world)
    new_phone = hk_mobile(77)
    change_phone(client, runtime, world["subscriber"], new_phone)
    with runtime.unit_of_work() as uow:
        refund = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "order.refunded")).one()
        changed = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "account.phone_changed")).one()
        assert refund.detail == {"amount": {"amount": 1000, "currency": "HKD"}, "reason": "慢速数据补偿"}
        assert changed.detail == {"old": world["subscriber"]["phone"], "new": new_phone}

    page = admin.get("/console/audit")

    assert page.status_code == 200
    shown = text(page.text)
    for word in RAW_KEYS:
        assert not re.search(rf"\b{word}\b", shown), f"{word!r} shown raw"
    assert "order.refunded" not in shown and "account.phone_changed" not in shown
    refunded = next(r for r in rows(page.text) if "HK$10.00" in r)
    assert f"订单 #{order_id}" in refunded and "慢速数据补偿" in refunded and "1000" not in refunded
    assert f'href="/console/subscribers/{world["account_id"]}#order-{order_id}"' in page.text
    phone_row = next(r for r in rows(page.text) if "登录手机号码" in r)
    old_shown, new_shown = display(world["subscriber"]["phone"]), display(new_phone)
    assert f"由 {old_shown} 改为 {new_shown}" in phone_row
    assert "+852 5100 0003" in shown  # who refunded: the finance staff member's phone


def test_changes_keep_old_and_new_values(
    client: TestClient, runtime: Runtime, world: dict[str, Any], admin: TestClient
) -> None:
    headers = world["subscriber"]["headers"]
    line_id = world["subscriber"]["line"]["id"]
    turned = client.patch(
        f"/api/v1/lines/{line_id}/features", json={"voicemail": True, "caller_id": False}, headers=headers
    )
    assert turned.status_code == 200, turned.text
    kept = client.put("/api/v1/me/preferences", json={"email": {"marketing": True}}, headers=headers)
    assert kept.status_code == 200, kept.text

    with runtime.unit_of_work() as uow:
        details = {
            action: detail for action, detail in uow.session.execute(select(AuditEntry.action, AuditEntry.detail))
        }
    assert details["line.features"] == {
        "old": {"voicemail": False, "caller_id": True},
        "new": {"voicemail": True, "caller_id": False},
    }
    assert details["account.preferences"] == {"old": {"email.marketing": False}, "new": {"email.marketing": True}}

    shown = rows(admin.get("/console/audit").text)
    assert any("语音信箱 已关闭 → 已开启 来电显示 已开启 → 已关闭" in r for r in shown), shown
    assert any("邮箱 · 优惠 已关闭 → 已开启" in r for r in shown), shown


def test_each_filter_narrows_the_list(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any], admin: TestClient
) -> None:
    order_id = refund_ten_dollars(client, runtime, clock, world)
    clock.advance(timedelta(days=3))
    change_phone(client, runtime, world["subscriber"], hk_mobile(78))
    everything = actions(admin.get("/console/audit").text)
    assert {"order.refunded", "account.phone_changed", "plan.created", "account.registered"} <= set(everything)

    by_action = admin.get("/console/audit", params={"action": "order.refunded"})
    by_actor = admin.get("/console/audit", params={"who": world["phones"]["finance"]})
    by_actor_id = admin.get("/console/audit", params={"who": str(world["ids"]["admin"])})
    by_subject = admin.get("/console/audit", params={"subject": f"order:{order_id}"})
    by_phone = admin.get("/console/audit", params={"subject": hk_mobile(78)})
    first_days = admin.get("/console/audit", params={"until": "2026-11-25"})
    later_days = admin.get("/console/audit", params={"since": "2026-11-26", "until": "2026-12-31"})

    assert actions(by_action.text) == ["order.refunded"]
    assert actions(by_actor.text) == ["order.refunded"]
    assert actions(by_actor_id.text) == ["plan.created"]
    assert actions(by_subject.text) == ["order.refunded"]
    assert set(actions(by_phone.text)) >= {"account.phone_changed", "account.registered"}
    assert "account.phone_changed" not in actions(first_days.text)
    assert "order.refunded" in actions(first_days.text)
    # The phone change, and the password proof it asked for first.
    assert sorted(actions(later_days.text)) == ["account.phone_changed", "account.reauthenticated"]
    assert len(everything) > len(actions(first_days.text)) > 1
    # The filter keeps what was typed, and the action list names each action in Chinese.
    assert 'value="order.refunded" selected' in by_action.text and ">订单退款<" in by_action.text


def test_filters_that_cannot_be_read_say_which(admin: TestClient) -> None:
    bad_actor = admin.get("/console/audit", params={"who": "somebody"})
    bad_day = admin.get("/console/audit", params={"since": "31/12/2026"})
    backwards = admin.get("/console/audit", params={"since": "2026-12-02", "until": "2026-12-01"})
    far = admin.get("/console/audit", params={"until": "9999-12-31"})

    assert bad_actor.status_code == 422 and 'id="audit-who" ' in bad_actor.text
    assert 'aria-invalid="true"' in bad_actor.text and "请输入手机号码或账户编号" in text(bad_actor.text)
    assert bad_day.status_code == 422 and "请输入日期" in text(bad_day.text)
    assert backwards.status_code == 422 and "结束日期" in text(backwards.text)
    assert far.status_code == 422 and 'id="audit-until" ' in far.text


def test_the_staff_api_filters_the_same_way(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    order_id = refund_ten_dollars(client, runtime, clock, world)
    token = client.post("/api/v1/auth/tokens", json={"phone": world["phones"]["admin"], "password": PASSWORD}).json()[
        "token"
    ]
    headers = {"Authorization": f"Bearer {token}"}

    def listed(**params: str) -> list[str]:
        answer = client.get("/api/v1/audit", params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        return [e["action"] for e in answer.json()["items"]]

    assert listed(subject=f"order:{order_id}") == ["order.refunded"]
    assert listed(who=world["phones"]["finance"]) == ["order.refunded"]
    assert listed(action="plan.created") == ["plan.created"]
    assert listed(since="2026-11-25T00:00:00Z") == []
    assert "order.refunded" in listed(until="2026-11-25T00:00:00+08:00", action="order.refunded")
    assert client.patch("/api/v1/me", json={"language": "zh_Hans"}, headers=headers).status_code == 200
    chinese = client.get("/api/v1/audit", params={"action": "order.refunded"}, headers=headers)
    assert chinese.json()["items"][0]["text"] == f"订单 #{order_id}的 HK$10.00 已退回原付款方式。"
    ancient = client.get("/api/v1/audit", params={"since": "0001-01-01T00:00:00+08:00"}, headers=headers)
    assert ancient.status_code == 422 and ancient.json()["error"]["field"] == "since"
    bad = client.get("/api/v1/audit", params={"who": "somebody"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "actor"


def test_pages_keep_the_filters(runtime: Runtime, world: dict[str, Any], admin: TestClient) -> None:
    with runtime.unit_of_work() as uow:
        for n in range(60):
            audit.record(uow, world["ids"]["admin"], "numbers.imported", "pool", added=n + 1)
            audit.record(uow, world["ids"]["admin"], "job.run", "job:reconcile", applied=0, expired=0, refunded=0)

    first = admin.get("/console/audit", params={"action": "numbers.imported"})
    older = re.findall(r'href="(/console/audit\?[^"]*cursor=[^"]*)"', first.text)
    assert len(actions(first.text)) == 50 and len(older) == 1
    second = admin.get(html.unescape(older[0]))

    assert set(actions(first.text)) == set(actions(second.text)) == {"numbers.imported"}
    assert len(actions(second.text)) == 10
    assert "加入 号码池 的号码：1 个。" in rows(second.text)[-1]  # the oldest of them; the pool is a link
    assert 'value="numbers.imported" selected' in second.text


def test_each_subject_links_to_its_console_page() -> None:
    Subject = audit.Subject
    assert subject_href(Subject("account", "4", account_id=4)) == "/console/subscribers/4"
    assert subject_href(Subject("account", "1")) is None  # staff have no subscriber page
    assert subject_href(Subject("person", "3", account_id=4)) == "/console/subscribers/4#identity"
    assert subject_href(Subject("order", "7", account_id=4)) == "/console/subscribers/4#order-7"
    assert subject_href(Subject("ticket", "9", account_id=4, case=True)) == "/console/support/9"
    assert subject_href(Subject("ticket", "8", account_id=4)) == "/console/support/8"
    assert subject_href(Subject("plan", "monthly")) == "/console/plans/monthly/edit"
    assert subject_href(Subject("promotion", "2")) == "/console/promotions#promotion-2"
    assert subject_href(Subject("pool", "")) == "/console/numbers"
    assert subject_href(Subject("webhook_delivery", "5")) is None
