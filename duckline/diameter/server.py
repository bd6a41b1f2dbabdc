"""The Gy server: a python-diameter `Node` that answers Credit-Control-Requests (application 4)
from the network elements it was told about; CER/CEA, DWR/DWA, DPR/DPA are the library's.

* Peers. The library answers a CER from an Origin-Host it was not given with 3010
  DIAMETER_UNKNOWN_PEER and closes the connection; it has no switch to accept anyone, and a
  charging server should not want one. `diameter_peers` lists the elements allowed in as Diameter
  URIs (`aaa://pgw1.operator.example:3868;transport=tcp`, compared case-insensitively); they dial
  us, we dial no one. TCP only (SCTP would need pysctp). With no peers, nobody can connect.
* Realm. Requests must carry our realm as Destination-Realm (else 3003 REALM_NOT_SERVED).
* Retransmissions. The library would answer a T-flagged request whose End-to-End id it already
  answered with 5012; credit control wants the first answer again (RFC 4006 5.1: Session-Id and
  CC-Request-Number identify a duplicate), which `quota.handle` gives, so that check is off.
* Threads. Each request runs on its own thread in its own unit of work; at most
  `diameter_max_threads` at once (beyond that the library answers 3004 TOO_BUSY after 5 s).
"""

from __future__ import annotations

import logging
from typing import Any

from diameter.message import constants
from diameter.message.commands import CreditControlRequest
from diameter.node import Node
from diameter.node.application import SimpleThreadingApplication

from duckline.diameter import gy
from duckline.runtime import Runtime
from duckline.usage import quota

log = logging.getLogger("duckline.diameter")

CREDIT_CONTROL = constants.APP_DIAMETER_CREDIT_CONTROL_APPLICATION  # 4


class GyServer:
    """Listens on host:port (default `diameter_host:diameter_port`) between start() and stop()."""

    def __init__(
        self, runtime: Runtime, host: str | None = None, port: int | None = None, wakeup_seconds: int = 1
    ) -> None:
        self.runtime = runtime
        self.host = host or runtime.settings.diameter_host
        self.port = port or runtime.settings.diameter_port
        # How often the node's loop wakes to check peer timers. stop() waits for one such wake-up,
        # so it is shorter than the library's 6 s; an idle wake-up costs next to nothing.
        self._wakeup_seconds = wakeup_seconds
        self.node: Any = None
        self.application: Any = None

    def start(self) -> None:
        """Bind the port and accept the configured peers."""
        settings = self.runtime.settings
        node = Node(
            settings.diameter_origin_host,
            settings.diameter_realm,
            ip_addresses=[self.host],
            tcp_port=self.port,
            vendor_ids=[constants.VENDOR_TGPP],
        )
        node.retransmit_queue_size = 0  # duplicates are the service's to answer (see above)
        node.wakeup_interval = self._wakeup_seconds
        peers = [node.add_peer(uri.lower()) for uri in settings.diameter_peers]
        if not peers:
            log.warning("no diameter_peers configured: every CER will be refused as an unknown peer")
        application = SimpleThreadingApplication(
            CREDIT_CONTROL,
            is_auth_application=True,
            max_threads=settings.diameter_max_threads,
            request_handler=self._answer,
        )
        node.add_application(application, peers, realms=[settings.diameter_realm])
        node.start()
        self.node, self.application = node, application

    def stop(self, timeout: int = 10) -> None:
        """Send DPR to connected peers, wait up to `timeout` s for them to leave, then close."""
        if self.node is not None:
            self.node.stop(wait_timeout=timeout)
            self.node = None

    def _answer(self, app: Any, message: Any) -> Any:
        answer = app.generate_answer(message)
        if not isinstance(message, CreditControlRequest):
            answer.header.is_error = True
            answer.result_code = constants.E_RESULT_CODE_DIAMETER_COMMAND_UNSUPPORTED
            return answer
        try:
            request = gy.read_request(message)
        except gy.Refused as refused:
            log.info("CCR %s refused with %s: %s", message.session_id, refused.result_code, refused)
            gy.write_refusal(answer, message, refused)
            return answer
        try:
            with self.runtime.unit_of_work() as uow:
                result = quota.handle(uow, request.credit)
        except Exception:
            # Rolled back: nothing was charged, and the element may ask again.
            log.exception("CCR %s #%s failed", request.credit.session_id, request.credit.request_number)
            result = quota.CreditAnswer(quota.ResultCode.UNABLE_TO_COMPLY)
        gy.write_answer(answer, request, result)
        return answer
