"""Usage from network elements: drawn from the right buckets, exactly once, overage never lost."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.roles import Role
from duckline.catalog import service as catalog
from duckline.catalog.rules import Allowance, PlanKind, Unit, Zone
from duckline.core.clock import FrozenClock
from duckline.lines import service as lines
from duckline.lines.models import Line
from duckline.runtime import Runtime
from duckline.usage import balances
from duckline.usage.models import Bucket, LedgerEntry, UsageRecord
from tests.factories import numbers, plan_input, register_and_verify, staff


def active_line(client: TestClient, runtime: Runtime, n: int = 1, plan_code: str = "test-plan") -> dict[str, Any]:
    numbers(runtime, 5, start=n * 10)
    subscriber = register_and_verify(client, runtime, n)
    admin, admin_headers = staff(runtime, Role.ADMIN, n)
    with runtime.unit_of_work() as uow:
        try:
            catalog.get_plan(uow, plan_code)
        except Exception:
            catalog.create_plan(uow, admin, plan_input(plan_code))
    activated = client.post(
        f"/api/v1/lines/{subscriber['line']['id']}/activate", json={"plan_code": plan_code}, headers=admin_headers
    )
    assert activated.status_code == 200, activated.text
    return {**subscriber, "admin": admin, "admin_headers": admin_headers}


def record(
    msisdn: str, record_id: str, kind: str, quantity: int, at: str = "2026-11-24T10:05:00+08:00", zone: str = "HK"
) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "msisdn": msisdn,
        "kind": kind,
        "zone": zone,
        "quantity": quantity,
        "started_at": at,
    }


def remaining(client: TestClient, subscriber: dict[str, Any]) -> dict[tuple[str, str], int]:
    status = client.get(f"/api/v1/lines/{subscriber['line']['id']}/status", headers=subscriber["headers"]).json()
    return {(a["unit"], a["zone"]): a["remaining"] for a in status["allowances"]}


def test_a_batch_is_charged_once_however_often_it_is_sent(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    _, network = staff(runtime, Role.NETWORK, 90)
    msisdn = subscriber["line"]["msisdn"]
    batch = {
        "records": [
            record(msisdn, "cdr-1", "voice", 120),
            record(msisdn, "cdr-2", "sms", 1),
            record(msisdn, "cdr-3", "data", 1_000_000),
        ]
    }
    first = client.post("/api/v1/usage/batches", json=batch, headers=network)
    assert first.status_code == 200, first.text
    assert first.json()["applied"] == 3
    after_first = remaining(client, subscriber)
    assert after_first[("voice_seconds", "HK")] == 6000 - 120
    assert after_first[("sms", "HK")] == 99
    assert after_first[("data_bytes", "HK")] == 9_000_000

    for _ in range(2):
        retry = client.post("/api/v1/usage/batches", json=batch, headers=network)
        assert retry.json()["applied"] == 0 and retry.json()["duplicates"] == 3
    assert remaining(client, subscriber) == after_first
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(UsageRecord)) == 3


def test_usage_beyond_the_allowance_is_kept_as_overage(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    _, network = staff(runtime, Role.NETWORK, 90)
    msisdn = subscriber["line"]["msisdn"]
    response = client.post(
        "/api/v1/usage/batches", headers=network, json={"records": [record(msisdn, "big", "voice", 6500)]}
    )
    outcome = response.json()["records"][0]
    assert (outcome["status"], outcome["charged"], outcome["overage"]) == ("applied", 6000, 500)
    assert remaining(client, subscriber)[("voice_seconds", "HK")] == 0
    with runtime.unit_of_work() as uow:
        overage = uow.session.scalar(select(func.sum(LedgerEntry.delta)).where(LedgerEntry.reason == "overage"))
        assert overage == -500


def test_soonest_expiring_bucket_is_used_first(client: TestClient, runtime: Runtime, clock: FrozenClock) -> None:
    subscriber = active_line(client, runtime)
    _, network = staff(runtime, Role.NETWORK, 90)
    msisdn = subscriber["line"]["msisdn"]
    with runtime.unit_of_work() as uow:
        admin = subscriber["admin"]
        pack = catalog.create_plan(
            uow, admin, plan_input("pack", PlanKind.ADDON, allowances=[Allowance(Unit.DATA_BYTES, Zone.HK, 2_000_000)])
        )
        line = uow.session.get(Line, subscriber["line"]["id"])
        assert line is not None and line.expires_at is not None
        # A bonus that lapses in 2 days, before the plan's own data.
        short = balances.grant_plan_allowances(
            uow, line, pack, clock.now(), clock.now() + timedelta(days=2), "promotion", "test"
        )[0]
        plan_bucket = uow.session.scalars(
            select(Bucket).where(Bucket.line_id == line.id, Bucket.unit == Unit.DATA_BYTES, Bucket.id != short.id)
        ).one()
        ids = (short.id, plan_bucket.id)
    client.post("/api/v1/usage/batches", headers=network, json={"records": [record(msisdn, "d1", "data", 2_500_000)]})
    with runtime.unit_of_work() as uow:
        by_id = {b.id: b.remaining for b in uow.session.scalars(select(Bucket).where(Bucket.id.in_(ids)))}
    assert by_id[ids[0]] == 0
    assert by_id[ids[1]] == 10_000_000 - 500_000


def test_usage_only_draws_from_its_own_zone(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    _, network = staff(runtime, Role.NETWORK, 90)
    response = client.post(
        "/api/v1/usage/batches",
        headers=network,
        json={"records": [record(subscriber["line"]["msisdn"], "cn-1", "voice", 60, zone="CN")]},
    )
    outcome = response.json()["records"][0]
    assert outcome["charged"] == 0 and outcome["overage"] == 60  # no Mainland minutes on this plan
    assert remaining(client, subscriber)[("voice_seconds", "HK")] == 6000


def test_same_record_id_with_other_content_is_a_conflict(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    _, network = staff(runtime, Role.NETWORK, 90)
    msisdn = subscriber["line"]["msisdn"]
    client.post("/api/v1/usage/batches", headers=network, json={"records": [record(msisdn, "x", "sms", 1)]})
    changed = client.post("/api/v1/usage/batches", headers=network, json={"records": [record(msisdn, "x", "sms", 5)]})
    assert changed.json()["conflicts"] == 1
    assert changed.json()["records"][0]["error"] == "usage_record_conflict"
    assert remaining(client, subscriber)[("sms", "HK")] == 99


def test_records_for_unknown_lines_are_rejected_the_rest_applied(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    _, network = staff(runtime, Role.NETWORK, 90)
    response = client.post(
        "/api/v1/usage/batches",
        headers=network,
        json={
            "records": [
                record("+85259999999", "ghost", "sms", 1),
                record(subscriber["line"]["msisdn"], "real", "sms", 1),
            ]
        },
    )
    body = response.json()
    assert (body["applied"], body["rejected"]) == (1, 1)
    assert body["records"][0] == {
        "record_id": "ghost",
        "status": "rejected",
        "charged": 0,
        "overage": 0,
        "error": "line_not_found",
    }


def test_malformed_batch_is_refused_whole(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    _, network = staff(runtime, Role.NETWORK, 90)
    msisdn = subscriber["line"]["msisdn"]
    bad = [
        {"records": [record(msisdn, "ok", "sms", 1), record(msisdn, "neg", "sms", -1)]},
        {
            "records": [
                record(msisdn, "ok", "sms", 1),
                {**record(msisdn, "naive", "sms", 1), "started_at": "2026-11-24T10:00:00"},
            ]
        },
        {"records": [record(msisdn, "ok", "fax", 1)]},
        {"records": []},
    ]
    for body in bad:
        response = client.post("/api/v1/usage/batches", headers=network, json=body)
        assert response.status_code == 422 and response.json()["error"]["code"] == "validation_failed"
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(UsageRecord)) == 0


def test_pending_line_usage_is_all_overage(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 2)
    subscriber = register_and_verify(client, runtime, 3)
    _, network = staff(runtime, Role.NETWORK, 90)
    response = client.post(
        "/api/v1/usage/batches",
        headers=network,
        json={"records": [record(subscriber["line"]["msisdn"], "p", "data", 10)]},
    )
    assert response.json()["records"][0]["overage"] == 10


def test_balances_rebuilt_from_the_ledger_match(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    _, network = staff(runtime, Role.NETWORK, 90)
    msisdn = subscriber["line"]["msisdn"]
    records = [
        record(msisdn, f"r{i}", kind, q)
        for i, (kind, q) in enumerate([("voice", 61), ("sms", 3), ("data", 123_456), ("voice", 7000), ("data", 5)])
    ]
    client.post("/api/v1/usage/batches", headers=network, json={"records": records})
    with runtime.unit_of_work() as uow:
        line_id = subscriber["line"]["id"]
        assert balances.rebuild_remaining(uow, line_id) == balances.projected_remaining(uow, line_id)
        line = lines.line_by_msisdn(uow, msisdn)
        assert line.id == line_id
