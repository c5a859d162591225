"""Ingest entries the database refuses are dead-lettered with their error, not retried forever.

- ``ingest_dead_letters``: one row per refused entry (keyed by its sha256, so a redelivered
  entry is kept once): the entry's JSON text, the database's error and its SQLSTATE.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ingest_dead_letters",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("sqlstate", sa.String(5), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_dead_letters")),
    )
    op.create_index(
        op.f("ix_ingest_dead_letters_created_at"), "ingest_dead_letters", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_ingest_dead_letters_created_at"), table_name="ingest_dead_letters")
    op.drop_table("ingest_dead_letters")
