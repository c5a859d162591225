"""The feedback service: validate, assign ids, apply idempotency, hand over to the store.

A request is validated completely before anything is stored (a batch is all or nothing):
shape and limits (``feedback_protocol``), then per item: something to learn from, label and
reward agree, the verifier spec works with the reference (``evals.verifiers``). Then the
store accepts it (``store.sink``): unknown completion ids -> 404, Idempotency-Key reused with
another body -> 409, same body -> the first answer again (``Idempotent-Replayed: true``).

Feedback ids: ``fb-<32 hex>``; random, or derived from (caller, Idempotency-Key, position) when
a key is given, so a retried request can never store an item twice, even across an outage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from evals.verifiers import VerifierError, parse_verifier
from server.errors import APIError, validation_error
from server.feedback.protocol import FeedbackBatchCreate, FeedbackCreate, FeedbackLimits
from server.settings import Settings
from store import queries
from store.ingest import FEEDBACK, Entry
from store.models import Feedback
from store.sink import Acceptance, IdempotencyRequest, IngestSink, StoreUnavailable

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 255


def unavailable(exc: Exception) -> APIError:
    """503 for a store outage; the cause goes to the log, not to the client."""
    log.warning("store unavailable: %s: %s", type(exc).__name__, str(exc)[:200])
    return APIError(
        503,
        "feedback storage is unavailable right now; retry shortly",
        code="store_unavailable",
        headers={"Retry-After": "1"},
    )


def feedback_object(row: dict[str, Any]) -> dict[str, Any]:
    """The API shape of a feedback row (as accepted)."""
    return {
        "id": row["id"],
        "object": "feedback",
        "created": int(row["created_at"]),
        "completion_id": row["completion_id"],
        "choice_index": row["choice_index"],
        "reward": row["reward"],
        "label": row["label"],
        "correction": row["correction"],
        "reference": row["reference"],
        "verifier": row["verifier"],
        "task": row["task"],
        "metadata": row["metadata"],
    }


def stored_object(fb: Feedback) -> dict[str, Any]:
    """The API shape of a stored feedback row."""
    row = {
        c: getattr(fb, c)
        for c in (
            "id",
            "completion_id",
            "choice_index",
            "reward",
            "label",
            "correction",
            "reference",
            "verifier",
            "task",
        )
    }
    return feedback_object({**row, "metadata": fb.meta, "created_at": fb.created_at.timestamp()})


def _check_item(item: FeedbackCreate, prefix: str) -> dict[str, Any] | None:
    """Cross-field rules of one item; returns the normalised verifier spec."""
    signals = (item.reward, item.label, item.correction, item.reference, item.verifier)
    if all(signal is None for signal in signals):
        raise APIError(
            400,
            f"{prefix or 'feedback'}: give at least one of reward, label, correction, reference, verifier",
            param=prefix.rstrip(".") or None,
            code="invalid_value",
        )
    if item.label is not None and item.reward is not None:  # noqa: SIM102 - one rule per if
        if (item.label == "up" and item.reward < 0) or (item.label == "down" and item.reward > 0):
            raise APIError(
                400,
                f"{prefix}label: {item.label!r} contradicts reward {item.reward}",
                param=f"{prefix}label",
                code="invalid_value",
            )
    if item.verifier is None and item.reference is None:
        return None
    try:
        return parse_verifier(item.verifier or "exact", item.reference).to_json()
    except VerifierError as exc:
        raise APIError(
            400, f"{prefix}{exc.param}: {exc}", param=f"{prefix}{exc.param}", code="invalid_value"
        ) from exc


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY or not value.isprintable():
        raise APIError(
            400,
            f"Idempotency-Key: 1..{MAX_IDEMPOTENCY_KEY} printable characters",
            param="Idempotency-Key",
            code="invalid_value",
        )
    return value


class FeedbackService:
    """Feedback intake and lookup for the routes."""

    def __init__(self, settings: Settings, sink: IngestSink):
        self.sink = sink
        self.context = {
            "limits": FeedbackLimits(
                text_max_chars=settings.feedback_text_max_chars,
                metadata_max_bytes=settings.feedback_metadata_max_bytes,
                batch_max=settings.feedback_batch_max,
            )
        }

    def _parse(self, model: type[BaseModel], raw: bytes) -> Any:
        try:
            return model.model_validate_json(raw, context=self.context)
        except ValidationError as exc:
            raise validation_error(exc) from exc

    async def submit_one(self, raw: bytes, *, caller: str, key: str | None) -> tuple[dict, bool]:
        """``POST /v1/feedback``. Returns (response body, replayed)."""
        item = self._parse(FeedbackCreate, raw)
        return await self._submit([item], caller=caller, key=key, route="one")

    async def submit_batch(self, raw: bytes, *, caller: str, key: str | None) -> tuple[dict, bool]:
        """``POST /v1/feedback/batch``. Returns (response body, replayed)."""
        batch = self._parse(FeedbackBatchCreate, raw)
        return await self._submit(batch.items, caller=caller, key=key, route="batch")

    async def _submit(
        self, items: list[FeedbackCreate], *, caller: str, key: str | None, route: str
    ) -> tuple[dict, bool]:
        key = _idempotency_key(key)
        prefix = (lambda i: f"items.{i}.") if route == "batch" else (lambda i: "")
        verifiers = [_check_item(item, prefix(i)) for i, item in enumerate(items)]
        now = time.time()
        rows = [
            self._row(item, verifier, caller, key, i, now)
            for i, (item, verifier) in enumerate(zip(items, verifiers, strict=True))
        ]
        data = [feedback_object(row) for row in rows]
        response: dict[str, Any] = data[0] if route == "one" else {"object": "list", "data": data}
        idem = None
        if key is not None:
            dumped = [item.model_dump(mode="json") for item in items]
            digest = hashlib.sha256(json.dumps([route, dumped], sort_keys=True).encode()).hexdigest()
            idem = IdempotencyRequest(caller, key, digest, response)
        entry = Entry(FEEDBACK, {"items": rows, "idempotency": idem.row() if idem else None})
        try:
            result = await self.sink.accept_feedback(entry, idem)
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        return self._answer(result, items, response, prefix)

    def _answer(self, result: Acceptance, items, response, prefix) -> tuple[dict, bool]:
        if result.status == "missing":
            index = next(i for i, item in enumerate(items) if item.completion_id in result.missing)
            raise APIError(
                404,
                f"no completion {items[index].completion_id!r} was issued by this server",
                param=f"{prefix(index)}completion_id",
                code="completion_not_found",
            )
        if result.status == "conflict":
            raise APIError(
                409,
                "this Idempotency-Key was already used with a different body",
                code="idempotency_key_reused",
            )
        if result.status == "replay":
            return result.response, True
        return response, False

    @staticmethod
    def _row(
        item: FeedbackCreate, verifier, caller: str, key: str | None, index: int, now: float
    ) -> dict[str, Any]:
        if key is None:
            fid = uuid.uuid4().hex
        else:
            fid = hashlib.sha256(f"{caller}\0{key}\0{index}".encode()).hexdigest()[:32]
        reward = item.reward
        if reward is None and item.label is not None:
            reward = 1.0 if item.label == "up" else -1.0
        return {
            "id": f"fb-{fid}",
            "completion_id": item.completion_id,
            "choice_index": item.choice_index,
            "caller": caller,
            "reward": reward,
            "label": item.label,
            "correction": item.correction,
            "reference": item.reference,
            "verifier": verifier,
            "task": item.task,
            "metadata": item.metadata,
            "idempotency_key": key,
            "created_at": now,
        }

    async def list_for(self, completion_id: str) -> dict[str, Any]:
        """``GET /v1/feedback?completion_id=``: stored feedback on one completion."""
        try:
            if await self.sink.missing_completions([completion_id]):
                raise APIError(
                    404,
                    f"no completion {completion_id!r} was issued by this server",
                    param="completion_id",
                    code="completion_not_found",
                )
            async with self.sink.db.sessions() as session:
                stored = await queries.feedback_for_completion(session, completion_id=completion_id)
        except (StoreUnavailable, SQLAlchemyError, OSError) as exc:
            raise unavailable(exc) from exc
        return {"object": "list", "data": [stored_object(fb) for fb in stored]}
