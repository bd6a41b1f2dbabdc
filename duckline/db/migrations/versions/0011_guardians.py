"""guardians: the adult a minor names is kept apart from persons, so naming them does not take
the identity place their own registration needs

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IDENTITY = ("document_type", "document_hash", "document_cipher", "document_masked", "name_en", "name_zh", "birth_date")
persons = sa.table(
    "persons",
    *(sa.column(c) for c in ("id", *IDENTITY, "guardian_id", "kyc_status", "line_count", "created_at")),
)
guardians = sa.table("guardians", *(sa.column(c) for c in ("id", *IDENTITY, "created_at")))
accounts = sa.table("accounts", sa.column("person_id"))
images = sa.table("document_images", sa.column("person_id"))


def upgrade() -> None:
    op.create_table(
        "guardians",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("document_type", sa.String(length=20), nullable=False),
        sa.Column("document_hash", sa.String(length=64), nullable=False),
        sa.Column("document_cipher", sa.LargeBinary(), nullable=False),
        sa.Column("document_masked", sa.String(length=40), nullable=False),
        sa.Column("name_en", sa.String(length=100), nullable=True),
        sa.Column("name_zh", sa.String(length=30), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardians")),
    )
    with op.batch_alter_table("guardians", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_guardians_document_hash"), ["document_hash"], unique=False)
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_constraint("fk_persons_guardian_id_persons", type_="foreignkey")

    bind = op.get_bind()
    adults = {row.id: row for row in bind.execute(sa.select(persons).where(persons.c.id.in_(_named())))}
    for minor_id, adult_id, created_at in bind.execute(
        sa.select(persons.c.id, persons.c.guardian_id, persons.c.created_at).where(persons.c.guardian_id.is_not(None))
    ).all():
        adult = adults[adult_id]
        values = {c: getattr(adult, c) for c in IDENTITY}
        new_id = bind.execute(
            sa.insert(guardians).values(**values, created_at=created_at).returning(guardians.c.id)
        ).scalar_one()
        bind.execute(sa.update(persons).where(persons.c.id == minor_id).values(guardian_id=new_id))
    # A person that was only ever named as an adult frees the identity place it was taking.
    bind.execute(
        sa.delete(persons).where(
            persons.c.id.in_(list(adults)),
            persons.c.line_count == 0,
            persons.c.id.not_in(sa.select(accounts.c.person_id).where(accounts.c.person_id.is_not(None))),
            persons.c.id.not_in(sa.select(images.c.person_id)),
        )
    )

    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_persons_guardian_id_guardians"), "guardians", ["guardian_id"], ["id"]
        )


def _named() -> sa.Select[tuple[int]]:
    return sa.select(persons.c.guardian_id).where(persons.c.guardian_id.is_not(None))


def downgrade() -> None:
    """Each adult becomes a person again: the one with their identity if there is one, else a new
    record that holds no line."""
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_constraint("fk_persons_guardian_id_guardians", type_="foreignkey")
    bind = op.get_bind()
    for minor_id, guardian_id in bind.execute(
        sa.select(persons.c.id, persons.c.guardian_id).where(persons.c.guardian_id.is_not(None))
    ).all():
        guardian = bind.execute(sa.select(guardians).where(guardians.c.id == guardian_id)).one()
        person_id = bind.execute(
            sa.select(persons.c.id).where(persons.c.document_hash == guardian.document_hash)
        ).scalar()
        if person_id is None:
            values = {c: getattr(guardian, c) for c in IDENTITY}
            person_id = bind.execute(
                sa.insert(persons)
                .values(**values, kyc_status="verified", line_count=0, created_at=guardian.created_at)
                .returning(persons.c.id)
            ).scalar_one()
        bind.execute(sa.update(persons).where(persons.c.id == minor_id).values(guardian_id=person_id))
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f("fk_persons_guardian_id_persons"), "persons", ["guardian_id"], ["id"])
    with op.batch_alter_table("guardians", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guardians_document_hash"))
    op.drop_table("guardians")
