"""Who may see and do what: subscribers only their own lines, staff by role, machines only usage;
the audit trail, masked identity numbers, pagination and the per-identity line limit."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.models import Account, Person
from duckline.accounts.roles import Role
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.lines.models import Line, PoolNumber
from duckline.runtime import Runtime
from tests.app_pool import pooled_app
from tests.conftest import START
from tests.factories import (
    PASSWORD,
    cn_resident_id,
    last_code,
    numbers,
    register,
    register_and_verify,
    staff,
)


def plan_body(code: str = "hk-30", price: int = 8800) -> dict[str, Any]:
    return {
        "code": code,
        "kind": "plan",
        "names": {"en": f"Plan {code}", "zh_Hant": f"計劃 {code}", "zh_Hans": f"套餐 {code}"},
        "descriptions": {"en": "Local plan", "zh_Hant": "本地計劃", "zh_Hans": "本地套餐"},
        "price": {"amount": price, "currency": "HKD"},
        "validity_days": 30,
        "allowances": [
            {"unit": "voice_seconds", "zone": "HK", "amount": 6000},
            {"unit": "data_bytes", "zone": "HK", "amount": 10_000_000},
        ],
    }


@dataclass
class World:
    alice: dict[str, Any]
    bob: dict[str, Any]
    admin: Account
    admin_h: dict[str, str]
    support: Account
    support_h: dict[str, str]
    network: Account
    network_h: dict[str, str]
    plan: str


def world(client: TestClient, runtime: Runtime, pool: int = 6) -> World:
    numbers(runtime, pool)
    alice = register_and_verify(client, runtime, 1)
    bob = register_and_verify(client, runtime, 2)
    admin, admin_h = staff(runtime, Role.ADMIN, 1)
    support, support_h = staff(runtime, Role.SUPPORT, 2)
    network, network_h = staff(runtime, Role.NETWORK, 3)
    created = client.post("/api/v1/plans", json=plan_body(), headers=admin_h)
    assert created.status_code == 201, created.text
    return World(alice, bob, admin, admin_h, support, support_h, network, network_h, "hk-30")


def activate(client: TestClient, line_id: int, headers: dict[str, str], plan: str = "hk-30") -> Any:
    return client.post(f"/api/v1/lines/{line_id}/activate", json={"plan_code": plan}, headers=headers)


def usage_batch(msisdn: str, record_id: str, quantity: int) -> dict[str, Any]:
    return {
        "records": [
            {
                "record_id": record_id,
                "msisdn": msisdn,
                "kind": "data",
                "zone": "HK",
                "quantity": quantity,
                "started_at": (START + timedelta(minutes=5)).isoformat(),
            }
        ]
    }


def expect_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def audit_entries(client: TestClient, admin_h: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get("/api/v1/audit", params={"limit": 200}, headers=admin_h)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


@contextmanager
def client_with(settings: Settings, clock: FrozenClock, **update: Any) -> Iterator[tuple[TestClient, Runtime]]:
    runtime = Runtime(settings.model_copy(update=update), clock=clock)
    try:
        with pooled_app(runtime) as app, TestClient(app, base_url="http://127.0.0.1") as other:
            yield other, runtime
    finally:
        runtime.close()


def test_subscriber_cannot_see_or_change_another_subscribers_line(client: TestClient, runtime: Runtime) -> None:
    w = world(client, runtime)
    assert activate(client, w.bob["line"]["id"], w.admin_h).status_code == 200
    bob_line, alice = w.bob["line"]["id"], w.alice["headers"]
    bob_before = client.get(f"/api/v1/lines/{bob_line}/status", headers=w.bob["headers"]).json()
    missing = client.get("/api/v1/lines/999999/status", headers=alice)
    expect_error(missing, 404, "not_found")

    for path in (
        f"/api/v1/lines/{bob_line}/status",
        f"/api/v1/lines/{bob_line}/esim",
        f"/api/v1/lines/{bob_line}/esim/qr.png",
        f"/api/v1/lines/{bob_line}/esim/qr.svg",
    ):
        response = client.get(path, headers=alice)
        expect_error(response, 404, "not_found")
        assert response.json() == missing.json()  # someone else's line looks like no line at all
        assert w.bob["esim"]["matching_id"] not in response.text
    for features in ({"voicemail": True}, {"caller_id": False}, {"voicemail": True, "caller_id": False}):
        changed = client.patch(f"/api/v1/lines/{bob_line}/features", json=features, headers=alice)
        expect_error(changed, 404, "not_found")

    assert client.get(f"/api/v1/lines/{bob_line}/status", headers=w.bob["headers"]).json() == bob_before
    assert bob_before["line"]["voicemail"] is False and bob_before["line"]["caller_id"] is True
    assert not [e for e in audit_entries(client, w.admin_h) if e["action"] == "line.features"]
    # Her own line is served as usual.
    own = client.get(f"/api/v1/lines/{w.alice['line']['id']}/esim", headers=alice)
    assert own.status_code == 200 and own.json()["matching_id"] == w.alice["esim"]["matching_id"]
    assert client.get(f"/api/v1/lines/{w.alice['line']['id']}/esim/qr.png", headers=alice).status_code == 200


def test_another_subscribers_number_looks_like_an_unknown_number(client: TestClient, runtime: Runtime) -> None:
    w = world(client, runtime)
    alice = w.alice["headers"]
    theirs = client.get(f"/api/v1/lines/by-msisdn/{quote(w.bob['line']['msisdn'])}/status", headers=alice)
    unknown = client.get(f"/api/v1/lines/by-msisdn/{quote('+85259999999')}/status", headers=alice)
    expect_error(theirs, 404, "not_found")
    expect_error(unknown, 404, "not_found")
    assert theirs.json() == unknown.json()


def test_by_msisdn_status_serves_own_line_and_staff(client: TestClient, runtime: Runtime) -> None:
    w = world(client, runtime)
    path = f"/api/v1/lines/by-msisdn/{quote(w.alice['line']['msisdn'])}/status"
    for headers in (w.alice["headers"], w.support_h, w.admin_h):
        response = client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["line"]["id"] == w.alice["line"]["id"]
    expect_error(client.get(path, headers=w.bob["headers"]), 404, "not_found")
    expect_error(client.get(path, headers=w.network_h), 403, "forbidden")  # a network key is not for this


def test_only_staff_list_another_accounts_lines(client: TestClient, runtime: Runtime) -> None:
    w = world(client, runtime)
    alice_id, bob_id = w.alice["account"]["id"], w.bob["account"]["id"]
    refused = client.get("/api/v1/lines", params={"account_id": bob_id}, headers=w.alice["headers"])
    expect_error(refused, 403, "forbidden")
    assert w.bob["line"]["msisdn"] not in refused.text
    expect_error(client.get("/api/v1/lines", params={"account_id": bob_id}, headers=w.network_h), 403, "forbidden")

    own = client.get("/api/v1/lines", params={"account_id": alice_id}, headers=w.alice["headers"])
    assert [line["id"] for line in own.json()["items"]] == [w.alice["line"]["id"]]
    for headers in (w.support_h, w.admin_h):
        listed = client.get("/api/v1/lines", params={"account_id": bob_id}, headers=headers)
        assert listed.status_code == 200, listed.text
        assert [line["id"] for line in listed.json()["items"]] == [w.bob["line"]["id"]]


def test_subscribers_and_support_cannot_run_the_catalogue_or_the_number_pool(
    client: TestClient, runtime: Runtime
) -> None:
    w = world(client, runtime)
    before_plans = client.get("/api/v1/plans", params={"include_retired": True}, headers=w.admin_h).json()
    before_pool = client.get("/api/v1/numbers/summary", headers=w.admin_h).json()
    before_audit = audit_entries(client, w.admin_h)

    for headers in (w.alice["headers"], w.support_h, w.network_h):
        expect_error(client.post("/api/v1/plans", json=plan_body("other"), headers=headers), 403, "forbidden")
        expect_error(
            client.put(f"/api/v1/plans/{w.plan}", json=plan_body(w.plan, price=1), headers=headers), 403, "forbidden"
        )
        expect_error(client.post(f"/api/v1/plans/{w.plan}/retire", headers=headers), 403, "forbidden")
        imported = client.post("/api/v1/numbers/import", json={"numbers": ["+85251709999"]}, headers=headers)
        expect_error(imported, 403, "forbidden")
        expect_error(client.get("/api/v1/numbers/summary", headers=headers), 403, "forbidden")
        expect_error(client.get("/api/v1/audit", headers=headers), 403, "forbidden")

    assert client.get("/api/v1/plans", params={"include_retired": True}, headers=w.admin_h).json() == before_plans
    assert client.get("/api/v1/numbers/summary", headers=w.admin_h).json() == before_pool
    assert audit_entries(client, w.admin_h) == before_audit
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(PoolNumber.id).where(PoolNumber.msisdn == "+85251709999")) is None

    # The admin may: the same import works for them.
    imported = client.post("/api/v1/numbers/import", json={"numbers": ["+85251709999"]}, headers=w.admin_h)
    assert imported.status_code == 200 and imported.json() == {"added": 1, "already_present": 0}


def test_usage_can_only_be_posted_by_the_network(client: TestClient, runtime: Runtime) -> None:
    w = world(client, runtime)
    line = w.alice["line"]
    assert activate(client, line["id"], w.admin_h).status_code == 200
    before = client.get(f"/api/v1/lines/{line['id']}/status", headers=w.alice["headers"]).json()

    for n, headers in enumerate((w.alice["headers"], w.bob["headers"], w.support_h, w.admin_h)):
        refused = client.post("/api/v1/usage/batches", json=usage_batch(line["msisdn"], f"r{n}", 1000), headers=headers)
        expect_error(refused, 403, "forbidden")
    expect_error(
        client.post("/api/v1/usage/batches", json=usage_batch(line["msisdn"], "r9", 1000)), 401, "auth_required"
    )
    assert client.get(f"/api/v1/lines/{line['id']}/status", headers=w.alice["headers"]).json() == before

    applied = client.post("/api/v1/usage/batches", json=usage_batch(line["msisdn"], "r0", 1000), headers=w.network_h)
    assert applied.status_code == 200, applied.text
    assert applied.json()["applied"] == 1
    after = client.get(f"/api/v1/lines/{line['id']}/status", headers=w.alice["headers"]).json()
    data = next(a for a in after["allowances"] if a["unit"] == "data_bytes")
    assert data["used"] == 1000


def test_support_reads_any_line_but_cannot_edit_plans(client: TestClient, runtime: Runtime) -> None:
    w = world(client, runtime)
    for subscriber in (w.alice, w.bob):
        status = client.get(f"/api/v1/lines/{subscriber['line']['id']}/status", headers=w.support_h)
        assert status.status_code == 200, status.text
        assert status.json()["line"]["msisdn"] == subscriber["line"]["msisdn"]
        esim = client.get(f"/api/v1/lines/{subscriber['line']['id']}/esim", headers=w.support_h)
        assert esim.status_code == 200 and esim.json()["iccid"] == subscriber["esim"]["iccid"]
    edited = client.put(f"/api/v1/plans/{w.plan}", json=plan_body(w.plan, price=1), headers=w.support_h)
    expect_error(edited, 403, "forbidden")
    assert client.get(f"/api/v1/plans/{w.plan}").json()["price"]["amount"] == 8800


def test_unauthenticated_calls_get_401(client: TestClient, runtime: Runtime) -> None:
    w = world(client, runtime)
    line_id = w.alice["line"]["id"]
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/api/v1/me", None),
        ("GET", "/api/v1/me/identity", None),
        ("GET", "/api/v1/auth/session", None),
        ("POST", "/api/v1/auth/logout", None),
        ("GET", "/api/v1/lines", None),
        ("POST", "/api/v1/lines", None),
        ("GET", f"/api/v1/lines/{line_id}/status", None),
        ("GET", f"/api/v1/lines/by-msisdn/{quote(w.alice['line']['msisdn'])}/status", None),
        ("GET", f"/api/v1/lines/{line_id}/esim", None),
        ("GET", f"/api/v1/lines/{line_id}/esim/qr.png", None),
        ("PATCH", f"/api/v1/lines/{line_id}/features", {"voicemail": True}),
        ("POST", f"/api/v1/lines/{line_id}/activate", {"plan_code": w.plan}),
        ("POST", "/api/v1/plans", plan_body("other")),
        ("PUT", f"/api/v1/plans/{w.plan}", plan_body(w.plan, price=1)),
        ("POST", f"/api/v1/plans/{w.plan}/retire", None),
        ("POST", "/api/v1/numbers/import", {"numbers": ["+85251709999"]}),
        ("GET", "/api/v1/numbers/summary", None),
        ("GET", "/api/v1/persons/1", None),
        ("POST", "/api/v1/persons/1/kyc", {"status": "verified"}),
        ("GET", "/api/v1/audit", None),
        ("POST", "/api/v1/usage/batches", usage_batch(w.alice["line"]["msisdn"], "x", 1)),
    ]
    for method, path, body in calls:
        for headers in ({}, {"Authorization": "Bearer made-up-token"}):
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"]["code"] == "auth_required", (method, path)
    # The offer itself is public.
    assert [p["code"] for p in client.get("/api/v1/plans").json()] == [w.plan]
    assert (
        client.get(f"/api/v1/lines/{line_id}/status", headers=w.alice["headers"]).json()["line"]["voicemail"] is False
    )


def test_staff_activate_lines_and_subscribers_cannot(client: TestClient, runtime: Runtime) -> None:
    w = world(client, runtime)
    for headers in (w.alice["headers"], w.bob["headers"], w.network_h):
        expect_error(activate(client, w.alice["line"]["id"], headers), 403, "forbidden")
    status = client.get(f"/api/v1/lines/{w.alice['line']['id']}/status", headers=w.alice["headers"]).json()
    assert status["line"]["status"] == "pending" and status["allowances"] == [] and status["plan"] is None

    by_support = activate(client, w.alice["line"]["id"], w.support_h)
    assert by_support.status_code == 200, by_support.text
    assert by_support.json()["status"] == "active" and by_support.json()["plan_code"] == w.plan
    by_admin = activate(client, w.bob["line"]["id"], w.admin_h)
    assert by_admin.status_code == 200, by_admin.text
    assert by_admin.json()["status"] == "active"
    status = client.get(f"/api/v1/lines/{w.alice['line']['id']}/status", headers=w.alice["headers"]).json()
    assert status["line"]["status"] == "active" and status["plan"]["code"] == w.plan
    assert {(a["unit"], a["remaining"]) for a in status["allowances"]} == {
        ("voice_seconds", 6000),
        ("data_bytes", 10_000_000),
    }
    # Once active it cannot be activated again; an unknown plan is its own error.
    expect_error(activate(client, w.alice["line"]["id"], w.admin_h), 409, "line_transition_not_allowed")
    expect_error(activate(client, 999999, w.admin_h), 404, "not_found")


def test_audit_log_records_plan_creation_and_activation_with_the_actor(client: TestClient, runtime: Runtime) -> None:
    w = world(client, runtime)
    assert activate(client, w.alice["line"]["id"], w.support_h).status_code == 200
    entries = audit_entries(client, w.admin_h)
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)  # newest first

    created = [e for e in entries if e["action"] == "plan.created"]
    assert len(created) == 1
    assert created[0]["actor_id"] == w.admin.id
    assert created[0]["target"] == f"plan:{w.plan}"
    assert created[0]["detail"] == {"price": {"amount": 8800, "currency": "HKD"}}
    activated = [e for e in entries if e["action"] == "line.activated"]
    assert len(activated) == 1
    assert activated[0]["actor_id"] == w.support.id
    assert activated[0]["target"] == f"line:{w.alice['line']['id']}"
    assert activated[0]["detail"] == {"plan": w.plan}
    assert activated[0]["at"].replace("Z", "+00:00") == START.isoformat()
    assert entries[0]["id"] == activated[0]["id"]

    expect_error(client.get("/api/v1/audit", headers=w.support_h), 403, "forbidden")
    expect_error(client.get("/api/v1/audit", headers=w.alice["headers"]), 403, "forbidden")


def person_id_of(runtime: Runtime, account_id: int) -> int:
    with runtime.unit_of_work() as uow:
        person_id = uow.session.scalar(select(Account.person_id).where(Account.id == account_id))
        assert person_id is not None
        return int(person_id)


def test_identity_numbers_are_only_shown_masked(client: TestClient, runtime: Runtime) -> None:
    w = world(client, runtime)
    # A mainland resident too: an 18-character number keeps a longer visible prefix.
    phone, birth = "+8613800138000", date(1980, 6, 1)
    number = cn_resident_id(birth)
    registered = register(
        client, phone, number, document_type="cn_resident_id", birth_date="1980-06-01", name_en="", name_zh="李娜"
    )
    assert registered.status_code == 201, registered.text
    assert number not in registered.text
    verified = client.post("/api/v1/registrations/verify", json={"phone": phone, "code": last_code(runtime, phone)})
    assert verified.status_code == 200 and number not in verified.text
    token = client.post("/api/v1/auth/tokens", json={"phone": phone, "password": PASSWORD}).json()["token"]
    carol = {"account": verified.json()["account"], "headers": {"Authorization": f"Bearer {token}"}}

    hkid_number = "A000001"  # tests.factories.hkid(1) without its check digit
    cases = [(w.alice, hkid_number, "A0******"), (carol, number, number[:4] + "*" * 14)]
    for subscriber, secret, masked in cases:
        person_id = person_id_of(runtime, subscriber["account"]["id"])
        for response in (
            client.get(f"/api/v1/persons/{person_id}", headers=w.support_h),
            client.get(f"/api/v1/persons/{person_id}", headers=w.admin_h),
            client.get("/api/v1/me/identity", headers=subscriber["headers"]),
        ):
            assert response.status_code == 200, response.text
            assert response.json()["id"] == person_id
            assert response.json()["document_number_masked"] == masked
            assert secret not in response.text
            assert secret[2:] not in response.text
        expect_error(client.get(f"/api/v1/persons/{person_id}", headers=w.bob["headers"]), 403, "forbidden")
    assert client.get("/api/v1/me/identity", headers=w.alice["headers"]).json()["name_en"] == "CHAN Tai Man"
    # Staff accounts have no identity record: the route is for subscribers.
    expect_error(client.get("/api/v1/me/identity", headers=w.support_h), 403, "forbidden")
    expect_error(client.get("/api/v1/persons/999999", headers=w.support_h), 404, "not_found")


def test_lines_are_listed_a_page_at_a_time(client: TestClient, runtime: Runtime) -> None:
    w = world(client, runtime, pool=8)
    alice = w.alice["headers"]
    opened = [w.alice["line"]["id"]]
    for _ in range(4):
        response = client.post("/api/v1/lines", headers=alice)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "pending"
        opened.append(response.json()["id"])
    assert client.post("/api/v1/lines", headers=w.bob["headers"]).status_code == 201

    seen: list[int] = []
    sizes: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/lines", params=params, headers=alice)
        assert page.status_code == 200, page.text
        sizes.append(len(page.json()["items"]))
        seen += [line["id"] for line in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sizes == [2, 2, 1]
    assert len(seen) == len(set(seen)) == 5
    assert seen == sorted(opened, reverse=True)  # newest first

    everything = client.get("/api/v1/lines", params={"limit": 200}, headers=alice).json()
    assert [line["id"] for line in everything["items"]] == seen and everything["next_cursor"] is None
    exact = client.get("/api/v1/lines", params={"limit": 5}, headers=alice).json()
    assert len(exact["items"]) == 5 and exact["next_cursor"] is None
    expect_error(client.get("/api/v1/lines", params={"limit": 0}, headers=alice), 422, "validation_failed")
    expect_error(client.get("/api/v1/lines", params={"limit": 201}, headers=alice), 422, "validation_failed")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "not a cursor",
        "%%%",
        base64.urlsafe_b64encode(b"id:abc").decode(),
        base64.urlsafe_b64encode(b"page:3").decode(),
        base64.urlsafe_b64encode(b"id:").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
        base64.urlsafe_b64encode(b"id:" + b"9" * 30).decode().rstrip("="),  # beyond any id the database holds
        base64.urlsafe_b64encode(b"id:0").decode(),
        base64.urlsafe_b64encode(b"id:-5").decode(),
    ],
)
def test_a_garbage_cursor_is_refused(client: TestClient, runtime: Runtime, cursor: str) -> None:
    numbers(runtime, 1)
    alice = register_and_verify(client, runtime, 1)
    response = client.get("/api/v1/lines", params={"cursor": cursor, "limit": 2}, headers=alice["headers"])
    expect_error(response, 422, "invalid_cursor")
    assert response.json()["error"]["field"] == "cursor"


def test_an_out_of_range_id_is_not_found(client: TestClient, runtime: Runtime) -> None:
    w = world(client, runtime)
    huge = "9" * 25
    with TestClient(client.app, base_url="http://127.0.0.1", raise_server_exceptions=False) as plain:
        answers = [
            plain.get(f"/api/v1/lines/{huge}/status", headers=w.alice["headers"]),
            plain.get(f"/api/v1/persons/{huge}", headers=w.support_h),
        ]
    assert [a.status_code for a in answers] == [404, 404]


def test_an_identity_holds_at_most_the_configured_number_of_lines(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    numbers(runtime, 6)
    with client_with(runtime.settings, clock, max_lines_per_identity=2) as (limited, limited_runtime):
        alice = register_and_verify(limited, limited_runtime, 1)  # the first line comes with verification
        second = limited.post("/api/v1/lines", headers=alice["headers"])
        assert second.status_code == 201, second.text

        def state() -> tuple[int, int, int]:
            with limited_runtime.unit_of_work() as uow:
                session = uow.session
                return (
                    int(session.scalar(select(func.count()).select_from(Line)) or 0),
                    int(session.scalar(select(func.count()).where(PoolNumber.available.is_(True))) or 0),
                    int(session.scalar(select(func.max(Person.line_count))) or 0),
                )

        before = state()
        assert before == (2, 4, 2)
        third = limited.post("/api/v1/lines", headers=alice["headers"])
        expect_error(third, 409, "line_limit_reached")
        assert "2" in third.json()["error"]["message"]
        assert state() == before
        listed = limited.get("/api/v1/lines", headers=alice["headers"]).json()["items"]
        assert [line["id"] for line in listed] == [second.json()["id"], alice["line"]["id"]]

        # The limit is per identity: someone else still gets their lines.
        bob = register_and_verify(limited, limited_runtime, 2)
        assert limited.post("/api/v1/lines", headers=bob["headers"]).status_code == 201
        expect_error(limited.post("/api/v1/lines", headers=bob["headers"]), 409, "line_limit_reached")
