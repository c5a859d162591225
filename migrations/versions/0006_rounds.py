"""One name per concept: learner runs are rounds in the database too.

``learner_runs`` -> ``rounds``, ``learner_iterations`` -> ``round_iterations``, and every
``run_id`` column -> ``round_id`` (also in ``gate_decisions``), as the API, the CLI and the code
say. The new tables are created and the rows copied (ids kept), rather than renamed in place,
so that constraint and index names follow the naming convention on SQLite as on Postgres.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"
RUN_COLUMNS = (
    "id, status, parent_version, base_version, candidate_version, feedback_from_seq, feedback_to_seq, "
    "config, metrics, decision, error, created_at, started_at, finished_at"
)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _seq() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _create(runs: str, iterations: str, ref: str) -> None:
    """The rounds table and its iterations table, under the given names (``ref``: the FK column)."""
    op.create_table(
        runs,
        sa.Column("id", _seq(), autoincrement=True, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parent_version", sa.String(64), nullable=True),
        sa.Column("base_version", sa.String(64), nullable=True),
        sa.Column("candidate_version", sa.String(64), nullable=True),
        sa.Column("feedback_from_seq", sa.BigInteger(), nullable=True),
        sa.Column("feedback_to_seq", sa.BigInteger(), nullable=True),
        sa.Column("config", _json(), nullable=False),
        sa.Column("metrics", _json(), nullable=False),
        sa.Column("decision", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(STATUSES, name=op.f(f"ck_{runs}_status")),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{runs}")),
    )
    op.create_index(op.f(f"ix_{runs}_status"), runs, ["status"])
    op.create_table(
        iterations,
        sa.Column("id", _seq(), autoincrement=True, nullable=False),
        sa.Column(ref, _seq(), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("metrics", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            [ref], [f"{runs}.id"], ondelete="CASCADE", name=op.f(f"fk_{iterations}_{ref}_{runs}")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{iterations}")),
        sa.UniqueConstraint(ref, "iteration", name=op.f(f"uq_{iterations}_{ref}_iteration")),
    )


def _move(old: tuple[str, str, str], new: tuple[str, str, str]) -> None:
    """Copy the rows of ``old`` (runs, iterations, FK column) into ``new``; repoint gate_decisions."""
    old_runs, old_its, old_ref = old
    new_runs, new_its, new_ref = new
    _create(*new)
    op.execute(f"INSERT INTO {new_runs} ({RUN_COLUMNS}) SELECT {RUN_COLUMNS} FROM {old_runs}")
    op.execute(
        f"INSERT INTO {new_its} (id, {new_ref}, iteration, metrics, created_at) "
        f"SELECT id, {old_ref}, iteration, metrics, created_at FROM {old_its}"
    )
    op.drop_index(f"ix_gate_decisions_{old_ref}", table_name="gate_decisions")
    with op.batch_alter_table("gate_decisions") as batch:  # batch: SQLite rebuilds the table
        batch.drop_constraint(f"fk_gate_decisions_{old_ref}_{old_runs}", type_="foreignkey")
        batch.alter_column(old_ref, new_column_name=new_ref)
    with op.batch_alter_table("gate_decisions") as batch:  # the new column exists now
        batch.create_foreign_key(
            f"fk_gate_decisions_{new_ref}_{new_runs}", new_runs, [new_ref], ["id"], ondelete="SET NULL"
        )
    op.create_index(f"ix_gate_decisions_{new_ref}", "gate_decisions", [new_ref])
    op.drop_table(old_its)
    op.drop_index(f"ix_{old_runs}_status", table_name=old_runs)
    op.drop_table(old_runs)
    if op.get_bind().dialect.name == "postgresql":  # the copied ids: the new sequences go on after them
        for table in (new_runs, new_its):
            op.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
            )


def upgrade() -> None:
    _move(("learner_runs", "learner_iterations", "run_id"), ("rounds", "round_iterations", "round_id"))


def downgrade() -> None:
    _move(("rounds", "round_iterations", "round_id"), ("learner_runs", "learner_iterations", "run_id"))
