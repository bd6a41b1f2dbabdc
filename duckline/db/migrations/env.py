"""Alembic environment: runs on the engine handed over by duckline.db.migrate."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlalchemy import Connection
from sqlalchemy import Enum as SAEnum

from duckline.db.models import Base
from duckline.db.types import UTCDateTime


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Migrations spell plain column types, so they never import application code.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, SAEnum) and not obj.native_enum:
        return f"sa.String(length={obj.length})"
    return False


def set_sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    """Straight to the driver: the pragma only takes effect outside a transaction."""
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


engine = context.config.attributes["engine"]
with engine.connect() as connection:
    # SQLite alters a table by copying it and dropping the original, which fails while enforced
    # foreign keys point at it; so they are off while migrating, and checked before the commit.
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        set_sqlite_foreign_keys(connection, on=False)
    try:
        with connection.begin():
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=True,  # SQLite can only ALTER by copying the table
                render_item=render_item,
                compare_type=True,
            )
            context.run_migrations()
            if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                raise RuntimeError(f"migration left rows that refer to missing rows: {broken[:10]}")
    finally:
        if sqlite:
            set_sqlite_foreign_keys(connection, on=True)
