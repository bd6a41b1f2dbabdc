"""The OCS speaks first, over real TCP on loopback, on SQLite and PostgreSQL: a renewal sends a RAR
to the element holding an open session, a line leaving service an ASR (and the session is
aborted); a peer that does not answer is asked once more, then noted, and nobody else waits for
it; a session no element ends is closed by the reaper and its units go back to the line; a
CCR-INITIAL without credit leaves no open session."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from diameter.message import constants
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from duckline.catalog.rules import Unit, Zone
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.diameter import codec
from duckline.diameter.server import GyServer
from duckline.lines import lifecycle
from duckline.lines import service as lines
from duckline.lines.models import Line
from duckline.lines.states import LineStatus
from duckline.runtime import Runtime
from duckline.usage import credit_signals
from duckline.usage.charging_states import ClosedReason, CreditSessionStatus, SignalKind, SignalOutcome
from duckline.usage.models import CreditReservation, CreditSession, CreditSessionSignal
from tests.diameter.conftest import PGW, PGW2, wait_for
from tests.diameter.test_foreign import pdml_avps
from tests.diameter.wire import INITIAL, OPERATOR_REALM, UPDATE, RawPeer, tshark_packets, value_of
from tests.factories import buy
from tests.usage.test_usage import active_line

MB = 1_000_000
RESULT = constants.AVP_RESULT_CODE
RAR, ASR = 258, 274
TIMEOUT = 2.0  # how long the OCS waits for an answer of ours before asking once more


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "diameter_signal_poll_seconds": 0.05,
            "diameter_request_timeout_seconds": TIMEOUT,
            "diameter_session_timeout_seconds": 600,
            "diameter_session_reap_seconds": 0.1,
        }
    )


def granted(answer: codec.Inbound) -> int:
    return int(answer.message.multiple_services_credit_control[0].granted_service_unit.cc_total_octets)


def open_session(peer: RawPeer, session: str, msisdn: str, asked: int = MB) -> codec.Inbound:
    answer = peer.ask(peer.ccr(session, 0, INITIAL, msisdn, asked=asked))
    assert value_of(answer, RESULT) == 2001
    return answer


def credit_session(runtime: Runtime, session: str) -> CreditSession:
    with runtime.unit_of_work() as uow:
        found = uow.session.scalars(select(CreditSession).where(CreditSession.session_id == session)).one()
        uow.session.expunge(found)
        return found


def signals(runtime: Runtime, session: str) -> list[CreditSessionSignal]:
    with runtime.unit_of_work() as uow:
        rows = list(
            uow.session.scalars(
                select(CreditSessionSignal)
                .join(CreditSession, CreditSession.id == CreditSessionSignal.credit_session_id)
                .where(CreditSession.session_id == session)
                .order_by(CreditSessionSignal.id)
            ).all()
        )
        uow.session.expunge_all()
        return rows


def finished(runtime: Runtime, session: str) -> list[CreditSessionSignal]:
    wait_for(lambda: all(s.finished_at for s in signals(runtime, session)), what="the signals to be finished")
    return signals(runtime, session)


def check_request(request: codec.Inbound, command: int, session: str, settings: Settings) -> None:
    """What RFC 6733 / 4006 ask of a RAR or ASR of ours: header flags and ids, the AVPs, M bits."""
    header = request.message.header
    assert (header.command_code, header.application_id) == (command, 4)
    assert header.is_request and header.is_proxyable and not header.is_error
    assert header.hop_by_hop_identifier and header.end_to_end_identifier
    assert value_of(request, constants.AVP_SESSION_ID) == session
    assert value_of(request, constants.AVP_ORIGIN_HOST) == settings.diameter_origin_host.encode()
    assert value_of(request, constants.AVP_ORIGIN_REALM) == settings.diameter_realm.encode()
    assert value_of(request, constants.AVP_DESTINATION_HOST) == PGW.encode()
    assert value_of(request, constants.AVP_DESTINATION_REALM) == OPERATOR_REALM.encode()
    assert value_of(request, constants.AVP_AUTH_APPLICATION_ID) == 4
    if command == RAR:
        assert value_of(request, constants.AVP_RE_AUTH_REQUEST_TYPE) == 0  # AUTHORIZE_ONLY
    else:
        assert request.first(constants.AVP_RE_AUTH_REQUEST_TYPE) is None
    assert all(avp.is_mandatory for avp in request.avps)


def test_a_renewal_sends_a_rar_and_the_element_asks_again_at_once(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    gy: GyServer,
    connect: Callable[..., RawPeer],
) -> None:
    subscriber = active_line(client, runtime)
    peer = connect(PGW)
    opened = open_session(peer, "rar;1", subscriber["line"]["msisdn"], asked=10 * MB)
    assert granted(opened) == 10 * MB  # all the line has

    buy(client, runtime, clock, subscriber, plan="test-plan")  # a real renewal: 10 MB more

    rar = peer.request_from_server(RAR)
    check_request(rar, RAR, "rar;1", runtime.settings)
    peer.answer_request(rar, 2001)
    [signal] = finished(runtime, "rar;1")
    assert (signal.kind, signal.outcome, signal.result_code, signal.attempts) == (
        SignalKind.RAR,
        SignalOutcome.ANSWERED,
        2001,
        1,
    )
    assert signal.sent_at is not None
    # The element re-asks at once (the renewal's buckets start when the current period ends).
    again = peer.ask(peer.ccr("rar;1", 1, UPDATE, asked=10 * MB, used=MB))
    assert value_of(again, RESULT) == 2001 and granted(again) == 9 * MB
    assert credit_session(runtime, "rar;1").origin_host == PGW


def _report_lost(client: TestClient, runtime: Runtime, subscriber: dict[str, Any]) -> None:
    reported = client.post(
        f"/api/v1/lines/{subscriber['line']['id']}/report-lost", json={"reason": "lost"}, headers=subscriber["headers"]
    )
    assert reported.status_code == 200, reported.text


def _suspend(client: TestClient, runtime: Runtime, subscriber: dict[str, Any]) -> None:
    with runtime.unit_of_work() as uow:  # staff suspend or bar a line: the status change itself
        line = uow.session.get(Line, subscriber["line"]["id"], with_for_update=True)
        assert line is not None
        lines.transition(uow, line, LineStatus.SUSPENDED, "barred by staff: fraud")


def _recycle(client: TestClient, runtime: Runtime, subscriber: dict[str, Any]) -> None:
    with runtime.unit_of_work() as uow:  # long past expiry: grace, expired and recycled in one run
        uow.session.execute(
            update(Line).where(Line.id == subscriber["line"]["id"]).values(expires_at=uow.now() - timedelta(days=900))
        )
    with runtime.unit_of_work() as uow:
        assert lifecycle.advance(uow)["recycled"] == 1


@pytest.mark.parametrize("leave", [_report_lost, _suspend, _recycle], ids=["lost", "suspended", "recycled"])
def test_a_line_leaving_service_aborts_its_sessions_with_an_asr(
    client: TestClient,
    runtime: Runtime,
    gy: GyServer,
    connect: Callable[..., RawPeer],
    leave: Callable[[TestClient, Runtime, dict[str, Any]], None],
) -> None:
    subscriber = active_line(client, runtime)
    peer = connect(PGW)
    open_session(peer, "asr;1", subscriber["line"]["msisdn"], asked=4 * MB)

    leave(client, runtime, subscriber)
    session = credit_session(runtime, "asr;1")
    assert (session.status, session.reserved) == (CreditSessionStatus.ABORTED, 0)  # at once, in that transaction

    asr = peer.request_from_server(ASR)
    check_request(asr, ASR, "asr;1", runtime.settings)
    peer.answer_request(asr, 2001)
    [signal] = finished(runtime, "asr;1")
    assert (signal.kind, signal.outcome, signal.result_code) == (SignalKind.ASR, SignalOutcome.ANSWERED, 2001)
    with runtime.unit_of_work() as uow:
        held = uow.session.scalars(select(CreditReservation.reserved)).all()
    assert held == []  # given back: the table holds only what is reserved now
    # The element that missed it (or sends before ending) is refused service.
    assert value_of(peer.ask(peer.ccr("asr;1", 1, UPDATE, asked=MB, used=MB)), RESULT) == 4010


def test_a_peer_that_never_answers_is_asked_once_more_then_noted_and_nobody_else_waits(
    client: TestClient, runtime: Runtime, gy: GyServer, connect: Callable[..., RawPeer]
) -> None:
    first, second = active_line(client, runtime), active_line(client, runtime, 2)
    silent, other = connect(PGW), connect(PGW2)
    open_session(silent, "silent;1", first["line"]["msisdn"])
    open_session(other, "other;1", second["line"]["msisdn"])
    with runtime.unit_of_work() as uow:
        assert credit_signals.reauthorize(uow, first["line"]["id"]) == 1

    rar = silent.request_from_server(RAR)
    # Meanwhile the other element is served as usual, more than once within the timeout.
    for n in (1, 2):
        answer = other.ask(other.ccr("other;1", n, UPDATE, asked=MB, used=1000), timeout=TIMEOUT / 2)
        assert value_of(answer, RESULT) == 2001
    retry = silent.request_from_server(RAR, timeout=3 * TIMEOUT)
    first_header, retry_header = rar.message.header, retry.message.header
    assert retry_header.is_retransmit and not first_header.is_retransmit
    assert retry_header.end_to_end_identifier == first_header.end_to_end_identifier
    assert retry_header.hop_by_hop_identifier != first_header.hop_by_hop_identifier

    [signal] = finished(runtime, "silent;1")
    assert (signal.outcome, signal.attempts, signal.result_code) == (SignalOutcome.UNANSWERED, 2, None)
    assert credit_session(runtime, "silent;1").unanswered_at is not None
    assert credit_session(runtime, "silent;1").status == CreditSessionStatus.OPEN
    # A late answer to either is harmless: nothing waits for it any more.
    silent.answer_request(retry, 2001)
    assert value_of(silent.dwr(), RESULT) == 2001


def test_the_retry_goes_out_on_another_connection_of_the_peer(
    client: TestClient, runtime: Runtime, gy: GyServer, connect: Callable[..., RawPeer]
) -> None:
    subscriber = active_line(client, runtime)
    one, two = connect(PGW), connect(PGW)  # two instances of one gateway
    open_session(one, "two;1", subscriber["line"]["msisdn"])
    with runtime.unit_of_work() as uow:
        credit_signals.abort(uow, subscriber["line"]["id"])

    first = one.request_from_server(ASR)  # OKAY connections in the order they came: `one` first
    retry = two.request_from_server(ASR, timeout=3 * TIMEOUT)
    assert retry.message.header.is_retransmit
    assert retry.message.header.end_to_end_identifier == first.message.header.end_to_end_identifier
    two.answer_request(retry, 5002)  # it does not know the session: closed here too

    [signal] = finished(runtime, "two;1")
    assert (signal.outcome, signal.attempts, signal.result_code) == (SignalOutcome.UNKNOWN_SESSION, 2, 5002)
    session = credit_session(runtime, "two;1")
    assert (session.status, session.closed_reason) == (CreditSessionStatus.CLOSED, ClosedReason.UNKNOWN_TO_PEER)


def test_a_stale_session_is_closed_by_the_reaper_and_its_units_go_back(
    client: TestClient, runtime: Runtime, clock: FrozenClock, gy: GyServer, connect: Callable[..., RawPeer]
) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]
    peer = connect(PGW)
    assert granted(open_session(peer, "stale;1", msisdn, asked=10 * MB)) == 10 * MB
    refused = peer.ask(peer.ccr("stale;2", 0, INITIAL, msisdn, asked=MB))
    assert value_of(refused, RESULT) == 4012  # everything is reserved by the first

    clock.advance(timedelta(seconds=601))  # diameter_session_timeout_seconds, and no CCR-T came
    wait_for(
        lambda: credit_session(runtime, "stale;1").status == CreditSessionStatus.CLOSED, what="the reaper to close it"
    )
    session = credit_session(runtime, "stale;1")
    assert (session.closed_reason, session.reserved) == (ClosedReason.EXPIRED, 0)

    # Its units are the line's again; the element that forgot it is told it is gone.
    reopened = peer.ask(peer.ccr("stale;3", 0, INITIAL, msisdn, asked=10 * MB))
    assert value_of(reopened, RESULT) == 2001 and granted(reopened) == 10 * MB
    assert value_of(peer.ask(peer.ccr("stale;1", 1, UPDATE, asked=MB, used=MB)), RESULT) == 5002


def test_a_ccr_initial_without_credit_leaves_no_open_session_and_is_answered_alike_again(
    client: TestClient, runtime: Runtime, gy: GyServer, connect: Callable[..., RawPeer]
) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]
    peer = connect(PGW)
    open_session(peer, "full;1", msisdn, asked=10 * MB)

    initial = peer.ccr("full;2", 0, INITIAL, msisdn, asked=MB)
    assert value_of(peer.ask(initial), RESULT) == 4012
    session = credit_session(runtime, "full;2")
    assert (session.status, session.reserved) == (CreditSessionStatus.CLOSED, 0)
    with runtime.unit_of_work() as uow:
        assert credit_signals.reauthorize(uow, subscriber["line"]["id"]) == 1  # only full;1 is open

    initial.header.is_retransmit = True
    assert value_of(peer.ask(initial), RESULT) == 4012
    assert credit_session(runtime, "full;2").status == CreditSessionStatus.CLOSED


def test_a_peer_that_drops_the_connection_gets_the_retry_on_the_one_it_comes_back_with(
    client: TestClient, runtime: Runtime, gy: GyServer, connect: Callable[..., RawPeer]
) -> None:
    subscriber = active_line(client, runtime)
    gone = connect(PGW)
    open_session(gone, "back;1", subscriber["line"]["msisdn"])
    with runtime.unit_of_work() as uow:
        credit_signals.abort(uow, subscriber["line"]["id"])
    first = gone.request_from_server(ASR)
    gone.close()  # restarts before answering

    back = connect(PGW)
    retry = back.request_from_server(ASR, timeout=3 * TIMEOUT)
    assert retry.message.header.is_retransmit
    assert retry.message.header.end_to_end_identifier == first.message.header.end_to_end_identifier
    back.answer_request(retry, 2001)
    [signal] = finished(runtime, "back;1")
    assert (signal.outcome, signal.attempts) == (SignalOutcome.ANSWERED, 2)


def test_a_signal_for_a_peer_that_is_not_connected_is_recorded_as_such(
    client: TestClient, runtime: Runtime, gy: GyServer, connect: Callable[..., RawPeer]
) -> None:
    subscriber = active_line(client, runtime)
    peer = connect(PGW)
    open_session(peer, "away;1", subscriber["line"]["msisdn"])
    peer.close()
    wait_for(lambda: not any(s.connections for s in gy.status() if s.host == PGW), what="PGW to be gone")
    with runtime.unit_of_work() as uow:
        credit_signals.abort(uow, subscriber["line"]["id"])
    [signal] = finished(runtime, "away;1")
    assert (signal.outcome, signal.attempts, signal.sent_at) == (SignalOutcome.NOT_CONNECTED, 0, None)
    assert credit_session(runtime, "away;1").status == CreditSessionStatus.ABORTED


def test_a_claim_lapses_when_the_ocs_that_took_it_is_gone(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    """No server here: the outbox on its own, as two OCS processes would share it."""
    subscriber = active_line(client, runtime)
    with runtime.unit_of_work() as uow:
        line = uow.session.get(Line, subscriber["line"]["id"])
        assert line is not None
        now = uow.now()
        uow.session.add(
            CreditSession(
                session_id="lease;1",
                line_id=line.id,
                unit=Unit.DATA_BYTES,
                zone=Zone.HK,
                status=CreditSessionStatus.OPEN,
                reserved=0,
                last_request_number=0,
                created_at=now,
                updated_at=now,
                expires_at=now,
                origin_host=PGW,
                origin_realm=OPERATOR_REALM,
            )
        )
        uow.session.flush()
        assert credit_signals.reauthorize(uow, line.id) == 1
    lease = timedelta(seconds=30)
    with runtime.unit_of_work() as uow:
        [claimed] = credit_signals.claim(uow, 10, lease)
    assert (claimed.kind, claimed.session_id, claimed.origin_host) == (SignalKind.RAR, "lease;1", PGW)
    with runtime.unit_of_work() as uow:
        assert credit_signals.claim(uow, 10, lease) == []  # another OCS leaves it alone
    clock.advance(lease)
    with runtime.unit_of_work() as uow:
        assert [c.signal_id for c in credit_signals.claim(uow, 10, lease)] == [claimed.signal_id]
        credit_signals.finish(uow, claimed.signal_id, SignalOutcome.ANSWERED, result_code=2001, attempts=1)
    clock.advance(lease)
    with runtime.unit_of_work() as uow:
        assert credit_signals.claim(uow, 10, lease) == []

    # Two grants in a row owe one RAR; one granted while a RAR is on its way owes another.
    with runtime.unit_of_work() as uow:
        assert credit_signals.reauthorize(uow, line.id) == 1
        assert credit_signals.reauthorize(uow, line.id) == 0
    with runtime.unit_of_work() as uow:
        assert len(credit_signals.claim(uow, 10, lease)) == 1
        assert credit_signals.reauthorize(uow, line.id) == 1


@pytest.mark.postgres_only
def test_on_postgresql_a_signal_is_sent_at_once_not_at_the_next_poll(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    """The OCS LISTENs; the transaction that writes a signal NOTIFYs at commit. Its listening
    connection takes the URL's query as the engine does (here libpq options with a space)."""
    url = make_url(runtime.settings.database_url).update_query_dict({"options": "-c statement_timeout=60000"})
    update = {"diameter_signal_poll_seconds": 60.0, "database_url": url.render_as_string(hide_password=False)}
    slow = Runtime(runtime.settings.model_copy(update=update), clock=clock)
    server = GyServer(slow, port=0)
    server.start()
    peer = RawPeer(server.port, PGW)
    try:
        assert value_of(peer.cer(), RESULT) == 2001
        subscriber = active_line(client, runtime)
        open_session(peer, "now;1", subscriber["line"]["msisdn"])
        time.sleep(0.5)  # the first poll (at start) is over; the next is a minute away
        asked = time.monotonic()
        with runtime.unit_of_work() as uow:
            credit_signals.abort(uow, subscriber["line"]["id"])
        asr = peer.request_from_server(ASR, timeout=10)
        assert time.monotonic() - asked < 5
        peer.answer_request(asr, 2001)
        assert [s.outcome for s in finished(runtime, "now;1")] == [SignalOutcome.ANSWERED]
    finally:
        peer.close()
        server.stop(timeout=2)
        slow.close()


