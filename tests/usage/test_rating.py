"""Several services in one credit-control request (one per Multiple-Services-Credit-Control), at the
service level on both databases: each rated by the catalogue's rating groups, granted, charged and
answered on its own; an unrated group refused alone; reservations per (session, rating group)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.roles import Role
from duckline.catalog import rating
from duckline.catalog.rules import Unit
from duckline.runtime import Runtime
from duckline.staff.models import AuditEntry
from duckline.usage import quota
from duckline.usage.ingest import UsageKind
from duckline.usage.models import CreditReservation, UsageRecord
from duckline.usage.quota import CreditRequest, RequestType, ResultCode, ServiceUnits
from tests.factories import staff
from tests.usage.test_usage import active_line, remaining

MB = 1_000_000
DATA, VOICE, SMS = UsageKind.DATA, UsageKind.VOICE, UsageKind.SMS
INITIAL, UPDATE, TERMINATE, EVENT = RequestType.INITIAL, RequestType.UPDATE, RequestType.TERMINATE, RequestType.EVENT


def service(group: int, asked: dict[UsageKind, int] | None = None, used: dict[UsageKind, int] | None = None) -> Any:
    return ServiceUnits(group, requested=asked or {}, used=used or {})


def ask(runtime: Runtime, session: str, number: int, kind: RequestType, msisdn: str | None, *services: Any) -> Any:
    request = CreditRequest(session, number, kind, msisdn, DATA, services=services)
    with runtime.unit_of_work() as uow:
        return quota.handle(uow, request)


def records(runtime: Runtime) -> list[tuple[str, int]]:
    with runtime.unit_of_work() as uow:
        rows = uow.session.execute(select(UsageRecord.record_id, UsageRecord.quantity).order_by(UsageRecord.id))
        return [(r, q) for r, q in rows]


def codes(answer: Any) -> list[tuple[int | None, int]]:
    return [(s.rating_group, int(s.result_code)) for s in answer.services]


def test_two_rating_groups_are_granted_charged_and_answered_each_on_its_own(
    client: TestClient, runtime: Runtime
) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]
    voice = runtime.settings.quota_default_units["voice"]

    # A data session's second service is a call: rating group 100 is voice (CC-Time), whatever else
    # the block reports.
    opened = ask(runtime, "ims;1", 0, INITIAL, msisdn, service(10, {DATA: 2 * MB, VOICE: 30}), service(100))
    assert opened.result_code is ResultCode.SUCCESS
    assert [(s.rating_group, s.result_code, s.kind, s.granted) for s in opened.services] == [
        (10, ResultCode.SUCCESS, DATA, 2 * MB),
        (100, ResultCode.SUCCESS, VOICE, voice),
    ]
    assert all(s.validity_seconds == runtime.settings.quota_validity_seconds for s in opened.services)

    update = ask(
        runtime,
        "ims;1",
        1,
        UPDATE,
        None,
        service(10, {DATA: MB}, {DATA: 1_500_000, VOICE: 40}),
        service(100, {VOICE: 60}, {VOICE: 45}),
    )
    assert codes(update) == [(10, 2001), (100, 2001)] and [s.granted for s in update.services] == [MB, 60]

    done = ask(runtime, "ims;1", 2, TERMINATE, None, service(10, used={DATA: 300_000}), service(100, used={VOICE: 20}))
    assert done.result_code is ResultCode.SUCCESS and codes(done) == [(10, 2001), (100, 2001)]

    assert records(runtime) == [
        ("ims;1#1/10", 1_500_000),
        ("ims;1#1/100", 45),
        ("ims;1#2/10", 300_000),
        ("ims;1#2/100", 20),
    ]
    left = remaining(client, subscriber)
    assert (left[("data_bytes", "HK")], left[("voice_seconds", "HK")]) == (10 * MB - 1_800_000, 6000 - 65)
    with runtime.unit_of_work() as uow:
        held = uow.session.scalars(select(CreditReservation.reserved)).all()
        assert held == []  # given back at the end: the table holds only what is reserved now


def test_an_unknown_rating_group_is_refused_alone(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]

    opened = ask(runtime, "pgw;u", 0, INITIAL, msisdn, service(999, {DATA: MB}), service(10, {DATA: MB}))
    assert opened.result_code is ResultCode.SUCCESS
    assert codes(opened) == [(999, 5031), (10, 2001)]
    assert (opened.services[0].granted, opened.services[1].granted) == (None, MB)

    update = ask(runtime, "pgw;u", 1, UPDATE, None, service(999, used={DATA: MB}), service(10, used={DATA: MB}))
    assert codes(update) == [(999, 5031), (10, 2001)]
    assert records(runtime) == [("pgw;u#1/10", MB)]  # the unrated group's units cannot be charged


def test_a_retransmitted_two_service_update_is_answered_alike_and_charged_once(
    client: TestClient, runtime: Runtime
) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]
    ask(runtime, "pgw;rt", 0, INITIAL, msisdn, service(10, {DATA: MB}), service(11, {DATA: MB}))
    again = (service(10, {DATA: MB}, {DATA: 600_000}), service(11, {DATA: MB}, {DATA: 200_000}))

    answers = [ask(runtime, "pgw;rt", 1, UPDATE, None, *again) for _ in range(3)]

    assert answers[0] == answers[1] == answers[2] and codes(answers[0]) == [(10, 2001), (11, 2001)]
    assert records(runtime) == [("pgw;rt#1/10", 600_000), ("pgw;rt#1/11", 200_000)]
    assert remaining(client, subscriber)[("data_bytes", "HK")] == 10 * MB - 800_000


def test_a_rating_groups_grant_leaves_what_the_others_reserved(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]

    # Two data groups of one session draw on the same 10 MB: the second gets what the first left.
    both = ask(runtime, "pgw;a", 0, INITIAL, msisdn, service(10, {DATA: 6 * MB}), service(11, {DATA: 6 * MB}))
    assert [(s.granted, s.final) for s in both.services] == [(6 * MB, False), (4 * MB, True)]
    other = ask(runtime, "pgw;b", 0, INITIAL, msisdn, service(10, {DATA: MB}))
    assert other.result_code is ResultCode.CREDIT_LIMIT_REACHED and codes(other) == [(10, 4012)]

    # Reporting on one group gives back only that group's reservation.
    update = ask(runtime, "pgw;a", 1, UPDATE, None, service(10, {DATA: MB}, {DATA: 2 * MB}))
    assert [s.granted for s in update.services] == [MB]  # asked 1 of the 8 - 4 (group 11) left
    assert ask(runtime, "pgw;c", 0, INITIAL, msisdn, service(10, {DATA: 9 * MB})).services[0].granted == 3 * MB
    assert remaining(client, subscriber)[("data_bytes", "HK")] == 8 * MB


def test_a_changed_mapping_takes_effect_for_the_next_request_and_is_audited(
    client: TestClient, runtime: Runtime
) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]
    admin, _ = staff(runtime, Role.ADMIN, 40)
    assert codes(ask(runtime, "smsc;1", 0, EVENT, msisdn, service(300, {SMS: 1}))) == [(300, 5031)]

    rating.set_mapping(runtime.unit_of_work, admin, 300, None, Unit.SMS)
    sent = ask(runtime, "smsc;2", 0, EVENT, msisdn, service(300, {SMS: 2}))
    assert codes(sent) == [(300, 2001)] and sent.services[0].granted == 2
    assert remaining(client, subscriber)[("sms", "HK")] == 98

    # One service of group 10 (Service-Identifier 7) is charged as SMS; the group's others stay data.
    rating.set_mapping(runtime.unit_of_work, admin, 10, 7, Unit.SMS)
    with runtime.unit_of_work() as uow:
        assert rating.units_for(uow, [(10, 7), (10, 8), (10, None)]) == {
            (10, 7): Unit.SMS,
            (10, 8): Unit.DATA_BYTES,
            (10, None): Unit.DATA_BYTES,
        }
    rating.remove_mapping(runtime.unit_of_work, admin, 300, None)
    assert codes(ask(runtime, "smsc;3", 0, EVENT, msisdn, service(300, {SMS: 1}))) == [(300, 5031)]
    with runtime.unit_of_work() as uow:
        audited = uow.session.execute(
            select(AuditEntry.action, AuditEntry.target)
            .where(AuditEntry.action.like("rating_group.%"))
            .order_by(AuditEntry.id)
        ).all()
    assert [tuple(a) for a in audited] == [
        ("rating_group.set", "rating_group:300"),
        ("rating_group.set", "rating_group:10/7"),
        ("rating_group.removed", "rating_group:300"),
    ]
