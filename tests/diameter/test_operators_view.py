"""What operators see of online charging: a real Gy server publishes its peers' state to the
database, and the console's charging page (and the staff API) shows it, connected with counters,
then down, then the server stopped; the open credit-control sessions per line with what they hold;
support and administrators only. And each peer event is exactly one line of the server's log."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from diameter.message import constants
from diameter.message.commands import DeviceWatchdogRequest, DisconnectPeerRequest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy import text as sql

from duckline.accounts.roles import Role
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.diameter.models import DiameterPeerState
from duckline.diameter.peers import PeerState
from duckline.diameter.server import GyServer
from duckline.runtime import Runtime
from tests.diameter.conftest import PGW, PGW2, status_of, wait_for
from tests.diameter.test_mscc import ccr
from tests.diameter.wire import INITIAL, RawPeer, value_of
from tests.factories import staff
from tests.staff.test_console import browser, text
from tests.usage.test_usage import active_line

RESULT = constants.AVP_RESULT_CODE
MB = 1_000_000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"diameter_status_seconds": 0.2})


@pytest.fixture
def support(client: TestClient, runtime: Runtime) -> TestClient:
    account, _ = staff(runtime, Role.SUPPORT, 7)
    return browser(client, runtime, account.phone)


def peer_row(page: str, host: str) -> dict[str, str]:
    """The data-* attributes of a peer's row on the charging page (empty when it is not there)."""
    found = re.search(rf'<tr data-peer="{re.escape(host)}"([^>]*)>', page)
    return dict(re.findall(r'data-([a-z]+)="([^"]*)"', found.group(1))) if found else {}


def shown(browser: TestClient, host: str, **expected: str) -> Callable[[], bool]:
    def check() -> bool:
        page = browser.get("/console/charging")
        assert page.status_code == 200, page.text
        row = peer_row(page.text, host)
        return all(row.get(k) == v for k, v in expected.items())

    return check


def test_the_console_shows_the_peers_connected_with_their_counters_then_down_then_the_server_stopped(
    client: TestClient, runtime: Runtime, gy: GyServer, connect: Callable[..., RawPeer], support: TestClient
) -> None:
    stranger = connect("stranger.operator.test", cer=False)
    assert value_of(stranger.cer(), RESULT) == 3010
    peer = connect(PGW)
    unknown = peer.ask(peer.ccr("ops;1", 0, INITIAL, "+85259999999", asked=MB))  # no such line: answered all the same
    assert value_of(unknown, RESULT) != 2001

    wait_for(shown(support, PGW, state="connected", connections="1", requests="1"), what="pgw1 connected")
    page = support.get("/console/charging")
    assert 'href="/console/charging" aria-current="page"' in page.text  # in the menu
    assert 'href="/console/rating-groups"' in page.text
    assert peer_row(page.text, PGW2)["state"] == "down"  # allowed, never connected
    words = text(page.text)
    assert runtime.settings.diameter_origin_host in words and "Running" in words
    assert f"CER from 127.0.0.1:{peer.local_port} accepted" in words
    assert "CERs refused, from any host: 1." in words
    _, admin = staff(runtime, Role.ADMIN, 8)

    def answer_counted() -> bool:  # the request is counted when it arrives, its answer once sent
        found = client.get("/api/v1/charging/peers", headers=admin)
        assert found.status_code == 200, found.text
        return any(sum(a["count"] for a in p["answers"]) == 1 for s in found.json() for p in s["peers"])

    wait_for(answer_counted, what="the answer counted")
    servers = client.get("/api/v1/charging/peers", headers=admin)
    assert [(s["condition"], s["refused"], s["garbage"]) for s in servers.json()] == [("running", 1, 0)]
    answered = {p["host"]: p for s in servers.json() for p in s["peers"]}
    assert answered[PGW]["state"] == "connected" and answered[PGW]["requests"] == 1
    assert answered[PGW]["accepted"] == 1 and sum(a["count"] for a in answered[PGW]["answers"]) == 1

    peer.close()
    wait_for(shown(support, PGW, state="down", connections="0"), what="pgw1 down")
    assert "disconnected: closed by the peer" in text(support.get("/console/charging").text)

    gy.stop(timeout=1)  # written before stop() returns, and nothing after it
    time.sleep(0.5)
    assert shown(support, PGW, state="stopped")()
    assert 'data-condition="stopped"' in support.get("/console/charging").text


