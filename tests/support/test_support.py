"""Support tickets over the API: subscribers open and reply, staff answer (and the subscriber is
told, in their language), nobody sees another subscriber's ticket."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.roles import Role
from duckline.messaging.models import Notification
from duckline.runtime import Runtime
from duckline.support import cases as tickets
from duckline.support.models import Ticket, TicketMessage
from tests.factories import numbers, register_and_verify, staff


@pytest.fixture
def people(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    numbers(runtime, 3)
    alice = register_and_verify(client, runtime, 1)
    bob = register_and_verify(client, runtime, 2)
    _, support_headers = staff(runtime, Role.SUPPORT, 1)
    return {"alice": alice, "bob": bob, "support": support_headers}


def open_ticket(client: TestClient, headers: dict[str, str], subject: str = "No data in Shenzhen") -> Any:
    response = client.post(
        "/api/v1/tickets",
        json={"subject": subject, "body": "My data stopped working after I crossed the border."},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


def count(runtime: Runtime, table: type[Ticket] | type[TicketMessage]) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table)) or 0)


def answered(runtime: Runtime) -> list[Notification]:
    with runtime.unit_of_work() as uow:
        return list(
            uow.session.scalars(
                select(Notification).where(Notification.template == "ticket_answered").order_by(Notification.id)
            )
        )


def test_a_subscriber_opens_a_ticket_and_sees_it_listed(client: TestClient, people: dict[str, Any]) -> None:
    alice = people["alice"]["headers"]

    ticket = open_ticket(client, alice)

    assert ticket["status"] == "open" and ticket["kind"] == "subscriber" and ticket["messages"] == []
    assert ticket["body"] == "My data stopped working after I crossed the border."
    listed = client.get("/api/v1/tickets", headers=alice).json()
    assert [t["id"] for t in listed["items"]] == [ticket["id"]]
    assert listed["items"][0]["last_reply_at"] is None


def test_blank_or_oversized_text_is_refused_and_nothing_is_stored(
    client: TestClient, runtime: Runtime, people: dict[str, Any]
) -> None:
    alice = people["alice"]["headers"]

    blank = client.post("/api/v1/tickets", json={"subject": "   ", "body": "help"}, headers=alice)
    huge = client.post("/api/v1/tickets", json={"subject": "x", "body": "y" * 5001}, headers=alice)

    assert blank.status_code == 422 and blank.json()["error"]["field"] == "subject"
    assert huge.status_code == 422
    assert count(runtime, Ticket) == 0
    ticket = open_ticket(client, alice)
    empty_reply = client.post(f"/api/v1/tickets/{ticket['id']}/messages", json={"body": " \n "}, headers=alice)
    assert empty_reply.status_code == 422
    assert count(runtime, TicketMessage) == 0


def test_staff_reply_is_sent_to_the_subscriber_in_their_language(
    client: TestClient, runtime: Runtime, people: dict[str, Any]
) -> None:
    alice = people["alice"]
    client.patch("/api/v1/me", json={"language": "zh_Hant"}, headers=alice["headers"])
    ticket = open_ticket(client, alice["headers"])
    answer = "Please restart your phone and turn on data roaming. " * 6  # longer than 200 characters

    replied = client.post(f"/api/v1/tickets/{ticket['id']}/messages", json={"body": answer}, headers=people["support"])

    assert replied.status_code == 201, replied.text
    assert [(m["staff"], m["body"]) for m in replied.json()["messages"]] == [(True, answer.strip())]
    [message] = answered(runtime)
    assert message.channel == "sms" and message.recipient == alice["phone"]
    assert message.language == "zh_Hant"
    assert message.body == f"客戶服務已回覆你的查詢 #{ticket['id']}：{answer.strip()[:200]}"
    seen = client.get(f"/api/v1/tickets/{ticket['id']}", headers=alice["headers"]).json()
    assert seen["messages"][0]["body"] == answer.strip() and seen["last_reply_by_staff"] is True


def test_a_subscriber_reply_reopens_a_resolved_ticket_and_notifies_nobody(
    client: TestClient, runtime: Runtime, people: dict[str, Any]
) -> None:
    alice = people["alice"]["headers"]
    ticket = open_ticket(client, alice)
    url = f"/api/v1/tickets/{ticket['id']}/messages"

    resolved = client.post(url, json={"body": "Fixed on our side.", "resolve": True}, headers=people["support"])
    assert resolved.json()["status"] == "resolved" and resolved.json()["resolved_at"] is not None

    reopened = client.post(url, json={"body": "Still no data, sorry."}, headers=alice)

    assert reopened.status_code == 201
    assert reopened.json()["status"] == "open" and reopened.json()["resolved_at"] is None
    assert [m["staff"] for m in reopened.json()["messages"]] == [True, False]
    assert len(answered(runtime)) == 1  # only the staff reply was announced


def test_a_subscriber_cannot_resolve_and_nothing_is_stored(
    client: TestClient, runtime: Runtime, people: dict[str, Any]
) -> None:
    alice = people["alice"]["headers"]
    ticket = open_ticket(client, alice)

    refused = client.post(
        f"/api/v1/tickets/{ticket['id']}/messages", json={"body": "done", "resolve": True}, headers=alice
    )

    assert refused.status_code == 403
    assert count(runtime, TicketMessage) == 0
    assert client.get(f"/api/v1/tickets/{ticket['id']}", headers=alice).json()["status"] == "open"


def test_another_subscriber_gets_404_for_every_ticket_route(
    client: TestClient, runtime: Runtime, people: dict[str, Any]
) -> None:
    ticket = open_ticket(client, people["alice"]["headers"])
    bob = people["bob"]["headers"]

    assert client.get(f"/api/v1/tickets/{ticket['id']}", headers=bob).status_code == 404
    assert client.get("/api/v1/tickets/999999", headers=bob).status_code == 404
    reply = client.post(f"/api/v1/tickets/{ticket['id']}/messages", json={"body": "hi"}, headers=bob)
    assert reply.status_code == 404
    assert client.get("/api/v1/tickets", headers=bob).json()["items"] == []
    assert count(runtime, TicketMessage) == 0
    assert client.get("/api/v1/tickets").status_code == 401


def test_reconciliation_cases_are_for_staff_only(client: TestClient, runtime: Runtime, people: dict[str, Any]) -> None:
    alice = people["alice"]
    with runtime.unit_of_work() as uow:
        case = tickets.open_ticket(
            uow, tickets.RECONCILIATION, "Order paid, not applied", "internal", alice["account"]["id"], None
        )

    assert client.get("/api/v1/tickets", headers=alice["headers"]).json()["items"] == []
    assert client.get(f"/api/v1/tickets/{case.id}", headers=alice["headers"]).status_code == 404
    note = client.post(f"/api/v1/tickets/{case.id}/messages", json={"body": "checking"}, headers=people["support"])
    assert note.status_code == 201
    assert answered(runtime) == []  # a note between staff tells the subscriber nothing
    closing = client.post(
        f"/api/v1/tickets/{case.id}/messages", json={"body": "ok", "resolve": True}, headers=people["support"]
    )
    assert closing.status_code == 403  # reconciliation resolves its own cases


def test_staff_list_every_ticket_and_filter_by_status(client: TestClient, people: dict[str, Any]) -> None:
    first = open_ticket(client, people["alice"]["headers"], "First")
    second = open_ticket(client, people["bob"]["headers"], "Second")
    support = people["support"]
    client.post(f"/api/v1/tickets/{first['id']}/messages", json={"body": "Done.", "resolve": True}, headers=support)

    everything = client.get("/api/v1/tickets", headers=support).json()["items"]
    still_open = client.get("/api/v1/tickets?state=open", headers=support).json()["items"]
    resolved = client.get("/api/v1/tickets?state=resolved&kind=subscriber", headers=support).json()["items"]

    assert [t["id"] for t in everything] == [second["id"], first["id"]]  # newest first
    assert [t["id"] for t in still_open] == [second["id"]]
    assert [(t["id"], t["last_reply_by_staff"]) for t in resolved] == [(first["id"], True)]
    assert client.get("/api/v1/tickets?state=closed", headers=support).status_code == 422


def test_staff_pages_through_tickets(client: TestClient, people: dict[str, Any]) -> None:
    ids = [open_ticket(client, people["alice"]["headers"], f"Ticket {i}")["id"] for i in range(3)]

    first = client.get("/api/v1/tickets?limit=2", headers=people["support"]).json()
    rest = client.get(f"/api/v1/tickets?limit=2&cursor={first['next_cursor']}", headers=people["support"]).json()

    assert [t["id"] for t in first["items"] + rest["items"]] == ids[::-1]
    assert rest["next_cursor"] is None
