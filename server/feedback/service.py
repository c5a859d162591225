"""The feedback service: validate, assign ids, apply idempotency, hand over to the store.

A request is validated completely before anything is stored (a batch is all or nothing):
shape and limits (``server.feedback.protocol``), then per item ``FeedbackCreate.check``:
something to learn from, label and reward agree, the verifier spec works with the reference
(``evals.verifiers``). Then the
store accepts it (``store.sink``): unknown completion ids, or another caller's -> 404 (the same
answer: ids of others are not confirmed to exist), Idempotency-Key reused with another body ->
409, same body -> the first answer again (``Idempotent-Replayed: true``). A caller lists only the
feedback it sent on its own completions.

Feedback ids: ``fb-<32 hex>``; random, or derived from (caller, Idempotency-Key, request hash,
position) when a key is given, so a retried request can never store an item twice, even across
an outage. That is also why a key's record is small: the hash and the first answer's time
rebuild the first answer from the (identical) retried request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from server.deps import state
from server.errors import APIError, validation_error
from server.feedback.protocol import FeedbackBatchCreate, FeedbackCreate, FeedbackLimits, FeedbackObject
from server.settings import Settings
from store import queries
from store.ingest import FEEDBACK, Entry
from store.models import Feedback as FeedbackRow
from store.sink import Acceptance, IdempotencyRequest, IngestSink, StoreUnavailable

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 255
ANSWER_ONLY = frozenset({"object", "created"})  # FeedbackObject's fields that are not columns


def unavailable(exc: Exception) -> APIError:
    """503 for a store outage; the cause goes to the log, not to the client."""
    log.warning("store unavailable: %s: %s", type(exc).__name__, str(exc)[:200])
    return APIError(
        503,
        "feedback storage is unavailable right now; retry shortly",
        code="store_unavailable",
        headers={"Retry-After": "1"},
    )


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
        verifiers = [item.check(prefix(i)) for i, item in enumerate(items)]
        digest = _request_hash(route, items) if key is not None else None
        now = time.time()

        def answer(created: float) -> list[dict[str, Any]]:
            return [
                _accepted(item, verifier, _feedback_id(caller, key, digest, i), created).model_dump()
                for i, (item, verifier) in enumerate(zip(items, verifiers, strict=True))
            ]

        data = answer(now)
        # the feedback table's rows: the answer less what only the answer says, plus who sent it
        extra = {"caller": caller, "idempotency_key": key, "created_at": now}
        rows = [{**{k: v for k, v in d.items() if k not in ANSWER_ONLY}, **extra} for d in data]
        idem = IdempotencyRequest(caller, key, digest, {"created": now}) if key is not None else None
        entry = Entry(FEEDBACK, {"items": rows, "idempotency": idem.row() if idem else None})
        try:
            result = await self.sink.accept_feedback(entry, idem)
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        if result.status == "replay" and "object" not in result.response:
            # the record holds the first answer's time; the same request gives the rest
            data = answer(result.response["created"])
        response: dict[str, Any] = data[0] if route == "one" else {"object": "list", "data": data}
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
        if result.status == "replay" and "object" in result.response:
            return result.response, True  # a record of an older version: the whole first answer
        return response, result.status == "replay"

    async def list_for(self, completion_id: str, *, caller: str) -> dict[str, Any]:
        """``GET /v1/feedback?completion_id=``: the caller's stored feedback on its completion."""
        try:
            if await self.sink.missing_completions([completion_id], caller=caller):
                raise APIError(
                    404,
                    f"no completion {completion_id!r} was issued by this server",
                    param="completion_id",
                    code="completion_not_found",
                )
            async with self.sink.db.sessions() as session:
                stored = await queries.feedback_for_completion(
                    session, completion_id=completion_id, caller=caller
                )
        except (StoreUnavailable, SQLAlchemyError, OSError) as exc:
            raise unavailable(exc) from exc
        return {"object": "list", "data": [stored_object(fb) for fb in stored]}


def stored_object(row: FeedbackRow) -> dict[str, Any]:
    """The API shape of a stored feedback row."""
    return FeedbackObject.model_validate(row).model_dump()


def _request_hash(route: str, items: list[FeedbackCreate]) -> str:
    """sha256 of the canonical request: the same items on the same route, the same hash."""
    dumped = [item.model_dump(mode="json") for item in items]
    return hashlib.sha256(json.dumps([route, dumped], sort_keys=True).encode()).hexdigest()


def _feedback_id(caller: str, key: str | None, digest: str | None, index: int) -> str:
    """``fb-<32 hex>``: random, or derived from (caller, Idempotency-Key, request hash, position)
    when keyed (the hash: a key reused with another body after its record expired stores anew)."""
    if key is None:
        return f"fb-{uuid.uuid4().hex}"
    return "fb-" + hashlib.sha256(f"{caller}\0{key}\0{digest}\0{index}".encode()).hexdigest()[:32]


def _accepted(item: FeedbackCreate, verifier: dict[str, Any] | None, fid: str, now: float) -> FeedbackObject:
    """The answer for one checked item: a label alone gives reward +1/-1; the normalised verifier."""
    reward = item.reward
    if reward is None and item.label is not None:
        reward = 1.0 if item.label == "up" else -1.0
    fields = {**item.model_dump(), "reward": reward, "verifier": verifier}
    return FeedbackObject.model_validate({**fields, "id": fid, "created": now})


def start(app: FastAPI) -> None:
    """The lifespan's feedback step (after the store): ``app.state.feedback``."""
    app.state.feedback = FeedbackService(app.state.settings, app.state.ingest)


# The routes' view of the service the lifespan keeps on app.state.
Feedback = Annotated[FeedbackService, Depends(state("feedback"))]
