"""A SIP account per line, on both databases: made at activation with digest hashes only, listed
in Kamailio's view exactly while the line can use service, reset by its holder alone, never
shown by the API but in a reset's answer, and gone with a recycled number."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from duckline.core.clock import FrozenClock
from duckline.lines import lifecycle
from duckline.lines import service as lines
from duckline.lines.models import Line
from duckline.lines.states import LineStatus, Suspension, can_use_service
from duckline.runtime import Runtime
from duckline.sip import accounts
from duckline.sip.models import SipAccount
from duckline.staff.models import AuditEntry
from tests.factories import PASSWORD, buy, register_and_verify
from tests.usage.test_usage import active_line


def md5(value: str) -> str:
    return hashlib.md5(value.encode()).hexdigest()  # noqa: S324 (what SIP digest is)


def sip_url(subscriber: dict[str, Any], tail: str = "") -> str:
    return f"/api/v1/lines/{subscriber['line']['id']}/sip{tail}"


def reset(client: TestClient, subscriber: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(sip_url(subscriber, "/password"), headers=subscriber["headers"])
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    return dict(answer.json())


def row(runtime: Runtime, line_id: int) -> SipAccount | None:
    with runtime.unit_of_work() as uow:
        return uow.session.scalars(select(SipAccount).where(SipAccount.line_id == line_id)).one_or_none()


def kamailio(runtime: Runtime) -> dict[str, dict[str, Any]]:
    """What Kamailio's auth_db reads, by username."""
    with runtime.db.engine.connect() as connection:
        found = connection.execute(text("SELECT id, username, domain, ha1, ha1b, rpid FROM kamailio_subscriber"))
        return {r.username: dict(r._mapping) for r in found}


def test_activation_makes_an_account_whose_hashes_match_a_reset_password(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    line_id, msisdn = subscriber["line"]["id"], subscriber["line"]["msisdn"]
    made = row(runtime, line_id)
    assert made is not None
    user, domain = msisdn.removeprefix("+"), runtime.settings.sip_domain
    assert (made.username, made.domain) == (user, "sip.duckline.example")

    answer = reset(client, subscriber)

    password = answer["password"]
    assert len(password) == 20 and set(password) <= set(accounts.ALPHABET)
    stored = row(runtime, line_id)
    assert stored is not None
    assert stored.ha1 == md5(f"{user}:{domain}:{password}")
    assert stored.ha1b == md5(f"{user}@{domain}:{domain}:{password}")
    assert stored.ha1 != made.ha1  # the unseen first password is gone
    assert password not in " ".join(str(v) for v in vars(stored).values())
    assert answer["provisioning_uri"] == f"sip:{user}:{password}@{domain}"
    assert (answer["username"], answer["domain"], answer["server"]) == (user, domain, "127.0.0.1:5060")
    listed = kamailio(runtime)[user]
    assert (listed["domain"], listed["ha1"], listed["ha1b"], listed["rpid"]) == (
        domain,
        stored.ha1,
        stored.ha1b,
        msisdn,
    )
    with runtime.unit_of_work() as uow:
        entry = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "line.sip_password_reset")).one()
        assert (entry.actor_id, entry.target) == (subscriber["account"]["id"], f"line:{line_id}")
        assert password not in str(entry.detail) and stored.ha1 not in str(entry.detail)


