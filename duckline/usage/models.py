"""The usage tables. Rows are plain records; the rules that change them live beside them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from duckline.catalog.rules import Unit, Zone
from duckline.db.base import Base
from duckline.db.types import BigId, enum_column
from duckline.usage.charging_states import ClosedReason, CreditSessionStatus, SignalKind, SignalOutcome


class Bucket(Base):
    """An allowance of one unit in one zone. `remaining` is a projection of the ledger."""

    __tablename__ = "buckets"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"))
    unit: Mapped[Unit] = mapped_column(enum_column(Unit))
    zone: Mapped[Zone] = mapped_column(enum_column(Zone, 4))
    initial: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(20))  # plan, addon, promotion (a bonus)
    source_ref: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    __table_args__ = (
        Index("ix_buckets_line_valid", "line_id", "valid_until"),
        CheckConstraint("remaining >= 0 AND remaining <= initial", name="remaining_in_range"),
    )


class LedgerEntry(Base):
    """Append-only: every change to an allowance, from which buckets can be rebuilt."""

    __tablename__ = "ledger_entries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign keys on line_id and usage_record_id (migration 0005): on the usage hot path each
    # would cost a check per row. A ledger row's line is its bucket's line, and its usage record is
    # inserted in the same transaction.
    line_id: Mapped[int] = mapped_column(BigId, index=True)
    bucket_id: Mapped[int | None] = mapped_column(ForeignKey("buckets.id"), index=True)
    unit: Mapped[Unit] = mapped_column(enum_column(Unit))
    zone: Mapped[Zone] = mapped_column(enum_column(Zone, 4))
    delta: Mapped[int] = mapped_column(BigInteger)  # + grant, - usage; overage rows have no bucket
    reason: Mapped[str] = mapped_column(String(20))  # grant, usage, overage, refund (what was left is taken back)
    usage_record_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime]


class UsageRecord(Base):
    """A CDR from a network element; (source, record_id) makes a retried report harmless."""

    __tablename__ = "usage_records"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(60))
    record_id: Mapped[str] = mapped_column(String(100))
    # No foreign key (migration 0005): usage.ingest takes the line id from `lines` in the same
    # transaction (lines are never deleted), and a check per row is costly on the hot path.
    line_id: Mapped[int] = mapped_column(BigId)
    unit: Mapped[Unit] = mapped_column(enum_column(Unit))
    zone: Mapped[Zone] = mapped_column(enum_column(Zone, 4))
    quantity: Mapped[int] = mapped_column(BigInteger)  # what was charged and what was overage: the ledger
    started_at: Mapped[datetime]
    received_at: Mapped[datetime]
    __table_args__ = (
        UniqueConstraint("source", "record_id", name="uq_usage_records_source_record"),
        Index("ix_usage_records_line_started", "line_id", "started_at"),
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
    )


class CreditSession(Base):
    """A Diameter credit-control session (online charging): units reserved on a line until the
    network element reports them used; its last answer, for a retransmitted request."""

    __tablename__ = "credit_sessions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(255), unique=True)
    # No foreign key (migration 0016d): online charging inserts sessions by the batch, in the
    # transaction that locked the line (lines are never deleted).
    line_id: Mapped[int] = mapped_column(BigId)
    unit: Mapped[Unit] = mapped_column(enum_column(Unit))
    zone: Mapped[Zone] = mapped_column(enum_column(Zone, 4))
    status: Mapped[CreditSessionStatus] = mapped_column(enum_column(CreditSessionStatus, 10))
    # What its reservations (credit_reservations, one per rating group) hold in all, for display;
    # what others must leave alone is summed from those rows.
    reserved: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime]  # the latest of its reservations' expiry
    last_request_number: Mapped[int] = mapped_column(Integer)
    # The voice seconds its requests reported used in all: a call's charging increments apply to the total.
    seconds_used: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # A call to an emergency number: granted whatever the line's state, and never charged.
    emergency: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_answer: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The element that opened it (its CCR-INITIAL's Origin-Host and -Realm): where a RAR or ASR
    # of ours goes. None for sessions opened before these were kept.
    origin_host: Mapped[str | None] = mapped_column(String(255))
    origin_realm: Mapped[str | None] = mapped_column(String(255))
    # Set when Duckline closed it without a CCR-TERMINATE: its next request gets 5002.
    closed_reason: Mapped[ClosedReason | None] = mapped_column(enum_column(ClosedReason, 10))
    # The last time its element left a RAR or ASR of ours unanswered (retried once).
    unanswered_at: Mapped[datetime | None]
    __table_args__ = (
        Index("ix_credit_sessions_line_open", "line_id", "status", "unit", "zone"),
        Index("ix_credit_sessions_status_updated", "status", "updated_at"),  # the reaper's
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    )


class CreditReservation(Base):
    """What one credit-control session holds of a line's buckets for one rating group (-1: units
    asked outside any rating group) until its element reports them used or `expires_at` passes.
    `line_id`, `unit` and `zone` are copied from the session so what others hold is one sum."""

    __tablename__ = "credit_reservations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign key (migration 0016d): written by the batch with its session (never deleted).
    credit_session_id: Mapped[int] = mapped_column(BigId)
    line_id: Mapped[int] = mapped_column(BigId)
    rating_group: Mapped[int] = mapped_column(BigInteger)
    unit: Mapped[Unit] = mapped_column(enum_column(Unit))
    zone: Mapped[Zone] = mapped_column(enum_column(Zone, 4))
    reserved: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime]
    __table_args__ = (
        UniqueConstraint("credit_session_id", "rating_group", name="uq_credit_reservations_session_group"),
        Index("ix_credit_reservations_line", "line_id", "unit", "zone"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    )


class CreditSessionSignal(Base):
    """A request the OCS owes the element holding a session (an outbox: written by whoever changed
    the line, in that transaction; sent by the OCS, which polls for rows with `finished_at` null).
    `claimed_until`: an OCS is sending it; past that, another may. `attempts`: requests sent."""

    __tablename__ = "credit_session_signals"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    credit_session_id: Mapped[int] = mapped_column(ForeignKey("credit_sessions.id"))
    kind: Mapped[SignalKind] = mapped_column(enum_column(SignalKind, 3))
    created_at: Mapped[datetime]
    claimed_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer)
    sent_at: Mapped[datetime | None]  # when its (first) request went out
    finished_at: Mapped[datetime | None]
    outcome: Mapped[SignalOutcome | None] = mapped_column(enum_column(SignalOutcome, 10))
    result_code: Mapped[int | None] = mapped_column(Integer)  # the answer's, when there was one
    __table_args__ = (
        Index("ix_credit_session_signals_session", "credit_session_id"),
        Index(
            "ix_credit_session_signals_pending",
            "id",
            postgresql_where=text("finished_at IS NULL"),
            sqlite_where=text("finished_at IS NULL"),
        ),
    )
