"""usage hot path: no per-row foreign key checks on usage records and ledger entries

Usage ingest writes a usage record and one or more ledger rows per CDR, and on PostgreSQL each of
these foreign keys cost a look-up (and a share lock on the `lines` row) per inserted row. What they
guarded is guaranteed where the rows are written: `usage.ingest` takes the line id from `lines` in
the same transaction (lines are never deleted), a ledger row's line is its bucket's line, and its
usage record is inserted in the same transaction. `ledger_entries.bucket_id` keeps its foreign key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 07:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The ledger first: on SQLite a batch copies the table, and the ledger refers to usage_records.
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_ledger_entries_line_id_lines"), type_="foreignkey")
        batch_op.drop_constraint(op.f("fk_ledger_entries_usage_record_id_usage_records"), type_="foreignkey")
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_usage_records_line_id_lines"), type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_foreign_key(op.f("fk_usage_records_line_id_lines"), "lines", ["line_id"], ["id"])
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_foreign_key(
            op.f("fk_ledger_entries_usage_record_id_usage_records"), "usage_records", ["usage_record_id"], ["id"]
        )
        batch_op.create_foreign_key(op.f("fk_ledger_entries_line_id_lines"), "lines", ["line_id"], ["id"])
