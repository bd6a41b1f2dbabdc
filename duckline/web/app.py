"""The application factory: everything is built here, nothing at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from duckline import __version__
from duckline.config import Settings
from duckline.runtime import Runtime
from duckline.web import errors, sandbox
from duckline.web.api import (
    account_settings,
    admin,
    auth,
    billing,
    lines,
    me,
    operations,
    orders,
    plans,
    registration,
    usage,
    webhooks,
)
from duckline.worker import Worker

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or Runtime(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.check_schema()  # refuse to serve an unmigrated database
        worker = None
        if runtime.settings.worker_in_process and runtime.settings.environment != "test":
            worker = Worker(runtime, runtime.settings.worker_interval_seconds)
            worker.start()
        yield
        if worker is not None:
            worker.stop()

    app = FastAPI(
        title="Duckline API",
        version=__version__,
        description="Virtual SIM service: registration, lines, plans, balances and usage.",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.runtime = runtime
    errors.install(app)

    api = APIRouter(prefix=API_PREFIX)
    for module in (
        registration,
        auth,
        me,
        account_settings,
        lines,
        plans,
        usage,
        admin,
        orders,
        billing,
        operations,
        webhooks,
    ):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(sandbox.router)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(f"{API_PREFIX}/docs")

    @app.get(f"{API_PREFIX}/health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    return app
