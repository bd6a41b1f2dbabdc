"""provider refunds: one refund row per refund the provider names, per payment

A refund made at the provider (its dashboard) is recorded when its notification arrives; a
provider that reports refunds one by one names each (WeChat Pay's refund_id), and a repeated
notice must not record it twice.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_refunds_payment_provider_ref", ["payment_id", "provider_ref"])


def downgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_constraint("uq_refunds_payment_provider_ref", type_="unique")
