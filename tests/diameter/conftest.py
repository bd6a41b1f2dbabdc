"""The Gy server on a free port with two allowed network elements, and raw connections to it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from diameter.message import constants

from duckline.catalog import rating
from duckline.core.config import Settings
from duckline.diameter.peers import PeerStatus
from duckline.diameter.server import GyServer
from duckline.runtime import Runtime
from tests.diameter.wire import RawPeer, value_of

PGW, PGW2 = "pgw1.operator.test", "pgw2.operator.test"
VENDOR_ID = 99999  # an enterprise number of our own, to see it in CEA


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"diameter_peers": [f"aaa://{PGW}:3868;transport=tcp", f"aaa://{PGW2}"], "diameter_vendor_id": VENDOR_ID}
    )


@pytest.fixture(autouse=True)
def _default_rating_groups(request: pytest.FixtureRequest) -> None:
    """The default rating groups, which the PostgreSQL half's emptying of every table between
    tests removes along with what the migration seeded."""
    if "runtime" in request.fixturenames:
        runtime: Runtime = request.getfixturevalue("runtime")
        with runtime.unit_of_work() as uow:
            rating.seed_defaults(uow)


@pytest.fixture
def gy(runtime: Runtime) -> Iterator[GyServer]:
    server = GyServer(runtime, port=0)
    server.start()
    yield server
    server.stop(timeout=2)


@pytest.fixture
def connect(gy: GyServer) -> Iterator[Callable[..., RawPeer]]:
    """Open a connection as `host`; with `cer=True` (the default) its capabilities exchange is
    done and must have succeeded."""
    opened: list[RawPeer] = []

    def open_(host: str = PGW, cer: bool = True) -> RawPeer:
        peer = RawPeer(gy.port, host)
        opened.append(peer)
        if cer:
            cea = peer.cer()
            assert value_of(cea, constants.AVP_RESULT_CODE) == 2001
        return peer

    yield open_
    for peer in opened:
        peer.close()


def status_of(server: GyServer, host: str) -> PeerStatus:
    return next(s for s in server.status() if s.host == host)


def wait_for(predicate: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
