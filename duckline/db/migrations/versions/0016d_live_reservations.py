"""Online charging's hot path (usage/credit_store.py):

* credit reservations given back are deleted, not kept at zero: drop the zero rows left by earlier
  versions, so what a line's sessions hold is read from live rows only;
* no foreign keys from credit_reservations to credit_sessions, nor from credit_sessions to lines:
  a batch inserts them by the hundred, and each key costs a check per row (as migration 0005 found
  for usage records). The batch writes both in the transaction that locked the line, and neither
  sessions nor lines are ever deleted.

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
    with op.batch_alter_table("credit_reservations", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_credit_reservations_credit_session_id_credit_sessions"), type_="foreignkey")
    with op.batch_alter_table("credit_sessions", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_credit_sessions_line_id_lines"), type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("credit_sessions", schema=None) as batch_op:
        batch_op.create_foreign_key(op.f("fk_credit_sessions_line_id_lines"), "lines", ["line_id"], ["id"])
    with op.batch_alter_table("credit_reservations", schema=None) as batch_op:
        batch_op.create_foreign_key(
            op.f("fk_credit_reservations_credit_session_id_credit_sessions"),
            "credit_sessions",
            ["credit_session_id"],
            ["id"],
        )
    # The zero rows told nothing a session's own row does not: not brought back.
