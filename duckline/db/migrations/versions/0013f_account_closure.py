"""account closure: closed accounts, and when what they leave behind is erased

Revision ID: 0013f
Revises: 0013e
Create Date: 2026-12-07 16:30:00.000000

`accounts.closed_at` refuses sign-in from the moment an account is closed. `account_closures`
keeps one row per closed account: when its contact details and its identity record are due to be
erased (the retention the closure page stated), and when they were. A saved card keeps its expiry
(`saved_payment_methods.card_expiry`, "MM/YYYY") to show it in the list of saved methods.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013f"
down_revision: str | None = "0013e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("saved_payment_methods", schema=None) as batch_op:
        batch_op.add_column(sa.Column("card_expiry", sa.String(length=7), nullable=True))
    op.create_table(
        "account_closures",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("account_id", BIG_ID, nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erase_contact_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erase_identity_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contact_erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("identity_erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_account_closures_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_closures")),
        sa.UniqueConstraint("account_id", name=op.f("uq_account_closures_account_id")),
    )


def downgrade() -> None:
    op.drop_table("account_closures")
    with op.batch_alter_table("saved_payment_methods", schema=None) as batch_op:
        batch_op.drop_column("card_expiry")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("closed_at")
