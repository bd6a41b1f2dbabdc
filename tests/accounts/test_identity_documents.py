"""Staff who review identities see the uploaded document: decrypted on the fly for the reviewing
roles only, every view in the audit log, never cached; everyone else gets 403 and sees nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.models import DocumentImage
from duckline.accounts.roles import Role
from duckline.runtime import Runtime
from duckline.staff.models import AuditEntry
from tests.factories import hk_mobile, hkid, last_code, numbers, register, staff

# A real (if tiny) PNG and a PDF, each unlike the other so a mix-up shows.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d494844520000000200000001080200000081d9bb"
    "ab0000000f49444154789c63f8cfc0f09f8101000d8402fe2a1f0b7d0000000049454e44ae426082"
)
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


@pytest.fixture
def people(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    numbers(runtime, 2)
    admin, admin_headers = staff(runtime, Role.ADMIN, 1)
    support, support_headers = staff(runtime, Role.SUPPORT, 2)
    _, finance_headers = staff(runtime, Role.FINANCE, 3)
    _, network_headers = staff(runtime, Role.NETWORK, 4)
    phone = hk_mobile(1)
    assert register(client, phone, hkid(1), image=PNG).status_code == 201
    verified = client.post("/api/v1/registrations/verify", json={"phone": phone, "code": last_code(runtime, phone)})
    assert verified.status_code == 200, verified.text
    token = client.post("/api/v1/auth/tokens", json={"phone": phone, "password": "correct horse battery"})
    subscriber = {"Authorization": f"Bearer {token.json()['token']}"}
    person_id = client.get("/api/v1/me/identity", headers=subscriber).json()["id"]
    return {
        "person_id": person_id,
        "ids": {"admin": admin.id, "support": support.id},
        "admin": admin_headers,
        "support": support_headers,
        "finance": finance_headers,
        "network": network_headers,
        "subscriber": subscriber,
    }


def document(client: TestClient, people: dict[str, Any], who: str, person_id: int | None = None) -> Any:
    headers = people[who] if who != "nobody" else {}
    return client.get(f"/api/v1/persons/{person_id or people['person_id']}/document", headers=headers)


def views(runtime: Runtime) -> list[tuple[int | None, str, dict[str, Any]]]:
    with runtime.unit_of_work() as uow:
        rows = uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "kyc.document_viewed").order_by(AuditEntry.id)
        )
        return [(r.actor_id, r.target, r.detail) for r in rows]


@pytest.mark.parametrize("who", ["support", "admin"])
def test_a_reviewer_gets_the_very_bytes_uploaded_at_registration_and_the_view_is_audited(
    client: TestClient, runtime: Runtime, people: dict[str, Any], who: str
) -> None:
    shown = document(client, people, who)

    assert shown.status_code == 200, shown.text
    assert shown.content == PNG
    assert shown.headers["content-type"] == "image/png"
    assert shown.headers["cache-control"] == "no-store"
    assert shown.headers["x-content-type-options"] == "nosniff"
    assert shown.headers["content-disposition"] == f'inline; filename="identity-document-{people["person_id"]}.png"'
    with runtime.unit_of_work() as uow:
        [stored] = uow.session.scalars(select(DocumentImage)).all()
        assert PNG not in stored.cipher  # encrypted at rest; decrypted only for the answer
        image_id = stored.id
    assert views(runtime) == [(people["ids"][who], f"person:{people['person_id']}", {"document": image_id})]

    document(client, people, who)
    assert len(views(runtime)) == 2  # every view, not the first one only


@pytest.mark.parametrize(("who", "status"), [("finance", 403), ("network", 403), ("subscriber", 403), ("nobody", 401)])
def test_nobody_else_sees_the_document_and_nothing_is_audited(
    client: TestClient, runtime: Runtime, people: dict[str, Any], who: str, status: int
) -> None:
    refused = document(client, people, who)

    assert refused.status_code == status
    assert refused.json()["error"]["code"] == ("forbidden" if status == 403 else "auth_required")
    assert PNG not in refused.content
    assert views(runtime) == []


def test_an_unknown_person_is_not_found(client: TestClient, runtime: Runtime, people: dict[str, Any]) -> None:
    assert document(client, people, "support", person_id=people["person_id"] + 1000).status_code == 404
    assert document(client, people, "finance", person_id=people["person_id"] + 1000).status_code == 403
    assert views(runtime) == []


def test_after_a_resubmission_the_new_document_is_shown_and_a_pdf_is_downloaded(
    client: TestClient, runtime: Runtime, people: dict[str, Any]
) -> None:
    rejected = client.post(
        f"/api/v1/persons/{people['person_id']}/kyc",
        json={"status": "rejected", "reason": "The scan is unreadable"},
        headers=people["support"],
    )
    assert rejected.status_code == 200, rejected.text
    again = client.put(
        "/api/v1/me/identity",
        headers=people["subscriber"],
        data={
            "document_type": "hkid",
            "document_number": hkid(1),
            "birth_date": "1990-05-17",
            "name_en": "CHAN Tai Man",
        },
        files={"document_image": ("scan.pdf", PDF, "application/pdf")},
    )
    assert again.status_code == 200, again.text

    shown = document(client, people, "support")

    assert shown.status_code == 200 and shown.content == PDF
    assert shown.headers["content-type"] == "application/pdf"
    assert shown.headers["content-disposition"] == f'attachment; filename="identity-document-{people["person_id"]}.pdf"'
    assert shown.headers["cache-control"] == "no-store"
