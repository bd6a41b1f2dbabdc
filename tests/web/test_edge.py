"""Bad input is refused at the edge with a 4xx and a machine-readable code, never a 500, on
SQLite and PostgreSQL: NUL characters in any text, numbers the database cannot hold, report dates
at the end of time, signed webhooks that cannot be read, bodies larger than their route accepts.
And production sends HSTS."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.billing.models import WebhookEvent
from duckline.billing.providers.sandbox import SIGNATURE_HEADER, sign
from duckline.catalog.models import Plan, Promotion
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.runtime import Runtime
from duckline.support.models import Ticket
from duckline.usage.models import UsageRecord
from duckline.web.app import create_app
from tests.app_pool import pooled_app
from tests.conftest import START
from tests.factories import PNG, hk_mobile, hkid, numbers, register_and_verify, registration_form, staff
from tests.live_server import serve

NUL = "\x00"
INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1


def count(runtime: Runtime, table: type[Any]) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table)) or 0)


def refused(response: httpx.Response, field: str | None, status: int = 422, code: str = "validation_failed") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["field"] == field, error
    assert error["message"]


@pytest.fixture
def people(client: TestClient, runtime: Runtime) -> dict[str, dict[str, str]]:
    numbers(runtime, 2)
    subscriber = register_and_verify(client, runtime, 1)
    return {
        "subscriber": subscriber["headers"],
        "admin": staff(runtime, Role.ADMIN, 1)[1],
        "network": staff(runtime, Role.NETWORK, 2)[1],
    }


def usage_record(**overrides: Any) -> dict[str, Any]:
    record = {
        "record_id": "cdr-1",
        "msisdn": "+85251700000",
        "kind": "sms",
        "zone": "HK",
        "quantity": 1,
        "started_at": START.isoformat(),
    }
    return record | overrides


def plan_body(**overrides: Any) -> dict[str, Any]:
    texts = {"en": "Plan", "zh_Hant": "計劃", "zh_Hans": "套餐"}
    body = {
        "code": "edge-plan",
        "names": texts,
        "descriptions": texts,
        "price": {"amount": 8800, "currency": "HKD"},
        "validity_days": 30,
        "allowances": [{"unit": "sms", "zone": "HK", "amount": 100}],
    }
    return body | overrides


# (who, method, path, JSON body, the field the answer names, the table that must stay as it was)
NUL_IN_JSON = [
    ("subscriber", "POST", "/api/v1/tickets", {"subject": f"help{NUL}", "body": "x"}, "subject", Ticket),
    ("subscriber", "POST", "/api/v1/tickets", {"subject": "help", "body": f"a{NUL}b"}, "body", Ticket),
    ("subscriber", "POST", "/api/v1/quotes", {"line_id": 1, "plan_code": f"hk{NUL}"}, "plan_code", None),
    ("nobody", "POST", "/api/v1/auth/login", {"phone": f"+852{NUL}", "password": "x"}, "phone", None),
    (
        "network",
        "POST",
        "/api/v1/usage/batches",
        {"records": [usage_record(), usage_record(record_id=f"cdr{NUL}2")]},
        "records.1.record_id",
        UsageRecord,
    ),
    ("admin", "POST", "/api/v1/plans", plan_body(code=f"a{NUL}"), "code", Plan),
    ("admin", "POST", "/api/v1/plans", plan_body(names={"en": f"x{NUL}"}), "names.en", Plan),
    ("admin", "POST", "/api/v1/reconciliation/cases/1/resolve", {"action": "close", "reason": NUL}, "reason", None),
    ("admin", "POST", "/api/v1/numbers/import", {"numbers": [f"+85251700{NUL}01"]}, "numbers.0", None),
    ("subscriber", "PUT", "/api/v1/me/preferences", {"sms": {f"marketing{NUL}": True}}, "sms.marketing\\x00", None),
    ("nobody", "POST", "/api/v1/auth/password-reset", {"phone": "+852\ud800"}, "phone", None),  # half a pair
]


@pytest.mark.parametrize(("who", "method", "path", "body", "field", "table"), NUL_IN_JSON)
def test_nul_in_any_json_text_is_refused_naming_the_field(
    client: TestClient,
    runtime: Runtime,
    people: dict[str, Any],
    who: str,
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
    table: type[Any] | None,
) -> None:
    before = count(runtime, table) if table else 0
    headers = people.get(who, {}) | {"content-type": "application/json"}
    response = client.request(method, path, content=json.dumps(body), headers=headers)
    refused(response, field)
    if table:
        assert count(runtime, table) == before


def test_nul_in_a_registration_form_field_is_refused(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 1)
    for name, value in (("email", f"a{NUL}@example.com"), ("name_en", f"CHAN{NUL}"), ("phone", f"+852{NUL}")):
        form = registration_form(hk_mobile(3), hkid(3)) | {name: value}
        image = {"document_image": ("id.png", PNG, "image/png")}
        refused(client.post("/api/v1/registrations", data=form, files=image), name)
    assert count(runtime, Account) == 0


def test_nul_in_the_query_or_the_path_is_refused(client: TestClient, people: dict[str, Any]) -> None:
    refused(client.get("/api/v1/tickets?kind=refund%00", headers=people["admin"]), "kind")
    refused(client.get("/api/v1/lines?cursor=%00", headers=people["subscriber"]), "cursor")
    refused(client.get("/api/v1/plans/hk%00voice"), "path")
    refused(client.get("/api/v1/lines/by-msisdn/%2B852%00/status", headers=people["subscriber"]), "path")


def test_integers_beyond_what_the_database_holds_are_refused(
    client: TestClient, runtime: Runtime, people: dict[str, Any]
) -> None:
    promotion = {
        "name": {"en": "Big", "zh_Hant": "大", "zh_Hans": "大"},
        "kind": "amount_off",
        "amount_off": 1000,
        "starts_at": START.isoformat(),
    }
    admin = people["admin"]
    for name, value in (("max_uses", INT32_MAX + 1), ("max_uses_per_account", 2**40), ("amount_off", INT64_MAX + 1)):
        refused(client.post("/api/v1/promotions", json=promotion | {name: value}, headers=admin), name)
    refused(client.post("/api/v1/promotions", json=promotion | {"amount_off": INT64_MAX}, headers=admin), "amount_off")
    assert count(runtime, Promotion) == 0
    created = client.post("/api/v1/promotions", json=promotion | {"max_uses": INT32_MAX}, headers=admin)
    assert created.status_code == 201, created.text  # the largest count an INTEGER column holds is fine

    refused(client.get(f"/api/v1/orders?account_id={INT64_MAX + 1}", headers=admin), "account_id")
    refused(client.get(f"/api/v1/lines?account_id={10**30}", headers=admin), "account_id")
    subscriber = people["subscriber"]  # quotes are for subscribers
    refused(
        client.post("/api/v1/quotes", json={"line_id": INT64_MAX + 1, "plan_code": "x"}, headers=subscriber), "line_id"
    )
    refused(client.post("/api/v1/orders/1/refunds", json={"amount": 10**20, "reason": "x"}, headers=admin), "amount")
    plan = plan_body(allowances=[{"unit": "data_bytes", "zone": "HK", "amount": 2**64}])
    refused(client.post("/api/v1/plans", json=plan, headers=admin), "allowances.0.amount")
    refused(
        client.post("/api/v1/plans", json=plan_body(price={"amount": -(2**70), "currency": "HKD"}), headers=admin),
        "price.amount",
    )
    # An id in the path that no row can have is simply not found.
    refused(client.get(f"/api/v1/orders/{INT64_MAX + 1}", headers=admin), "order_id", 404, "not_found")
    refused(client.post(f"/api/v1/promotions/{10**25}/deactivate", headers=admin), "promotion_id", 404, "not_found")


def test_report_dates_out_of_any_sane_range_are_refused(client: TestClient, people: dict[str, Any]) -> None:
    admin = people["admin"]
    refused(client.get("/api/v1/reports/revenue?until=9999-12-31", headers=admin), "until")
    refused(client.get("/api/v1/reports/revenue?since=9999-12-31&until=9999-12-31", headers=admin), "since")
    refused(client.get("/api/v1/reports/revenue?since=0001-01-01", headers=admin), "since")
    assert client.get("/api/v1/reports/revenue?since=2026-01-01&until=2026-12-31", headers=admin).status_code == 200


def signed(runtime: Runtime, body: bytes) -> dict[str, str]:
    timestamp = int(runtime.clock.now().timestamp())
    return {SIGNATURE_HEADER: sign(runtime.settings.sandbox_webhook_secret, body, timestamp)}


GOOD_EVENT = {
    "id": "evt_1",
    "type": "payment.succeeded",
    "data": {"ref": "sbx_1", "status": "succeeded", "amount": 8800, "currency": "HKD", "refunded": 0},
}


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"[1, 2, 3]",
        json.dumps({"id": "evt_1", "type": "payment.succeeded"}).encode(),  # no data
        json.dumps(GOOD_EVENT | {"data": GOOD_EVENT["data"] | {"status": "teleported"}}).encode(),
        json.dumps(GOOD_EVENT | {"data": GOOD_EVENT["data"] | {"amount": "8800"}}).encode(),
        json.dumps(GOOD_EVENT | {"data": GOOD_EVENT["data"] | {"amount": 2**70}}).encode(),
        json.dumps(GOOD_EVENT | {"id": "e" * 500}).encode(),
        json.dumps(GOOD_EVENT | {"data": "sbx_1"}).encode(),
    ],
    ids=[
        "not-json",
        "a-list",
        "no-data",
        "unknown-status",
        "amount-as-text",
        "huge-amount",
        "long-id",
        "data-a-string",
    ],
)
def test_a_signed_but_malformed_sandbox_webhook_is_400_and_changes_nothing(
    client: TestClient, runtime: Runtime, body: bytes
) -> None:
    response = client.post("/api/v1/webhooks/sandbox", content=body, headers=signed(runtime, body))
    refused(response, None, 400, "webhook_payload_invalid")
    assert count(runtime, WebhookEvent) == 0


# --- body sizes -------------------------------------------------------------------------------


@pytest.fixture
def server(runtime: Runtime) -> Iterator[str]:
    """The app behind a real HTTP server, for what only real connections can send (host:port)."""
    with serve(runtime) as url:
        yield url.removeprefix("http://")


def too_large(response: httpx.Response, max_kb: int) -> None:
    refused(response, None, 413, "payload_too_large")
    assert str(max_kb) in response.json()["error"]["message"]


def test_a_body_declared_too_large_is_refused_before_it_is_sent(server: str, runtime: Runtime) -> None:
    host, port = server.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            b"POST /api/v1/tickets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Accept-Language: zh-HK\r\nContent-Length: 50000000\r\n\r\n"
        )
        received = b""
        while chunk := connection.recv(65536):  # answered, and closed, without a byte of the body sent
            received += chunk
    answer = received.decode()
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413"), answer
    error = json.loads(body)["error"]
    assert error["code"] == "payload_too_large" and "256" in error["message"] and "請求" in error["message"]


def test_a_chunked_body_without_a_length_is_counted_as_it_arrives(server: str, runtime: Runtime) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"subject": "a", "body": "'
        for _ in range(40):
            yield b"x" * 8192
        yield b'"}'

    with httpx.Client(base_url=f"http://{server}", timeout=10) as http:
        response = http.post("/api/v1/tickets", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    too_large(response, 256)
    assert count(runtime, Ticket) == 0


def test_a_body_longer_than_its_declared_length_is_counted_not_trusted(runtime: Runtime) -> None:
    """Below HTTP/1.1 framing (another server, HTTP/2, a test client): what arrives is counted."""
    app = create_app(runtime=runtime)
    messages = [{"type": "http.request", "body": b"x" * 100_000, "more_body": True} for _ in range(4)]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/tickets",
        "raw_path": b"/api/v1/tickets",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    # In a thread of its own: after a browser test, Playwright's loop runs in this worker's main thread.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, app(scope, receive, send)).result()  # type: ignore[arg-type]
    assert sent[0]["status"] == 413
    assert json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["error"]["code"] == "payload_too_large"


def test_each_kind_of_route_has_its_own_limit(client: TestClient, runtime: Runtime, people: dict[str, Any]) -> None:
    big = "x" * 300_000  # over the default 256 KB, under the bulk and upload limits
    too_large(client.post("/api/v1/tickets", json={"subject": "a", "body": big}, headers=people["subscriber"]), 256)
    records = [usage_record(record_id=f"{i:090d}") for i in range(1500)]
    batch = client.post("/api/v1/usage/batches", json={"records": records}, headers=people["network"])
    assert len(batch.request.content) > 256 * 1024
    assert batch.status_code == 200, batch.text  # a usage batch is bulk: 4 MB
    scan = PNG + b"\x00" * 600_000  # a scan is an upload: 10 MB (the identity rules allow 5 MB)
    form = registration_form(hk_mobile(5), hkid(5))
    registered = client.post(
        "/api/v1/registrations", data=form, files={"document_image": ("id.png", scan, "image/png")}
    )
    assert registered.status_code == 201, registered.text
    huge = PNG + b"\x00" * (11 * 1024 * 1024)
    form = registration_form(hk_mobile(6), hkid(6))
    refusal = client.post("/api/v1/registrations", data=form, files={"document_image": ("id.png", huge, "image/png")})
    too_large(refusal, 10240)


def test_the_limits_are_settings(runtime: Runtime, clock: FrozenClock) -> None:
    small = Runtime(runtime.settings.model_copy(update={"body_max_bytes": 1024}), clock=clock)
    try:
        with pooled_app(small) as app, TestClient(app, base_url="http://127.0.0.1") as limited:
            too_large(limited.post("/api/v1/auth/login", json={"phone": "1" * 2000, "password": "x"}), 1)
    finally:
        small.close()


# --- HSTS ---------------------------------------------------------------------------------------


def test_hsts_is_sent_in_production_only(client: TestClient, runtime: Runtime, clock: FrozenClock) -> None:
    assert "strict-transport-security" not in client.get("/api/v1/health").headers
    production = Settings(
        environment="production",
        database_url=runtime.settings.database_url,
        secret_key=secrets.token_urlsafe(32),
        data_key=secrets.token_urlsafe(32),
        log_dir=runtime.settings.log_dir,
        worker_in_process=False,
    )
    live = Runtime(production, clock=clock)
    try:
        with pooled_app(live) as app, TestClient(app, base_url="https://duckline.example") as https:
            for path in ("/api/v1/health", "/login", "/api/v1/nothing-here"):
                response = https.get(path)
                assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
            refusal = https.post(
                "/api/v1/tickets", content=b"x" * 300_000, headers={"content-type": "application/json"}
            )
            assert refusal.status_code == 413 and "strict-transport-security" in refusal.headers
    finally:
        live.close()
