"""Self-care for a line through the API, on both databases: a lost or stolen phone stops service at
once (quota refused, open charging sessions ended), only fresh proof of the account holder turns it
back on, a renewal does not, and moving the eSIM issues a new activation code and refuses the old."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.roles import Role
from duckline.core.clock import FrozenClock
from duckline.lines import lifecycle
from duckline.lines.models import Line, LineEvent
from duckline.lines.states import LineStatus
from duckline.messaging.models import DomainEvent, Notification
from duckline.runtime import Runtime
from duckline.staff.models import AuditEntry
from duckline.usage.models import CreditSession
from duckline.usage.quota import CreditAnswer, RequestType, ResultCode
from tests.factories import PASSWORD, buy, last_emailed_code, staff
from tests.usage.test_quota import ask
from tests.usage.test_usage import active_line

MB = 1_000_000


def url(subscriber: dict[str, Any], tail: str) -> str:
    return f"/api/v1/lines/{subscriber['line']['id']}/{tail}"


def report(client: TestClient, subscriber: dict[str, Any], reason: str = "lost") -> Any:
    return client.post(url(subscriber, "report-lost"), json={"reason": reason}, headers=subscriber["headers"])


def line_row(runtime: Runtime, line_id: int) -> Line:
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, line_id)
        assert line is not None
        uow.session.expunge(line)
        return line


def count(runtime: Runtime, model: Any, *where: Any) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def add_email(client: TestClient, runtime: Runtime, subscriber: dict[str, Any], address: str) -> None:
    headers = subscriber["headers"]
    asked = client.post("/api/v1/me/email", json={"email": address, "password": PASSWORD}, headers=headers)
    assert asked.status_code == 202
    code = last_emailed_code(runtime, address)
    assert client.post("/api/v1/me/email/verify", json={"code": code}, headers=headers).status_code == 200


def test_reporting_a_lost_phone_stops_service_at_once(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    add_email(client, runtime, subscriber, "chan@example.com")
    msisdn = subscriber["line"]["msisdn"]
    granted = ask(runtime, "pgw;lost", 0, RequestType.INITIAL, msisdn, requested=2 * MB)
    assert granted.result_code is ResultCode.SUCCESS

    reported = report(client, subscriber, "stolen")

    assert reported.status_code == 200, reported.text
    body = reported.json()
    assert (body["status"], body["suspension"], body["in_service"]) == ("active", "stolen", False)
    with runtime.unit_of_work() as uow:
        session = uow.session.scalars(select(CreditSession)).one()
        assert (session.status, session.reserved) == ("aborted", 0)
        event = uow.session.scalars(select(LineEvent).order_by(LineEvent.id.desc())).first()
        assert event is not None and "stolen" in event.reason
        entry = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "line.suspended")).one()
        assert entry.detail == {"old": None, "new": "stolen", "sessions_ended": 1}
        told = uow.session.scalars(select(Notification).where(Notification.template == "line_reported_lost")).all()
        assert [(n.channel, n.recipient) for n in told] == [("email", "chan@example.com")]  # not the lost phone
        raised = uow.session.scalars(select(DomainEvent).where(DomainEvent.type == "line.suspended")).one()
        assert raised.payload == {"line_id": subscriber["line"]["id"], "reason": "stolen"}  # for webhooks
    # The network's next report is charged, but nothing more is granted; a new session is refused.
    update = ask(runtime, "pgw;lost", 1, RequestType.UPDATE, None, used=MB, requested=2 * MB)
    assert update == CreditAnswer(ResultCode.END_USER_SERVICE_DENIED)
    done = ask(runtime, "pgw;lost", 2, RequestType.TERMINATE, None, used=100)
    assert done == CreditAnswer(ResultCode.SUCCESS)
    status = client.get(url(subscriber, "status"), headers=subscriber["headers"]).json()
    data = next(a for a in status["allowances"] if a["unit"] == "data_bytes")
    assert data["remaining"] == 10 * MB - MB - 100
    for kind in (RequestType.INITIAL, RequestType.EVENT):
        refused = ask(runtime, f"pgw;new-{kind.value}", 0, kind, msisdn, requested=MB)
        assert refused == CreditAnswer(ResultCode.END_USER_SERVICE_DENIED)


def test_resuming_needs_the_password_and_a_wrong_one_changes_nothing(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]
    report(client, subscriber)

    missing = client.post(url(subscriber, "resume"), json={}, headers=subscriber["headers"])
    wrong = client.post(url(subscriber, "resume"), json={"password": "not my password"}, headers=subscriber["headers"])

    assert (missing.status_code, missing.json()["error"]["code"]) == (422, "proof_required")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (422, "password_wrong")
    assert wrong.json()["error"]["field"] == "password"
    assert line_row(runtime, subscriber["line"]["id"]).suspension is not None
    assert ask(runtime, "pgw;r1", 0, RequestType.INITIAL, msisdn, requested=MB).result_code is (
        ResultCode.END_USER_SERVICE_DENIED
    )
    assert count(runtime, AuditEntry, AuditEntry.action == "line.resumed") == 0

    resumed = client.post(url(subscriber, "resume"), json={"password": PASSWORD}, headers=subscriber["headers"])

    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["suspension"], resumed.json()["in_service"]) == (None, True)
    assert ask(runtime, "pgw;r2", 0, RequestType.INITIAL, msisdn, requested=MB).result_code is ResultCode.SUCCESS
    again = client.post(url(subscriber, "resume"), json={"password": PASSWORD}, headers=subscriber["headers"])
    assert (again.status_code, again.json()["error"]["code"]) == (409, "line_not_suspended")
    with runtime.unit_of_work() as uow:
        entry = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "line.resumed")).one()
        assert entry.detail == {"old": "lost", "new": None, "proof": "password"}
        assert PASSWORD not in str(entry.detail)


def test_wrong_passwords_lock_the_account_as_sign_in_does(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    report(client, subscriber)
    limit = runtime.settings.login_lockout_failures
    codes = [
        client.post(url(subscriber, "resume"), json={"password": f"guess {i}"}, headers=subscriber["headers"]).json()[
            "error"
        ]["code"]
        for i in range(limit)
    ]
    assert codes == ["password_wrong"] * (limit - 1) + ["login_locked"]
    right = client.post(url(subscriber, "resume"), json={"password": PASSWORD}, headers=subscriber["headers"])
    assert (right.status_code, right.json()["error"]["code"]) == (429, "login_locked")
    assert line_row(runtime, subscriber["line"]["id"]).suspension is not None


def test_resuming_with_a_code_sent_to_the_email(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    report(client, subscriber)
    no_email = client.post(url(subscriber, "proof-code"), json={"purpose": "resume"}, headers=subscriber["headers"])
    assert (no_email.status_code, no_email.json()["error"]["code"]) == (409, "proof_email_missing")
    add_email(client, runtime, subscriber, "holder@example.com")

    sent = client.post(url(subscriber, "proof-code"), json={"purpose": "resume"}, headers=subscriber["headers"])

    assert sent.status_code == 202, sent.text
    assert sent.json() == {"channel": "email", "sent_to": "h•••@example.com"}
    code = last_emailed_code(runtime, "holder@example.com")
    wrong = "000000" if code != "000000" else "111111"
    refused = client.post(url(subscriber, "resume"), json={"code": wrong}, headers=subscriber["headers"])
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "otp_invalid")
    resumed = client.post(url(subscriber, "resume"), json={"code": code}, headers=subscriber["headers"])
    assert resumed.status_code == 200 and resumed.json()["in_service"] is True
    with runtime.unit_of_work() as uow:
        told = uow.session.scalars(select(Notification.channel).where(Notification.template == "line_resumed")).all()
        assert sorted(told) == ["email", "sms"]


def test_lifecycle_and_renewal_go_on_and_a_renewal_does_not_lift_the_suspension(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    subscriber = active_line(client, runtime)
    report(client, subscriber)
    expires = line_row(runtime, subscriber["line"]["id"]).expires_at
    assert expires is not None
    clock.advance(expires - clock.now() + timedelta(minutes=1))
    with runtime.unit_of_work() as uow:
        assert lifecycle.advance(uow)["grace"] == 1
    signed_in = client.post("/api/v1/auth/tokens", json={"phone": subscriber["phone"], "password": PASSWORD})
    subscriber = {**subscriber, "headers": {"Authorization": f"Bearer {signed_in.json()['token']}"}}

    renewed = buy(client, runtime, clock, subscriber, plan="test-plan")

    line = line_row(runtime, subscriber["line"]["id"])
    assert renewed["status"] == "fulfilled"
    assert (line.status, line.suspension) == (LineStatus.ACTIVE, "lost")
    assert line.expires_at is not None and line.expires_at > clock.now()
    refused = ask(runtime, "pgw;renewed", 0, RequestType.INITIAL, line.msisdn, requested=MB)
    assert refused.result_code is ResultCode.END_USER_SERVICE_DENIED
    shown = client.get(url(subscriber, "status"), headers=subscriber["headers"]).json()
    assert (shown["line"]["status"], shown["line"]["suspension"], shown["line"]["in_service"]) == (
        "active",
        "lost",
        False,
    )


def test_staff_see_the_reason_and_resume_with_one(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    report(client, subscriber, "stolen")
    _, finance = staff(runtime, Role.FINANCE, 7)
    _, support = staff(runtime, Role.SUPPORT, 8)

    listed = client.get(f"/api/v1/lines?account_id={subscriber['account']['id']}", headers=support).json()
    forbidden = client.post(url(subscriber, "resume"), json={"reason": "seen at the shop"}, headers=finance)
    no_reason = client.post(url(subscriber, "resume"), json={"reason": "  "}, headers=support)
    resumed = client.post(url(subscriber, "resume"), json={"reason": "ID checked at the shop"}, headers=support)

    assert listed["items"][0]["suspension"] == "stolen"
    assert (forbidden.status_code, forbidden.json()["error"]["code"]) == (403, "forbidden")
    assert (no_reason.status_code, no_reason.json()["error"]["code"]) == (422, "reason_required")
    assert resumed.status_code == 200 and resumed.json()["suspension"] is None
    with runtime.unit_of_work() as uow:
        entry = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "line.resumed")).one()
        assert entry.detail == {"old": "stolen", "new": None, "reason": "ID checked at the shop"}


def test_moving_the_esim_issues_a_new_code_and_refuses_the_old(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    _, network = staff(runtime, Role.NETWORK, 9)
    before = client.get(url(subscriber, "esim"), headers=subscriber["headers"]).json()
    known = client.get("/api/v1/esim/profile", params={"iccid": before["iccid"]}, headers=network)
    assert known.status_code == 200 and known.json()["msisdn"] == subscriber["line"]["msisdn"]

    wrong = client.post(url(subscriber, "esim/move"), json={"password": "nope nope"}, headers=subscriber["headers"])
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (422, "password_wrong")
    assert client.get(url(subscriber, "esim"), headers=subscriber["headers"]).json() == before

    moved = client.post(url(subscriber, "esim/move"), json={"password": PASSWORD}, headers=subscriber["headers"])

    assert moved.status_code == 200, moved.text
    after = moved.json()["esim"]
    assert after["iccid"] != before["iccid"] and after["matching_id"] != before["matching_id"]
    assert after["activation_code"].startswith("LPA:1$") and after["activation_code"] != before["activation_code"]
    assert client.get(url(subscriber, "esim"), headers=subscriber["headers"]).json()["iccid"] == after["iccid"]
    for query in ({"iccid": before["iccid"]}, {"matching_id": before["matching_id"]}):
        old = client.get("/api/v1/esim/profile", params=query, headers=network)
        assert (old.status_code, old.json()["error"]["code"]) == (409, "esim_profile_retired")
    new = client.get("/api/v1/esim/profile", params={"matching_id": after["matching_id"]}, headers=network)
    assert new.status_code == 200 and new.json()["iccid"] == after["iccid"]
    unknown = client.get("/api/v1/esim/profile", params={"iccid": "8985201999999999999"}, headers=network)
    assert unknown.status_code == 404
    with runtime.unit_of_work() as uow:
        entry = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "line.esim_moved")).one()
        assert entry.detail == {"old": before["iccid"], "new": after["iccid"]}
        raised = uow.session.scalars(select(DomainEvent).where(DomainEvent.type == "line.esim_moved")).one()
        assert raised.payload == {"line_id": subscriber["line"]["id"], "iccid": after["iccid"]}
    assert count(runtime, Notification, Notification.template == "esim_moved") == 1  # SMS; no email on file


def test_the_esim_moves_a_few_times_a_day_at_most(client: TestClient, runtime: Runtime, clock: FrozenClock) -> None:
    subscriber = active_line(client, runtime)
    limit = runtime.settings.esim_moves_per_day
    for _ in range(limit):
        moved = client.post(url(subscriber, "esim/move"), json={"password": PASSWORD}, headers=subscriber["headers"])
        assert moved.status_code == 200, moved.text
    current = client.get(url(subscriber, "esim"), headers=subscriber["headers"]).json()

    refused = client.post(url(subscriber, "esim/move"), json={"password": PASSWORD}, headers=subscriber["headers"])

    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "esim_move_limit")
    assert client.get(url(subscriber, "esim"), headers=subscriber["headers"]).json() == current
    clock.advance(timedelta(days=1, minutes=1))
    later = client.post(url(subscriber, "esim/move"), json={"password": PASSWORD}, headers=subscriber["headers"])
    assert later.status_code == 200


def test_reporting_twice_is_harmless_and_another_subscriber_cannot(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    other = active_line(client, runtime, n=2)

    first, second = report(client, subscriber), report(client, subscriber, "stolen")
    stranger = client.post(url(subscriber, "report-lost"), json={"reason": "lost"}, headers=other["headers"])
    bad = client.post(url(subscriber, "report-lost"), json={"reason": "misplaced"}, headers=subscriber["headers"])

    assert first.status_code == second.status_code == 200 and second.json()["suspension"] == "lost"
    assert stranger.status_code == 404
    assert bad.status_code == 422
    assert count(runtime, AuditEntry, AuditEntry.action == "line.suspended") == 1
    assert count(runtime, Notification, Notification.template == "line_reported_lost") == 1


@pytest.mark.postgres_only
def test_two_reports_at_once_suspend_once(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    ask(runtime, "pgw;race", 0, RequestType.INITIAL, subscriber["line"]["msisdn"], requested=MB)
    barrier, answers = threading.Barrier(2), []

    def request() -> None:
        barrier.wait()
        answers.append(report(client, subscriber).status_code)

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [200, 200]
    assert count(runtime, AuditEntry, AuditEntry.action == "line.suspended") == 1
    assert count(runtime, LineEvent, LineEvent.reason.like("suspended:%")) == 1
    assert count(runtime, Notification, Notification.template == "line_reported_lost") == 1
