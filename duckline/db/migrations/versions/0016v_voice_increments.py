"""voice charging increments on plans; a credit-control session's used total and emergency flag

Revision ID: 0016v
Revises: 0016c
Create Date: 2026-12-08 01:40:00.000000

`plans.voice_initial_increment` / `voice_subsequent_increment`: the blocks of seconds a call is
charged in (1/1, per second, for every plan so far). `credit_sessions.seconds_used`: the voice
seconds the session's requests reported used in all, which the increments apply to; `credit_sessions.emergency`:
a call to an emergency number, granted and never charged. `Zone.INTERNATIONAL` ("INTL") needs no
change: zones are stored as VARCHAR(4) with no CHECK on their values.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016v"
down_revision: str | None = "0016c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("voice_initial_increment", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("voice_subsequent_increment", sa.Integer(), server_default="1", nullable=False))
        batch_op.create_check_constraint(
            op.f("ck_plans_voice_increments_positive"),
            "voice_initial_increment >= 1 AND voice_subsequent_increment >= 1",
        )
    with op.batch_alter_table("credit_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seconds_used", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("emergency", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("credit_sessions", schema=None) as batch_op:
        batch_op.drop_column("emergency")
        batch_op.drop_column("seconds_used")
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_plans_voice_increments_positive"), type_="check")
        batch_op.drop_column("voice_subsequent_increment")
        batch_op.drop_column("voice_initial_increment")
