"""The Gy server's peers, published for the console (`diameter_peer_states`): the web server is
another process, and several `duckline ocs` may share one port, so each writes its own rows.

* When. After every peer event (CER, watchdog, DPR, a connection closed) and every
  `diameter_status_seconds` (the counters move with every request; writing on each would load
  the database at the request rate). On a clean stop the rows are marked not running.
* Threads. The loop only takes the picture (`Node.status()`, a few objects) and hands it to a
  thread of its own; the write, and a database that is slow or down, never hold up the loop or the
  answering pool. Events while a write is under way coalesce into one more write after it.
* A write that fails is logged (once until one succeeds again) and tried again at the next event
  or tick; the rows just grow stale, which is what the console shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select

from duckline.diameter.models import SERVER_ROW, DiameterPeerState
from duckline.diameter.peers import Node, Peer, PeerStatus
from duckline.runtime import Runtime

log = logging.getLogger("duckline.diameter")

# Rows of servers that stopped (or vanished) this long ago are removed by the next server to start.
FORGET_STOPPED = timedelta(days=1)
FORGET_SILENT = timedelta(days=7)
_servers_in_this_process = itertools.count(1)


@dataclass(frozen=True)
class Picture:
    """The peers and the server's own counters at one moment, taken on the loop."""

    peers: list[PeerStatus]
    refused: int  # CERs refused, from any host (an unknown one has no row of its own)
    garbage: int  # connections closed on bad bytes before a CER was accepted


def instance_name() -> str:
    """This server process: host name and pid (and a number, for a second server in one process)."""
    n = next(_servers_in_this_process)
    return f"{socket.gethostname()[:60]}:{os.getpid()}" + (f"#{n}" if n > 1 else "")


class StatusPublisher:
    """Writes one server's peers to `diameter_peer_states` between start() and stop()."""

    def __init__(self, runtime: Runtime, node: Node, loop: asyncio.AbstractEventLoop) -> None:
        self.runtime, self.node, self.loop = runtime, node, loop
        self.instance = instance_name()
        self.started_at = runtime.clock.now()
        self.interval = runtime.settings.diameter_status_seconds
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="gy-status")
        self._writing = False  # on the loop: a write is under way
        self._again = False  # on the loop: something happened during it
        self._stopped = False  # on the loop: the last picture is taken, nothing more is written
        self._failing = False  # on the writer thread
        self._first = True  # on the writer thread
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        """From any thread: listen to the peers, write now and every `interval` seconds."""
        self.loop.call_soon_threadsafe(self._begin)

    def stop(self, timeout: float = 5) -> None:
        """From another thread than the loop's (the loop still running): stop ticking, then write
        the last picture with `running` false; gives up after `timeout` s (the rows go stale)."""

        async def last() -> Picture:
            self._stopped = True
            if self._ticker is not None:
                self._ticker.cancel()
            return self._picture()

        try:
            picture = asyncio.run_coroutine_threadsafe(last(), self.loop).result(timeout)
            # One writer thread: this runs after any write under way.
            self._writer.submit(self._store, picture, False).result(timeout)
        except TimeoutError:
            log.warning("the peers' last state was not written in %s s: they will show as stale", timeout)
        finally:
            self._writer.shutdown(wait=False)

    # On the loop

    def _begin(self) -> None:
        self.node.peers.listen(self._changed)
        self._ticker = self.loop.create_task(self._tick())

    def _changed(self, _peer: Peer) -> None:
        self._write()

    async def _tick(self) -> None:
        while True:
            self._write()
            await asyncio.sleep(self.interval)

    def _write(self) -> None:
        if self._stopped:
            return
        if self._writing:
            self._again = True
            return
        self._writing = True
        try:
            written = self._writer.submit(self._store, self._picture(), True)
        except RuntimeError:  # the writer is shut down: the server is stopping
            self._writing = False
            return
        written.add_done_callback(self._back_on_the_loop)

    def _back_on_the_loop(self, _: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server has stopped
            self.loop.call_soon_threadsafe(self._written)

    def _picture(self) -> Picture:
        return Picture(self.node.status(), self.node.peers.refused, self.node.peers.garbage)

    def _written(self) -> None:
        self._writing = False
        if self._again:
            self._again = False
            self._write()

    # On the writer thread

    def _store(self, picture: Picture, running: bool) -> None:
        try:
            self._upsert(picture, running)
        except Exception as error:
            if not self._failing:
                log.warning("cannot write the peers' state for the console: %s", error)
            self._failing = True
        else:
            if self._failing:
                log.info("the peers' state is written for the console again")
            self._failing = False

    def _upsert(self, picture: Picture, running: bool) -> None:
        node = self.node.identity.origin_host
        with self.runtime.unit_of_work(wait_for_disk=False) as uow:
            now = uow.clock.now()
            session = uow.session
            if self._first:
                session.execute(
                    delete(DiameterPeerState).where(
                        or_(
                            DiameterPeerState.updated_at < now - FORGET_SILENT,
                            DiameterPeerState.running.is_(False)
                            & (DiameterPeerState.updated_at < now - FORGET_STOPPED),
                        )
                    )
                )
            rows = {
                r.peer_host: r
                for r in session.scalars(
                    select(DiameterPeerState).where(
                        DiameterPeerState.node == node, DiameterPeerState.instance == self.instance
                    )
                )
            }
            for host, values in self._rows(picture, running, now):
                row = rows.get(host)
                if row is None:
                    row = DiameterPeerState(node=node, instance=self.instance, peer_host=host)
                    row.started_at = self.started_at
                    session.add(row)
                for name, value in values.items():
                    setattr(row, name, value)
        self._first = False

    def _rows(self, picture: Picture, running: bool, now: datetime) -> list[tuple[str, dict[str, Any]]]:
        """(peer host, column values) of each row: the server's own, then each peer's."""
        server: dict[str, Any] = {
            "state": "server",
            "state_since": self.started_at,
            "connections": 0,
            "accepted": 0,
            "refused": picture.refused,
            "requests": 0,
            "answers": {},
            "errors": picture.garbage,
            "dropped": 0,
            "suspects": 0,
            "last_event": "",
            "last_event_at": None,
            "running": running,
            "updated_at": now,
        }
        rows = [(SERVER_ROW, server)]
        for status in picture.peers:
            peer: dict[str, Any] = {
                "state": status.state.value,
                "state_since": status.since,
                "connections": status.connections,
                "accepted": status.accepted,
                "refused": status.refused,
                "requests": status.requests,
                "answers": {str(code): count for code, count in sorted(status.answers.items())},
                "errors": status.errors,
                "dropped": status.dropped,
                "suspects": status.suspects,
                "last_event": status.last_event,
                "last_event_at": status.last_event_at,
                "running": running,
                "updated_at": now,
            }
            rows.append((status.host, peer))
        return rows
