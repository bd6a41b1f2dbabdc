"""The peer layer over real TCP on loopback: what one network element does (drop mid-request, send
garbage, go silent, open two connections) never changes what another gets, and what was charged
stays charged once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from diameter.message import constants
from diameter.message.commands import DisconnectPeerAnswer, DisconnectPeerRequest
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.diameter.peers import PeerState
from duckline.diameter.server import GyServer
from duckline.lines.models import Line
from duckline.runtime import Runtime
from duckline.usage.models import UsageRecord
from tests.diameter.conftest import PGW, PGW2, status_of, wait_for
from tests.diameter.wire import INITIAL, UPDATE, RawPeer, value_of
from tests.usage.test_usage import active_line

MB = 1_000_000
RESULT = constants.AVP_RESULT_CODE


def granted(answer: object) -> int:
    message = answer.message  # type: ignore[attr-defined]
    return int(message.multiple_services_credit_control[0].granted_service_unit.cc_total_octets)


def test_a_peer_dropping_mid_request_leaves_the_others_served_and_its_charge_counted_once(
    client: TestClient, runtime: Runtime, gy: GyServer, connect: Callable[..., RawPeer]
) -> None:
    first, second = active_line(client, runtime), active_line(client, runtime, 2)
    a, b = connect(PGW), connect(PGW2)
    assert value_of(a.ask(a.ccr("a;1", 0, INITIAL, first["line"]["msisdn"], asked=MB)), RESULT) == 2001
    update = a.ccr("a;1", 1, UPDATE, asked=MB, used=700_000)

    # The database holds A's request (its line is locked; on SQLite, the whole database is).
    with runtime.unit_of_work() as uow:
        uow.session.get(Line, first["line"]["id"], with_for_update=True)
        a.send(update)
        wait_for(lambda: status_of(gy, PGW).requests == 2, what="A's request to be taken")
        a.close()  # A is gone while its request waits on the database
        assert value_of(b.dwr(), RESULT) == 2001  # the loop is free: watchdogs answered at once
        wait_for(lambda: status_of(gy, PGW).state is PeerState.DOWN, what="A to be down")
        assert status_of(gy, PGW2).state is PeerState.CONNECTED

    wait_for(lambda: status_of(gy, PGW).dropped == 1, what="A's answer to be dropped")
    opened = b.ask(b.ccr("b;1", 0, INITIAL, second["line"]["msisdn"], asked=MB))
    assert value_of(opened, RESULT) == 2001 and granted(opened) == MB
    assert value_of(b.dwr(), RESULT) == 2001

    # A comes back and retransmits (T flag): the answer it lost, and nothing charged twice.
    again = connect(PGW)
    update.header.is_retransmit = True
    answer = again.ask(update)
    assert value_of(answer, RESULT) == 2001 and granted(answer) == MB
    with runtime.unit_of_work() as uow:
        rows = uow.session.execute(select(UsageRecord.record_id, UsageRecord.quantity)).all()
    assert [(r, q) for r, q in rows] == [("a;1#1/10", 700_000)]  # rating group 10
    counters = status_of(gy, PGW)
    assert (counters.requests, counters.dropped, counters.answers) == (3, 1, {2001: 2})


def test_each_answer_goes_out_on_the_connection_its_request_came_in_on(
    runtime: Runtime, gy: GyServer, connect: Callable[..., RawPeer]
) -> None:
    # Two connections under one Origin-Host (two instances of one gateway, RFC 6733 §2.1).
    one, two = connect(PGW), connect(PGW)
    sent: dict[RawPeer, dict[int, str]] = {one: {}, two: {}}
    for n in range(5):
        for conn in (two, one):  # interleaved, the second connection first
            session = f"{'one' if conn is one else 'two'};{n}"
            sent[conn][conn.send(conn.ccr(session, 1, UPDATE, used=1))] = session
    for conn, asked in sent.items():
        for _ in asked:
            answer = conn.read()
            assert answer is not None
            hop = answer.message.header.hop_by_hop_identifier
            assert value_of(answer, constants.AVP_SESSION_ID) == asked[hop]
            assert value_of(answer, RESULT) == 5002  # no such session: answered all the same
    status = status_of(gy, PGW)
    assert (status.connections, status.requests, status.answers) == (2, 10, {5002: 10})


def test_garbage_disconnects_only_the_peer_that_sent_it(gy: GyServer, connect: Callable[..., RawPeer]) -> None:
    a, b = connect(PGW), connect(PGW2)
    a.send_bytes(b"GET / HTTP/1.1\r\nHost: ocs\r\n\r\n")
    assert a.is_closed()
    assert value_of(b.dwr(), RESULT) == 2001

    # A well-framed message whose only AVP claims more bytes than the message has.
    c = connect(PGW)
    header = bytes([1, 0, 0, 28, 0x80, 0, 1, 24]) + bytes(12)  # DWR, 28 bytes
    c.send_bytes(header + (263).to_bytes(4, "big") + bytes([0x40, 0, 0, 200]))
    assert c.is_closed()

    # Before any CER: garbage, and a message that is not a CER.
    stranger = connect(PGW, cer=False)
    stranger.send_bytes(bytes(64))
    assert stranger.is_closed()
    assert value_of(b.dwr(), RESULT) == 2001
    assert (status_of(gy, PGW).errors, status_of(gy, PGW).state) == (2, PeerState.DOWN)
    assert (status_of(gy, PGW2).errors, status_of(gy, PGW2).state) == (0, PeerState.CONNECTED)


def test_an_unanswered_watchdog_makes_a_peer_suspect_then_down(runtime: Runtime) -> None:
    fast = Runtime(runtime.settings.model_copy(update={"diameter_watchdog_seconds": 1.0}))
    server = GyServer(fast, port=0)
    server.start()
    silent, talking = RawPeer(server.port, PGW), RawPeer(server.port, PGW2)
    try:
        silent.cer(), talking.cer()
        seen: dict[str, list[PeerState]] = {PGW: [], PGW2: []}
        dwrs = 0
        deadline = time.monotonic() + 20
        while not silent.is_closed(timeout=0.05):  # reads, never answers, what the server sends
            assert time.monotonic() < deadline, f"{PGW} never went down: {seen}"
            try:
                dwr = talking.read(timeout=0.05)
            except TimeoutError:
                dwr = None
            if dwr is not None and dwr.message.header.command_code == 280:
                talking.answer_dwr(dwr)
                dwrs += 1
            for host, states in seen.items():
                state = status_of(server, host).state
                if not states or states[-1] is not state:
                    states.append(state)
        wait_for(lambda: status_of(server, PGW).state is PeerState.DOWN)
        assert seen[PGW][:2] == [PeerState.CONNECTED, PeerState.SUSPECT]
        assert seen[PGW2] == [PeerState.CONNECTED] and dwrs >= 2  # answering peers stay up
        assert status_of(server, PGW2).state is PeerState.CONNECTED
    finally:
        silent.close(), talking.close()
        server.stop(timeout=1)
        fast.close()


def test_a_peer_leaves_with_dpr_and_we_leave_with_dpr(gy: GyServer, connect: Callable[..., RawPeer]) -> None:
    leaving = connect(PGW)
    dpr = DisconnectPeerRequest()
    dpr.header.is_request = True
    dpr.origin_host, dpr.origin_realm = PGW.encode(), b"operator.test"
    dpr.disconnect_cause = 2  # DO_NOT_WANT_TO_TALK_TO_YOU
    dpa = leaving.answer_to(leaving.send(dpr))
    assert value_of(dpa, RESULT) == 2001 and leaving.is_closed()
    wait_for(lambda: status_of(gy, PGW).state is PeerState.DOWN)

    staying = connect(PGW2)
    stopping = threading.Thread(target=gy.stop, kwargs={"timeout": 10})
    started = time.monotonic()
    stopping.start()
    ours = staying.read()
    assert ours is not None and ours.message.header.command_code == 282 and ours.message.header.is_request
    answer = DisconnectPeerAnswer(ours.message.to_answer().header)
    answer.result_code = 2001
    answer.origin_host, answer.origin_realm = PGW2.encode(), b"operator.test"
    staying.send_bytes(answer.as_bytes())
    assert staying.is_closed()
    stopping.join(timeout=10)
    assert not stopping.is_alive() and time.monotonic() - started < 5  # on the DPA, not the timeout


def test_past_what_the_pool_can_hold_waiting_the_answer_is_too_busy_at_once(
    client: TestClient, runtime: Runtime
) -> None:
    line = active_line(client, runtime)["line"]
    one = Runtime(runtime.settings.model_copy(update={"diameter_max_threads": 1, "diameter_max_waiting": 16}))
    server = GyServer(one, port=0)
    server.start()
    peer = RawPeer(server.port, PGW)
    try:
        peer.cer()
        assert value_of(peer.ask(peer.ccr("busy;1", 0, INITIAL, line["msisdn"], asked=MB)), RESULT) == 2001
        with runtime.unit_of_work() as uow:
            uow.session.get(Line, line["id"], with_for_update=True)
            waiting = [peer.send(peer.ccr("busy;1", n, UPDATE, asked=MB, used=1)) for n in range(1, 17)]
            wait_for(lambda: status_of(server, PGW).requests == 17, what="the requests to be taken")
            refused = peer.ask(peer.ccr("busy;1", 17, UPDATE, asked=MB, used=1), timeout=5)
            assert value_of(refused, RESULT) == 3004 and refused.message.header.is_error
        answered = {}
        for _ in waiting:
            answer = peer.read()
            assert answer is not None
            answered[answer.message.header.hop_by_hop_identifier] = value_of(answer, RESULT)
        assert sorted(answered) == sorted(waiting) and set(answered.values()) == {2001}
    finally:
        peer.close()
        server.stop(timeout=1)
        one.close()
