"""The Gy server: our peer layer (`peers`, asyncio, python-diameter's messages and dictionary)
with the credit-control application (RFC 4006, application 4) that asks `usage.quota`.

* Peers. `diameter_peers` lists the elements allowed in as Diameter URIs
  (`aaa://pgw1.operator.example:3868;transport=tcp`, compared case-insensitively); they dial us,
  we dial no one. TCP only. With no peers, nobody can connect. See `peers` for CER, watchdogs,
  framing and what one peer can and cannot do to another.
* Checks, in order: application (3007), command (3001), Origin-Host/-Realm and Destination-Realm
  present (5005), our realm (3003) and host (3002), no unknown AVP with the M bit (5001), the
  AVPs every CCR carries (5005, including Auth-Application-Id), then `gy.read_request` (5004 for a
  bad value, with the AVP quoted in Failed-AVP). Each error answer echoes Auth-Application-Id,
  CC-Request-Type and CC-Request-Number.
* Retransmissions. Credit control wants the first answer again (RFC 4006 §5.1: Session-Id and
  CC-Request-Number identify a duplicate), which `quota.handle` gives from what it stored.
* Charging. Requests are charged in batches (`Charger`: group commit, `quota.handle_many`), each
  in its own transaction on one of `diameter_max_threads` threads, so a slow database never
  holds up the event loop (watchdogs, other peers), and answered once it has committed: an
  answer never tells of units that a crash could still lose. Past `diameter_max_waiting`
  requests waiting the answer is 3004 TOO_BUSY at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from diameter.message import constants
from diameter.message.commands import CreditControlAnswer

from duckline.diameter import codec, gy, lazy
from duckline.diameter.peers import TOO_BUSY, Connection, Identity, Node, Peers, PeerStatus
from duckline.diameter.signals import SignalSender
from duckline.diameter.status import StatusPublisher
from duckline.runtime import Runtime
from duckline.usage import quota

log = logging.getLogger("duckline.diameter")

CREDIT_CONTROL = constants.APP_DIAMETER_CREDIT_CONTROL_APPLICATION  # 4
CREDIT_CONTROL_COMMAND = 272


class CreditControlApplication:
    """RFC 4006 on the peer layer: CCR in, CCA out, the charging on the thread pool."""

    application_id: int = CREDIT_CONTROL
    commands: frozenset[int] = frozenset({CREDIT_CONTROL_COMMAND})
    required: tuple[int, ...] = (
        constants.AVP_SESSION_ID,
        constants.AVP_AUTH_APPLICATION_ID,
        constants.AVP_SERVICE_CONTEXT_ID,
        constants.AVP_CC_REQUEST_TYPE,
        constants.AVP_CC_REQUEST_NUMBER,
    )
    _echoed = (constants.AVP_AUTH_APPLICATION_ID, constants.AVP_CC_REQUEST_TYPE, constants.AVP_CC_REQUEST_NUMBER)

    def __init__(self, charger: Charger, max_waiting: int) -> None:
        self.charger, self.max_waiting = charger, max_waiting
        self.in_flight = 0

    def echo(self, request: codec.Inbound) -> list[Any]:
        return [codec.copy(avp) for code in self._echoed if (avp := request.first(code)) is not None]

    async def answer(self, request: codec.Inbound, connection: Connection) -> Any:
        ccr, node = request.message, connection.node
        try:
            asked = gy.read_request(ccr)
        except gy.Refused as refused:
            log.info("CCR %s refused with %s: %s", ccr.session_id, refused.result_code, refused)
            quoted = [codec.quote(request.avps, refused.avp)] if refused.avp else []
            return node.error_answer(request, refused.result_code, str(refused), self, *quoted)
        except lazy.BadValue as bad:
            log.info("CCR refused with 5004: %s", bad)
            return node.error_answer(request, gy.INVALID_AVP_VALUE, str(bad), self, bad.avp)
        if self.in_flight >= self.max_waiting:
            return node.error_answer(request, TOO_BUSY, "too many requests waiting", self)
        self.in_flight += 1
        try:
            credit = replace(asked.credit, origin_host=_text(ccr.origin_host), origin_realm=_text(ccr.origin_realm))
            result = await self.charger.charge(credit)
        finally:
            self.in_flight -= 1
        cca = answer_to(request)
        cca.session_id = ccr.session_id
        cca.origin_host = node.identity.origin_host.encode()
        cca.origin_realm = node.identity.realm.encode()
        cca.auth_application_id = CREDIT_CONTROL
        gy.write_answer(cca, asked, result)
        return cca


class Charger:
    """Group commit: the requests that arrive while a batch is being charged are charged together
    in the next one, in one transaction (`quota.handle_many`) on one of `threads` threads, and
    answered once it has committed. Under light load a batch is one request and waits for
    nothing; under heavy load a batch costs a fixed number of statements and one commit whatever
    its size, up to `max_batch`."""

    def __init__(self, runtime: Runtime, pool: ThreadPoolExecutor, threads: int, max_batch: int = 256) -> None:
        self.runtime, self.pool, self.threads, self.max_batch = runtime, pool, threads, max_batch
        self.waiting: list[tuple[quota.CreditRequest, asyncio.Future[quota.CreditAnswer]]] = []
        self.running = 0

    async def charge(self, credit: quota.CreditRequest) -> quota.CreditAnswer:
        answer: asyncio.Future[quota.CreditAnswer] = asyncio.get_running_loop().create_future()
        self.waiting.append((credit, answer))
        if self.running < self.threads:
            self._next()
        return await answer

    def _next(self) -> None:
        batch, self.waiting = self.waiting[: self.max_batch], self.waiting[self.max_batch :]
        self.running += 1
        job = asyncio.get_running_loop().run_in_executor(self.pool, self._charge, [c for c, _ in batch])
        job.add_done_callback(lambda done: self._answer(batch, done))

    def _answer(self, batch: list[tuple[quota.CreditRequest, asyncio.Future[quota.CreditAnswer]]], job: Any) -> None:
        self.running -= 1
        answers = job.result()
        for (_, waiter), answer in zip(batch, answers, strict=True):
            if not waiter.done():
                waiter.set_result(answer)
        if self.waiting and self.running < self.threads:
            self._next()

    def _charge(self, credits: list[quota.CreditRequest]) -> list[quota.CreditAnswer]:
        try:
            with self.runtime.unit_of_work() as uow:
                return quota.handle_many(uow, credits)
        except Exception:
            if len(credits) > 1:  # one request's failure is not the others': each on its own
                return [answer for credit in credits for answer in self._charge([credit])]
            # Rolled back: nothing was charged, and the element may ask again.
            log.exception("CCR %s #%s failed", credits[0].session_id, credits[0].request_number)
            return [quota.CreditAnswer(quota.ResultCode.UNABLE_TO_COMPLY)]


def answer_to(request: codec.Inbound) -> CreditControlAnswer:
    """An empty Credit-Control-Answer to a request: its header's ids, P bit and application."""
    cca = CreditControlAnswer()
    asked, header = request.header, cca.header
    header.application_id = asked.application_id
    header.hop_by_hop_identifier, header.end_to_end_identifier = (
        asked.hop_by_hop_identifier,
        asked.end_to_end_identifier,
    )
    header.is_proxyable = asked.is_proxyable
    return cca


