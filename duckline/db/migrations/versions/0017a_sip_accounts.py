"""SIP accounts: one per line, and the view Kamailio authenticates against

Revision ID: 0017a
Revises: 0016r
Create Date: 2026-12-08 02:50:00.000000

`sip_accounts` keeps each line's SIP digest hashes (HA1 and HA1b, never the password).
`kamailio_subscriber` is what Kamailio's auth_db reads (user_column=username,
domain_column=domain, password_column=ha1, password_column_2=ha1b, calculate_ha1=0): the accounts
whose line can use service now — active and not suspended, as duckline/lines/states.py
`can_use_service` says (tests/sip/test_accounts.py holds the two together) — with `rpid`, the
number with its "+", for P-Asserted-Identity.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017a"
down_revision: str | None = "0016r"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Standard SQL, the same on SQLite and PostgreSQL.
KAMAILIO_SUBSCRIBER = """
CREATE VIEW kamailio_subscriber AS
SELECT s.id AS id, s.username AS username, s.domain AS domain, s.ha1 AS ha1, s.ha1b AS ha1b,
       '+' || s.username AS rpid
FROM sip_accounts s JOIN lines l ON l.id = s.line_id
WHERE l.status = 'active' AND l.suspension IS NULL
"""


def upgrade() -> None:
    op.create_table(
        "sip_accounts",
        sa.Column("id", ID, nullable=False),
        sa.Column("line_id", ID, nullable=False),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("domain", sa.String(length=128), nullable=False),
        sa.Column("ha1", sa.String(length=32), nullable=False),
        sa.Column("ha1b", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"], name=op.f("fk_sip_accounts_line_id_lines")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sip_accounts")),
        sa.UniqueConstraint("line_id", name=op.f("uq_sip_accounts_line_id")),
        sa.UniqueConstraint("username", "domain", name="uq_sip_accounts_username_domain"),
    )
    op.execute(KAMAILIO_SUBSCRIBER)


def downgrade() -> None:
    op.execute("DROP VIEW kamailio_subscriber")
    op.drop_table("sip_accounts")
