"""credit session signals: the OCS re-authorizes or aborts sessions; stale sessions are closed

Revision ID: 0016r
Revises: 0016d
Create Date: 2026-12-08 01:20:00.000000

`credit_sessions` keeps the Origin-Host and -Realm of the element that opened a session (where a
RAR or ASR of ours goes), why Duckline closed it without a CCR-TERMINATE (`closed_reason`: its next
request gets 5002) and when its element last left a request of ours unanswered.
`credit_session_signals` is the outbox of those requests: written with the line change that calls
for one, sent by the OCS.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016r"
down_revision: str | None = "0016d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("credit_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin_host", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("origin_realm", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("closed_reason", sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column("unanswered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_credit_sessions_status_updated", ["status", "updated_at"], unique=False)
    op.create_table(
        "credit_session_signals",
        sa.Column("id", ID, nullable=False),
        sa.Column("credit_session_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=10), nullable=True),
        sa.Column("result_code", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["credit_session_id"],
            ["credit_sessions.id"],
            name=op.f("fk_credit_session_signals_credit_session_id_credit_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_session_signals")),
    )
    with op.batch_alter_table("credit_session_signals", schema=None) as batch_op:
        batch_op.create_index("ix_credit_session_signals_session", ["credit_session_id"], unique=False)
        batch_op.create_index(
            "ix_credit_session_signals_pending",
            ["id"],
            unique=False,
            postgresql_where=sa.text("finished_at IS NULL"),
            sqlite_where=sa.text("finished_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("credit_session_signals", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_session_signals_pending")
        batch_op.drop_index("ix_credit_session_signals_session")
    op.drop_table("credit_session_signals")
    with op.batch_alter_table("credit_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_sessions_status_updated")
        batch_op.drop_column("unanswered_at")
        batch_op.drop_column("closed_reason")
        batch_op.drop_column("origin_realm")
        batch_op.drop_column("origin_host")