def test_tshark_reads_our_rar_and_asr_as_we_meant_them(
    tmp_path: Path, client: TestClient, runtime: Runtime, gy: GyServer, connect: Callable[..., RawPeer]
) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark; .ci/run does)")
    subscriber = active_line(client, runtime)
    peer = connect(PGW)
    open_session(peer, "ts;1", subscriber["line"]["msisdn"])
    with runtime.unit_of_work() as uow:
        credit_signals.reauthorize(uow, subscriber["line"]["id"])
    peer.answer_request(peer.request_from_server(RAR), 2001)
    finished(runtime, "ts;1")
    with runtime.unit_of_work() as uow:
        credit_signals.abort(uow, subscriber["line"]["id"])
    peer.answer_request(peer.request_from_server(ASR), 2001)
    finished(runtime, "ts;1")

    ours = {}
    for packet in tshark_packets(peer, gy.port, tmp_path / "signals.pcap"):  # none malformed
        diameter = packet.find("proto[@name='diameter']")
        assert diameter is not None
        fields = {f.get("name"): f.get("show") for f in diameter.iter("field")}
        if fields["diameter.flags.request"] == "1" and fields["diameter.cmd.code"] in ("258", "274"):
            ours[int(fields["diameter.cmd.code"] or 0)] = (fields["diameter.flags.proxyable"], pdml_avps(diameter))
    assert set(ours) == {RAR, ASR}
    base = [
        constants.AVP_SESSION_ID,
        constants.AVP_ORIGIN_HOST,
        constants.AVP_ORIGIN_REALM,
        constants.AVP_DESTINATION_REALM,
        constants.AVP_DESTINATION_HOST,
        constants.AVP_AUTH_APPLICATION_ID,
    ]
    for command, (proxyable, avps) in ours.items():
        assert proxyable == "1"
        assert all(a["m"] for a in avps)
        extra = [constants.AVP_RE_AUTH_REQUEST_TYPE] if command == RAR else []
        assert sorted(a["code"] for a in avps) == sorted(base + extra)
