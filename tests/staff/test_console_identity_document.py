"""The console's subscriber page links an identity reviewer to the document scan, which the API
serves to that browser (its session cookie) under the console's CSP; staff who do not review
identities see no link, and the API refuses them."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.roles import Role
from duckline.runtime import Runtime
from duckline.staff.models import AuditEntry
from tests.accounts.test_identity_documents import PNG
from tests.factories import hk_mobile, hkid, last_code, numbers, register, staff
from tests.staff.test_console import browser, text

LINK = re.compile(r'<a href="(/api/v1/persons/\d+/document)" target="_blank" rel="noopener">View the document scan</a>')


def test_a_reviewer_follows_the_link_to_the_scan_and_others_see_no_link(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 1)
    support, _ = staff(runtime, Role.SUPPORT, 2)
    finance, _ = staff(runtime, Role.FINANCE, 3)
    phone = hk_mobile(1)
    registered = register(client, phone, hkid(1), image=PNG)
    assert registered.status_code == 201, registered.text
    verified = client.post("/api/v1/registrations/verify", json={"phone": phone, "code": last_code(runtime, phone)})
    account_id = verified.json()["account"]["id"]

    reviewer = browser(client, runtime, support.phone)
    page = reviewer.get(f"/console/subscribers/{account_id}")
    assert page.status_code == 200, page.text
    [href] = LINK.findall(page.text)
    assert "(PNG," in text(page.text) and "Every view of the scan is written to the audit log." in text(page.text)
    assert "img-src 'self'" in page.headers["content-security-policy"]  # the scan comes from the same origin

    scan = reviewer.get(href)  # the browser, with its session cookie
    assert scan.status_code == 200 and scan.content == PNG
    assert scan.headers["content-type"] == "image/png" and scan.headers["cache-control"] == "no-store"
    with runtime.unit_of_work() as uow:
        audited = uow.session.scalars(select(AuditEntry.actor_id).where(AuditEntry.action == "kyc.document_viewed"))
        assert audited.all() == [support.id]

    other = browser(client, runtime, finance.phone)
    assert "View the document scan" not in other.get(f"/console/subscribers/{account_id}").text
    assert other.get(href).status_code == 403
