"""The staff support desk over the API (/api/v1/desk/tickets): the queue with its filters, oldest
first; replies that tell the subscriber and make the ticket wait for them; internal notes that the
subscriber never sees; assignment; closing with a reason; links to orders, payments and cases.
Support and admin only; every change audited; bad input is a clear 4xx that changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.roles import Role
from duckline.catalog import service as catalog
from duckline.catalog.rules import Validity
from duckline.core.clock import FrozenClock
from duckline.messaging.models import Notification
from duckline.runtime import Runtime
from duckline.staff.models import AuditEntry
from duckline.support import cases as tickets
from duckline.support.models import Ticket, TicketLink, TicketMessage
from tests.factories import numbers, place_order, plan_input, register_and_verify, staff

DESK = "/api/v1/desk/tickets"


@pytest.fixture
def people(client: TestClient, runtime: Runtime) -> dict[str, Any]:
    numbers(runtime, 3)
    admin, admin_headers = staff(runtime, Role.ADMIN, 1)
    support_account, support_headers = staff(runtime, Role.SUPPORT, 2)
    _, finance_headers = staff(runtime, Role.FINANCE, 3)
    other_support, _ = staff(runtime, Role.SUPPORT, 4)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("monthly", validity=Validity(months=1), price=8800))
    alice = register_and_verify(client, runtime, 1)
    bob = register_and_verify(client, runtime, 2)
    assert client.patch("/api/v1/me", json={"language": "zh_Hans"}, headers=bob["headers"]).status_code == 200
    return {
        "alice": alice,
        "bob": bob,
        "support": support_headers,
        "support_id": support_account.id,
        "other_support_id": other_support.id,
        "admin": admin_headers,
        "admin_id": admin.id,
        "finance": finance_headers,
    }


def open_ticket(client: TestClient, who: dict[str, Any], subject: str, topic: str | None = None) -> int:
    body: dict[str, Any] = {"subject": subject, "body": "My data stopped working after I crossed the border."}
    if topic:
        body["topic"] = topic
    response = client.post("/api/v1/tickets", json=body, headers=who["headers"])
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def open_case(runtime: Runtime, account_id: int | None = None) -> int:
    with runtime.unit_of_work() as uow:
        return tickets.open_ticket(uow, tickets.RECONCILIATION, "Paid, not applied", "internal", account_id, None).id


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def audit_entries(runtime: Runtime, action: str) -> list[AuditEntry]:
    with runtime.unit_of_work() as uow:
        return list(uow.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def answered(runtime: Runtime) -> list[Notification]:
    with runtime.unit_of_work() as uow:
        return list(uow.session.scalars(select(Notification).where(Notification.template == "ticket_answered")))


def count(runtime: Runtime, table: type[Any]) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table)) or 0)


def test_the_queue_is_oldest_first_and_filters_by_status_age_topic_language_kind_and_assignee(
    client: TestClient, runtime: Runtime, clock: FrozenClock, people: dict[str, Any]
) -> None:
    support = people["support"]
    old = open_ticket(client, people["alice"], "Charged twice", topic="billing")
    clock.advance(timedelta(days=4))
    case = open_case(runtime, people["alice"]["account"]["id"])
    clock.advance(timedelta(hours=2))
    new = open_ticket(client, people["bob"], "No data in Shenzhen", topic="line")

    assert ids(client.get(DESK, headers=support)) == [old, case, new]
    assert ids(client.get(f"{DESK}?older_than_days=3", headers=support)) == [old]
    assert ids(client.get(f"{DESK}?older_than_days=7", headers=support)) == []
    assert ids(client.get(f"{DESK}?topic=line", headers=support)) == [new]
    assert ids(client.get(f"{DESK}?language=zh_Hans", headers=support)) == [new]
    assert ids(client.get(f"{DESK}?kind=case", headers=support)) == [case]
    assert ids(client.get(f"{DESK}?kind=subscriber", headers=support)) == [old, new]
    assert ids(client.get(f"{DESK}?assigned=me", headers=support)) == []

    client.put(f"{DESK}/{new}/assignee", json={"assignee_id": people["support_id"]}, headers=support)
    client.post(f"{DESK}/{old}/replies", json={"body": "We refunded the second charge."}, headers=support)

    assert ids(client.get(f"{DESK}?assigned=me", headers=support)) == [new]
    assert ids(client.get(f"{DESK}?assigned=unassigned&status=all", headers=support)) == [old, case]
    assert ids(client.get(f"{DESK}?status=waiting", headers=support)) == [old]
    assert ids(client.get(f"{DESK}?status=open", headers=support)) == [case, new]
    first = client.get(f"{DESK}?status=all&limit=2", headers=support).json()
    assert [t["id"] for t in first["items"]] == [old, case]
    rest = client.get(f"{DESK}?status=all&limit=2&cursor={first['next_cursor']}", headers=support).json()
    assert [t["id"] for t in rest["items"]] == [new] and rest["next_cursor"] is None
    listed = client.get(f"{DESK}?topic=line", headers=support).json()["items"][0]
    assert listed["subscriber_language"] == "zh_Hans" and listed["assignee_id"] == people["support_id"]


@pytest.mark.parametrize(
    "query",
    ["status=resolved", "older_than_days=-1", "topic=weather", "language=fr", "assigned=them", "kind=robot"],
)
def test_an_unknown_filter_is_refused_with_422(client: TestClient, people: dict[str, Any], query: str) -> None:
    response = client.get(f"{DESK}?{query}", headers=people["support"])

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_failed"


def test_a_reply_tells_the_subscriber_in_their_language_and_waits_for_them(
    client: TestClient, runtime: Runtime, people: dict[str, Any]
) -> None:
    bob = people["bob"]
    ticket = open_ticket(client, bob, "No data in Shenzhen", topic="line")

    replied = client.post(f"{DESK}/{ticket}/replies", json={"body": "Turn on data roaming."}, headers=people["support"])

    assert replied.status_code == 201, replied.text
    assert replied.json()["status"] == "waiting"
    [message] = answered(runtime)
    assert message.recipient == bob["phone"] and message.language == "zh_Hans"
    assert "Turn on data roaming." in message.body
    seen = client.get(f"/api/v1/tickets/{ticket}", headers=bob["headers"]).json()
    assert seen["status"] == "waiting" and [m["body"] for m in seen["messages"]] == ["Turn on data roaming."]

    back = client.post(f"/api/v1/tickets/{ticket}/messages", json={"body": "Still nothing."}, headers=bob["headers"])

    assert back.json()["status"] == "open"
    assert client.get(f"{DESK}/{ticket}", headers=people["support"]).json()["status"] == "open"


def test_an_internal_note_is_never_shown_to_the_subscriber_nor_notified(
    client: TestClient, runtime: Runtime, people: dict[str, Any]
) -> None:
    alice = people["alice"]
    ticket = open_ticket(client, alice, "Charged twice")
    secret = "Looks like a duplicate capture; finance is checking."

    noted = client.post(f"{DESK}/{ticket}/notes", json={"body": secret}, headers=people["support"])

    assert noted.status_code == 201, noted.text
    assert [(m["internal"], m["body"]) for m in noted.json()["messages"]] == [(True, secret)]
    assert noted.json()["status"] == "open"  # a note is not an answer
    assert answered(runtime) == []
    own = client.get(f"/api/v1/tickets/{ticket}", headers=alice["headers"])
    assert own.json()["messages"] == [] and secret not in own.text
    listed = client.get("/api/v1/tickets", headers=alice["headers"])
    assert listed.json()["items"][0]["last_reply_at"] is None and secret not in listed.text
    # The older ticket routes, that staff use too, keep to the conversation with the subscriber.
    assert secret not in client.get(f"/api/v1/tickets/{ticket}", headers=people["support"]).text
    [entry] = audit_entries(runtime, "ticket.noted")
    assert entry.target == f"ticket:{ticket}" and secret not in str(entry.detail)


def test_notes_go_on_reconciliation_cases_but_replies_and_closing_do_not(
    client: TestClient, runtime: Runtime, people: dict[str, Any]
) -> None:
    case = open_case(runtime, people["alice"]["account"]["id"])
    support = people["support"]

    assert client.post(f"{DESK}/{case}/notes", json={"body": "Asked the provider."}, headers=support).status_code == 201
    reply = client.post(f"{DESK}/{case}/replies", json={"body": "hello"}, headers=support)
    closing = client.post(f"{DESK}/{case}/close", json={"reason": "answered"}, headers=support)

    assert reply.status_code == 409 and reply.json()["error"]["code"] == "ticket_not_answerable"
    assert closing.status_code == 409
    assert answered(runtime) == []
    assert client.get(f"{DESK}/{case}", headers=support).json()["status"] == "open"


def test_assignment_to_self_or_another_desk_member_is_audited_with_old_and_new(
    client: TestClient, runtime: Runtime, people: dict[str, Any]
) -> None:
    ticket = open_ticket(client, people["alice"], "Charged twice")
    support = people["support"]
    url = f"{DESK}/{ticket}/assignee"

    mine = client.put(url, json={"assignee_id": people["support_id"]}, headers=support)
    theirs = client.put(url, json={"assignee_id": people["other_support_id"]}, headers=support)

    assert mine.status_code == 200 and theirs.json()["assignee_id"] == people["other_support_id"]
    entries = audit_entries(runtime, "ticket.assigned")
    assert [(e.detail["old"], e.detail["new"]) for e in entries] == [
        (None, people["support_id"]),
        (people["support_id"], people["other_support_id"]),
    ]
    finance_id = client.get("/api/v1/me", headers=people["finance"]).json()["id"]
    for bad in (finance_id, people["alice"]["account"]["id"], 999999):
        refused = client.put(url, json={"assignee_id": bad}, headers=support)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "assignee_invalid"
    assert client.get(f"{DESK}/{ticket}", headers=support).json()["assignee_id"] == people["other_support_id"]
    assert len(audit_entries(runtime, "ticket.assigned")) == 2


def test_closing_needs_a_known_reason_and_happens_once(
    client: TestClient, runtime: Runtime, people: dict[str, Any]
) -> None:
    ticket = open_ticket(client, people["alice"], "Charged twice")
    url = f"{DESK}/{ticket}/close"
    support = people["support"]

    unknown = client.post(url, json={"reason": "bored"}, headers=support)
    assert unknown.status_code == 422
    assert client.get(f"{DESK}/{ticket}", headers=support).json()["status"] == "open"

    closed = client.post(url, json={"reason": "duplicate", "text": "Same as #1."}, headers=support)
    again = client.post(url, json={"reason": "answered"}, headers=support)

    assert closed.status_code == 200, closed.text
    body = closed.json()
    assert (body["status"], body["close_reason"], body["resolution"]) == ("closed", "duplicate", "Same as #1.")
    assert again.status_code == 409
    [entry] = audit_entries(runtime, "ticket.closed")
    assert entry.detail == {"old": "open", "new": "resolved", "reason": "duplicate"}
    assert ids(client.get(f"{DESK}?status=closed", headers=support)) == [ticket]
    assert client.get(f"/api/v1/tickets/{ticket}", headers=people["alice"]["headers"]).json()["status"] == "resolved"


def test_links_to_orders_payments_and_cases_are_added_once_removed_and_audited(
    client: TestClient, runtime: Runtime, people: dict[str, Any]
) -> None:
    alice = people["alice"]
    order = place_order(client, alice).json()
    payment_id = order["payments"][-1]["id"]
    case = open_case(runtime, alice["account"]["id"])
    ticket = open_ticket(client, alice, "Charged twice")
    url = f"{DESK}/{ticket}/links"
    support = people["support"]

    for target, target_id in (("order", order["id"]), ("payment", payment_id), ("case", case), ("order", order["id"])):
        assert client.post(url, json={"target": target, "target_id": target_id}, headers=support).status_code == 201
    links = client.get(f"{DESK}/{ticket}", headers=support).json()["links"]
    assert [(k["target"], k["target_id"]) for k in links] == [
        ("order", order["id"]),
        ("payment", payment_id),
        ("case", case),
    ]
    missing = client.post(url, json={"target": "payment", "target_id": 987654}, headers=support)
    itself = client.post(url, json={"target": "case", "target_id": ticket}, headers=support)  # not a case
    strange = client.post(url, json={"target": "refund", "target_id": 1}, headers=support)
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "link_target_not_found"
    assert itself.status_code == 422 and strange.status_code == 422
    assert count(runtime, TicketLink) == 3

    removed = client.delete(f"{url}/{links[0]['id']}", headers=support)
    gone_again = client.delete(f"{url}/{links[0]['id']}", headers=support)

    assert removed.status_code == 200 and [k["target"] for k in removed.json()["links"]] == ["payment", "case"]
    assert gone_again.status_code == 404
    assert [e.detail for e in audit_entries(runtime, "ticket.linked")] == [
        {"concerns": "order", "concerns_id": order["id"]},
        {"concerns": "payment", "concerns_id": payment_id},
        {"concerns": "case", "concerns_id": case},
    ]
    assert len(audit_entries(runtime, "ticket.unlinked")) == 1


def test_only_support_and_admin_use_the_desk(client: TestClient, runtime: Runtime, people: dict[str, Any]) -> None:
    ticket = open_ticket(client, people["alice"], "Charged twice")
    attempts = [
        ("get", DESK, None),
        ("get", f"{DESK}/{ticket}", None),
        ("post", f"{DESK}/{ticket}/replies", {"body": "x"}),
        ("post", f"{DESK}/{ticket}/notes", {"body": "x"}),
        ("put", f"{DESK}/{ticket}/assignee", {"assignee_id": None}),
        ("post", f"{DESK}/{ticket}/close", {"reason": "answered"}),
        ("post", f"{DESK}/{ticket}/links", {"target": "case", "target_id": 1}),
    ]
    for method, url, body in attempts:
        kwargs: dict[str, Any] = {"json": body} if body is not None else {}
        assert client.request(method, url, headers=people["finance"], **kwargs).status_code == 403, url
        assert client.request(method, url, headers=people["alice"]["headers"], **kwargs).status_code == 403, url
        assert client.request(method, url, **kwargs).status_code == 401, url
    assert count(runtime, TicketMessage) == 0
    with runtime.unit_of_work() as uow:
        row = uow.session.get(Ticket, ticket)
        assert row is not None and row.status == "open"
    assert client.get(DESK, headers=people["admin"]).status_code == 200
    assert client.get(f"{DESK}/999999", headers=people["admin"]).status_code == 404


def test_a_subscriber_ticket_can_carry_a_topic_and_an_unknown_one_is_refused(
    client: TestClient, runtime: Runtime, people: dict[str, Any]
) -> None:
    bad = client.post(
        "/api/v1/tickets", json={"subject": "x", "body": "y", "topic": "weather"}, headers=people["alice"]["headers"]
    )

    assert bad.status_code == 422
    assert count(runtime, Ticket) == 0
