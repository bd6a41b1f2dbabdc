"""The staff tables. Rows are plain records; the rules that change them live beside them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Index,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from duckline.db.base import Base
from duckline.db.types import BigId


class AuditEntry(Base):
    __tablename__ = "audit_log"
    # The audit page filters by who, subject, action and time, newest first.
    __table_args__ = (
        Index("ix_audit_log_actor", "actor_id", "id"),
        Index("ix_audit_log_target", "target", "id"),
        Index("ix_audit_log_action", "action", "id"),
        Index("ix_audit_log_at", "at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]]
    at: Mapped[datetime]
