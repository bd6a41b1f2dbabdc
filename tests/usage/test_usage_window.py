"""Usage records are charged only when they started within the accepted window around now
(DUCKLINE_USAGE_MAX_AGE_DAYS back, DUCKLINE_USAGE_MAX_FUTURE_MINUTES ahead), and only for a
quantity that is a JSON integer: not `true`, not `1.5`, not "1"."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.roles import Role
from duckline.core.clock import FrozenClock
from duckline.runtime import Runtime
from duckline.usage.models import LedgerEntry, UsageRecord
from tests.app_pool import pooled_app
from tests.conftest import START
from tests.factories import staff
from tests.usage.test_usage import active_line, record, remaining

OUT = "usage_record_out_of_window"


def usage_rows(runtime: Runtime) -> tuple[int, int]:
    with runtime.unit_of_work() as uow:
        records = uow.session.scalar(select(func.count()).select_from(UsageRecord)) or 0
        ledger = uow.session.scalar(select(func.count()).where(LedgerEntry.reason.in_(("usage", "overage")))) or 0
    return int(records), int(ledger)


def test_records_outside_the_window_are_rejected_each_with_a_code(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    _, network = staff(runtime, Role.NETWORK, 90)
    msisdn = subscriber["line"]["msisdn"]
    at = {
        "year-9999": "9999-12-31T23:59:59+08:00",
        "year-0001": "0001-01-01T00:00:00+08:00",
        "two-days-ahead": (START + timedelta(days=2)).isoformat(),
        "sixteen-minutes-ahead": (START + timedelta(minutes=16)).isoformat(),
        "a-hundred-days-ago": (START - timedelta(days=100)).isoformat(),
        "fourteen-minutes-ahead": (START + timedelta(minutes=14)).isoformat(),
        "eighty-nine-days-ago": (START - timedelta(days=89)).isoformat(),
        "now": START.isoformat(),
    }
    batch = {"records": [record(msisdn, name, "sms", 1, at=when) for name, when in at.items()]}
    before = remaining(client, subscriber)[("sms", "HK")]

    response = client.post("/api/v1/usage/batches", headers=network, json=batch)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["applied"], body["rejected"]) == (3, 5)
    outcome = {r["record_id"]: (r["status"], r["charged"], r["error"]) for r in body["records"]}
    for name in ("year-9999", "year-0001", "two-days-ahead", "sixteen-minutes-ahead", "a-hundred-days-ago"):
        assert outcome[name] == ("rejected", 0, OUT), name
    for name in ("fourteen-minutes-ahead", "now"):
        assert outcome[name] == ("applied", 1, None), name
    assert outcome["eighty-nine-days-ago"][0] == "applied"  # before the plan's period: kept, as overage
    assert remaining(client, subscriber)[("sms", "HK")] == before - 2
    assert usage_rows(runtime) == (3, 3)


@pytest.mark.parametrize("quantity", [True, False, 1.5, 1.0, "1", None, [1]], ids=repr)
def test_a_quantity_that_is_not_a_json_integer_refuses_the_batch(
    client: TestClient, runtime: Runtime, quantity: Any
) -> None:
    subscriber = active_line(client, runtime)
    _, network = staff(runtime, Role.NETWORK, 90)
    msisdn = subscriber["line"]["msisdn"]
    batch = {"records": [record(msisdn, "ok", "sms", 1), {**record(msisdn, "odd", "sms", 1), "quantity": quantity}]}

    response = client.post("/api/v1/usage/batches", headers=network, json=batch)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_failed"
    assert response.json()["error"]["field"] == "records.1.quantity"
    assert usage_rows(runtime) == (0, 0)


def test_the_window_is_a_setting(client: TestClient, runtime: Runtime, clock: FrozenClock) -> None:
    subscriber = active_line(client, runtime)
    _, network = staff(runtime, Role.NETWORK, 90)
    msisdn = subscriber["line"]["msisdn"]
    narrow = Runtime(runtime.settings.model_copy(update={"usage_max_future_minutes": 1}), clock=clock)
    try:
        with pooled_app(narrow) as app, TestClient(app, base_url="http://127.0.0.1") as strict:
            batch = {
                "records": [
                    record(msisdn, "late-ish", "sms", 1, at=(START + timedelta(minutes=5)).isoformat()),
                    record(msisdn, "on-time", "sms", 1, at=START.isoformat()),
                ]
            }
            body = strict.post("/api/v1/usage/batches", headers=network, json=batch).json()
    finally:
        narrow.close()
    assert [(r["record_id"], r["status"], r["error"]) for r in body["records"]] == [
        ("late-ish", "rejected", OUT),
        ("on-time", "applied", None),
    ]
