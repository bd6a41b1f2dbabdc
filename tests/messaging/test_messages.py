"""Messages at the right moments, in the subscriber's language, once: reminders, preferences,
contact changes, and integrators' webhooks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.roles import Role
from duckline.catalog import service as catalog
from duckline.catalog.rules import Zone
from duckline.core.clock import FrozenClock
from duckline.core.signing import verify
from duckline.lines.models import Line
from duckline.messaging import delivery, outgoing_webhooks, reminders
from duckline.messaging.models import Notification, WebhookDelivery
from duckline.runtime import Runtime
from duckline.usage import ingest as usage
from tests.factories import PASSWORD, last_code, last_emailed_code, numbers, plan_input, register_and_verify, staff


@pytest.fixture
def active(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    numbers(runtime, 3)
    admin, admin_headers = staff(runtime, Role.ADMIN, 1)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("starter"))
    subscriber = register_and_verify(client, runtime, 1)
    client.patch("/api/v1/me", json={"language": "zh_Hant"}, headers=subscriber["headers"])
    client.post(
        f"/api/v1/lines/{subscriber['line']['id']}/activate", json={"plan_code": "starter"}, headers=admin_headers
    )
    return {**subscriber, "admin_headers": admin_headers}


def sent(runtime: Runtime, template: str) -> list[Notification]:
    with runtime.unit_of_work() as uow:
        return list(
            uow.session.scalars(select(Notification).where(Notification.template == template).order_by(Notification.id))
        )


def use_sms(runtime: Runtime, line_id: int, count: int, clock: FrozenClock, tag: str) -> None:
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, line_id)
        assert line is not None
        records = [
            usage.UsageInput(
                f"{tag}-{i}", line.msisdn, usage.UsageKind.SMS, Zone.HK, 1, clock.now() + timedelta(minutes=1)
            )
            for i in range(count)
        ]
        usage.ingest(uow, "test", records)


def test_low_balance_is_announced_once_per_threshold(
    client: TestClient, runtime: Runtime, clock: FrozenClock, active: dict[str, Any]
) -> None:
    line_id = active["line"]["id"]
    use_sms(runtime, line_id, 76, clock, "a")
    clock.advance(timedelta(minutes=2))
    for _ in range(3):  # the scheduler runs often; the message goes once
        with runtime.unit_of_work() as uow:
            reminders.run(uow)
    first = sent(runtime, "balance_low")
    assert len(first) == 1 and first[0].channel == "sms"
    assert "76%" in first[0].body and "短訊" in first[0].body  # zh_Hant, SMS allowance
    use_sms(runtime, line_id, 15, clock, "b")
    clock.advance(timedelta(minutes=2))
    with runtime.unit_of_work() as uow:
        reminders.run(uow)
        reminders.run(uow)
    assert len(sent(runtime, "balance_low")) == 2  # 90 % crossed: one more, not every hour


def test_expiry_reminders_at_each_offset_once(
    client: TestClient, runtime: Runtime, clock: FrozenClock, active: dict[str, Any]
) -> None:
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, active["line"]["id"])
        assert line is not None and line.expires_at is not None
        expires = line.expires_at
    for days_before, expected in [(10, 0), (6.9, 1), (6.5, 1), (2.9, 2), (2.5, 2), (0.5, 3), (0.1, 3)]:
        clock.set(expires - timedelta(days=days_before))
        with runtime.unit_of_work() as uow:
            reminders.run(uow)
        assert len(sent(runtime, "plan_expiring")) == expected, days_before


def test_preferences_turn_reminders_off_but_never_payment_messages(
    client: TestClient, runtime: Runtime, clock: FrozenClock, active: dict[str, Any]
) -> None:
    headers = active["headers"]
    defaults = client.get("/api/v1/me/preferences", headers=headers).json()
    assert defaults["sms"]["reminders"] is True and defaults["sms"]["marketing"] is False
    refused = client.put("/api/v1/me/preferences", json={"sms": {"payment": False}}, headers=headers)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "preference_always_on"
    assert "付款" in refused.json()["error"]["message"] or refused.json()["error"]["message"]
    off = client.put("/api/v1/me/preferences", json={"sms": {"reminders": False}}, headers=headers)
    assert off.status_code == 200 and off.json()["sms"]["reminders"] is False
    use_sms(runtime, active["line"]["id"], 80, clock, "c")
    clock.advance(timedelta(minutes=2))
    with runtime.unit_of_work() as uow:
        reminders.run(uow)
    assert sent(runtime, "balance_low") == []


def test_changing_email_needs_the_code_and_tells_the_old_contacts(
    client: TestClient, runtime: Runtime, active: dict[str, Any]
) -> None:
    headers = active["headers"]
    bad = client.post("/api/v1/me/email", json={"email": "not an email"}, headers=headers)
    assert bad.status_code == 422
    change = {"email": "tai.man@example.com", "password": PASSWORD}  # the password proves it is the holder
    assert client.post("/api/v1/me/email", json=change, headers=headers).status_code == 202
    code_message = sent(runtime, "email_verify")[-1]
    assert code_message.recipient == "tai.man@example.com" and code_message.channel == "email"
    code = last_emailed_code(runtime, "tai.man@example.com")
    assert code_message.status == "sent" and code not in code_message.body + (code_message.html or "")
    assert client.get("/api/v1/me", headers=headers).json()["email"] is None  # not before the code
    wrong = client.post(
        "/api/v1/me/email/verify", json={"code": "000000" if code != "000000" else "111111"}, headers=headers
    )
    assert wrong.status_code == 422
    done = client.post("/api/v1/me/email/verify", json={"code": code}, headers=headers)
    assert done.status_code == 200 and done.json()["email"] == "tai.man@example.com"
    told = sent(runtime, "email_changed")
    assert [m.channel for m in told] == ["sms"] and told[0].recipient == active["phone"]  # the old contact: the phone


def test_changing_phone_tells_the_old_number(client: TestClient, runtime: Runtime, active: dict[str, Any]) -> None:
    headers = active["headers"]
    taken = client.post("/api/v1/me/phone", json={"phone": active["phone"], "password": PASSWORD}, headers=headers)
    assert taken.status_code == 409
    change = {"phone": "+85261009999", "password": PASSWORD}  # the password proves it is the holder
    assert client.post("/api/v1/me/phone", json=change, headers=headers).status_code == 202
    code_message = sent(runtime, "otp")[-1]
    assert code_message.recipient == "+85261009999"
    code = last_code(runtime, "+85261009999")
    assert code_message.status == "sent" and code not in code_message.body
    done = client.post("/api/v1/me/phone/verify", json={"code": code}, headers=headers)
    assert done.status_code == 200 and done.json()["phone"] == "+85261009999"
    told = sent(runtime, "phone_changed")
    assert [m.recipient for m in told] == [active["phone"]]


class Receiver(BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        Receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(Receiver.answers.pop(0) if Receiver.answers else 200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.answers, Receiver.received = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    server.shutdown()


def test_integrator_webhooks_are_signed_retried_logged_and_replayable(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    active: dict[str, Any],
    receiver: str,
) -> None:
    admin = active["admin_headers"]
    refused = client.post(
        "/api/v1/webhook-subscriptions", json={"url": receiver, "event_types": ["nope"]}, headers=admin
    )
    assert refused.status_code == 422
    created = client.post(
        "/api/v1/webhook-subscriptions", json={"url": receiver, "event_types": ["line.grace"]}, headers=admin
    ).json()
    secret = created["secret"]
    assert secret.startswith("whsec_")
    with runtime.unit_of_work() as uow:  # an event: the line passes its expiry
        line = uow.session.get(Line, active["line"]["id"])
        assert line is not None and line.expires_at is not None
        clock.set(line.expires_at + timedelta(minutes=1))
    client.post("/api/v1/jobs/lifecycle", headers=admin)
    Receiver.answers = [500]
    with httpx.Client(timeout=5) as http:
        assert outgoing_webhooks.run(runtime.unit_of_work, http) == {"queued": 1, "delivered": 0}
        clock.advance(timedelta(seconds=31))
        assert outgoing_webhooks.run(runtime.unit_of_work, http) == {"queued": 0, "delivered": 1}
        assert outgoing_webhooks.run(runtime.unit_of_work, http) == {"queued": 0, "delivered": 0}
    assert len(Receiver.received) == 2
    headers, body = Receiver.received[-1]
    assert verify(secret, body, headers["duckline-signature"], clock.now().timestamp())
    assert not verify("whsec_other", body, headers["duckline-signature"], clock.now().timestamp())
    event = json.loads(body)
    assert event["type"] == "line.grace" and event["data"]["msisdn"] == active["line"]["msisdn"]
    log = client.get(f"/api/v1/webhook-subscriptions/{created['id']}/deliveries", headers=admin).json()["items"]
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [("delivered", 2, 200)]
    replayed = client.post(f"/api/v1/webhook-deliveries/{log[0]['id']}/replay", headers=admin)
    assert replayed.json()["status"] == "pending"
    with httpx.Client(timeout=5) as http:
        outgoing_webhooks.run(runtime.unit_of_work, http)
    assert len(Receiver.received) == 3
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(WebhookDelivery.status)) == "delivered"
        tried = delivery.attempts(uow.session, "webhook", log[0]["id"])
    # One attempt row per try: refused, delivered, then delivered again when replayed (from attempt one).
    assert [(t.attempt, t.outcome, t.status_code) for t in tried] == [
        (1, "error", 500),
        (2, "sent", 200),
        (1, "sent", 200),
    ]
    assert all(t.finished_at is not None and t.started_at <= t.finished_at for t in tried)
    grace = sent(runtime, "line_grace")
    assert (grace and "續期" in grace[0].body) or (grace and grace[0].body)