class GyServer:
    """Listens on host:port (default `diameter_host:diameter_port`; port 0 picks a free one, read
    back from `port` after start()) between start() and stop(), on an event loop of its own thread."""

    def __init__(
        self,
        runtime: Runtime,
        host: str | None = None,
        port: int | None = None,
        listening: socket.socket | None = None,
        origin_state_id: int | None = None,
    ) -> None:
        self.runtime = runtime
        # A socket already bound and listening (`duckline ocs --processes`): accept on it instead.
        self.listening, self.origin_state_id = listening, origin_state_id
        self.host = host or runtime.settings.diameter_host
        self.port = port if port is not None else runtime.settings.diameter_port
        self.node: Node | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._status: StatusPublisher | None = None
        self.signals: SignalSender | None = None  # RARs and ASRs the line changes owe, stale sessions

    def start(self) -> None:
        """Bind the port and accept the configured peers; raises OSError when it cannot bind."""
        settings = self.runtime.settings
        identity = Identity(
            settings.diameter_origin_host,
            settings.diameter_realm,
            vendor_id=settings.diameter_vendor_id,
            product_name=settings.diameter_product_name,
        )
        if self.origin_state_id is not None:
            identity = dataclasses.replace(identity, origin_state_id=self.origin_state_id)
        peers = Peers(settings.diameter_peers)
        if not peers.by_host:
            log.warning("no diameter_peers configured: every CER will be refused as an unknown peer")
        threads = settings.diameter_max_threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="gy")
        application = CreditControlApplication(
            Charger(self.runtime, self._pool, threads), settings.diameter_max_waiting
        )
        node = Node(identity, peers, [application], settings.diameter_watchdog_seconds)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="diameter", daemon=True)
        self._thread.start()
        try:
            self.port = asyncio.run_coroutine_threadsafe(
                node.start(self.host, self.port, self.listening), self._loop
            ).result()
        except BaseException:
            self._close_loop()
            raise
        self.node = node
        self._status = StatusPublisher(self.runtime, node, self._loop)  # the peers, for the console
        self._status.start()
        self.signals = SignalSender(self.runtime, node)
        self._loop.call_soon_threadsafe(self.signals.start)

    def stop(self, timeout: float = 10) -> None:
        """Send DPR to connected peers, wait up to `timeout` s for them to leave, let requests in
        flight finish, then close."""
        if self.signals is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self.signals.stop(), self._loop).result()
            self.signals = None
        if self.node is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self.node.stop(timeout), self._loop).result()
            self.node = None
        if self._status is not None:
            self._status.stop()
            self._status = None
        self._close_loop()

    def status(self) -> list[PeerStatus]:
        """Each configured peer: state and counters (read on the loop, so a consistent picture)."""
        node, loop = self.node, self._loop
        if node is None or loop is None:
            return []

        async def read() -> list[PeerStatus]:
            return node.status()

        return asyncio.run_coroutine_threadsafe(read(), loop).result()

    def _close_loop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # its threads hand their results to the loop: still running
            self._pool = None
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            self._loop, self._thread = None, None


def _text(value: bytes | str | None) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
