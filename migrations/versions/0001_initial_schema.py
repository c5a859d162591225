"""Initial schema.

Tables: interactions, feedback, idempotency keys, model versions, learner runs and iterations,
gate decisions, audit log, eval suites, suite scores.

Frozen DDL (it does not import ``store.models``, so later model edits cannot change what this
revision creates). See ``store/models.py`` for what each table and column means.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _seq() -> sa.types.TypeEngine:
    # SQLite only auto-increments an INTEGER PRIMARY KEY.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id(name: str = "id") -> sa.Column:
    return sa.Column(name, _seq(), autoincrement=True, nullable=False)


def _created() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(), nullable=False)


def _pk(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*columns, name=op.f(f"pk_{table}"))


def _check(table: str, name: str, condition: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(condition, name=op.f(f"ck_{table}_{name}"))


def _index(table: str, *columns: str, name: str | None = None) -> None:
    op.create_index(name or op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns))


def upgrade() -> None:
    op.create_table(
        "interactions",
        _id("seq"),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("stored_at", sa.DateTime(), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("messages", _json(), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("choices", _json(), nullable=False),
        sa.Column("finish_reason", sa.String(32), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        _pk("interactions", "seq"),
        sa.UniqueConstraint("id", name=op.f("uq_interactions_id")),
    )
    _index("interactions", "created_at")
    _index("interactions", "model_version", "seq", name="ix_interactions_model_version_seq")

    op.create_table(
        "feedback",
        _id("seq"),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("completion_id", sa.String(64), nullable=False),
        sa.Column("choice_index", sa.Integer(), nullable=False),
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("label", sa.String(8), nullable=True),
        sa.Column("correction", sa.Text(), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("verifier", _json(), nullable=True),
        sa.Column("task", sa.String(128), nullable=True),
        sa.Column("metadata", _json(), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("stored_at", sa.DateTime(), nullable=False),
        _check("feedback", "label", "label IS NULL OR label IN ('up', 'down')"),
        _check("feedback", "reward_range", "reward IS NULL OR (reward >= -1 AND reward <= 1)"),
        _pk("feedback", "seq"),
        sa.UniqueConstraint("id", name=op.f("uq_feedback_id")),
    )
    _index("feedback", "completion_id")
    _index("feedback", "task")

    op.create_table(
        "idempotency_keys",
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response", _json(), nullable=False),
        _created(),
        _pk("idempotency_keys", "caller", "key"),
    )

    op.create_table(
        "model_versions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("parent_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("snapshot_path", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("metrics", _json(), nullable=False),
        sa.Column("meta", _json(), nullable=False),
        _created(),
        sa.Column("promoted_at", sa.DateTime(), nullable=True),
        _check("model_versions", "status", "status IN ('candidate', 'promoted', 'rejected', 'retired')"),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["model_versions.id"],
            name=op.f("fk_model_versions_parent_id_model_versions"),
        ),
        _pk("model_versions", "id"),
    )
    _index("model_versions", "status")

    op.create_table(
        "learner_runs",
        _id(),
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
        _created(),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        _check(
            "learner_runs", "status", "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"
        ),
        _pk("learner_runs", "id"),
    )
    _index("learner_runs", "status")

    op.create_table(
        "learner_iterations",
        _id(),
        sa.Column("run_id", _seq(), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("metrics", _json(), nullable=False),
        _created(),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["learner_runs.id"],
            ondelete="CASCADE",
            name=op.f("fk_learner_iterations_run_id_learner_runs"),
        ),
        _pk("learner_iterations", "id"),
        sa.UniqueConstraint("run_id", "iteration", name=op.f("uq_learner_iterations_run_id_iteration")),
    )

    op.create_table(
        "gate_decisions",
        _id(),
        sa.Column("run_id", _seq(), nullable=True),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("promote", sa.Boolean(), nullable=False),
        sa.Column("reasons", _json(), nullable=False),
        sa.Column("checks", _json(), nullable=False),
        _created(),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["learner_runs.id"],
            ondelete="SET NULL",
            name=op.f("fk_gate_decisions_run_id_learner_runs"),
        ),
        _pk("gate_decisions", "id"),
    )
    _index("gate_decisions", "run_id")
    _index("gate_decisions", "version")

    op.create_table(
        "audit_log",
        _id(),
        sa.Column("who", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", _json(), nullable=False),
        _created(),
        _pk("audit_log", "id"),
    )
    _index("audit_log", "action")
    _index("audit_log", "created_at")

    op.create_table(
        "eval_suites",
        _id(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("skill", sa.String(128), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("items_path", sa.Text(), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("n_items", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        _created(),
        _check("eval_suites", "source", "source IN ('builtin', 'operator')"),
        _pk("eval_suites", "id"),
        sa.UniqueConstraint("name", "version", name=op.f("uq_eval_suites_name_version")),
    )

    op.create_table(
        "suite_scores",
        _id(),
        sa.Column("suite", sa.String(128), nullable=False),
        sa.Column("suite_version", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("details", _json(), nullable=False),
        _created(),
        _pk("suite_scores", "id"),
        sa.UniqueConstraint(
            "suite",
            "suite_version",
            "model_version",
            name=op.f("uq_suite_scores_suite_suite_version_model_version"),
        ),
    )
    _index("suite_scores", "model_version")


def downgrade() -> None:
    # Reverse order of creation: children before the tables their foreign keys name.
    for table in (
        "suite_scores",
        "eval_suites",
        "audit_log",
        "gate_decisions",
        "learner_iterations",
        "learner_runs",
        "model_versions",
        "idempotency_keys",
        "feedback",
        "interactions",
    ):
        op.drop_table(table)  # drops its indexes and constraints with it
