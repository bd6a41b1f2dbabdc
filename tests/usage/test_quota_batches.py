"""Online charging a batch at a time (`quota.handle_many`, the server's group commit): requests
in one batch are answered as if one after the other, on both databases, in a fixed number of
statements whatever the batch's size."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from duckline.runtime import Runtime
from duckline.usage import quota
from duckline.usage.ingest import UsageKind
from duckline.usage.models import CreditSession, UsageRecord
from duckline.usage.quota import CreditRequest, RequestType, ResultCode
from tests.usage.test_quota import DATA, MB
from tests.usage.test_usage import active_line, remaining

INITIAL, UPDATE, TERMINATE = RequestType.INITIAL, RequestType.UPDATE, RequestType.TERMINATE


def request(session: str, number: int, kind: RequestType, msisdn: str | None, **units: Any) -> CreditRequest:
    return CreditRequest(session, number, kind, msisdn, UsageKind.DATA, **units)


def batch(runtime: Runtime, *requests: CreditRequest) -> list[quota.CreditAnswer]:
    with runtime.unit_of_work() as uow:
        return quota.handle_many(uow, list(requests))


@contextmanager
def statements(runtime: Runtime) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = runtime.db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_two_sessions_of_a_line_in_one_batch_never_both_get_the_last_units(
    client: TestClient, runtime: Runtime
) -> None:
    msisdn = active_line(client, runtime)["line"]["msisdn"]  # 10 MB of data
    first, second = batch(
        runtime,
        request("a;1", 0, INITIAL, msisdn, requested=7 * MB),
        request("b;1", 0, INITIAL, msisdn, requested=7 * MB),
    )
    assert (first.result_code, first.granted) == (ResultCode.SUCCESS, 7 * MB)
    assert (second.result_code, second.granted, second.final) == (ResultCode.SUCCESS, 3 * MB, True)


def test_a_session_carried_through_one_batch_is_charged_once_per_request(client: TestClient, runtime: Runtime) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]
    answers = batch(
        runtime,
        request("s;1", 0, INITIAL, msisdn, requested=MB),
        request("s;1", 1, UPDATE, None, used=600_000, requested=MB),
        request("s;1", 1, UPDATE, None, used=600_000, requested=MB),  # a retransmission, same batch
        request("s;1", 2, TERMINATE, None, used=400_000),
    )
    assert [a.result_code for a in answers] == [ResultCode.SUCCESS] * 4
    assert answers[2] == answers[1]
    assert remaining(client, subscriber)[DATA] == 10 * MB - MB
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(UsageRecord)) == 2
        session = uow.session.scalars(select(CreditSession)).one()
        assert (session.status, session.reserved, session.last_request_number) == (quota.CLOSED, 0, 2)
    # The last request again (its answer was lost on the way): the same answer, nothing more charged.
    again = batch(runtime, request("s;1", 2, TERMINATE, None, used=400_000))
    assert again[0] == answers[3]
    assert remaining(client, subscriber)[DATA] == 10 * MB - MB


def test_a_batch_costs_the_same_statements_for_one_request_as_for_forty(client: TestClient, runtime: Runtime) -> None:
    msisdns = [active_line(client, runtime, n)["line"]["msisdn"] for n in (1, 2)]
    batch(runtime, *[request(f"warm;{i}", 0, INITIAL, msisdns[i % 2], requested=1000) for i in range(2)])

    with statements(runtime) as one:
        batch(runtime, request("one;1", 0, INITIAL, msisdns[0], requested=1000))
    with statements(runtime) as forty:
        batch(runtime, *[request(f"many;{i}", 0, INITIAL, msisdns[i % 2], requested=1000) for i in range(40)])
    assert len(one) == len(forty) <= 12, forty
    with statements(runtime) as updates:
        answers = batch(runtime, *[request(f"many;{i}", 1, UPDATE, None, used=500, requested=1000) for i in range(40)])
    assert {a.result_code for a in answers} == {ResultCode.SUCCESS}
    assert len(updates) <= 14, updates


def test_a_request_that_cannot_be_served_is_answered_without_failing_the_others(
    client: TestClient, runtime: Runtime
) -> None:
    msisdn = active_line(client, runtime)["line"]["msisdn"]
    good, unknown, bad = batch(
        runtime,
        request("g;1", 0, INITIAL, msisdn, requested=MB),
        request("u;1", 1, UPDATE, None, used=5),
        request("x;1", -1, INITIAL, msisdn, requested=MB),
    )
    assert good.result_code is ResultCode.SUCCESS and good.granted == MB
    assert unknown.result_code is ResultCode.UNKNOWN_SESSION_ID
    assert bad.result_code is ResultCode.UNABLE_TO_COMPLY
