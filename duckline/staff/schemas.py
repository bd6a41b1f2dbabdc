"""The staff API's request and response bodies (separate from the tables on purpose)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class AuditOut(BaseModel):
    id: int
    actor_id: int | None
    action: str
    target: str
    detail: dict[str, object]
    at: datetime
    text: str = Field(description="What happened, in the caller's language, values formatted for the reader.")
