"""`duckline ocs --processes 2` killed with SIGKILL while requests are in flight, then started
again: the element sends what was not answered again (T bit), and every unit reported in an
answered request is charged exactly once, nothing more, nothing reserved is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from duckline.core.config import Settings
from duckline.runtime import Runtime
from duckline.usage.models import Bucket, CreditReservation, CreditSession, UsageRecord
from tests.diameter.conftest import PGW
from tests.diameter.test_gy import free_port
from tests.diameter.wire import RawPeer, value_of
from tests.usage.test_usage import active_line

INITIAL, UPDATE, TERMINATE = 1, 2, 3
RESULT = 268
SESSIONS = 24


class Ocs:
    """`duckline ocs --processes 2` on a port, in a process group of its own (to kill it whole)."""

    def __init__(self, settings: Settings, port: int, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DUCKLINE_")}
        env |= {
            "DUCKLINE_DATABASE_URL": settings.database_url,
            "DUCKLINE_LOG_DIR": str(settings.log_dir),
            "DUCKLINE_DIAMETER_PEERS": f'["aaa://{PGW}"]',
        }
        command = [sys.executable, "-m", "duckline.cli", "ocs", "--port", str(port), "--processes", "2"]
        self.log = log.open("a")
        self.process = subprocess.Popen(  # noqa: S603 (our own command line)
            command, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.log.close()


def connected(port: int) -> RawPeer:
    deadline = time.monotonic() + 30
    while True:
        try:
            peer = RawPeer(port, PGW)
            cea = peer.cer()
            assert value_of(cea, RESULT) == 2001
            return peer
        except (OSError, AssertionError):
            assert time.monotonic() < deadline, "the OCS did not come up"
            time.sleep(0.1)


@pytest.fixture
def server_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ocs.log"
    yield path
    if path.exists():
        print(path.read_text()[-4000:])  # shown when the test fails


def test_a_server_killed_mid_flight_charges_each_answered_unit_once(
    client: TestClient, runtime: Runtime, settings: Settings, server_log: Path
) -> None:
    msisdn = active_line(client, runtime)["line"]["msisdn"]
    with runtime.unit_of_work() as uow:  # the servers run on the real clock, the test on a frozen one
        uow.session.execute(update(Bucket).values(valid_until=datetime.now(UTC) + timedelta(days=30)))
        before = int(uow.session.scalar(select(func.sum(Bucket.remaining)).where(Bucket.unit == "data_bytes")) or 0)
    port = free_port()
    server = Ocs(settings, port, server_log)
    try:
        peer = connected(port)
        for n in range(SESSIONS):
            opened = peer.ask(peer.ccr(f"crash;{n}", 0, INITIAL, msisdn, asked=10_000))
            assert value_of(opened, RESULT) == 2001
        # Every session reports use at once; the server dies with some answered, some not.
        updates = {n: peer.ccr(f"crash;{n}", 1, UPDATE, asked=10_000, used=1_000 + n) for n in range(SESSIONS)}
        waiting = {peer.send(ccr): n for n, ccr in updates.items()}
        answered: set[int] = set()
        for _ in range(SESSIONS // 3):
            answer = peer.read()
            assert answer is not None
            answered.add(waiting[answer.header.hop_by_hop_identifier])
        server.kill()
        peer.close()

        server = Ocs(settings, port, server_log)
        peer = connected(port)
        for n, ccr in updates.items():  # all of them again, answered or not, as a retransmission
            ccr.header.is_retransmit = True
            again = peer.ask(ccr)
            assert value_of(again, RESULT) == 2001, n
        for n in range(SESSIONS):
            closed = peer.ask(peer.ccr(f"crash;{n}", 2, TERMINATE, used=500))
            assert value_of(closed, RESULT) == 2001
        peer.close()
        assert server.stop() == 0
    finally:
        if server.process.poll() is None:
            server.kill()

    reported = sum(1_000 + n for n in range(SESSIONS)) + 500 * SESSIONS
    with runtime.unit_of_work() as uow:
        charged = uow.session.scalar(select(func.sum(UsageRecord.quantity)))
        records = uow.session.scalar(select(func.count()).select_from(UsageRecord))
        left = int(uow.session.scalar(select(func.sum(Bucket.remaining)).where(Bucket.unit == "data_bytes")) or 0)
        still_open = uow.session.scalar(
            select(func.count()).select_from(CreditSession).where(CreditSession.status == "open")
        )
        reserved = uow.session.scalar(select(func.coalesce(func.sum(CreditReservation.reserved), 0)))
    assert (charged, records) == (reported, 2 * SESSIONS)
    assert before - left == reported
    assert (still_open, reserved) == (0, 0)
