"""SQL statements and transactions per request, for measuring (bench/renewals.py), never in service.

Enabled only when the server starts with DUCKLINE_SQL_COUNTS=1: each response then carries
`X-Duckline-Statements` (statements sent to the database while the request ran, SAVEPOINTs
included), `X-Duckline-Transactions` (commits and rollbacks of BEGIN…COMMIT transactions) and
`X-Duckline-Autocommit` (statements run on their own, without BEGIN and COMMIT: `Database.reads`;
PostgreSQL counts each as a transaction of its own). Off, nothing is installed, so the timed
figures pay nothing for it.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Engine, event
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ENV = "DUCKLINE_SQL_COUNTS"
STATEMENTS, TRANSACTIONS = b"x-duckline-statements", b"x-duckline-transactions"
AUTOCOMMIT = b"x-duckline-autocommit"
# [statements, transactions, autocommit statements] of the request being served; the list is shared with the worker
# threads the request hops into, since they run in a copy of its context.
_counts: ContextVar[list[int] | None] = ContextVar("duckline_sql_counts", default=None)


def enabled() -> bool:
    return os.environ.get(ENV, "") in ("1", "true")


def watch(engine: Engine) -> None:
    event.listen(engine, "before_cursor_execute", _statement)
    event.listen(engine, "commit", _transaction)
    event.listen(engine, "rollback", _transaction)


def _statement(connection: Any, *_: Any) -> None:
    counts = _counts.get()
    if counts is not None:
        counts[0] += 1
        if _autocommit(connection):
            counts[2] += 1


def _transaction(connection: Any, *_: Any) -> None:
    counts = _counts.get()
    if counts is not None and not _autocommit(connection):  # an autocommit "commit" sends nothing
        counts[1] += 1


def _autocommit(connection: Any) -> bool:
    return bool(connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT")


class SqlCounts:
    """Pure ASGI: counts what the request sends, reports it in two response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counts = [0, 0, 0]
        token = _counts.set(counts)

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    *message.get("headers", ()),
                    (STATEMENTS, b"%d" % counts[0]),
                    (TRANSACTIONS, b"%d" % counts[1]),
                    (AUTOCOMMIT, b"%d" % counts[2]),
                ]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            _counts.reset(token)
