"""Interactions say which endpoint made them: chat, completion (raw prompt) or response.

A text completion has no chat messages (its prompt is in ``params.prompt``) and a response is
stored as the chat it was translated to; the learner reads a prompt differently for each.
Existing rows were all chat completions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("interactions") as batch:  # batch: SQLite rebuilds the table
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="chat"))


def downgrade() -> None:
    with op.batch_alter_table("interactions") as batch:
        batch.drop_column("kind")
