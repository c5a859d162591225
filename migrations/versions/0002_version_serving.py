"""Serving state of model versions: which one serves now, when each served, its engine checksum.

- ``serving``: true on exactly the version the serving engine holds (set by the hot swap).
- ``served_at``: when the version last started serving (rollback's "previous" is the most
  recent other one).
- ``engine_checksum``: the checksum of the weights as the serving engine holds them after a
  load; a later swap to the same version must reproduce it (exact rollback).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:  # batch: SQLite rebuilds the table
        batch.add_column(sa.Column("serving", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("served_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("engine_checksum", sa.String(64), nullable=True))
    op.create_index(op.f("ix_model_versions_serving"), "model_versions", ["serving"])


def downgrade() -> None:
    op.drop_index(op.f("ix_model_versions_serving"), table_name="model_versions")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("engine_checksum")
        batch.drop_column("served_at")
        batch.drop_column("serving")