@pytest.mark.postgres_only
def test_a_status_write_stuck_on_a_lock_holds_up_no_answer(
    runtime: Runtime, gy: GyServer, connect: Callable[..., RawPeer]
) -> None:
    def state_written() -> str | None:
        with runtime.unit_of_work() as uow:
            return uow.session.scalar(select(DiameterPeerState.state).where(DiameterPeerState.peer_host == PGW))

    wait_for(lambda: state_written() == "down", what="the first write")
    with runtime.db.engine.connect() as locker:
        locker.execute(sql("LOCK TABLE diameter_peer_states IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        peer = connect(PGW)  # an event: its write waits for the lock
        assert value_of(peer.dwr(), RESULT) == 2001
        answer = peer.ask(peer.ccr("stuck;1", 0, INITIAL, "+85259999999", asked=MB))
        assert value_of(answer, RESULT) != 0 and time.monotonic() - started < 3
        assert status_of(gy, PGW).state is PeerState.CONNECTED
        locker.rollback()
    wait_for(lambda: state_written() == "connected", what="the write once the lock is gone")


def test_a_server_that_went_silent_shows_as_stale(client: TestClient, runtime: Runtime, support: TestClient) -> None:
    now = runtime.clock.now()
    with runtime.unit_of_work() as uow:
        uow.session.add(
            DiameterPeerState(
                node="ocs.duckline.example",
                instance="gone-host:4242",
                peer_host=PGW,
                state="connected",
                state_since=now - timedelta(hours=1),
                connections=1,
                accepted=1,
                refused=0,
                requests=10,
                answers={"2001": 10},
                errors=0,
                dropped=0,
                suspects=0,
                last_event="CER from 10.0.0.1:3868 accepted",
                last_event_at=now - timedelta(hours=1),
                running=True,
                started_at=now - timedelta(hours=1),
                updated_at=now - timedelta(minutes=5),  # its process died without a word
            )
        )
    page = support.get("/console/charging")
    assert peer_row(page.text, PGW)["state"] == "stale"
    assert 'data-instance="gone-host:4242" data-condition="stale"' in page.text


def test_an_open_session_shows_with_what_it_reserved_per_rating_group(
    client: TestClient, runtime: Runtime, clock: FrozenClock, connect: Callable[..., RawPeer], support: TestClient
) -> None:
    subscriber = active_line(client, runtime, n=4)
    msisdn = subscriber["line"]["msisdn"]
    peer = connect(PGW)
    opened = peer.ask(
        ccr(peer, "ops;session", 0, INITIAL, msisdn, (10, {"cc_total_octets": MB}, {}), (100, {"cc_time": 90}, {}))
    )
    assert value_of(opened, RESULT) == 2001

    page = support.get("/console/charging")
    assert page.status_code == 200
    row = re.search(r'<tr id="credit-session-\d+" data-msisdn="([^"]+)">(.*?)</tr>', page.text, re.S)
    assert row is not None and row.group(1) == msisdn
    words = text(row.group(2))
    assert "ops;session" in words
    assert "group 10: 976.6 KB (Hong Kong)" in words and "group 100: 1 min 30 s (Hong Kong)" in words

    national = msisdn.removeprefix("+852")
    assert "ops;session" in support.get("/console/charging", params={"msisdn": national}).text
    other = support.get("/console/charging", params={"msisdn": "+85251239999"})
    assert (
        other.status_code == 200 and "ops;session" not in other.text and "No open session of this line." in other.text
    )
    bad = support.get("/console/charging", params={"msisdn": "not a number"})
    assert (
        bad.status_code == 422
        and 'name="msisdn" type="tel" maxlength="30" value="not a number" aria-invalid="true"' in bad.text
    )

    _, admin = staff(runtime, Role.ADMIN, 9)
    listed = client.get("/api/v1/charging/sessions", params={"msisdn": msisdn}, headers=admin).json()
    assert [(s["session_id"], s["msisdn"]) for s in listed["items"]] == [("ops;session", msisdn)]
    held = {(r["rating_group"], r["unit"], r["reserved"]) for r in listed["items"][0]["reservations"]}
    assert held == {(10, "data_bytes", MB), (100, "voice_seconds", 90)}

    clock.advance(timedelta(seconds=runtime.settings.quota_validity_seconds + 1))
    assert "Expired" in text(support.get("/console/charging").text)


def test_finance_subscribers_and_strangers_are_refused(client: TestClient, runtime: Runtime) -> None:
    finance_account, finance_headers = staff(runtime, Role.FINANCE, 5)
    finance = browser(client, runtime, finance_account.phone)
    assert finance.get("/console/charging").status_code == 403
    assert 'href="/console/charging"' not in finance.get("/console").text  # not offered in the menu
    assert client.get("/api/v1/charging/peers", headers=finance_headers).status_code == 403
    assert client.get("/api/v1/charging/sessions", headers=finance_headers).status_code == 403

    subscriber = active_line(client, runtime, n=4)
    subscriber_browser = browser(client, runtime, subscriber["phone"])
    assert subscriber_browser.get("/console/charging").status_code == 403
    assert client.get("/api/v1/charging/sessions", headers=subscriber["headers"]).status_code == 403
    anonymous = TestClient(client.app, base_url="http://127.0.0.1")
    sent = anonymous.get("/console/charging", follow_redirects=False)
    assert sent.status_code in (302, 303) and sent.headers["location"].startswith("/login")
    assert anonymous.get("/api/v1/charging/peers").status_code == 401


def test_each_peer_event_is_one_log_line(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="duckline.diameter")
    fast = Runtime(runtime.settings.model_copy(update={"diameter_watchdog_seconds": 1.0}))
    server = GyServer(fast, port=0)
    server.start()
    opened: list[RawPeer] = []

    def dial(host: str) -> RawPeer:
        opened.append(RawPeer(server.port, host))
        return opened[-1]

    try:
        silent = dial(PGW)
        assert value_of(silent.cer(), RESULT) == 2001  # 1: accepted
        refused = dial(PGW).cer(lambda cer: setattr(cer, "auth_application_id", [5]))  # 2: no common application
        assert value_of(refused, RESULT) == 5010
        assert value_of(dial("stranger.operator.test").cer(), RESULT) == 3010  # 3: not an allowed peer

        wait_for(lambda: status_of(server, PGW).state is PeerState.SUSPECT, what="suspect")  # 4
        silent.send(silent_dwr())
        wait_for(lambda: status_of(server, PGW).state is PeerState.CONNECTED, what="recovered")  # 5
        wait_for(lambda: status_of(server, PGW).state is PeerState.DOWN, what="down")  # 6 suspect, 7 down

        leaving = dial(PGW2)
        leaving.cer()  # 8
        dpr = DisconnectPeerRequest()
        dpr.header.is_request = True
        dpr.origin_host, dpr.origin_realm = PGW2.encode(), b"operator.test"
        dpr.disconnect_cause = 2
        leaving.answer_to(leaving.send(dpr))  # 9
        wait_for(lambda: status_of(server, PGW2).state is PeerState.DOWN, what="DPR")
        closing = dial(PGW2)
        closing.cer()  # 10
        closing.close()  # 11
        wait_for(lambda: status_of(server, PGW2).state is PeerState.DOWN, what="closed")
        time.sleep(0.1)
        assert status_of(server, PGW).refused == 1 and status_of(server, PGW).suspects == 2
    finally:
        for raw in opened:
            raw.close()
        server.stop(timeout=1)
        fast.close()

    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("duckline.diameter") and re.search(r"pgw|stranger", r.getMessage())
    ]
    expected = [
        rf"^peer {PGW} connected: CER from 127\.0\.0\.1:\d+ accepted \(1 connection\(s\)\)$",
        rf"^CER from {PGW} at 127\.0\.0\.1:\d+ refused with 5010: ",
        r"^CER from stranger\.operator\.test at 127\.0\.0\.1:\d+ refused with 3010: not an allowed peer$",
        rf"^peer {PGW} suspect: 127\.0\.0\.1:\d+ does not answer DWR \(1 connection\(s\)\)$",
        rf"^peer {PGW} connected: 127\.0\.0\.1:\d+ answers again \(1 connection\(s\)\)$",
        rf"^peer {PGW} suspect: 127\.0\.0\.1:\d+ does not answer DWR \(1 connection\(s\)\)$",
        rf"^peer {PGW} down: 127\.0\.0\.1:\d+ disconnected: no answer to DWR: down \(0 connection\(s\)\)$",
        rf"^peer {PGW2} connected: CER from 127\.0\.0\.1:\d+ accepted \(1 connection\(s\)\)$",
        rf"^peer {PGW2} down: 127\.0\.0\.1:\d+ disconnected: DPR \(cause 2\) \(0 connection\(s\)\)$",
        rf"^peer {PGW2} connected: CER from 127\.0\.0\.1:\d+ accepted \(1 connection\(s\)\)$",
        rf"^peer {PGW2} down: 127\.0\.0\.1:\d+ disconnected: closed by the peer \(0 connection\(s\)\)$",
    ]
    assert len(lines) == len(expected), "\n".join(lines)
    for line, pattern in zip(lines, expected, strict=True):
        assert re.search(pattern, line), (line, pattern)


def silent_dwr() -> Any:
    """A DWR of the peer's own: any message from it brings its connection back (RFC 3539)."""
    dwr = DeviceWatchdogRequest()
    dwr.header.is_request = True
    dwr.origin_host, dwr.origin_realm = PGW.encode(), b"operator.test"
    return dwr
