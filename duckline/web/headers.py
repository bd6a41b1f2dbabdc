"""Security headers on every response, set where the app did not set them itself.

A pure ASGI middleware: it edits the response's start message in passing. (Starlette's
BaseHTTPMiddleware, which `@app.middleware("http")` builds, runs the app in a second task and
streams the body through a memory channel: several milliseconds of CPU on every request.)
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from duckline.web.csp import CSP

# Browsers that once saw us over HTTPS refuse plain HTTP for a year (production is HTTPS only).
HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeaders:
    def __init__(self, app: ASGIApp, production: bool) -> None:
        self.app = app
        defaults = [
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "same-origin"),
            ("X-Frame-Options", "DENY"),
        ]
        if production:  # never in development: it would pin a developer's localhost to HTTPS
            defaults.append(("Strict-Transport-Security", HSTS))
        defaults.append(("Content-Security-Policy", CSP))
        self.defaults = tuple(defaults)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.defaults:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)
