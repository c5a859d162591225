"""Chat results over the official ``openai`` client: the completion id and the model version.

Perennial stamps every completion with its id (``x-perennial-completion-id``, also the body's
``id``) and the version of the weights that produced it (``x-perennial-model-version``, also
``system_fingerprint`` = ``perennial:<version>``). The SDK reads both through
``with_raw_response`` and hands back :class:`ChatResult`, or a :class:`ChatStream` /
:class:`AsyncChatStream` whose id and version are known before the first token.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import openai
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from clients.errors import PerennialConnectionError, PerennialTimeoutError, api_error

VERSION_HEADER = "x-perennial-model-version"
ID_HEADER = "x-perennial-completion-id"

Messages = str | Sequence[Mapping[str, Any]]


def messages_list(messages: Messages) -> list[dict[str, Any]]:
    """A bare string is one user message; a sequence of message dicts is sent as given."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return [dict(m) for m in messages]


def _version(headers: Mapping[str, str], fingerprint: str | None) -> str | None:
    if headers.get(VERSION_HEADER):
        return headers[VERSION_HEADER]
    if fingerprint and fingerprint.startswith("perennial:"):
        return fingerprint.removeprefix("perennial:")
    return None


@contextlib.contextmanager
def openai_errors() -> Iterator[None]:
    """Re-raise the ``openai`` client's errors as the SDK's (same envelope, same classes)."""
    try:
        yield
    except openai.APIStatusError as exc:
        raise api_error(exc.status_code, exc.body, exc.response.headers) from exc
    except openai.APITimeoutError as exc:
        raise PerennialTimeoutError(f"no answer in time: {exc}") from exc
    except openai.APIConnectionError as exc:
        cause = exc.__cause__ or exc
        raise PerennialConnectionError(f"cannot connect: {cause}") from exc


@dataclass
class ChatResult:
    """One chat completion.

    Attributes:
        id: the completion id (``chatcmpl-...``); give it to :meth:`Perennial.feedback`.
        version: the model version that produced it (``base``, ``v3``...).
        text: the first choice's message content.
        finish_reason: the first choice's finish reason (``stop``, ``length``).
        usage: token counts.
        completion: the official client's full ``ChatCompletion``.
    """

    id: str
    version: str | None
    text: str
    finish_reason: str | None
    usage: CompletionUsage | None
    completion: ChatCompletion

    @classmethod
    def from_raw(cls, completion: ChatCompletion, headers: Mapping[str, str]) -> ChatResult:
        choice = completion.choices[0] if completion.choices else None
        return cls(
            id=headers.get(ID_HEADER) or completion.id,
            version=_version(headers, completion.system_fingerprint),
            text=(choice.message.content or "") if choice else "",
            finish_reason=choice.finish_reason if choice else None,
            usage=completion.usage,
            completion=completion,
        )


class _StreamState:
    """What a stream has assembled so far; id and version come with the response headers."""

    def __init__(self, headers: Mapping[str, str]):
        self.id: str | None = headers.get(ID_HEADER)
        self.version: str | None = headers.get(VERSION_HEADER)
        self.text = ""
        self.finish_reason: str | None = None
        self.usage: CompletionUsage | None = None

    def _take(self, chunk: ChatCompletionChunk) -> str:
        """Fold one chunk in; return the first choice's new text ('' if none)."""
        self.id = self.id or chunk.id
        self.version = self.version or _version({}, chunk.system_fingerprint)
        if chunk.usage is not None:
            self.usage = chunk.usage
        delta = ""
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta.content or ""
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        self.text += delta
        return delta


class ChatStream(_StreamState):
    """Iterate for the text deltas; ``text``, ``finish_reason`` and ``usage`` are complete once
    the iteration ends. Use it as a context manager (or call :meth:`close`) to release the
    connection early."""

    def __init__(self, headers: Mapping[str, str], stream: openai.Stream[ChatCompletionChunk]):
        super().__init__(headers)
        self._stream = stream

    def __iter__(self) -> Iterator[str]:
        with openai_errors():
            for chunk in self._stream:
                delta = self._take(chunk)
                if delta:
                    yield delta

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncChatStream(_StreamState):
    """The async form of :class:`ChatStream` (``async for delta in stream``)."""

    def __init__(self, headers: Mapping[str, str], stream: openai.AsyncStream[ChatCompletionChunk]):
        super().__init__(headers)
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[str]:
        with openai_errors():
            async for chunk in self._stream:
                delta = self._take(chunk)
                if delta:
                    yield delta

    async def close(self) -> None:
        await self._stream.close()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
