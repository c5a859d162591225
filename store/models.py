"""The database schema: SQLAlchemy 2.0 typed models (Alembic migrations in ``migrations/``).

Tables and who writes them:

===================  =======================================================================
interactions         one row per finished chat completion (gateway, via the ingest path)
feedback             rewards, labels, corrections, references + verifiers (gateway, ingest);
                     disabled by operators (admin API)
idempotency_keys     the first answer to each ``Idempotency-Key`` (gateway, ingest)
model_versions       every weights version: base, candidates, promoted, rejected, retired
rounds               one row per learner round; ``round_iterations`` its per-step metrics
gate_decisions       the promotion gate's verdict on a candidate, with reasons and checks
audit_log            who did what (promote, rollback, suite upload, key use by admins)
eval_suites          regression suites (builtin files or operator uploads), versioned
suite_scores         cached suite scores per model version (base and each candidate)
ingest_dead_letters  ingest entries the database refused, with the error (ingest)
===================  =======================================================================

Conventions: timestamps are UTC (stored naive, returned aware, see ``UTCDateTime``); JSON
columns are JSONB on Postgres; ``seq`` columns are insertion-ordered integers used as cursors.
``feedback.completion_id`` has no foreign key on purpose: feedback may be persisted before its
interaction (both travel through the ingest stream, possibly through different consumers).
The gateway checks the id was issued before accepting; ``store.queries.feedback_since`` waits
for the interaction before handing feedback to the learner.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Constraint names are deterministic so migrations (and their downgrades) can name them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

VERSION_STATUSES = ("candidate", "promoted", "rejected", "retired")
ROUND_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
SUITE_SOURCES = ("builtin", "operator")
LABELS = ("up", "down")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone; we store UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias), not BIGINT.
SeqType = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Interaction(Base):
    """One finished chat completion, text completion or response; streams are stored assembled."""

    __tablename__ = "interactions"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # chatcmpl-/cmpl-<32 hex>, resp_<32 hex>
    # chat, completion (raw prompt in params.prompt, no messages) or response (stored as its chat)
    kind: Mapped[str] = mapped_column(String(16), default="chat", server_default="chat")  # 0004
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # request start
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    model: Mapped[str] = mapped_column(String(128))  # the public model id
    model_version: Mapped[str] = mapped_column(String(64))  # indexed with seq, below
    caller: Mapped[str] = mapped_column(String(64))  # API key id (key_<12 hex>), never a key
    messages: Mapped[list[Any]] = mapped_column(JSONType)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)  # sampling params, minus messages
    response: Mapped[str] = mapped_column(Text)  # text of choice 0
    choices: Mapped[list[Any]] = mapped_column(JSONType)  # [{index, message, finish_reason}]
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    stream: Mapped[bool] = mapped_column(Boolean)


class Feedback(Base):
    """A reward, label, correction or reference answer (+ verifier) on one completion."""

    __tablename__ = "feedback"
    __table_args__ = (
        CheckConstraint("reward IS NULL OR (reward >= -1 AND reward <= 1)", name="reward_range"),
        CheckConstraint(f"label IS NULL OR {_in('label', LABELS)}", name="label"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)  # fb-<32 hex>
    completion_id: Mapped[str] = mapped_column(String(64), index=True)  # no FK: see module doc
    choice_index: Mapped[int] = mapped_column(Integer, default=0)
    caller: Mapped[str] = mapped_column(String(64))
    reward: Mapped[float | None] = mapped_column(Float)  # label up/down alone gives +1/-1
    label: Mapped[str | None] = mapped_column(String(8))
    correction: Mapped[str | None] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text)
    verifier: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # normalised spec
    task: Mapped[str | None] = mapped_column(String(128), index=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # 0007: an operator's quarantine (server/admin/feedback.py); disabled feedback never trains
    # or measures, and the rounds that pass over it count it
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class IdempotencyKey(Base):
    """The first accepted request under an ``Idempotency-Key`` (per caller) and its answer."""

    __tablename__ = "idempotency_keys"

    caller: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical body
    response: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelVersion(Base):
    """A weights version: ``base`` (the deployed original) or ``v1``, ``v2``, ..."""

    __tablename__ = "model_versions"
    __table_args__ = (CheckConstraint(_in("status", VERSION_STATUSES), name="status"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    status: Mapped[str] = mapped_column(String(16), default="candidate", index=True)
    snapshot_path: Mapped[str | None] = mapped_column(Text)  # versions/<id>/ directory
    sha256: Mapped[str | None] = mapped_column(String(64))  # of the weights file(s)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column("meta", JSONType, default=dict)  # meta.json
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # 0002: serving state (see migrations/versions/0002_version_serving.py)
    serving: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), index=True)
    served_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    engine_checksum: Mapped[str | None] = mapped_column(String(64))


class Round(Base):
    """One learner round: read feedback -> ES+AWD -> gate -> (maybe) promote."""

    __tablename__ = "rounds"
    __table_args__ = (CheckConstraint(_in("status", ROUND_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    parent_version: Mapped[str | None] = mapped_column(String(64))  # the incumbent it started from
    base_version: Mapped[str | None] = mapped_column(String(64))  # theta0 (AWD anchor)
    candidate_version: Mapped[str | None] = mapped_column(String(64))
    feedback_from_seq: Mapped[int | None] = mapped_column(BigInteger)  # exclusive
    feedback_to_seq: Mapped[int | None] = mapped_column(BigInteger)  # inclusive
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    decision: Mapped[str | None] = mapped_column(String(32))  # promoted / rejected / skipped
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RoundIteration(Base):
    """Metrics of one ES iteration (fitness, ||theta - theta0||, update norm, ...)."""

    __tablename__ = "round_iterations"
    __table_args__ = (UniqueConstraint("round_id", "iteration"),)

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    iteration: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GateDecision(Base):
    """The promotion gate's verdict on a candidate version."""

    __tablename__ = "gate_decisions"

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id", ondelete="SET NULL"), index=True)
    version: Mapped[str] = mapped_column(String(64), index=True)
    promote: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    checks: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # measured values
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditLog(Base):
    """Who did what to which target, and why."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    who: Mapped[str] = mapped_column(String(64))  # "admin", a key id, "learner", "system"
    action: Mapped[str] = mapped_column(String(64), index=True)  # promote, rollback, ...
    target: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class EvalSuite(Base):
    """A regression suite of prior capabilities (JSONL items: prompt, reference, verifier)."""

    __tablename__ = "eval_suites"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint(_in("source", SUITE_SOURCES), name="source"),
    )

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(32))
    skill: Mapped[str | None] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(16))
    items_path: Mapped[str | None] = mapped_column(Text)  # builtin: a file shipped with us
    content: Mapped[str | None] = mapped_column(Text)  # operator: the uploaded JSONL
    n_items: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())  # 0003


class SuiteScore(Base):
    """A cached score of one suite version on one model version."""

    __tablename__ = "suite_scores"
    __table_args__ = (UniqueConstraint("suite", "suite_version", "model_version"),)

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    suite: Mapped[str] = mapped_column(String(128))
    suite_version: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[str] = mapped_column(String(64), index=True)
    score: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Listing interactions newest-first with a version filter, and feedback joins.
Index("ix_interactions_model_version_seq", Interaction.model_version, Interaction.seq)


class LearnerLock(Base):
    """A named lock with an expiry (0003): at most one learner round at a time, any process."""

    __tablename__ = "learner_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IngestDeadLetter(Base):
    """An ingest entry the database refused on its own (0005), kept with the error for a human.

    ``id`` is the sha256 of the entry, so a redelivered entry is dead-lettered once. ``entry``
    is its JSON text (``store.ingest.Entry``), where U+0000 stays escaped: any database takes it.
    """

    __tablename__ = "ingest_dead_letters"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    entry: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    sqlstate: Mapped[str | None] = mapped_column(String(5))  # SQLSTATE when the driver gave one
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