def test_a_reset_replaces_the_password(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    first, second = reset(client, subscriber), reset(client, subscriber)
    user, domain = first["username"], first["domain"]

    ha1 = kamailio(runtime)[user]["ha1"]

    assert first["password"] != second["password"]
    assert ha1 == md5(f"{user}:{domain}:{second['password']}") != md5(f"{user}:{domain}:{first['password']}")


def test_the_api_never_shows_a_hash_and_a_reset_only_once(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    password = reset(client, subscriber)["password"]
    stored = row(runtime, subscriber["line"]["id"])
    assert stored is not None

    shown = client.get(sip_url(subscriber), headers=subscriber["headers"])

    assert shown.status_code == 200
    assert set(shown.json()) == {"line_id", "username", "domain", "server", "password_changed_at"}
    for secret in (password, stored.ha1, stored.ha1b):
        assert secret not in shown.text
    assert "ha1" not in client.get("/api/v1/openapi.json").text


def test_another_subscriber_and_staff_cannot_reset_or_see_it(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    other = register_and_verify(client, runtime, 2)
    before = row(runtime, subscriber["line"]["id"])

    stranger_reset = client.post(sip_url(subscriber, "/password"), headers=other["headers"])
    stranger_look = client.get(sip_url(subscriber), headers=other["headers"])
    staff_reset = client.post(sip_url(subscriber, "/password"), headers=subscriber["admin_headers"])
    staff_look = client.get(sip_url(subscriber), headers=subscriber["admin_headers"])

    assert stranger_reset.status_code == 404 and stranger_look.status_code == 404
    assert staff_reset.status_code == 403  # a subscriber's route; staff only read where the phone registers
    assert staff_look.status_code == 200 and 'password"' not in staff_look.text
    after = row(runtime, subscriber["line"]["id"])
    assert before is not None and after is not None and after.ha1 == before.ha1


def test_a_pending_line_has_no_account_yet(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    opened = client.post("/api/v1/lines", headers=subscriber["headers"])
    assert opened.status_code == 201, opened.text
    pending = {**subscriber, "line": opened.json()}

    looked = client.get(sip_url(pending), headers=subscriber["headers"])
    asked = client.post(sip_url(pending, "/password"), headers=subscriber["headers"])

    assert looked.status_code == asked.status_code == 409
    assert asked.json()["error"]["code"] == "sip_account_missing"
    assert row(runtime, pending["line"]["id"]) is None


def test_a_lost_phone_leaves_the_view_and_comes_back_with_the_same_password(
    client: TestClient, runtime: Runtime
) -> None:
    subscriber = active_line(client, runtime)
    user = reset(client, subscriber)["username"]
    ha1 = kamailio(runtime)[user]["ha1"]

    lost = client.post(
        f"/api/v1/lines/{subscriber['line']['id']}/report-lost", json={"reason": "lost"}, headers=subscriber["headers"]
    )
    assert lost.status_code == 200, lost.text
    assert user not in kamailio(runtime)

    resumed = client.post(
        f"/api/v1/lines/{subscriber['line']['id']}/resume", json={"password": PASSWORD}, headers=subscriber["headers"]
    )
    assert resumed.status_code == 200, resumed.text
    assert kamailio(runtime)[user]["ha1"] == ha1


def test_expiry_leaves_the_view_a_renewal_brings_it_back_and_recycling_deletes_it(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    subscriber = active_line(client, runtime)
    line_id = subscriber["line"]["id"]
    user = reset(client, subscriber)["username"]
    ha1 = kamailio(runtime)[user]["ha1"]
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, line_id)
        assert line is not None and line.expires_at is not None
        expires = line.expires_at
    clock.advance(expires - clock.now() + timedelta(minutes=1))
    with runtime.unit_of_work() as uow:
        assert lifecycle.advance(uow)["grace"] == 1
    assert user not in kamailio(runtime)

    signed_in = client.post("/api/v1/auth/tokens", json={"phone": subscriber["phone"], "password": PASSWORD})
    subscriber = {**subscriber, "headers": {"Authorization": f"Bearer {signed_in.json()['token']}"}}
    buy(client, runtime, clock, subscriber, plan="test-plan")

    assert kamailio(runtime)[user]["ha1"] == ha1  # renewed: the same password works again

    settings = runtime.settings
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, line_id)
        assert line is not None and line.expires_at is not None
        expires = line.expires_at
    clock.advance(expires - clock.now() + timedelta(days=settings.grace_days + settings.retention_days, minutes=1))
    with runtime.unit_of_work() as uow:
        assert lifecycle.advance(uow)["recycled"] == 1
    assert user not in kamailio(runtime)
    assert row(runtime, line_id) is None  # the number's next holder gets an account of their own


@pytest.mark.parametrize("status", list(LineStatus))
@pytest.mark.parametrize("suspension", [None, *Suspension])
def test_the_view_says_what_can_use_service_says(
    runtime: Runtime, status: LineStatus, suspension: Suspension | None
) -> None:
    """The migration writes the rule in SQL; this holds it to lines/states.py."""
    with runtime.unit_of_work() as uow:
        now = uow.now()
        line = Line(
            account_id=_account(uow),
            msisdn="+85251799999",
            status=status,
            suspension=suspension,
            voicemail=False,
            caller_id=True,
            created_at=now,
            updated_at=now,
        )
        uow.session.add(line)
        uow.session.flush()
        accounts.ensure(uow, line)

    assert ("85251799999" in kamailio(runtime)) is can_use_service(status, suspension)


def _account(uow: Any) -> int:
    from duckline.accounts.models import Account
    from duckline.accounts.roles import Role

    account = Account(
        phone="+85261234567",
        password_hash="x",
        role=Role.SUBSCRIBER,
        language="en",
        timezone="Asia/Hong_Kong",
        created_at=uow.now(),
    )
    uow.session.add(account)
    uow.session.flush()
    return int(account.id)


def test_transition_keeps_one_account_through_every_activation(client: TestClient, runtime: Runtime) -> None:
    """Activating again (a renewal out of expiry, staff resuming) never makes a second account."""
    subscriber = active_line(client, runtime)
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, subscriber["line"]["id"])
        assert line is not None
        first = accounts.account_of(uow, line)
        lines.transition(uow, line, LineStatus.GRACE, "test")
        lines.transition(uow, line, LineStatus.ACTIVE, "test")
        again = accounts.account_of(uow, line)
        assert first is not None and again is not None and (again.id, again.ha1) == (first.id, first.ha1)


def test_resets_are_rate_limited(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    limit = int(runtime.settings.sip_reset_rate_limit.split("/")[0])
    for _ in range(limit):
        reset(client, subscriber)
    before = row(runtime, subscriber["line"]["id"])

    refused = client.post(sip_url(subscriber, "/password"), headers=subscriber["headers"])

    assert refused.status_code == 429
    after = row(runtime, subscriber["line"]["id"])
    assert before is not None and after is not None and after.ha1 == before.ha1
