"""Credit reservations given back are deleted, not kept at zero (usage/credit_store.py): drop the
zero rows left by earlier versions, so what a line's sessions hold is read from live rows only.

Revision ID: 0016d
Revises: 0016v
"""

from __future__ import annotations

from alembic import op

revision: str = "0016d"
down_revision: str | None = "0016v"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM credit_reservations WHERE reserved = 0")


def downgrade() -> None:
    pass  # the zero rows told nothing a session's own row does not
