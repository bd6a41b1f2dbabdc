"""rating groups: which bucket a Diameter rating group draws on; reservations per rating group

Revision ID: 0015m
Revises: 0014a
Create Date: 2026-12-07 23:10:00.000000

`rating_groups` maps a Rating-Group (and, when one row names it, a Service-Identifier) of a
Multiple-Services-Credit-Control to the unit it is charged in; seeded with the defaults of
`duckline.catalog.rating.DEFAULTS` (10 and 11 data, 100 voice, 200 SMS). `credit_reservations`
holds what a credit-control session reserved, one row per rating group (-1: units asked outside
any rating group), replacing the single `credit_sessions.reserved` as what other sessions must
leave alone; open reservations move over as rating group -1 (`credit_sessions.reserved` stays,
as the session's total for display).
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0015m"
down_revision: str | None = "0014a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# As duckline.catalog.rating.DEFAULTS (copied: a migration must not change when the code does).
DEFAULTS = [(10, "data_bytes"), (11, "data_bytes"), (100, "voice_seconds"), (200, "sms")]


def upgrade() -> None:
    rating_groups = op.create_table(
        "rating_groups",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("rating_group", sa.BigInteger(), nullable=False),
        sa.Column("service_identifier", sa.BigInteger(), nullable=True),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rating_groups")),
    )
    with op.batch_alter_table("rating_groups", schema=None) as batch_op:
        batch_op.create_index("uq_rating_groups_group_service", ["rating_group", "service_identifier"], unique=True)
        batch_op.create_index(
            "uq_rating_groups_group_any",
            ["rating_group"],
            unique=True,
            postgresql_where=sa.text("service_identifier IS NULL"),
            sqlite_where=sa.text("service_identifier IS NULL"),
        )
    op.bulk_insert(
        rating_groups,
        [
            {"rating_group": group, "service_identifier": None, "unit": unit, "updated_at": datetime.now(UTC)}
            for group, unit in DEFAULTS
        ],
    )

    op.create_table(
        "credit_reservations",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("credit_session_id", BIG_ID, nullable=False),
        sa.Column("line_id", BIG_ID, nullable=False),
        sa.Column("rating_group", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("zone", sa.String(length=4), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("reserved >= 0", name=op.f("ck_credit_reservations_reserved_not_negative")),
        sa.ForeignKeyConstraint(
            ["credit_session_id"],
            ["credit_sessions.id"],
            name=op.f("fk_credit_reservations_credit_session_id_credit_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_reservations")),
        sa.UniqueConstraint("credit_session_id", "rating_group", name="uq_credit_reservations_session_group"),
    )
    with op.batch_alter_table("credit_reservations", schema=None) as batch_op:
        batch_op.create_index("ix_credit_reservations_line", ["line_id", "unit", "zone"], unique=False)
    op.execute(
        "INSERT INTO credit_reservations"
        " (credit_session_id, line_id, rating_group, unit, zone, reserved, expires_at)"
        " SELECT id, line_id, -1, unit, zone, reserved, expires_at FROM credit_sessions"
        " WHERE status = 'open' AND reserved > 0"
    )


def downgrade() -> None:
    with op.batch_alter_table("credit_reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_reservations_line")
    op.drop_table("credit_reservations")
    with op.batch_alter_table("rating_groups", schema=None) as batch_op:
        batch_op.drop_index("uq_rating_groups_group_any")
        batch_op.drop_index("uq_rating_groups_group_service")
    op.drop_table("rating_groups")
