"""Wire models of the feedback API (``/v1/feedback``), with their limits and rules.

Shapes and types are checked on parsing; size limits come from the settings through the
validation context (``{"limits": FeedbackLimits}``). The cross-field rules (something to learn
from, label vs reward, verifier vs reference) are :meth:`FeedbackCreate.check`, which the
service calls so an error can name the field inside a batch (``items.3.verifier``); the model's
JSON Schema says the same (:mod:`server.feedback.rules`).

:class:`FeedbackObject` is what is answered and stored. The models map themselves: the answer
is validated from the request item's ``model_dump``, the ``feedback`` row is the answer's dump
plus who sent it, and a stored row reads back through ``from_attributes``. A new field is
declared on ``FeedbackCreate`` and ``FeedbackObject`` (a unit test checks that they agree) and
as a column of ``store.models.Feedback``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from evals.verifiers import VerifierError, parse_verifier
from server.errors import APIError
from server.feedback.rules import SIGNALS, item_rules
from server.openapi import maximum, patch_schema
from server.settings import Settings


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

    model_config = ConfigDict(extra="forbid", json_schema_extra=item_rules)

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

    def check(self, prefix: str = "") -> dict[str, Any] | None:
        """The cross-field rules; returns the normalised verifier spec (None without one).

        Args:
            prefix: where the item sits in the request (``"items.3."`` in a batch, else "").

        Raises:
            APIError: 400 naming the field at fault (``items.3.label``).
        """
        if all(getattr(self, name) is None for name in SIGNALS):
            raise APIError(
                400,
                f"{prefix or 'feedback'}: give at least one of {', '.join(SIGNALS)}",
                param=prefix.rstrip(".") or None,
                code="invalid_value",
            )
        if self.label is not None and self.reward is not None:  # noqa: SIM102 - one rule per if
            if (self.label == "up" and self.reward < 0) or (self.label == "down" and self.reward > 0):
                raise APIError(
                    400,
                    f"{prefix}label: {self.label!r} contradicts reward {self.reward}",
                    param=f"{prefix}label",
                    code="invalid_value",
                )
        if self.verifier is None and self.reference is None:
            return None
        try:
            return parse_verifier(self.verifier or "exact", self.reference).to_json()
        except VerifierError as exc:
            raise APIError(
                400, f"{prefix}{exc.param}: {exc}", param=f"{prefix}{exc.param}", code="invalid_value"
            ) from exc


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


class FeedbackObject(BaseModel):
    """One accepted or stored feedback item, as answered: ``FeedbackCreate``'s fields with the
    reward a label implies and the normalised verifier spec, plus ``id`` and ``created``.

    Validated from a dict (the accepted item) or a ``store.models.Feedback`` row, whose
    ``created_at`` (a datetime) gives ``created`` and whose ``meta`` attribute is the
    ``metadata`` column (SQLAlchemy keeps ``metadata`` for itself).
    """

    # forbid: a field added to FeedbackCreate and not here fails at once instead of vanishing
    model_config = ConfigDict(extra="forbid", from_attributes=True)

    id: str
    object: Literal["feedback"] = "feedback"
    created: int = Field(validation_alias=AliasChoices("created", "created_at"))
    completion_id: str
    choice_index: int
    reward: float | None
    label: str | None
    correction: str | None
    reference: str | None
    verifier: dict[str, Any] | None
    task: str | None
    metadata: dict[str, Any] | None = Field(validation_alias=AliasChoices("meta", "metadata"))

    @field_validator("created", mode="before")
    @classmethod
    def _seconds(cls, value: datetime | float) -> int:
        return int(value.timestamp() if isinstance(value, datetime) else value)


# --- limits the settings set, checked at request time (the validation context) -------------


@patch_schema(FeedbackCreate)
def _feedback_limits(schema: dict[str, Any], settings: Settings) -> None:
    props = schema["properties"]
    maximum(props["correction"], "maxLength", settings.feedback_text_max_chars)
    maximum(props["reference"], "maxLength", settings.feedback_text_max_chars)


@patch_schema(FeedbackBatchCreate)
def _batch_limits(schema: dict[str, Any], settings: Settings) -> None:
    schema["properties"]["items"]["maxItems"] = settings.feedback_batch_max
