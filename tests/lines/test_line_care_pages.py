"""The line self-care pages without a browser, on both databases: each action has a confirmation
page and a form that needs the CSRF token; a refused form changes nothing and says why; staff
resume a line from the console only with a reason and a role that may operate lines."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.roles import Role
from duckline.lines.models import Line
from duckline.runtime import Runtime
from duckline.staff.models import AuditEntry
from tests.factories import PASSWORD, staff
from tests.staff.test_console import browser, csrf, text
from tests.usage.test_usage import active_line


def suspension(runtime: Runtime, line_id: int) -> str | None:
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, line_id)
        assert line is not None
        return line.suspension.value if line.suspension else None


def subscriber_browser(client: TestClient, runtime: Runtime) -> tuple[dict[str, Any], TestClient]:
    subscriber = active_line(client, runtime)
    return subscriber, browser(client, runtime, subscriber["phone"])


def test_reporting_asks_first_needs_the_csrf_token_and_a_reason(client: TestClient, runtime: Runtime) -> None:
    subscriber, own = subscriber_browser(client, runtime)
    line_id = subscriber["line"]["id"]
    path = f"/lines/{line_id}/report-lost"

    line_page = own.get(f"/lines/{line_id}")
    confirm = own.get(path)
    forged = own.post(path, data={"reason": "lost", "csrf_token": "forged"}, follow_redirects=False)
    no_reason = own.post(path, data={"csrf_token": csrf(runtime, own)})

    assert f'href="/lines/{line_id}/report-lost"' in line_page.text
    assert confirm.status_code == 200 and 'name="reason" value="stolen"' in confirm.text
    assert forged.status_code == 403
    assert no_reason.status_code == 422 and "Choose whether the phone was lost or stolen." in text(no_reason.text)
    assert suspension(runtime, line_id) is None

    done = own.post(path, data={"reason": "stolen", "csrf_token": csrf(runtime, own)}, follow_redirects=False)

    assert (done.status_code, done.headers["location"]) == (303, f"/lines/{line_id}?done=suspended#line-care")
    assert suspension(runtime, line_id) == "stolen"
    shown = text(own.get(f"/lines/{line_id}?done=suspended").text)
    assert "Service stopped" in shown and "you reported the phone stolen" in shown


def test_resuming_on_the_page_refuses_a_wrong_password(client: TestClient, runtime: Runtime) -> None:
    subscriber, own = subscriber_browser(client, runtime)
    line_id = subscriber["line"]["id"]
    own.post(f"/lines/{line_id}/report-lost", data={"reason": "lost", "csrf_token": csrf(runtime, own)})

    wrong = own.post(f"/lines/{line_id}/resume", data={"password": "guess guess", "csrf_token": csrf(runtime, own)})

    assert wrong.status_code == 422 and "The password is wrong." in text(wrong.text)
    assert 'aria-invalid="true"' in wrong.text
    assert suspension(runtime, line_id) == "lost"
    right = own.post(
        f"/lines/{line_id}/resume",
        data={"password": PASSWORD, "csrf_token": csrf(runtime, own)},
        follow_redirects=False,
    )
    assert right.status_code == 303 and suspension(runtime, line_id) is None


def test_moving_the_esim_shows_the_new_code_once(client: TestClient, runtime: Runtime) -> None:
    subscriber, own = subscriber_browser(client, runtime)
    line_id = subscriber["line"]["id"]
    old = subscriber["esim"]["activation_code"]

    confirm = own.get(f"/lines/{line_id}/esim/move")
    moved = own.post(f"/lines/{line_id}/esim/move", data={"password": PASSWORD, "csrf_token": csrf(runtime, own)})

    assert confirm.status_code == 200 and 'name="password"' in confirm.text
    assert moved.status_code == 200 and moved.headers["cache-control"] == "no-store"
    assert "Your new eSIM" in text(moved.text) and old not in moved.text
    assert 'id="new-esim-qr"' in moved.text


def test_staff_resume_from_the_console_with_a_reason(client: TestClient, runtime: Runtime) -> None:
    subscriber, own = subscriber_browser(client, runtime)
    line_id, account_id = subscriber["line"]["id"], subscriber["account"]["id"]
    own.post(f"/lines/{line_id}/report-lost", data={"reason": "lost", "csrf_token": csrf(runtime, own)})
    finance = browser(client, runtime, staff(runtime, Role.FINANCE, 5)[0].phone)
    support = browser(client, runtime, staff(runtime, Role.SUPPORT, 6)[0].phone)
    path = f"/console/lines/{line_id}/resume"

    seen = support.get(f"/console/subscribers/{account_id}")
    by_finance = finance.post(path, data={"reason": "asked", "csrf_token": csrf(runtime, finance)})
    finance_view = finance.get(f"/console/subscribers/{account_id}")
    empty = support.post(path, data={"reason": " ", "csrf_token": csrf(runtime, support)})

    assert "Phone reported lost by the subscriber" in text(seen.text) and f'action="{path}"' in seen.text
    assert by_finance.status_code == 403
    assert "Phone reported lost by the subscriber" in text(finance_view.text) and f'action="{path}"' not in (
        finance_view.text
    )
    assert empty.status_code == 422 and suspension(runtime, line_id) == "lost"

    done = support.post(
        path,
        data={"reason": "Passport checked at the shop", "csrf_token": csrf(runtime, support)},
        follow_redirects=False,
    )

    assert done.status_code == 303 and suspension(runtime, line_id) is None
    assert "The line was resumed and the subscriber told." in text(support.get(done.headers["location"]).text)
    with runtime.unit_of_work() as uow:
        entry = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "line.resumed")).one()
        assert entry.detail["reason"] == "Passport checked at the shop"
