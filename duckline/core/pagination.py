"""Keyset pagination: the cursor is the last id seen, so pages stay stable while rows are added."""

from __future__ import annotations

import base64
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from duckline.core.errors import DomainError, ErrorCode

T = TypeVar("T")
MAX_LIMIT = 200


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        last_id = int(value)
        if prefix != "id" or not 0 < last_id < 2**63:  # ids are positive BIGINTs
            raise ValueError(raw)
        return last_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise DomainError(ErrorCode.INVALID_CURSOR, field="cursor") from exc


def page(
    session: Session,
    query: Select[Any],
    id_column: InstrumentedAttribute[int],
    cursor: str | None,
    limit: int,
    oldest_first: bool = False,
) -> tuple[list[Any], str | None]:
    """Rows ordered by id (descending: newest first, unless `oldest_first`) after the cursor, and
    the next cursor."""
    limit = max(1, min(limit, MAX_LIMIT))
    if cursor:
        last = decode_cursor(cursor)
        query = query.where(id_column > last if oldest_first else id_column < last)
    order = id_column.asc() if oldest_first else id_column.desc()
    rows = list(session.scalars(query.order_by(order).limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].id) if more and rows else None
