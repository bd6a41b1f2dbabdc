"""payment outcomes: our reference on every payment, and payments whose outcome is unknown

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 10:00:00.000000

Every payment gets `reference`, unique, set when the row is inserted (before any provider call).
Existing payments get the reference they were already sent with ("pay_" and the id on ten
digits), so the providers still find them by it. The sandbox keeps the merchant's reference too.
Payments whose outcome was never learnt may have been charged: those marked failed only because
the provider did not answer ("provider_unavailable"), and open ones the provider's answer never
reached (no provider reference). They become "unknown", and reconciliation asks the provider.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reference", sa.String(length=40), nullable=True))
    padded = (
        "printf('pay_%010d', id)" if op.get_bind().dialect.name == "sqlite" else "'pay_' || lpad(id::text, 10, '0')"
    )
    op.execute(f"UPDATE payments SET reference = {padded}")  # noqa: S608 (no input: one of two constants)
    op.execute(
        "UPDATE payments SET status = 'unknown', failure_code = NULL "
        "WHERE (status = 'failed' AND failure_code = 'provider_unavailable') "
        "OR (status IN ('pending', 'requires_action') AND provider_ref IS NULL)"
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.alter_column("reference", existing_type=sa.String(length=40), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_payments_reference"), ["reference"])
    with op.batch_alter_table("sandbox_payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reference", sa.String(length=60), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sandbox_payments", schema=None) as batch_op:
        batch_op.drop_column("reference")
    op.execute("UPDATE payments SET status = 'pending' WHERE status = 'unknown'")  # unanswered, as before
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_payments_reference"), type_="unique")
        batch_op.drop_column("reference")
