"""One built app per test worker, reused by every test: building it costs about half a second
(FastAPI analyses every route's dependencies, and the edge and the OpenAPI document walk them
again), more than most tests take.

Each test keeps its own Runtime (database, clock, channels, rate limits). The app is built around
a stand-in that forwards to the runtime of the test using it, so whatever the app captured when it
was built (its lifespan, a middleware given the runtime) reaches that test's runtime. Apps are
pooled by the settings they were built with: a test with other body limits or another environment
gets an app of its own, and two apps in use at once (a test serving one, then opening a client)
are two different apps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from fastapi import FastAPI

from duckline.runtime import Runtime
from duckline.web.app import create_app

# Settings each test sets to its own value and the app only reads through the runtime per request
# (create_app reads the environment and the body limits). The fake providers and channels of
# tests/provider_fakes.py listen on a free port of their own in each test: their addresses would
# otherwise make every such test build an app (half a second, more than most tests take).
PER_TEST = {
    "database_url",
    "log_dir",
    "base_url",
    "stripe_api_base",
    "stripe_js_url",
    "alipay_gateway",
    "wechatpay_base_url",
    "sms_http_url",
    "smtp_port",
    "smpp_port",
    "diameter_port",  # tests/diameter's Gy servers, each on a free port
}


class CurrentRuntime:
    """Forwards every attribute to the runtime it is lent to; between tests it forwards to nothing."""

    def __init__(self) -> None:
        object.__setattr__(self, "_target", None)

    def lend(self, runtime: Runtime | None) -> None:
        object.__setattr__(self, "_target", runtime)

    def __getattr__(self, name: str) -> Any:
        target = object.__getattribute__(self, "_target")
        if target is None:
            raise RuntimeError(f"the pooled app was used outside a test (runtime.{name})")
        return getattr(target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)


_idle: dict[str, list[tuple[FastAPI, CurrentRuntime]]] = {}


def _shape(runtime: Runtime) -> str:
    return runtime.settings.model_dump_json(exclude=PER_TEST)


@contextmanager
def pooled_app(runtime: Runtime) -> Iterator[FastAPI]:
    """An app serving `runtime` until the block ends."""
    idle = _idle.setdefault(_shape(runtime), [])
    if idle:
        app, current = idle.pop()
        current.lend(runtime)
    else:
        current = CurrentRuntime()
        current.lend(runtime)
        app = create_app(runtime=cast(Runtime, current))
    try:
        yield app
    finally:
        current.lend(None)
        idle.append((app, current))
