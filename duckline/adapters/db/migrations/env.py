"""Alembic environment: runs on the engine handed over by duckline.adapters.db.migrate."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlalchemy import Enum as SAEnum

from duckline.adapters.db.tables import Base
from duckline.adapters.db.types import UTCDateTime


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Migrations spell plain column types, so they never import application code.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, SAEnum) and not obj.native_enum:
        return f"sa.String(length={obj.length})"
    return False


engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite can only ALTER by copying the table
        render_item=render_item,
        compare_type=True,
    )
    context.run_migrations()
