"""support desk: who a ticket is assigned to, why it was closed, internal notes, and links

Revision ID: 0013a
Revises: 0013f
Create Date: 2026-12-07 16:30:00.000000

Tickets get an assignee and a close reason; a ticket's messages can be internal notes (between
staff, never shown to the subscriber); ticket_links ties a ticket to the orders, payments and
reconciliation cases it concerns. Existing rows keep their meaning: no ticket is assigned, no
message is internal.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013a"
down_revision: str | None = "0013f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignee_id", BIG_ID, nullable=True))
        batch_op.add_column(sa.Column("close_reason", sa.String(length=30), nullable=True))
        batch_op.create_index(batch_op.f("ix_tickets_assignee_id"), ["assignee_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_tickets_assignee_id_accounts"), "accounts", ["assignee_id"], ["id"])
    with op.batch_alter_table("ticket_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("internal", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "ticket_links",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("ticket_id", BIG_ID, nullable=False),
        sa.Column("target", sa.String(length=10), nullable=False),
        sa.Column("target_id", BIG_ID, nullable=False),
        sa.Column("created_by", BIG_ID, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_links_ticket_id_tickets")),
        sa.ForeignKeyConstraint(["created_by"], ["accounts.id"], name=op.f("fk_ticket_links_created_by_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_links")),
        sa.UniqueConstraint("ticket_id", "target", "target_id", name=op.f("uq_ticket_links_ticket_id")),
    )
    with op.batch_alter_table("ticket_links", schema=None) as batch_op:
        batch_op.create_index("ix_ticket_links_target", ["target", "target_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ticket_links", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_links_target")
    op.drop_table("ticket_links")
    with op.batch_alter_table("ticket_messages", schema=None) as batch_op:
        batch_op.drop_column("internal")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_tickets_assignee_id_accounts"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_tickets_assignee_id"))
        batch_op.drop_column("close_reason")
        batch_op.drop_column("assignee_id")
