"""outbox references: one reference per message for every attempt, claim tokens for short renewed
leases, codes first, and one-time codes struck from stored messages once they are settled

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 10:00:00.000000
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the templates carrying a code ("otp", "email_verify") were rendered with: six digits.
_CODE = re.compile(r"(?<!\d)\d{6}(?!\d)")
_MASK = "••••••"


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("priority", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("reference", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("one_time_code", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    # Messages queued before this revision get a reference from their id.
    op.execute("UPDATE notifications SET reference = 'dl-' || CAST(id AS VARCHAR(20)) WHERE reference IS NULL")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("reference", existing_type=sa.String(length=64), nullable=False)
    _codes_already_stored()


def _codes_already_stored() -> None:
    """Codes in messages already settled are struck now; those still to go are marked to be."""
    notifications = sa.table(
        "notifications",
        sa.column("id", sa.BigInteger()),
        sa.column("template", sa.String()),
        sa.column("status", sa.String()),
        sa.column("body", sa.Text()),
        sa.column("html", sa.Text()),
        sa.column("priority", sa.Integer()),
        sa.column("one_time_code", sa.String()),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(notifications.c.id, notifications.c.status, notifications.c.body, notifications.c.html).where(
            notifications.c.template.in_(("otp", "email_verify"))
        )
    ).all()
    for row_id, status, body, html in rows:
        if status in ("queued", "sending"):
            found = _CODE.search(body)
            values = {"priority": 0, "one_time_code": found.group() if found else None}
        else:
            values = {"body": _CODE.sub(_MASK, body), "html": _CODE.sub(_MASK, html) if html else html}
        connection.execute(sa.update(notifications).where(notifications.c.id == row_id).values(**values))


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
        batch_op.drop_column("one_time_code")
        batch_op.drop_column("reference")
        batch_op.drop_column("priority")
        batch_op.drop_column("claim")
