"""audit log filters: indexes for who, subject, action and time

Revision ID: 0013b
Revises: 0013a
Create Date: 2026-12-07 16:30:00.000000

The console's audit page and the staff API filter the log by actor, target, action and a time
window, newest first; each filter gets an index ending in the id the pages are ordered by.
Existing entries are not touched: the log is never edited.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013b"
down_revision: str | None = "0013a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_actor", ["actor_id", "id"], unique=False)
        batch_op.create_index("ix_audit_log_target", ["target", "id"], unique=False)
        batch_op.create_index("ix_audit_log_action", ["action", "id"], unique=False)
        batch_op.create_index("ix_audit_log_at", ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_at")
        batch_op.drop_index("ix_audit_log_action")
        batch_op.drop_index("ix_audit_log_target")
        batch_op.drop_index("ix_audit_log_actor")
