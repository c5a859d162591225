"""Operators can quarantine feedback: ``feedback.disabled_at`` and ``feedback.disabled_reason``.

A disabled item (``disabled_at`` set) never trains or measures: the learner's feedback scan
passes over it and counts it (``store.queries.feedback_since``). Both columns are nullable, so
the upgrade leaves every stored item enabled; the downgrade drops them (what was disabled is
enabled again, as the older schema cannot say otherwise).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("disabled_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("disabled_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("disabled_reason")
        batch.drop_column("disabled_at")
