"""Real-name review: a rejected registration leaves the line unusable, says why, and can be resubmitted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from duckline.accounts.roles import Role
from duckline.catalog import service as catalog
from duckline.core.config import Settings
from duckline.runtime import Runtime
from tests.app_pool import pooled_app
from tests.factories import PNG, hkid, numbers, plan_input, register_and_verify, staff


@pytest.fixture
def reviewed(settings: Settings, clock: object) -> Iterator[tuple[TestClient, Runtime]]:
    runtime = Runtime(settings.model_copy(update={"kyc_auto_approve": False}), clock=clock)  # type: ignore[arg-type]
    with pooled_app(runtime) as app, TestClient(app, base_url="http://127.0.0.1") as client:
        yield client, runtime
    runtime.close()


def test_rejected_identity_blocks_the_line_until_resubmitted_and_approved(
    reviewed: tuple[TestClient, Runtime],
) -> None:
    client, runtime = reviewed
    numbers(runtime, 2)
    admin, admin_headers = staff(runtime, Role.ADMIN, 1)
    _, support_headers = staff(runtime, Role.SUPPORT, 2)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("starter"))
    subscriber = register_and_verify(client, runtime, 1)
    identity = client.get("/api/v1/me/identity", headers=subscriber["headers"]).json()
    assert identity["kyc_status"] == "pending_review"
    line_id = subscriber["line"]["id"]

    waiting = client.post(f"/api/v1/lines/{line_id}/activate", json={"plan_code": "starter"}, headers=admin_headers)
    assert waiting.status_code == 409 and waiting.json()["error"]["code"] == "kyc_not_verified"

    no_reason = client.post(
        f"/api/v1/persons/{identity['id']}/kyc", json={"status": "rejected"}, headers=support_headers
    )
    assert no_reason.status_code == 422
    rejected = client.post(
        f"/api/v1/persons/{identity['id']}/kyc",
        json={"status": "rejected", "reason": "The scan is unreadable"},
        headers=support_headers,
    )
    assert rejected.json()["kyc_status"] == "rejected"
    blocked = client.post(f"/api/v1/lines/{line_id}/activate", json={"plan_code": "starter"}, headers=admin_headers)
    assert blocked.json()["error"]["code"] == "kyc_rejected"
    assert "The scan is unreadable" in blocked.json()["error"]["message"]
    mine = client.get("/api/v1/me/identity", headers=subscriber["headers"]).json()
    assert mine["kyc_reason"] == "The scan is unreadable"

    bad = client.put(
        "/api/v1/me/identity",
        headers=subscriber["headers"],
        data={
            "document_type": "hkid",
            "document_number": "A123456(4)",
            "birth_date": "1990-05-17",
            "name_en": "CHAN Tai Man",
        },
        files={"document_image": ("id.png", PNG, "image/png")},
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "document_number_invalid"
    assert client.get("/api/v1/me/identity", headers=subscriber["headers"]).json()["kyc_status"] == "rejected"

    again = client.put(
        "/api/v1/me/identity",
        headers=subscriber["headers"],
        data={
            "document_type": "hkid",
            "document_number": hkid(1),
            "birth_date": "1990-05-17",
            "name_en": "CHAN Tai Man",
        },
        files={"document_image": ("id.png", PNG, "image/png")},
    )
    assert again.status_code == 200, again.text
    assert again.json()["kyc_status"] == "pending_review" and again.json()["kyc_reason"] is None
    client.post(f"/api/v1/persons/{identity['id']}/kyc", json={"status": "verified"}, headers=support_headers)
    activated = client.post(f"/api/v1/lines/{line_id}/activate", json={"plan_code": "starter"}, headers=admin_headers)
    assert activated.status_code == 200 and activated.json()["status"] == "active"

    locked = client.put(
        "/api/v1/me/identity",
        headers=subscriber["headers"],
        data={
            "document_type": "hkid",
            "document_number": hkid(1),
            "birth_date": "1990-05-17",
            "name_en": "CHAN Tai Man",
        },
        files={"document_image": ("id.png", PNG, "image/png")},
    )
    assert locked.status_code == 409 and locked.json()["error"]["code"] == "identity_already_verified"
