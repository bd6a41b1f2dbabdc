"""line self-care: a lost or stolen phone suspends a line; a moved eSIM retires its old profile

Revision ID: 0013e
Revises: 0013d
Create Date: 2026-12-07 16:30:00.000000

`lines.suspension` (lost, stolen) stops service over whatever status the line has, so expiry,
grace and recycling go on as usual and a renewal does not lift it. `retired_esim_profiles` keeps
the ICCID and activation code of every profile replaced by a new one, so they can be refused.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0013e"
down_revision: str | None = "0013d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suspension", sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "retired_esim_profiles",
        sa.Column("id", ID, nullable=False),
        sa.Column("line_id", ID, nullable=False),
        sa.Column("iccid", sa.String(length=20), nullable=False),
        sa.Column("smdp_address", sa.String(length=200), nullable=False),
        sa.Column("matching_id", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_by", ID, nullable=True),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"], name=op.f("fk_retired_esim_profiles_line_id_lines")),
        sa.ForeignKeyConstraint(
            ["retired_by"], ["accounts.id"], name=op.f("fk_retired_esim_profiles_retired_by_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retired_esim_profiles")),
        sa.UniqueConstraint("iccid", name=op.f("uq_retired_esim_profiles_iccid")),
        sa.UniqueConstraint("matching_id", name=op.f("uq_retired_esim_profiles_matching_id")),
    )
    op.create_index(op.f("ix_retired_esim_profiles_line_id"), "retired_esim_profiles", ["line_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_retired_esim_profiles_line_id"), table_name="retired_esim_profiles")
    op.drop_table("retired_esim_profiles")
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.drop_column("suspended_at")
        batch_op.drop_column("suspension")
