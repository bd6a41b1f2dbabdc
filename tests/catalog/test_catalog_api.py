"""The plan catalogue through the API: creating, validating, editing and retiring plans, and what a
line on a plan shows (allowances, usage and expiry warnings)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from babel.numbers import format_currency
from fastapi.testclient import TestClient

from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.core.clock import FrozenClock
from duckline.runtime import Runtime
from tests.conftest import START
from tests.factories import numbers, register_and_verify, staff

NAMES = {"en": "Local 30", "zh_Hant": "本地 30", "zh_Hans": "本地 30"}
DATA = 10_000_000
VOICE = 6000


def plan_body(code: str = "hk-30", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "kind": "plan",
        "names": dict(NAMES),
        "descriptions": {"en": "Calls and data in Hong Kong", "zh_Hant": "香港通話及數據", "zh_Hans": "香港通话及数据"},
        "price": {"amount": 8800, "currency": "HKD"},
        "validity_days": 30,
        "allowances": [
            {"unit": "voice_seconds", "zone": "HK", "amount": VOICE},
            {"unit": "data_bytes", "zone": "HK", "amount": DATA},
        ],
    }
    body.update(overrides)
    return body


def admin(runtime: Runtime) -> dict[str, str]:
    return staff(runtime, Role.ADMIN, 1)[1]


def create(client: TestClient, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = client.post("/api/v1/plans", json=plan_body(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def activate(client: TestClient, line_id: int, headers: dict[str, str], plan: str = "hk-30") -> Any:
    return client.post(f"/api/v1/lines/{line_id}/activate", json={"plan_code": plan}, headers=headers)


def status(client: TestClient, subscriber: dict[str, Any], line_id: int | None = None) -> dict[str, Any]:
    response = client.get(f"/api/v1/lines/{line_id or subscriber['line']['id']}/status", headers=subscriber["headers"])
    assert response.status_code == 200, response.text
    return dict(response.json())


def all_plans(client: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get("/api/v1/plans", params={"include_retired": True}, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json())


def hk_price(amount: int, locale: str) -> str:
    return format_currency(Decimal(amount) / 100, "HKD", locale=locale)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_admin_creates_a_plan_that_everyone_sees(client: TestClient, runtime: Runtime) -> None:
    headers = admin(runtime)
    created = create(client, headers)
    assert created["code"] == "hk-30" and created["kind"] == "plan" and created["status"] == "active"
    assert created["price"] == {"amount": 8800, "currency": "HKD"}
    assert created["price_display"] == "HK$88.00"
    assert created["validity_days"] == 30 and created["validity_months"] == 0
    assert created["allowances"] == plan_body()["allowances"]

    listed = client.get("/api/v1/plans")  # no login needed to read the offer
    assert listed.status_code == 200, listed.text
    [plan] = listed.json()
    assert plan == created
    assert plan["names"] == NAMES
    assert plan["price_display"] == "HK$88.00"
    assert client.get("/api/v1/plans/hk-30").json() == created
    assert client.get("/api/v1/plans/no-such-plan").json()["error"]["code"] == "plan_not_found"

    for accept, locale in (("zh-HK,zh;q=0.9", "zh_Hant_HK"), ("zh-CN", "zh_Hans_CN"), ("en-GB", "en_HK")):
        localised = client.get("/api/v1/plans", headers={"Accept-Language": accept}).json()[0]
        assert localised["price_display"] == hk_price(8800, locale)
        assert "88.00" in localised["price_display"] and "HK$" in localised["price_display"]
        assert localised["names"] == NAMES  # every language's name is given; the client picks

    big = create(client, headers, code="hk-big", price={"amount": 123_456_789, "currency": "HKD"})
    assert big["price_display"] == "HK$1,234,567.89"
    zh = client.get("/api/v1/plans/hk-big", headers={"Accept-Language": "zh-HK"}).json()
    assert zh["price_display"] == hk_price(123_456_789, "zh_Hant_HK")


def test_plans_are_listed_by_kind_then_price(client: TestClient, runtime: Runtime) -> None:
    headers = admin(runtime)
    create(client, headers, code="dear", price={"amount": 20000, "currency": "HKD"})
    create(client, headers, code="cheap", price={"amount": 5000, "currency": "HKD"})
    create(client, headers, code="pack", kind="addon", price={"amount": 100, "currency": "HKD"})
    assert [p["code"] for p in client.get("/api/v1/plans").json()] == ["pack", "cheap", "dear"]


def test_a_plan_code_is_taken_once(client: TestClient, runtime: Runtime) -> None:
    headers = admin(runtime)
    first = create(client, headers)
    again = client.post("/api/v1/plans", json=plan_body(price={"amount": 1, "currency": "HKD"}), headers=headers)
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "plan_code_taken"
    assert again.json()["error"]["field"] == "code"
    assert all_plans(client, headers) == [first]
    # The transaction is still good for the next plan.
    create(client, headers, code="hk-60")
    assert [p["code"] for p in all_plans(client, headers)] == ["hk-30", "hk-60"]


def _without(key: str, lang: str) -> dict[str, str]:
    texts = dict(plan_body()[key])
    texts.pop(lang)
    return texts


INVALID = [
    pytest.param({"names": _without("names", "zh_Hans")}, "plan_invalid", "names", id="no-zh_Hans-name"),
    pytest.param({"names": {**NAMES, "en": "   "}}, "plan_invalid", "names", id="blank-en-name"),
    pytest.param(
        {"descriptions": _without("descriptions", "zh_Hant")}, "plan_invalid", "descriptions", id="no-description"
    ),
    pytest.param({"price": {"amount": -1, "currency": "HKD"}}, "plan_invalid", "price", id="negative-price"),
    pytest.param({"allowances": []}, "validation_failed", "allowances", id="no-allowances"),
    pytest.param({"validity_days": 30, "validity_months": 1}, "plan_invalid", "validity", id="days-and-months"),
    pytest.param({"validity_days": 0, "validity_months": 0}, "plan_invalid", "validity", id="no-validity"),
    pytest.param(
        {
            "allowances": [
                {"unit": "data_bytes", "zone": "HK", "amount": 1000},
                {"unit": "data_bytes", "zone": "CN", "amount": 1000},
                {"unit": "data_bytes", "zone": "HK", "amount": 2000},
            ]
        },
        "plan_invalid",
        "allowances",
        id="same-unit-and-zone-twice",
    ),
    pytest.param(
        {"allowances": [{"unit": "sms", "zone": "HK", "amount": 0}]},
        "validation_failed",
        "allowances.0.amount",
        id="zero-amount",
    ),
    pytest.param(
        {"allowances": [{"unit": "fax", "zone": "HK", "amount": 10}]},
        "validation_failed",
        "allowances.0.unit",
        id="unknown-unit",
    ),
]


@pytest.mark.parametrize(("overrides", "code", "field"), INVALID)
def test_an_invalid_plan_is_refused_and_nothing_is_created(
    client: TestClient, runtime: Runtime, overrides: dict[str, Any], code: str, field: str
) -> None:
    headers = admin(runtime)
    response = client.post("/api/v1/plans", json=plan_body(**overrides), headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["field"] == field
    assert response.json()["error"]["message"]
    assert all_plans(client, headers) == []
    audit = client.get("/api/v1/audit", headers=headers).json()["items"]
    assert not [e for e in audit if e["action"].startswith("plan.")]


@pytest.mark.parametrize(("overrides", "code", "field"), INVALID)
def test_an_invalid_edit_is_refused_and_the_plan_is_unchanged(
    client: TestClient, runtime: Runtime, overrides: dict[str, Any], code: str, field: str
) -> None:
    headers = admin(runtime)
    before = create(client, headers)
    response = client.put("/api/v1/plans/hk-30", json=plan_body(**overrides), headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["field"] == field
    assert all_plans(client, headers) == [before]


def test_a_malformed_currency_is_a_validation_error(client: TestClient, runtime: Runtime) -> None:
    headers = admin(runtime)
    with TestClient(client.app, base_url="http://127.0.0.1", raise_server_exceptions=False) as plain:
        body = plan_body(price={"amount": 8800, "currency": "hkd"})
        response = plain.post("/api/v1/plans", json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] is not None
    assert all_plans(client, headers) == []


def test_editing_a_plan_does_not_change_what_lines_were_granted(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    headers = admin(runtime)
    numbers(runtime, 3)
    create(client, headers)
    alice = register_and_verify(client, runtime, 1)
    assert activate(client, alice["line"]["id"], headers).status_code == 200
    before = status(client, alice)
    assert {(a["unit"], a["initial"], a["remaining"]) for a in before["allowances"]} == {
        ("voice_seconds", VOICE, VOICE),
        ("data_bytes", DATA, DATA),
    }
    assert parse_time(before["expires_at"]) == START + timedelta(days=30)

    clock.advance(timedelta(hours=1))
    new_allowances = [
        {"unit": "voice_seconds", "zone": "HK", "amount": 100},
        {"unit": "sms", "zone": "HK", "amount": 50},
        {"unit": "data_bytes", "zone": "CN", "amount": 1_000_000},
    ]
    edited = client.put(
        "/api/v1/plans/hk-30",
        json=plan_body(price={"amount": 12800, "currency": "HKD"}, allowances=new_allowances, validity_days=60),
        headers=headers,
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["price_display"] == "HK$128.00"
    assert edited.json()["allowances"] == new_allowances
    assert client.get("/api/v1/plans").json() == [edited.json()]

    after = status(client, alice)
    assert after["allowances"] == before["allowances"]
    assert after["expires_at"] == before["expires_at"]
    assert after["line"]["plan_code"] == "hk-30"

    # A line activated from now on gets the new offer.
    second = client.post("/api/v1/lines", headers=alice["headers"]).json()["id"]
    assert activate(client, second, headers).status_code == 200
    fresh = status(client, alice, second)
    assert {(a["unit"], a["zone"], a["initial"]) for a in fresh["allowances"]} == {
        ("voice_seconds", "HK", 100),
        ("sms", "HK", 50),
        ("data_bytes", "CN", 1_000_000),
    }
    assert parse_time(fresh["expires_at"]) == clock.now() + timedelta(days=60)

    audit = client.get("/api/v1/audit", headers=headers).json()["items"]
    [edit] = [e["detail"] for e in audit if e["action"] == "plan.updated"]
    # What changed, before and after; names and descriptions were sent unchanged, so are not listed.
    assert set(edit["old"]) == set(edit["new"]) == {"price", "validity", "allowances"}
    assert (edit["old"]["price"], edit["new"]["price"]) == (
        {"amount": 8800, "currency": "HKD"},
        {"amount": 12800, "currency": "HKD"},
    )
    assert (edit["old"]["validity"], edit["new"]["validity"]) == ({"days": 30, "months": 0}, {"days": 60, "months": 0})


def test_a_plans_code_and_kind_cannot_be_edited(client: TestClient, runtime: Runtime) -> None:
    headers = admin(runtime)
    before = create(client, headers)
    renamed = client.put("/api/v1/plans/hk-30", json=plan_body(code="hk-31"), headers=headers)
    assert renamed.status_code == 422 and renamed.json()["error"]["field"] == "code"
    rekinded = client.put("/api/v1/plans/hk-30", json=plan_body(kind="addon"), headers=headers)
    assert rekinded.status_code == 422 and rekinded.json()["error"]["field"] == "kind"
    missing = client.put("/api/v1/plans/nope", json=plan_body(code="nope"), headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "plan_not_found"
    assert all_plans(client, headers) == [before]


def test_a_retired_plan_leaves_the_offer_but_its_lines_keep_working(client: TestClient, runtime: Runtime) -> None:
    headers = admin(runtime)
    _, support = staff(runtime, Role.SUPPORT, 2)
    _, network = staff(runtime, Role.NETWORK, 3)
    numbers(runtime, 3)
    create(client, headers)
    create(client, headers, code="hk-60")
    alice = register_and_verify(client, runtime, 1)
    assert activate(client, alice["line"]["id"], headers).status_code == 200
    before = status(client, alice)

    retired = client.post("/api/v1/plans/hk-30/retire", headers=headers)
    assert retired.status_code == 200, retired.text
    assert retired.json()["status"] == "retired"

    assert [p["code"] for p in client.get("/api/v1/plans").json()] == ["hk-60"]
    subscriber_view = client.get("/api/v1/plans", params={"include_retired": True}, headers=alice["headers"])
    assert [p["code"] for p in subscriber_view.json()] == ["hk-60"]  # only staff may ask for retired plans
    for staff_headers in (support, headers):
        seen = {p["code"]: p["status"] for p in all_plans(client, staff_headers)}
        assert seen == {"hk-30": "retired", "hk-60": "active"}

    after = status(client, alice)
    assert after["line"]["status"] == "active" and after["line"]["plan_code"] == "hk-30"
    assert after["plan"]["code"] == "hk-30" and after["plan"]["status"] == "retired"
    assert after["allowances"] == before["allowances"]
    assert after["expires_at"] == before["expires_at"]
    usage = {
        "records": [
            {
                "record_id": "after-retirement",
                "msisdn": alice["line"]["msisdn"],
                "kind": "voice",
                "zone": "HK",
                "quantity": 60,
                "started_at": (START + timedelta(minutes=1)).isoformat(),
            }
        ]
    }
    posted = client.post("/api/v1/usage/batches", json=usage, headers=network)
    assert posted.status_code == 200 and posted.json()["records"][0]["charged"] == 60
    voice = next(a for a in status(client, alice)["allowances"] if a["unit"] == "voice_seconds")
    assert voice["remaining"] == VOICE - 60

    second = client.post("/api/v1/lines", headers=alice["headers"]).json()["id"]
    refused = activate(client, second, headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "plan_retired"
    assert refused.json()["error"]["field"] == "plan_code"
    pending = status(client, alice, second)
    assert pending["line"]["status"] == "pending" and pending["allowances"] == [] and pending["plan"] is None
    assert activate(client, second, headers, plan="hk-60").status_code == 200

    missing = client.post("/api/v1/plans/nope/retire", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "plan_not_found"


def test_an_addon_cannot_start_a_line(client: TestClient, runtime: Runtime) -> None:
    headers = admin(runtime)
    numbers(runtime, 1)
    create(client, headers, code="data-pack", kind="addon", price={"amount": 3000, "currency": "HKD"})
    alice = register_and_verify(client, runtime, 1)
    refused = activate(client, alice["line"]["id"], headers, plan="data-pack")
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "plan_invalid"
    assert refused.json()["error"]["field"] == "plan_code"
    after = status(client, alice)
    assert after["line"]["status"] == "pending" and after["allowances"] == []
    unknown = activate(client, alice["line"]["id"], headers, plan="no-such-plan")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "plan_not_found"


def usage_warnings(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in view["warnings"] if w["kind"] == "usage"]


def test_status_warns_as_an_allowance_runs_out(client: TestClient, runtime: Runtime) -> None:
    headers = admin(runtime)
    network: tuple[Account, dict[str, str]] = staff(runtime, Role.NETWORK, 3)
    numbers(runtime, 1)
    create(client, headers)
    alice = register_and_verify(client, runtime, 1)
    assert activate(client, alice["line"]["id"], headers).status_code == 200
    assert status(client, alice)["warnings"] == []

    def use(record_id: str, quantity: int) -> dict[str, Any]:
        batch = {
            "records": [
                {
                    "record_id": record_id,
                    "msisdn": alice["line"]["msisdn"],
                    "kind": "data",
                    "zone": "HK",
                    "quantity": quantity,
                    "started_at": (START + timedelta(minutes=10)).isoformat(),
                }
            ]
        }
        posted = client.post("/api/v1/usage/batches", json=batch, headers=network[1])
        assert posted.status_code == 200, posted.text
        assert posted.json()["applied"] == 1
        return status(client, alice)

    almost = use("d1", DATA * 75 // 100 - 1)  # 74.99 %: not yet
    assert usage_warnings(almost) == []
    data = next(a for a in almost["allowances"] if a["unit"] == "data_bytes")
    assert data["used_percent"] == 74

    steps = [("d2", 1, 75), ("d3", DATA * 15 // 100, 90), ("d4", DATA * 10 // 100, 100), ("d5", 12345, 100)]
    for record_id, quantity, threshold in steps:
        view = use(record_id, quantity)
        assert usage_warnings(view) == [
            {"kind": "usage", "unit": "data_bytes", "zone": "HK", "threshold": threshold, "used_percent": threshold}
        ]
        assert [w for w in view["warnings"] if w["kind"] == "expiry"] == []
    data = next(a for a in view["allowances"] if a["unit"] == "data_bytes")
    assert data["remaining"] == 0 and data["used"] == DATA
    voice = next(a for a in view["allowances"] if a["unit"] == "voice_seconds")
    assert voice["used"] == 0 and voice["used_percent"] == 0


@pytest.mark.parametrize(
    ("before_expiry", "within_days"),
    [
        (timedelta(days=29), None),
        (timedelta(days=7, seconds=1), None),
        (timedelta(days=7), 7),
        (timedelta(days=5), 7),
        (timedelta(days=3, seconds=1), 7),
        (timedelta(days=3), 3),
        (timedelta(days=2), 3),
        (timedelta(days=1), 1),
        (timedelta(minutes=5), 1),
    ],
)
def test_status_warns_as_expiry_comes_close(
    client: TestClient, runtime: Runtime, clock: FrozenClock, before_expiry: timedelta, within_days: int | None
) -> None:
    headers = admin(runtime)
    numbers(runtime, 1)
    create(client, headers)
    alice = register_and_verify(client, runtime, 1)
    assert activate(client, alice["line"]["id"], headers).status_code == 200
    fresh = status(client, alice)
    assert fresh["warnings"] == []
    expires_at = parse_time(fresh["expires_at"])
    assert expires_at == START + timedelta(days=30)

    clock.set(expires_at - before_expiry)
    view = status(client, alice)
    expiry = [w for w in view["warnings"] if w["kind"] == "expiry"]
    if within_days is None:
        assert expiry == []
    else:
        assert len(expiry) == 1
        assert expiry[0]["within_days"] == within_days
        assert parse_time(expiry[0]["expires_at"]) == expires_at
    assert usage_warnings(view) == []
    assert {a["unit"] for a in view["allowances"]} == {"voice_seconds", "data_bytes"}  # still in the period
