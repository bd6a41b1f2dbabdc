"""Online charging at the service level (duckline.usage.quota), on both databases: grants come
from what the buckets hold less what other sessions reserved, used units are charged exactly once,
a retransmission changes nothing, and two sessions racing for the last units never both get them."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.catalog.rules import Zone
from duckline.core.clock import FrozenClock
from duckline.lines.models import Line
from duckline.lines.states import LineStatus
from duckline.runtime import Runtime
from duckline.usage import quota
from duckline.usage.ingest import UsageKind
from duckline.usage.models import CreditSession, LedgerEntry, UsageRecord
from duckline.usage.quota import CreditAnswer, CreditRequest, RequestType, ResultCode
from tests.usage.test_usage import active_line, remaining

MB = 1_000_000
DATA = ("data_bytes", "HK")


def ask(runtime: Runtime, session: str, number: int, kind: RequestType, msisdn: str | None, **units: Any) -> Any:
    request = CreditRequest(session, number, kind, msisdn, units.pop("usage", UsageKind.DATA), **units)
    with runtime.unit_of_work() as uow:
        return quota.handle(uow, request)


def charged(runtime: Runtime) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(UsageRecord)) or 0)


def test_a_data_session_reserves_then_charges_exactly_what_was_used(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]

    first = ask(runtime, "pgw;1", 0, RequestType.INITIAL, msisdn, requested=2 * MB)
    assert first == CreditAnswer(ResultCode.SUCCESS, 2 * MB, runtime.settings.quota_validity_seconds, False)
    assert remaining(client, subscriber)[DATA] == 10 * MB  # reserved, not spent

    update = ask(runtime, "pgw;1", 1, RequestType.UPDATE, None, used=1_500_000, requested=2 * MB)
    assert update.result_code is ResultCode.SUCCESS and update.granted == 2 * MB
    assert remaining(client, subscriber)[DATA] == 10 * MB - 1_500_000

    done = ask(runtime, "pgw;1", 2, RequestType.TERMINATE, None, used=700_000)
    assert done == CreditAnswer(ResultCode.SUCCESS)
    assert remaining(client, subscriber)[DATA] == 10 * MB - 2_200_000
    with runtime.unit_of_work() as uow:
        records = uow.session.execute(select(UsageRecord.record_id, UsageRecord.quantity).order_by(UsageRecord.id))
        assert records.all() == [("pgw;1#1", 1_500_000), ("pgw;1#2", 700_000)]
        usage_rows = uow.session.scalars(select(LedgerEntry.delta).where(LedgerEntry.reason == "usage")).all()
        assert sorted(usage_rows) == [-1_500_000, -700_000]
        session = uow.session.scalars(select(CreditSession)).one()
        assert (session.status, session.reserved, session.last_request_number) == ("closed", 0, 2)


def test_a_retransmitted_request_gets_the_same_answer_and_is_charged_once(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]
    ask(runtime, "pgw;2", 0, RequestType.INITIAL, msisdn, requested=MB)

    answers = [ask(runtime, "pgw;2", 1, RequestType.UPDATE, None, used=MB, requested=MB) for _ in range(3)]

    assert answers[0] == answers[1] == answers[2] and answers[0].granted == MB
    assert remaining(client, subscriber)[DATA] == 9 * MB and charged(runtime) == 1
    stale = ask(runtime, "pgw;2", 0, RequestType.INITIAL, msisdn, requested=MB)  # older than the last
    assert stale == CreditAnswer(ResultCode.UNABLE_TO_COMPLY)
    assert remaining(client, subscriber)[DATA] == 9 * MB and charged(runtime) == 1


def test_grants_never_exceed_what_is_left_after_other_sessions_reservations(
    client: TestClient, runtime: Runtime
) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]

    first = ask(runtime, "a", 0, RequestType.INITIAL, msisdn, requested=7 * MB)
    second = ask(runtime, "b", 0, RequestType.INITIAL, msisdn, requested=7 * MB)
    third = ask(runtime, "c", 0, RequestType.INITIAL, msisdn, requested=MB)

    assert (first.granted, first.final) == (7 * MB, False)
    assert (second.granted, second.final) == (3 * MB, True)  # the rest, and the element is told so
    assert third == CreditAnswer(ResultCode.CREDIT_LIMIT_REACHED)
    ask(runtime, "a", 1, RequestType.TERMINATE, None, used=MB)  # gives back the 6 MB it did not use
    assert ask(runtime, "c", 1, RequestType.INITIAL, msisdn).result_code is ResultCode.UNABLE_TO_COMPLY
    assert ask(runtime, "d", 0, RequestType.INITIAL, msisdn, requested=7 * MB).granted == 6 * MB


def test_a_session_id_longer_than_a_usage_record_id_is_charged_once(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    session = "pgw.example.com;" + "7" * 200  # RFC 6733 sets no length on a Session-Id
    ask(runtime, session, 0, RequestType.INITIAL, subscriber["line"]["msisdn"], requested=MB)

    answers = [ask(runtime, session, 1, RequestType.TERMINATE, None, used=MB) for _ in range(2)]

    assert answers == [CreditAnswer(ResultCode.SUCCESS)] * 2
    assert remaining(client, subscriber)[DATA] == 9 * MB and charged(runtime) == 1


def test_a_reservation_lapses_after_its_validity(client: TestClient, runtime: Runtime, clock: FrozenClock) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]
    ask(runtime, "gone", 0, RequestType.INITIAL, msisdn, requested=10 * MB)
    assert ask(runtime, "next", 0, RequestType.INITIAL, msisdn).result_code is ResultCode.CREDIT_LIMIT_REACHED

    clock.advance(timedelta(seconds=runtime.settings.quota_validity_seconds + 1))

    assert ask(runtime, "later", 0, RequestType.INITIAL, msisdn, requested=10 * MB).granted == 10 * MB


def test_sms_events_are_debited_at_once_until_none_are_left(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]
    sms = {"usage": UsageKind.SMS}

    answers = [ask(runtime, f"smsc;{n}", 0, RequestType.EVENT, msisdn, **sms) for n in range(101)]

    assert [a.result_code for a in answers] == [ResultCode.SUCCESS] * 100 + [ResultCode.CREDIT_LIMIT_REACHED]
    assert remaining(client, subscriber)[("sms", "HK")] == 0 and charged(runtime) == 100


def test_voice_in_another_zone_draws_on_that_zone_only(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]
    voice = {"usage": UsageKind.VOICE}

    mainland = ask(runtime, "msc;cn", 0, RequestType.INITIAL, msisdn, zone=Zone.MAINLAND, **voice)
    home = ask(runtime, "msc;hk", 0, RequestType.INITIAL, msisdn, zone=Zone.HK, **voice)

    assert mainland == CreditAnswer(ResultCode.CREDIT_LIMIT_REACHED)  # the plan has no Mainland minutes
    assert home.granted == runtime.settings.quota_default_units["voice"]


def test_unknown_subscribers_sessions_and_lines_out_of_service_are_refused(
    client: TestClient, runtime: Runtime
) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]

    assert ask(runtime, "x", 0, RequestType.INITIAL, "+85290000000").result_code is ResultCode.USER_UNKNOWN
    assert ask(runtime, "y", 1, RequestType.UPDATE, None, used=5).result_code is ResultCode.UNKNOWN_SESSION_ID
    assert ask(runtime, "z", 0, RequestType.INITIAL, msisdn, used=-1).result_code is ResultCode.UNABLE_TO_COMPLY
    assert charged(runtime) == 0
    assert ask(runtime, "live", 0, RequestType.INITIAL, msisdn, requested=MB).granted == MB
    with runtime.unit_of_work() as uow:
        row = uow.session.get(Line, subscriber["line"]["id"])
        assert row is not None
        row.status = LineStatus.SUSPENDED

    # Usage reported after the suspension is still charged; no more is granted.
    refused = ask(runtime, "live", 1, RequestType.UPDATE, None, used=MB, requested=MB)
    assert refused == CreditAnswer(ResultCode.END_USER_SERVICE_DENIED)
    assert charged(runtime) == 1
    assert ask(runtime, "new", 0, RequestType.INITIAL, msisdn).result_code is ResultCode.END_USER_SERVICE_DENIED


def test_two_sessions_racing_for_the_last_units_never_both_get_them(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A competing request is let in while the first one has counted what is left but not yet
    reserved it: it must wait for the line's lock and then see the reservation."""
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]
    ask(runtime, "holder", 0, RequestType.INITIAL, msisdn, requested=9 * MB)  # 1 MB is left for others
    counted, go_on = threading.Event(), threading.Event()
    real_available = quota._available

    def available_then_pause(uow: Any, line_id: int, session: CreditSession, *rest: Any) -> int:
        left = real_available(uow, line_id, session, *rest)
        if session.session_id == "first":
            counted.set()
            go_on.wait(timeout=10)
        return left

    monkeypatch.setattr(quota, "_available", available_then_pause)
    answers: dict[str, Any] = {}

    def request(name: str) -> None:
        answers[name] = ask(runtime, name, 0, RequestType.INITIAL, msisdn, requested=MB)

    first = threading.Thread(target=request, args=("first",))
    first.start()
    assert counted.wait(timeout=10)
    second = threading.Thread(target=request, args=("second",))
    second.start()
    second.join(timeout=1.0)  # without the lock it would be answered now, with the same 1 MB
    go_on.set()
    first.join()
    second.join()

    assert answers["first"].granted == MB
    assert answers["second"] == CreditAnswer(ResultCode.CREDIT_LIMIT_REACHED)
