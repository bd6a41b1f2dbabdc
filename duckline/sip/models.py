"""The SIP tables. Rows are plain records; the rules that change them are in accounts.py."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from duckline.db.base import Base
from duckline.db.types import BigId


class SipAccount(Base):
    """A line's SIP credentials: the digest hashes Kamailio checks, never the password.

    Whether the account may register is not stored: the `kamailio_subscriber` view (migration
    0017a) joins the line and lists the account only while the line can use service, so a
    suspension, an expiry or a renewal takes effect there without anything to keep in step."""

    __tablename__ = "sip_accounts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), unique=True)
    username: Mapped[str] = mapped_column(String(32))  # the number in E.164 digits, no "+"
    domain: Mapped[str] = mapped_column(String(128))
    ha1: Mapped[str] = mapped_column(String(32))  # MD5(username:domain:password), hex
    ha1b: Mapped[str] = mapped_column(String(32))  # MD5(username@domain:domain:password), hex
    created_at: Mapped[datetime]
    password_changed_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("username", "domain", name="uq_sip_accounts_username_domain"),)
