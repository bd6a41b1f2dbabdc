"""credit sessions: online charging reservations (Diameter credit control)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "credit_sessions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("session_id", sa.String(length=255), nullable=False),
        sa.Column("line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("zone", sa.String(length=4), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_request_number", sa.Integer(), nullable=False),
        sa.Column("last_answer", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("reserved >= 0", name=op.f("ck_credit_sessions_reserved_not_negative")),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"], name=op.f("fk_credit_sessions_line_id_lines")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_sessions")),
        sa.UniqueConstraint("session_id", name=op.f("uq_credit_sessions_session_id")),
    )
    with op.batch_alter_table("credit_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_credit_sessions_line_open", ["line_id", "status", "unit", "zone"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("credit_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_sessions_line_open")
    op.drop_table("credit_sessions")
