"""The support desk in the console (/console/support) as staff use it in a browser: the queue and
its filters, a ticket's page (reply, internal note, assignment, closing with a reason, links), the
links back from the subscriber and reconciliation pages, and the dashboard's figures. The
subscriber's portal never shows an internal note."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.models import Account
from duckline.core.clock import FrozenClock
from duckline.messaging.models import Notification
from duckline.runtime import Runtime
from duckline.staff.models import AuditEntry
from duckline.support import cases as tickets
from duckline.support import conversations as support
from duckline.support.models import Ticket, TicketLink, TicketMessage
from tests.factories import place_order
from tests.staff import test_console
from tests.staff.test_console import browser, count, csrf, text

# A subscriber with a line, a plan to buy, and staff of each role.
world = test_console.world


def open_ticket(client: TestClient, world: dict[str, Any], subject: str = "No data", topic: str = "line") -> int:
    response = client.post(
        "/api/v1/tickets",
        json={"subject": subject, "body": "My data stopped at the border.", "topic": topic},
        headers=world["subscriber"]["headers"],
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def post(staff: TestClient, runtime: Runtime, url: str, **data: Any) -> Any:
    return staff.post(url, data={"csrf_token": csrf(runtime, staff), **data}, follow_redirects=False)


def test_the_queue_lists_tickets_and_cases_oldest_first_and_filters_them(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    old = open_ticket(client, world, "Charged twice", topic="billing")
    clock.advance(timedelta(days=2))
    with runtime.unit_of_work() as uow:
        case = tickets.open_ticket(uow, tickets.RECONCILIATION, "Paid, not applied", "x", world["account_id"], None).id
    support = browser(client, runtime, world["phones"]["support"])

    page = support.get("/console/support")

    assert page.status_code == 200, page.text
    shown = [int(n) for n in re.findall(r'id="ticket-(\d+)"', page.text)]
    assert shown == [old, case]
    assert 'href="/console/support"' in page.text and 'aria-current="page"' in page.text
    assert [int(n) for n in re.findall(r'id="ticket-(\d+)"', support.get("/console/support?kind=case").text)] == [case]
    billing = support.get("/console/support?topic=billing&older_than=1&language=en&assigned=anyone")
    assert [int(n) for n in re.findall(r'id="ticket-(\d+)"', billing.text)] == [old]
    assert "No ticket matches these filters." in support.get("/console/support?assigned=me").text
    bad = support.get("/console/support?status=lost")
    assert bad.status_code == 422 and "The request is not valid." in text(bad.text)


def test_finance_has_no_desk_and_a_post_without_the_csrf_token_changes_nothing(
    client: TestClient, runtime: Runtime, world: dict[str, Any]
) -> None:
    ticket = open_ticket(client, world)
    finance = browser(client, runtime, world["phones"]["finance"])
    support = browser(client, runtime, world["phones"]["support"])

    assert finance.get("/console/support").status_code == 403
    assert 'href="/console/support"' not in finance.get("/console").text
    forged = support.post(f"/console/support/{ticket}/reply", data={"body": "hi"}, follow_redirects=False)
    assert forged.status_code == 403
    assert count(runtime, TicketMessage) == 0
    assert support.get("/console/support/999999").status_code == 404


def test_staff_assign_note_reply_and_close_and_the_subscriber_sees_only_the_reply(
    client: TestClient, runtime: Runtime, world: dict[str, Any]
) -> None:
    ticket = open_ticket(client, world)
    support = browser(client, runtime, world["phones"]["support"])
    url = f"/console/support/{ticket}"

    assert post(support, runtime, f"{url}/assign", assignee="me").status_code == 303
    assert post(support, runtime, f"{url}/note", body="Roaming profile looks wrong.").status_code == 303
    assert post(support, runtime, f"{url}/reply", body="Please restart your phone.").status_code == 303
    refused = post(support, runtime, f"{url}/close", reason="because")
    assert refused.status_code == 422 and "Choose why the ticket is closed." in text(refused.text)
    assert post(support, runtime, f"{url}/close", reason="answered", text="Restart fixed it.").status_code == 303

    page = text(support.get(url).text)
    assert "Internal note" in page and "Roaming profile looks wrong." in page
    assert "Please restart your phone." in page and "Answered" in page and "Closed" in page
    with runtime.unit_of_work() as uow:
        row = uow.session.get(Ticket, ticket)
        assert row is not None and (row.assignee_id, row.close_reason) == (world["ids"]["support"], "answered")
        actions = list(uow.session.scalars(select(AuditEntry.action).where(AuditEntry.target == f"ticket:{ticket}")))
        notified = list(
            uow.session.scalars(select(Notification.body).where(Notification.template == "ticket_answered"))
        )
    assert actions == ["ticket.opened", "ticket.assigned", "ticket.noted", "ticket.replied", "ticket.closed"]
    assert len(notified) == 1 and "Roaming" not in notified[0]

    portal = browser(client, runtime, world["subscriber"]["phone"])
    own = portal.get(f"/support/{ticket}")
    assert own.status_code == 200
    assert "Please restart your phone." in own.text
    assert "Roaming profile looks wrong." not in own.text and "Restart fixed it." not in own.text
    assert "Roaming profile" not in portal.get("/support").text


def test_links_go_both_ways_and_the_dashboard_counts_the_desk(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    order = place_order(client, world["subscriber"]).json()
    payment_id = order["payments"][-1]["id"]
    with runtime.unit_of_work() as uow:
        case = tickets.open_ticket(uow, tickets.RECONCILIATION, "Stuck", "x", world["account_id"], order["id"]).id
    ticket = open_ticket(client, world)
    clock.advance(timedelta(days=3, hours=1))
    support = browser(client, runtime, world["phones"]["support"])
    url = f"/console/support/{ticket}"

    assert post(support, runtime, f"{url}/links", target="order", target_id=f"#{order['id']}").status_code == 303
    assert post(support, runtime, f"{url}/links", target="payment", target_id=str(payment_id)).status_code == 303
    assert post(support, runtime, f"{url}/links", target="case", target_id=str(case)).status_code == 303
    missing = post(support, runtime, f"{url}/links", target="order", target_id="424242")
    assert missing.status_code == 422 and "There is no such order, payment or reconciliation case." in text(
        missing.text
    )

    subscriber_page = support.get(f"/console/subscribers/{world['account_id']}").text
    assert f'<a href="/console/support/{ticket}">#{ticket}</a>' in subscriber_page  # the ticket list links
    order_row = subscriber_page.split(f'id="order-{order["id"]}"')[1].split("</tr>")[0]
    assert f'href="/console/support/{ticket}"' in order_row and f'href="/console/support/{case}"' in order_row
    reconciliation = support.get("/console/reconciliation").text
    case_card = reconciliation.split(f'id="case-{case}"')[1].split("</article>")[0]
    assert f'href="/console/support/{ticket}"' in case_card
    ticket_page = support.get(url).text
    assert f"Payment #{payment_id}" in ticket_page and f"Case #{case}" in ticket_page

    with runtime.unit_of_work() as uow:
        first = uow.session.scalars(select(TicketLink).where(TicketLink.ticket_id == ticket)).first()
        assert first is not None
    assert post(support, runtime, f"{url}/links/{first.id}/remove").status_code == 303
    assert count(runtime, TicketLink) == 2

    dashboard = support.get("/console")
    figures = {
        key: re.findall(rf'id="desk-{key}">([^<]*)<', dashboard.text)[0]
        for key in ("open", "waiting", "cases", "oldest")
    }
    assert figures == {"open": "1", "waiting": "0", "cases": "1", "oldest": "3 days ago"}
    assert "style=" not in dashboard.text


def test_the_queue_pages_through_long_lists_keeping_the_filters(
    client: TestClient, runtime: Runtime, world: dict[str, Any]
) -> None:
    with runtime.unit_of_work() as uow:
        owner = uow.session.get(Account, world["account_id"])
        assert owner is not None
        opened = [support.open_ticket(uow, owner, f"Question {n}", "body", "billing").id for n in range(27)]
    staff = browser(client, runtime, world["phones"]["support"])

    first = staff.get("/console/support?topic=billing")
    more = re.findall(r'href="(/console/support\?[^"]*cursor=[^"]*)"', first.text)
    assert len(more) == 1 and "topic=billing" in more[0]
    second = staff.get(html.unescape(more[0]))

    shown = [int(n) for page in (first, second) for n in re.findall(r'id="ticket-(\d+)"', page.text)]
    assert shown == opened
    assert "cursor=" not in second.text
