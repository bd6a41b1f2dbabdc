"""Background work: scheduled jobs, the sandbox provider's webhook sender, queued messages.

`duckline worker` runs it as its own process; in the embedded default `duckline serve` also
runs it on a thread, so the demo needs no second process.
"""

from __future__ import annotations

import logging
import threading

import httpx

from duckline.core import jobs
from duckline.runtime import Runtime

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, runtime: Runtime, interval_seconds: float = 2.0, jobs_every: int = 15) -> None:
        self.runtime, self.interval, self.jobs_every = runtime, interval_seconds, jobs_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(timeout=10)

    def tick(self, count: int) -> None:
        """One round; every job is idempotent, so a round that dies half way is simply repeated."""
        runtime = self.runtime
        if runtime.sandbox is not None:
            runtime.sandbox.deliver_due(self._post)
        runtime.deliver_messages()
        if count % self.jobs_every == 0:
            jobs.run_all(runtime)

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            return self._http.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError as exc:
            log.warning("webhook to %s failed: %s", url, exc)
            return 0

    def run_forever(self) -> None:
        count = 0
        while not self._stop.is_set():
            try:
                self.tick(count)
            except Exception:  # keep the loop alive; the failed round is retried
                log.exception("worker round failed")
            count += 1
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="duckline-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._http.close()
