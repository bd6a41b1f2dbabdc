"""The lines tables. Rows are plain records; the rules that change them live beside them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    String,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from duckline.db.base import Base
from duckline.db.types import BigId, enum_column
from duckline.lines.states import LineStatus, Suspension


class PoolNumber(Base):
    __tablename__ = "pool_numbers"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    msisdn: Mapped[str] = mapped_column(String(20), unique=True)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    allocated_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_pool_numbers_available", "available", "id"),)


class Line(Base):
    __tablename__ = "lines"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    msisdn: Mapped[str] = mapped_column(String(20), unique=True)
    status: Mapped[LineStatus] = mapped_column(enum_column(LineStatus))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id"))
    period_start: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    voicemail: Mapped[bool] = mapped_column(Boolean, default=False)
    caller_id: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    auto_renew_method_id: Mapped[int | None] = mapped_column(ForeignKey("saved_payment_methods.id"))
    # Service stopped at the subscriber's request (a lost or stolen phone), over any status.
    suspension: Mapped[Suspension | None] = mapped_column(enum_column(Suspension, 10))
    suspended_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class LineEvent(Base):
    """Every status change of a line, with why."""

    __tablename__ = "line_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), index=True)
    from_status: Mapped[LineStatus | None] = mapped_column(enum_column(LineStatus))
    to_status: Mapped[LineStatus] = mapped_column(enum_column(LineStatus))
    reason: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]


class EsimProfile(Base):
    __tablename__ = "esim_profiles"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), unique=True)
    iccid: Mapped[str] = mapped_column(String(20), unique=True)
    smdp_address: Mapped[str] = mapped_column(String(200))
    matching_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class RetiredEsimProfile(Base):
    """An eSIM profile replaced by a new one (the eSIM moved to another phone): its ICCID and
    activation code are refused from then on. The line's current profile is in esim_profiles."""

    __tablename__ = "retired_esim_profiles"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), index=True)
    iccid: Mapped[str] = mapped_column(String(20), unique=True)
    smdp_address: Mapped[str] = mapped_column(String(200))
    matching_id: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime]
    retired_at: Mapped[datetime]
    retired_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
