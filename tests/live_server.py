"""The app behind a real uvicorn server on a free loopback port, for tests that need real
connections (concurrent clients, raw sockets, fuzzing over HTTP)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from duckline.runtime import Runtime
from tests.app_pool import pooled_app


@contextmanager
def serve(runtime: Runtime, log_level: str = "warning") -> Iterator[str]:
    """Serve until the block ends; yields the base URL, e.g. http://127.0.0.1:41234."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pooled_app(runtime) as app:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)
