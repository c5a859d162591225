"""Learner lock (no overlapping rounds across processes) and switchable suites.

- ``learner_locks``: one row per lock name; a holder owns it until ``expires_at`` (renewed by
  a heartbeat while a round runs), so a killed learner cannot block rounds forever.
- ``eval_suites.enabled``: the gate scores enabled suites only; removing a built-in suite
  disables it (it would come back at the next start if its row were deleted).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "learner_locks",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_learner_locks")),
    )
    with op.batch_alter_table("eval_suites") as batch:
        batch.add_column(sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("eval_suites") as batch:
        batch.drop_column("enabled")
    op.drop_table("learner_locks")
