"""diameter peer states: what each running Gy server last said of its peers, for the console

Revision ID: 0016c
Revises: 0015m
Create Date: 2026-12-08 01:30:00.000000

`duckline ocs` is a process of its own (several may share a port), so the console cannot ask it:
each server process upserts one row per allowed peer (state, connections, counters, last event)
on every peer event and every few seconds, and marks its rows not running when it stops.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016c"
down_revision: str | None = "0015m"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "diameter_peer_states",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.Column("instance", sa.String(length=100), nullable=False),
        sa.Column("peer_host", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("state_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("connections", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.Column("refused", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("dropped", sa.BigInteger(), nullable=False),
        sa.Column("suspects", sa.BigInteger(), nullable=False),
        sa.Column("last_event", sa.String(length=200), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("running", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_diameter_peer_states")),
        sa.UniqueConstraint("node", "instance", "peer_host", name="uq_diameter_peer_states_peer"),
    )


def downgrade() -> None:
    op.drop_table("diameter_peer_states")
