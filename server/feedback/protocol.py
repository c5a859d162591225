"""Wire models of the feedback API (``/v1/feedback``), with their limits.

Shapes and types are checked here; size limits come from the settings through the validation
context (``{"limits": FeedbackLimits}``); cross-field rules (something to learn from, label vs
reward, verifier vs reference) are checked by ``server.feedback.service.FeedbackService`` so their
errors can name the field inside a batch (``items.3.verifier``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


@dataclass(frozen=True)
class FeedbackLimits:
    text_max_chars: int = 32_768
    metadata_max_bytes: int = 16_384
    batch_max: int = 1000


def _limits(info: ValidationInfo) -> FeedbackLimits:
    return (info.context or {}).get("limits") or FeedbackLimits()


class FeedbackCreate(BaseModel):
    """One feedback item on a completion: at least one of reward, label, correction,
    reference, verifier.

    reward: in [-1, 1]; label "up"/"down" alone means +1/-1. correction: the reply the user
    wanted. reference + verifier: a checkable answer (verifier defaults to "exact"; a regex or
    json_schema verifier may carry its pattern/schema and need no reference). task: a tag the
    learner and the admin views group by. metadata: any JSON object, stored as is.
    """

    model_config = ConfigDict(extra="forbid")

    completion_id: str = Field(..., min_length=1, max_length=64)
    choice_index: int = Field(0, ge=0, le=127, description="Which choice of an n>1 completion.")
    reward: float | None = Field(None, ge=-1.0, le=1.0, allow_inf_nan=False)
    label: Literal["up", "down"] | None = None
    correction: str | None = None
    reference: str | None = None
    verifier: str | dict[str, Any] | None = None
    task: str | None = Field(None, min_length=1, max_length=128)
    metadata: dict[str, Any] | None = None

    @field_validator("correction", "reference")
    @classmethod
    def _text_size(cls, value: str | None, info: ValidationInfo) -> str | None:
        limit = _limits(info).text_max_chars
        if value is not None and len(value) > limit:
            raise ValueError(f"at most {limit} characters (got {len(value)})")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any] | None, info: ValidationInfo):
        limit = _limits(info).metadata_max_bytes
        if value is not None and len(json.dumps(value, separators=(",", ":"))) > limit:
            raise ValueError(f"at most {limit} bytes of JSON")
        return value


class FeedbackBatchCreate(BaseModel):
    """``POST /v1/feedback/batch``: ``{"items": [FeedbackCreate, ...]}``, all or nothing."""

    model_config = ConfigDict(extra="forbid")

    items: list[FeedbackCreate] = Field(..., min_length=1)

    @field_validator("items")
    @classmethod
    def _batch_size(cls, value: list[FeedbackCreate], info: ValidationInfo):
        limit = _limits(info).batch_max
        if len(value) > limit:
            raise ValueError(f"at most {limit} items per batch (got {len(value)})")
        return value
