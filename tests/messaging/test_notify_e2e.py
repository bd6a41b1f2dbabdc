"""Renewal paid → an email arrives at a real SMTP server and an SMS at a real SMPP peer, both on
loopback, both in the subscriber's language (繁體中文), both with the receipt number."""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from datetime import timedelta
from email import policy

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.catalog import service as catalog
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.messaging.models import Notification
from duckline.runtime import Runtime
from tests.app_pool import pooled_app
from tests.factories import PNG, hkid, idem, numbers, pay_on_sandbox, plan_input, registration_form, sandbox_post, staff
from tests.messaging.test_email_smtp import Recorder, serve
from tests.smsc import Smsc


@pytest.fixture
def wired(settings: Settings, clock: FrozenClock) -> Iterator[tuple[TestClient, Runtime, Recorder, Smsc]]:
    mailbox = Recorder()
    with serve(mailbox) as smtp_port, Smsc("duckline", "secret12") as smsc:
        runtime = Runtime(
            settings.model_copy(
                update={
                    "email_channel": "smtp",
                    "smtp_host": "127.0.0.1",
                    "smtp_port": smtp_port,
                    "smtp_security": "none",
                    "sms_channel": "smpp",
                    "smpp_host": "127.0.0.1",
                    "smpp_port": smsc.port,
                    "smpp_system_id": "duckline",
                    "smpp_password": "secret12",
                    "smpp_source_addr": "Duckline",
                    "deliver_after_commit": False,
                }
            ),
            clock=clock,
        )
        with pooled_app(runtime) as app, TestClient(app, base_url="http://127.0.0.1") as client:
            yield client, runtime, mailbox, smsc
        runtime.close()


def test_renewal_confirmation_by_email_and_sms_in_traditional_chinese(
    wired: tuple[TestClient, Runtime, Recorder, Smsc], clock: FrozenClock
) -> None:
    client, runtime, mailbox, smsc = wired
    numbers(runtime, 2)
    admin, _ = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", price=12800))
    runtime.deliver_messages()  # nothing queued yet but proves the channels are wired
    # Registration's code goes by SMS through the SMSC: read it there, as a subscriber would.
    phone = "+85261000001"
    created = client.post(
        "/api/v1/registrations",
        data=registration_form(phone, hkid(1), preferred_language="zh_Hant"),
        files={"document_image": ("id.png", PNG, "image/png")},
    )
    assert created.status_code == 201
    runtime.deliver_messages()
    sms_code = smsc.messages(phone.lstrip("+"))[-1]
    assert "驗證碼" in sms_code
    code = re.search(r"(?<!\d)\d{6}(?!\d)", sms_code).group()  # type: ignore[union-attr]
    line = client.post("/api/v1/registrations/verify", json={"phone": phone, "code": code}).json()["line"]
    token = client.post("/api/v1/auth/tokens", json={"phone": phone, "password": "correct horse battery"}).json()
    headers = {"Authorization": f"Bearer {token['token']}"}
    with runtime.unit_of_work() as uow:
        account = uow.session.scalars(select(Account).where(Account.phone == phone)).one()
        account.email = "tai.man@example.com"

    order = client.post(
        "/api/v1/orders",
        json={"line_id": line["id"], "plan_code": "monthly", "payment_method": "card"},
        headers={**headers, **idem()},
    ).json()
    pay_on_sandbox(client, order)
    clock.advance(timedelta(seconds=5))
    assert runtime.sandbox is not None
    runtime.sandbox.deliver_due(sandbox_post(client))
    receipt = client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()["receipt_number"]
    assert receipt and receipt.startswith("R")
    runtime.deliver_messages()

    confirmations = [text for text in smsc.messages(phone.lstrip("+")) if receipt in text]
    assert len(confirmations) == 1
    assert "已開通" in confirmations[0] and "HK$128.00" in confirmations[0]  # a new line's first purchase
    assert any(s.data_coding == 8 for s in smsc.accepted())  # UCS-2 on the wire for Chinese

    mails = [email.message_from_bytes(e.original_content, policy=policy.default) for e in mailbox.envelopes]
    confirmation = next(m for m in mails if receipt in m.get_body(("plain",)).get_content())
    assert confirmation["To"] == "tai.man@example.com"
    assert str(confirmation["Subject"]).startswith("開通成功")
    html = confirmation.get_body(("html",)).get_content()
    assert receipt in html and 'lang="zh-Hant"' in html
    with runtime.unit_of_work() as uow:
        statuses = set(uow.session.scalars(select(Notification.status)).all())
    assert statuses == {"sent"}
