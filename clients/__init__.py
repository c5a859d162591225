"""Clients of a Perennial gateway, over HTTP only: the Python SDK (sync and async) and the CLI
client commands (``clients/cli.py``).

    from clients import Perennial, AsyncPerennial, PerennialAPIError

See ``clients/sdk.py`` for a full example. Names are imported on first use (PEP 562), so the
``perennial`` command does not pay for importing ``openai`` when it only serves.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Perennial": "clients.sdk",
    "Admin": "clients.sdk",
    "AsyncPerennial": "clients.aio",
    "AsyncAdmin": "clients.aio",
    "ChatResult": "clients.chat",
    "ChatStream": "clients.chat",
    "AsyncChatStream": "clients.chat",
    "RetryPolicy": "clients.transport",
    **{
        name: "clients.models"
        for name in (
            "AuditEntry",
            "Feedback",
            "FeedbackAction",
            "FeedbackBatch",
            "FeedbackItem",
            "FeedbackPage",
            "GateDecision",
            "Interaction",
            "InteractionPage",
            "Round",
            "StoredFeedback",
            "Suite",
            "SwapResult",
            "Version",
            "VersionList",
        )
    },
    **{
        name: "clients.errors"
        for name in (
            "PerennialError",
            "PerennialConnectionError",
            "PerennialTimeoutError",
            "PerennialAPIError",
            "BadRequestError",
            "AuthenticationError",
            "PermissionDeniedError",
            "NotFoundError",
            "ConflictError",
            "PayloadTooLargeError",
            "RateLimitError",
            "ServerError",
            "UnexpectedResponseError",
        )
    },
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clients' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from clients.aio import AsyncAdmin, AsyncPerennial
    from clients.chat import AsyncChatStream, ChatResult, ChatStream
    from clients.errors import (
        AuthenticationError,
        BadRequestError,
        ConflictError,
        NotFoundError,
        PayloadTooLargeError,
        PerennialAPIError,
        PerennialConnectionError,
        PerennialError,
        PerennialTimeoutError,
        PermissionDeniedError,
        RateLimitError,
        ServerError,
        UnexpectedResponseError,
    )
    from clients.models import (
        AuditEntry,
        Feedback,
        FeedbackAction,
        FeedbackBatch,
        FeedbackItem,
        FeedbackPage,
        GateDecision,
        Interaction,
        InteractionPage,
        Round,
        StoredFeedback,
        Suite,
        SwapResult,
        Version,
        VersionList,
    )
    from clients.sdk import Admin, Perennial
    from clients.transport import RetryPolicy
