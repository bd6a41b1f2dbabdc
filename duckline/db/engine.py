"""Engines and transactions. One request, job or command owns exactly one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
        # Recycle rather than ping: a ping is an extra round trip (and transaction) per checkout.
        kwargs.setdefault("pool_recycle", 1800)
        return create_engine(url, **kwargs)

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, open transactions, so we can open them IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock at the start: a read-then-write transaction that upgrades later
        # can fail with "database is locked" when another writer got there first.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """The engine and the one way to open a transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._autocommit = sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self, *, wait_for_disk: bool = True) -> Iterator[Session]:
        """Commit when the block ends; roll back if it raises, unless the exception says its
        work must be kept (`commit = True`, e.g. a counted wrong OTP attempt).

        `wait_for_disk=False` is for small writes whose loss the caller survives: on PostgreSQL
        the commit then returns before the disk has it (synchronous_commit off), so only a crash
        of the database server, never of this process, can lose it; SQLite ignores it."""
        with self._sessions() as session:
            session.begin()
            if not wait_for_disk and not self.is_sqlite:
                session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            try:
                yield session
            except BaseException as exc:
                if getattr(exc, "commit", False):
                    session.commit()
                else:
                    session.rollback()
                raise
            session.commit()

    @contextmanager
    def reads(self) -> Iterator[Session]:
        """For reads of one statement each: on PostgreSQL they run without a BEGIN and COMMIT of
        their own (autocommit), two round trips fewer; each sees its own snapshot, so nothing
        written here and nothing read across two statements may rely on one snapshot. SQLite
        opens its usual transaction."""
        if self.is_sqlite:
            with self.transaction() as session:
                yield session
            return
        with self._autocommit() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
