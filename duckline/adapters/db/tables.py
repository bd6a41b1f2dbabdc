"""The schema. Rows are plain records; the rules that change them live in duckline.domain."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from duckline.adapters.db.types import BigId, UTCDateTime, enum_column
from duckline.domain.catalog import PlanKind, PlanStatus, Unit, Zone
from duckline.domain.identity import DocumentType, KycStatus
from duckline.domain.lines import LineStatus
from duckline.domain.roles import Role

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        dict[str, str]: JSON(),
    }


class Person(Base):
    """A real-name identity record; one per identity document, shared by its accounts' lines."""

    __tablename__ = "persons"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    document_type: Mapped[DocumentType] = mapped_column(enum_column(DocumentType))
    # Keyed hash of type + number: finds the same person without decrypting anything.
    document_hash: Mapped[str] = mapped_column(String(64), unique=True)
    document_cipher: Mapped[bytes] = mapped_column(LargeBinary)
    document_masked: Mapped[str] = mapped_column(String(40))
    name_en: Mapped[str | None] = mapped_column(String(100))
    name_zh: Mapped[str | None] = mapped_column(String(30))
    birth_date: Mapped[date] = mapped_column(Date)
    guardian_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"))
    kyc_status: Mapped[KycStatus] = mapped_column(enum_column(KycStatus))
    kyc_reason: Mapped[str | None] = mapped_column(String(300))
    # Counted with a conditional UPDATE so concurrent registrations cannot pass the limit.
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    __table_args__ = (CheckConstraint("line_count >= 0", name="line_count_not_negative"),)


class DocumentImage(Base):
    __tablename__ = "document_images"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    content_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    cipher: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted with the data key
    created_at: Mapped[datetime]


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)  # E.164
    phone_verified_at: Mapped[datetime | None]
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(enum_column(Role), default=Role.SUBSCRIBER)
    language: Mapped[str] = mapped_column(String(10), default="en")
    timezone: Mapped[str] = mapped_column(String(40), default="Asia/Hong_Kong")
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), index=True)
    created_at: Mapped[datetime]


class OtpChallenge(Base):
    __tablename__ = "otp_challenges"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(30))
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    consumed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    __table_args__ = (Index("ix_otp_challenges_phone_purpose", "phone", "purpose", "created_at"),)


class ApiToken(Base):
    """Bearer tokens for API clients and network elements; only a hash is kept."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class PoolNumber(Base):
    __tablename__ = "pool_numbers"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    msisdn: Mapped[str] = mapped_column(String(20), unique=True)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    allocated_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_pool_numbers_available", "available", "id"),)


class Plan(Base):
    __tablename__ = "plans"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[PlanKind] = mapped_column(enum_column(PlanKind))
    status: Mapped[PlanStatus] = mapped_column(enum_column(PlanStatus), default=PlanStatus.ACTIVE)
    names: Mapped[dict[str, str]]
    descriptions: Mapped[dict[str, str]]
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    validity_days: Mapped[int] = mapped_column(Integer, default=0)
    validity_months: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    __table_args__ = (CheckConstraint("price_amount >= 0", name="price_not_negative"),)


class PlanAllowance(Base):
    __tablename__ = "plan_allowances"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"), index=True)
    unit: Mapped[Unit] = mapped_column(enum_column(Unit))
    zone: Mapped[Zone] = mapped_column(enum_column(Zone, 4))
    amount: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (UniqueConstraint("plan_id", "unit", "zone"),)


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
    source: Mapped[str] = mapped_column(String(20))  # plan, addon, promotion, adjustment
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
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), index=True)
    bucket_id: Mapped[int | None] = mapped_column(ForeignKey("buckets.id"), index=True)
    unit: Mapped[Unit] = mapped_column(enum_column(Unit))
    zone: Mapped[Zone] = mapped_column(enum_column(Zone, 4))
    delta: Mapped[int] = mapped_column(BigInteger)  # + grant, - usage; overage rows have no bucket
    reason: Mapped[str] = mapped_column(String(20))  # grant, usage, overage, adjustment
    usage_record_id: Mapped[int | None] = mapped_column(ForeignKey("usage_records.id"))
    created_at: Mapped[datetime]


class UsageRecord(Base):
    """A CDR from a network element; (source, record_id) makes a retried report harmless."""

    __tablename__ = "usage_records"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(60))
    record_id: Mapped[str] = mapped_column(String(100))
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"))
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


class Notification(Base):
    """Outbox: written in the same transaction as its cause, delivered by a channel afterwards."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))  # sms, email
    recipient: Mapped[str] = mapped_column(String(254))
    template: Mapped[str] = mapped_column(String(60))
    language: Mapped[str] = mapped_column(String(10))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="queued")  # queued, sent, failed
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_notifications_status", "status", "id"),)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]]
    at: Mapped[datetime]
