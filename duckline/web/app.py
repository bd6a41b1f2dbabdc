"""The application factory: everything is built here, nothing at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from duckline import __version__
from duckline.accounts.api import auth, me, password, privacy, registration, security
from duckline.accounts.api import settings as account_settings
from duckline.billing.api import bills as billing
from duckline.billing.api import orders, webhooks
from duckline.billing.providers import sandbox_pages as sandbox
from duckline.catalog import api as plans
from duckline.core.config import Settings
from duckline.diameter import api as charging
from duckline.lines import api as lines
from duckline.runtime import Runtime
from duckline.sip import api as sip
from duckline.staff.api import admin, operations
from duckline.support.api import desk as support_desk
from duckline.support.api import tickets as support
from duckline.usage import api as usage
from duckline.web import docs, edge, errors, openapi, sql_counts
from duckline.web.deps import PUBLIC
from duckline.web.headers import SecurityHeaders
from duckline.web.portal import portal_routers
from duckline.web.portal.session import LoginRequired, StaffOnly, SubscribersOnly
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
        docs_url=None,  # our own page (duckline.web.docs): the framework's loads a CDN's assets
        redoc_url=None,
    )
    app.state.runtime = runtime
    errors.install(app)

    api = APIRouter(prefix=API_PREFIX)
    for module in (
        registration,
        auth,
        password,
        me,
        account_settings,
        privacy,
        support,
        support_desk,
        lines,
        sip,
        plans,
        usage,
        admin,
        orders,
        billing,
        operations,
        webhooks,
        security,
        charging,
    ):
        api.include_router(module.router)
    api.include_router(lines.esim_router)
    api.include_router(plans.rating_router)
    # Before the API: FastAPI tries routes in order (and each included router's routes on every
    # request), and the sandbox's hosted page is on every card renewal's path.
    app.include_router(sandbox.router)
    app.include_router(api)
    for page_router in portal_routers():
        app.include_router(page_router)
    docs.install(app, f"{API_PREFIX}/docs", f"{API_PREFIX}/openapi.json")
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    # Inside the security headers below, so that what the edge refuses carries them too.
    app.add_middleware(edge.EdgeGuard, limits=edge.body_limits(app.routes, runtime.settings))

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)

    @app.exception_handler(StaffOnly)
    async def staff_only(request: Request, exc: StaffOnly) -> Response:
        return PlainTextResponse("403 — staff only", status_code=403)

    @app.exception_handler(SubscribersOnly)
    async def subscribers_only(request: Request, exc: SubscribersOnly) -> Response:
        return PlainTextResponse("403 — for subscribers only", status_code=403)

    @app.get(f"{API_PREFIX}/health", tags=["meta"], dependencies=[PUBLIC])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    # Outside the edge, so that what the edge refuses carries the headers too.
    app.add_middleware(SecurityHeaders, production=runtime.settings.environment == "production")

    openapi.install(app, runtime.settings)
    if sql_counts.enabled():  # outermost, so it sees every statement of the request
        sql_counts.watch(runtime.db.engine)
        app.add_middleware(sql_counts.SqlCounts)
    return app
