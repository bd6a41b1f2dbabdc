"""The accounts tables. Rows are plain records; the rules that change them live beside them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from duckline.accounts.contact_states import ContactKind
from duckline.accounts.identity import DocumentType, KycStatus
from duckline.accounts.roles import Role
from duckline.db.base import Base
from duckline.db.types import BigId, enum_column


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
    guardian_id: Mapped[int | None] = mapped_column(ForeignKey("guardians.id"))  # under the minimum age
    kyc_status: Mapped[KycStatus] = mapped_column(enum_column(KycStatus))
    kyc_reason: Mapped[str | None] = mapped_column(String(300))
    # Counted with a conditional UPDATE so concurrent registrations cannot pass the limit.
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    __table_args__ = (CheckConstraint("line_count >= 0", name="line_count_not_negative"),)


class Guardian(Base):
    """The adult named by a subscriber under the minimum age, one row per registration that names
    them. Not a Person: naming someone takes neither the identity place their own registration
    needs nor any of the lines their identity may hold. Protected as a person's identity is."""

    __tablename__ = "guardians"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    document_type: Mapped[DocumentType] = mapped_column(enum_column(DocumentType))
    # The same keyed hash as persons.document_hash: finds every minor one adult answers for.
    document_hash: Mapped[str] = mapped_column(String(64), index=True)
    document_cipher: Mapped[bytes] = mapped_column(LargeBinary)
    document_masked: Mapped[str] = mapped_column(String(40))
    name_en: Mapped[str | None] = mapped_column(String(100))
    name_zh: Mapped[str | None] = mapped_column(String(30))
    birth_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime]


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
    # Wrong passwords since the last good one; enough of them lock sign-in until locked_until.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None]
    role: Mapped[Role] = mapped_column(enum_column(Role), default=Role.SUBSCRIBER)
    language: Mapped[str] = mapped_column(String(10), default="en")
    timezone: Mapped[str] = mapped_column(String(40), default="Asia/Hong_Kong")
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), index=True)
    # Per channel and category, e.g. {"email": {"marketing": true}}; absent means the default.
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    created_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]  # closed by its holder: no sign-in from then on (see AccountClosure)


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
    # For the owner's list of sessions: when it was last used (to the minute, not every request)
    # and the browser or client that signed in.
    last_used_at: Mapped[datetime | None]
    user_agent: Mapped[str | None] = mapped_column(String(200))
    # A fresh proof of the account holder (password or code) given in this session: risky
    # changes (phone, email, password) need one younger than `step_up_ttl_seconds`.
    reauthenticated_at: Mapped[datetime | None]


class ContactChange(Base):
    """A new email or phone waiting for its code; applied only once the new contact proves itself."""

    __tablename__ = "contact_changes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[ContactKind] = mapped_column(enum_column(ContactKind, 10))
    new_value: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime]
    consumed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class AccountClosure(Base):
    """A closed account: when what it leaves behind is erased (the retention its closure page
    stated), and when it was. Money records (orders, payments, receipts, the ledger) are kept."""

    __tablename__ = "account_closures"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    closed_at: Mapped[datetime]
    erase_contact_at: Mapped[datetime]
    erase_identity_at: Mapped[datetime]
    contact_erased_at: Mapped[datetime | None]
    identity_erased_at: Mapped[datetime | None]
