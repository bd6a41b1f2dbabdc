"""The catalog tables. Rows are plain records; the rules that change them live beside them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from duckline.billing.pricing import PromotionKind, RedemptionStatus
from duckline.catalog.rules import PlanKind, PlanStatus, Unit, Zone
from duckline.db.base import Base
from duckline.db.types import BigId, enum_column


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
    # Voice is charged in whole blocks of seconds: the first of a call, then each later one
    # (`catalog.voice_rating.Increments`; 60/60 per started minute, 1/1 per second).
    voice_initial_increment: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    voice_subsequent_increment: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    __table_args__ = (
        CheckConstraint("price_amount >= 0", name="price_not_negative"),
        CheckConstraint(
            "voice_initial_increment >= 1 AND voice_subsequent_increment >= 1", name="voice_increments_positive"
        ),
    )


class PlanAllowance(Base):
    __tablename__ = "plan_allowances"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"), index=True)
    unit: Mapped[Unit] = mapped_column(enum_column(Unit))
    zone: Mapped[Zone] = mapped_column(enum_column(Zone, 4))
    amount: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (UniqueConstraint("plan_id", "unit", "zone"),)


# --- Renewal and payments -------------------------------------------------------------------


class Promotion(Base):
    """A pricing rule: a discount (percent or fixed) or a bonus gift, automatic or by code."""

    __tablename__ = "promotions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[dict[str, str]]
    kind: Mapped[PromotionKind] = mapped_column(enum_column(PromotionKind))
    percent_off: Mapped[int] = mapped_column(Integer, default=0)
    amount_off: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    bonus: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    code: Mapped[str | None] = mapped_column(String(40), unique=True)
    plan_codes: Mapped[list[str] | None] = mapped_column(JSON)  # None: every plan
    first_renewal_only: Mapped[bool] = mapped_column(Boolean, default=False)
    exclusive: Mapped[bool] = mapped_column(Boolean, default=False)  # a code that replaces automatic discounts
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]
    max_uses: Mapped[int | None] = mapped_column(Integer)
    max_uses_per_account: Mapped[int | None] = mapped_column(Integer)
    # Reserved at order creation by a conditional UPDATE, released if the order is not paid.
    uses: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    __table_args__ = (
        CheckConstraint("uses >= 0", name="uses_not_negative"),
        CheckConstraint("percent_off >= 0 AND percent_off <= 100", name="percent_in_range"),
    )


class PromotionRedemption(Base):
    __tablename__ = "promotion_redemptions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    promotion_id: Mapped[int] = mapped_column(ForeignKey("promotions.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    status: Mapped[RedemptionStatus] = mapped_column(enum_column(RedemptionStatus, 10))
    created_at: Mapped[datetime]
    __table_args__ = (
        UniqueConstraint("promotion_id", "order_id", name="uq_promotion_redemptions_promotion_order"),
        Index("ix_promotion_redemptions_account", "promotion_id", "account_id", "status"),
    )


class RatingGroup(Base):
    """Which unit a Diameter Rating-Group is charged in (`catalog.rating`). A row with a
    Service-Identifier is for that service of the group only and wins over the group's own row."""

    __tablename__ = "rating_groups"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rating_group: Mapped[int] = mapped_column(BigInteger)
    service_identifier: Mapped[int | None] = mapped_column(BigInteger)
    unit: Mapped[Unit] = mapped_column(enum_column(Unit))
    updated_at: Mapped[datetime]
    __table_args__ = (
        Index("uq_rating_groups_group_service", "rating_group", "service_identifier", unique=True),
        # NULLs are distinct in a unique index: the group's own row needs one of its own.
        Index(
            "uq_rating_groups_group_any",
            "rating_group",
            unique=True,
            postgresql_where=text("service_identifier IS NULL"),
            sqlite_where=text("service_identifier IS NULL"),
        ),
    )
