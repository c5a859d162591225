"""Typed results (and feedback input) of the SDK, as the gateway's JSON answers them.

Every model keeps fields the server adds later (``extra="allow"``), so a newer server never
breaks an older client; timestamps are parsed into ``datetime``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)


class FeedbackItem(BaseModel):
    """One feedback item to send: at least one of reward, label, correction, reference, verifier.

    Attributes:
        completion_id: the ``chatcmpl-...`` id the feedback is about.
        choice_index: which choice of an n>1 completion.
        reward: in [-1, 1].
        label: "up" or "down" (alone it means reward +1 / -1).
        correction: the reply the user wanted.
        reference: a checkable answer, scored by ``verifier``.
        verifier: "exact", "contains", "number", "regex", "json_schema", or a spec object.
        task: a tag the learner and the admin views group by.
        metadata: any JSON object, stored as is.
    """

    model_config = ConfigDict(extra="forbid")

    completion_id: str = Field(..., min_length=1, max_length=64)
    choice_index: int = Field(0, ge=0)
    reward: float | None = Field(None, ge=-1.0, le=1.0)
    label: Literal["up", "down"] | None = None
    correction: str | None = None
    reference: str | None = None
    verifier: str | dict[str, Any] | None = None
    task: str | None = None
    metadata: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Feedback(_Answer):
    """A stored (or accepted) feedback item. ``replayed``: the server answered a retried request
    with its first result (same Idempotency-Key and body), nothing new was stored."""

    id: str
    completion_id: str
    choice_index: int = 0
    created: int
    reward: float | None = None
    label: str | None = None
    correction: str | None = None
    reference: str | None = None
    verifier: dict[str, Any] | None = None
    task: str | None = None
    metadata: dict[str, Any] | None = None
    replayed: bool = Field(False, exclude=True)


class StoredFeedback(Feedback):
    """A stored feedback item as the admin API lists it: who sent it, and whether it is disabled."""

    caller: str | None = None
    disabled: bool = False
    disabled_at: int | None = None
    disabled_reason: str | None = None


class FeedbackPage(_Answer):
    """One page of stored feedback, newest first; pass ``last_id`` as ``after`` for the next."""

    data: list[StoredFeedback]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class FeedbackAction(_Answer):
    """What a disable, enable or delete changed: ``count`` items, their ``ids``."""

    action: str
    count: int
    ids: list[str] = []
    selection: dict[str, Any] = {}


class FeedbackBatch(_Answer):
    """The items of one batch, in request order."""

    data: list[Feedback]
    replayed: bool = Field(False, exclude=True)


class GateDecision(_Answer):
    """The promotion gate's verdict on a candidate and its reasons."""

    promote: bool
    reasons: list[Any] = []
    checks: dict[str, Any] | list[Any] | None = None  # the stored gate record (or a bare list)
    at: datetime | None = None


class Version(_Answer):
    """A model version: ``base``, ``v1``, ``v2``..."""

    id: str
    parent: str | None = None
    status: str
    serving: bool = False
    snapshot_path: str | None = None
    sha256: str | None = None
    engine_checksum: str | None = None
    metrics: dict[str, Any] | None = None
    created_at: datetime | None = None
    promoted_at: datetime | None = None
    served_at: datetime | None = None
    gate: GateDecision | None = None
    disk: dict[str, Any] | None = None  # weights_bytes (0 once dropped), stored, seed_log_bytes


class Rebuild(_Answer):
    """A rebuild of a dropped snapshot from its seed log: ``queued`` -> ``running`` ->
    ``done`` | ``present`` (nothing to do) | ``failed`` (``error``). ``progress``: generation i of
    n and iteration j of k; ``report`` once done (seconds, chain, checksums)."""

    version: str
    state: str
    progress: dict[str, Any] | None = None
    start: str | None = None
    error: str | None = None
    report: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "present", "failed")


class VersionList(_Answer):
    """Every version, newest first, and the one serving now."""

    serving: str
    data: list[Version]


class SwapResult(_Answer):
    """The answer of a promote or rollback: what serves now, what served before, swap timings."""

    serving: str
    previous: str | None = None
    swap: dict[str, Any] = {}


class Round(_Answer):
    """A learner round (``queued`` -> ``running`` -> ``succeeded`` | ``failed``).

    ``decision`` is ``promoted`` or ``rejected`` once a round succeeded, or ``skipped`` when no
    feedback item was usable (``metrics["feedback"]`` counts what was read, used and skipped, by
    reason); ``iterations`` (per iteration metrics) is only filled by :meth:`Admin.round`.
    """

    id: int
    status: str
    decision: str | None = None
    error: str | None = None
    trigger: str | None = None
    overrides: dict[str, Any] | None = None
    parent_version: str | None = None
    candidate_version: str | None = None
    feedback: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = None
    gate: GateDecision | None = None
    iterations: list[dict[str, Any]] | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")

    @property
    def phase(self) -> str:
        """The phase now (feedback, es, snapshot, gate, promote/reject), else the status."""
        if self.finished:
            return self.status
        return str((self.metrics or {}).get("phase") or self.status)

    @property
    def iterations_done(self) -> int:
        return len(self.iterations or [])

    @property
    def iterations_total(self) -> int | None:
        """K of this round, once the ES phase has resolved its configuration."""
        config = (self.metrics or {}).get("config") or {}
        es = (self.overrides or {}).get("es") or {}
        total = config.get("iterations", es.get("iterations"))
        return int(total) if total is not None else None

    def progress_key(self) -> tuple[str, str, int]:
        """What a progress display shows; it changed when this changed."""
        return self.status, self.phase, self.iterations_done


class Suite(_Answer):
    """A prior-capability suite the gate scores; ``score`` only when asked for a version."""

    name: str
    version: str
    skill: str | None = None
    source: str | None = None
    items: int | None = None
    sha256: str | None = None
    enabled: bool = True
    created_at: datetime | None = None
    score: float | None = None


class AuditEntry(_Answer):
    """Who changed the served version (or tried to), when and why."""

    id: int
    who: str
    action: str
    target: str | None = None
    reason: str | None = None
    details: dict[str, Any] | None = None
    created_at: datetime


class Interaction(_Answer):
    """A logged chat completion (``feedback_count`` in listings, ``feedback`` in exports)."""

    id: str
    model_version: str | None = None
    caller: str | None = None
    messages: list[dict[str, Any]] = []
    response: Any = None
    created: float | None = None


class InteractionPage(_Answer):
    """One page of interactions; pass ``last_id`` as ``after`` for the next."""

    data: list[Interaction]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None
