"""one delivery mechanism: an attempt row per try; webhooks and the sandbox's webhooks leased alike

Revision ID: 0014a
Revises: 0013b
Create Date: 2026-12-07 19:40:00.000000

Notifications, integrators' webhooks and the sandbox's webhooks are now claimed, sent and recorded
by one mechanism (services/delivery.py), which needs the same columns on each table: webhook
deliveries gain the claim token of the worker round holding them; the sandbox's webhooks gain a
status, an attempt count, a lease, a claim and the last error (existing ones: delivered when they
were answered, lost when they were meant to be lost, pending otherwise). `delivery_attempts` keeps
one row per try of any of them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014a"
down_revision: str | None = "0013b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "delivery_attempts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("subject", sa.String(length=20), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("claim", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=10), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    op.create_index("ix_delivery_attempts_subject", "delivery_attempts", ["subject", "subject_id", "id"])
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim", sa.String(length=32), nullable=True))
    with op.batch_alter_table("sandbox_webhooks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=10), server_default="pending", nullable=False))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("claim", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.String(length=500), nullable=True))
        batch_op.create_index("ix_sandbox_webhooks_due", ["status", "deliver_after", "id"], unique=False)
    op.execute("UPDATE sandbox_webhooks SET status = 'delivered' WHERE deliveries > 0")
    op.execute("UPDATE sandbox_webhooks SET status = 'lost' WHERE lost AND deliveries = 0")


def downgrade() -> None:
    with op.batch_alter_table("sandbox_webhooks", schema=None) as batch_op:
        batch_op.drop_index("ix_sandbox_webhooks_due")
        batch_op.drop_column("last_error")
        batch_op.drop_column("claim")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("attempts")
        batch_op.drop_column("status")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_column("claim")
    op.drop_index("ix_delivery_attempts_subject", table_name="delivery_attempts")
    op.drop_table("delivery_attempts")
