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
from datetime import timedelta

from sqlalchemy import delete, or_, select

from duckline.diameter.models import DiameterPeerState
from duckline.diameter.peers import Node, Peer, PeerStatus
from duckline.runtime import Runtime

log = logging.getLogger("duckline.diameter")

# Rows of servers that stopped (or vanished) this long ago are removed by the next server to start.
FORGET_STOPPED = timedelta(days=1)
FORGET_SILENT = timedelta(days=7)
_servers_in_this_process = itertools.count(1)


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

        async def last() -> list[PeerStatus]:
            self._stopped = True
            if self._ticker is not None:
                self._ticker.cancel()
            return self.node.status()

        try:
            statuses = asyncio.run_coroutine_threadsafe(last(), self.loop).result(timeout)
            # One writer thread: this runs after any write under way.
            self._writer.submit(self._store, statuses, False).result(timeout)
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
            written = self._writer.submit(self._store, self.node.status(), True)
        except RuntimeError:  # the writer is shut down: the server is stopping
            self._writing = False
            return
        written.add_done_callback(self._back_on_the_loop)

    def _back_on_the_loop(self, _: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server has stopped
            self.loop.call_soon_threadsafe(self._written)

    def _written(self) -> None:
        self._writing = False
        if self._again:
            self._again = False
            self._write()

    # On the writer thread

    def _store(self, statuses: list[PeerStatus], running: bool) -> None:
        try:
            self._upsert(statuses, running)
        except Exception as error:
            if not self._failing:
                log.warning("cannot write the peers' state for the console: %s", error)
            self._failing = True
        else:
            if self._failing:
                log.info("the peers' state is written for the console again")
            self._failing = False

    def _upsert(self, statuses: list[PeerStatus], running: bool) -> None:
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
            for status in statuses:
                row = rows.get(status.host)
                if row is None:
                    row = DiameterPeerState(node=node, instance=self.instance, peer_host=status.host)
                    row.started_at = self.started_at
                    session.add(row)
                row.state = status.state.value
                row.state_since = status.since
                row.connections = status.connections
                row.accepted = status.accepted
                row.refused = status.refused
                row.requests = status.requests
                row.answers = {str(code): count for code, count in sorted(status.answers.items())}
                row.errors = status.errors
                row.dropped = status.dropped
                row.suspects = status.suspects
                row.last_event = status.last_event
                row.last_event_at = status.last_event_at
                row.running = running
                row.updated_at = now
        self._first = False
