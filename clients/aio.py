"""The Perennial Python SDK (async): the surface of :class:`clients.sdk.Perennial`, awaited.

    from clients import AsyncPerennial

    async with AsyncPerennial("http://127.0.0.1:8000", api_key="sk-...", admin_key="pk-...") as p:
        reply = await p.chat("What is the capital of France?", temperature=0, max_tokens=16)
        await p.feedback(reply.id, label="up")
        stream = await p.chat_stream("Name a color.")
        async for delta in stream:
            print(delta, end="")
        run = await p.admin.trigger_round(iterations=2)
        run = await p.admin.wait_round(run.id, on_progress=print)

Every method mirrors its sync namesake (same arguments, results and errors); see there.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import openai

from clients import calls
from clients.chat import AsyncChatStream, ChatResult, Messages, messages_list, openai_errors
from clients.errors import PerennialTimeoutError, api_error
from clients.models import (
    AuditEntry,
    Feedback,
    FeedbackAction,
    FeedbackBatch,
    FeedbackItem,
    FeedbackPage,
    Interaction,
    InteractionPage,
    Rebuild,
    Round,
    Suite,
    SwapResult,
    Version,
    VersionList,
)
from clients.sdk import DEFAULT_URL
from clients.transport import Call, RetryPolicy, T, send_async, transport_error


class AsyncPerennial:
    """An async client of one Perennial gateway (arguments as :class:`~clients.sdk.Perennial`)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        admin_key: str | None = None,
        model: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        chat_retries: int = 2,
    ):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.admin_key = admin_key
        self.retry = retry or RetryPolicy()
        self._model = model
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout)
        self._openai = openai.AsyncOpenAI(
            base_url=f"{self.url}/v1", api_key=api_key or "none", timeout=timeout, max_retries=chat_retries
        )
        self.admin = AsyncAdmin(self)

    async def _run(self, call: Call[T]) -> T:
        auth = self.admin_key if call.admin else self.api_key
        return await send_async(self._http, call, self.retry, auth)

    @property
    def openai(self) -> openai.AsyncOpenAI:
        """The underlying official async client."""
        return self._openai

    async def model(self) -> str:
        """The model id chat uses: the one given, else the served one (asked once)."""
        if self._model is None:
            self._model = await self._run(calls.model_name())
        return self._model

    async def health(self) -> dict[str, Any]:
        """``GET /health`` (see :meth:`Perennial.health`)."""
        return await self._run(calls.health())

    async def chat(self, messages: Messages, *, model: str | None = None, **params: Any) -> ChatResult:
        """One chat completion (see :meth:`Perennial.chat`)."""
        model = model or await self.model()
        with openai_errors():
            raw = await self._openai.chat.completions.with_raw_response.create(
                model=model, messages=messages_list(messages), **params
            )
            return ChatResult.from_raw(raw.parse(), raw.headers)

    async def chat_stream(
        self, messages: Messages, *, model: str | None = None, **params: Any
    ) -> AsyncChatStream:
        """A streamed chat completion (see :meth:`Perennial.chat_stream`)."""
        model = model or await self.model()
        options = {**params.pop("stream_options", {}), "include_usage": True}
        with openai_errors():
            raw = await self._openai.chat.completions.with_raw_response.create(
                model=model,
                messages=messages_list(messages),
                stream=True,
                stream_options=options,
                **params,
            )
            return AsyncChatStream(raw.headers, raw.parse())

    async def feedback(
        self,
        completion_id: str,
        *,
        reward: float | None = None,
        label: str | None = None,
        correction: str | None = None,
        reference: str | None = None,
        verifier: str | dict[str, Any] | None = None,
        task: str | None = None,
        metadata: dict[str, Any] | None = None,
        choice_index: int = 0,
        idempotency_key: str | None = None,
    ) -> Feedback:
        """One feedback item (see :meth:`Perennial.feedback`)."""
        item = FeedbackItem(
            completion_id=completion_id,
            reward=reward,
            label=label,
            correction=correction,
            reference=reference,
            verifier=verifier,
            task=task,
            metadata=metadata,
            choice_index=choice_index,
        )
        return await self._run(calls.feedback(item, idempotency_key))

    async def feedback_batch(
        self, items: Iterable[FeedbackItem | Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> FeedbackBatch:
        """Several feedback items, all or nothing (see :meth:`Perennial.feedback_batch`)."""
        return await self._run(calls.feedback_batch(items, idempotency_key))

    async def feedback_for(self, completion_id: str) -> list[Feedback]:
        """Stored feedback on one completion."""
        return await self._run(calls.feedback_list(completion_id))

    async def close(self) -> None:
        await self._http.aclose()
        await self._openai.close()

    async def __aenter__(self) -> AsyncPerennial:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncAdmin:
    """The admin API, async (see :class:`~clients.sdk.Admin`)."""

    def __init__(self, client: AsyncPerennial):
        self._c = client

    async def versions(self, limit: int = 200) -> VersionList:
        """Every version and the one serving (see :meth:`Admin.versions`)."""
        return await self._c._run(calls.versions(limit))

    async def version(self, version_id: str) -> Version:
        """One version (raises NotFoundError)."""
        return await self._c._run(calls.version(version_id))

    async def promote(self, version_id: str, *, force: bool = False, reason: str | None = None) -> SwapResult:
        """Serve ``version_id``; gated unless ``force`` with a ``reason`` (see :meth:`Admin.promote`)."""
        return await self._c._run(calls.promote(version_id, force, reason))

    async def rollback(self, *, to: str | None = None, reason: str | None = None) -> SwapResult:
        """Serve ``to``, by default the version served before (see :meth:`Admin.rollback`)."""
        return await self._c._run(calls.rollback(to, reason))

    async def rebuild(
        self,
        version_id: str,
        *,
        wait: bool = True,
        timeout: float = 3600.0,
        poll_s: float = 1.0,
        on_progress: Callable[[Rebuild], None] | None = None,
    ) -> Rebuild:
        """Rebuild a dropped snapshot from its seed log (see :meth:`Admin.rebuild`)."""
        job = await self._c._run(calls.rebuild(version_id))
        deadline = time.monotonic() + timeout
        seen = None
        while wait and not job.finished:
            if on_progress and (key := (job.state, str(job.progress))) != seen:
                seen = key
                on_progress(job)
            if time.monotonic() + poll_s > deadline:
                raise PerennialTimeoutError(f"rebuild of {version_id} still {job.state} after {timeout:g} s")
            await asyncio.sleep(poll_s)
            job = await self._c._run(calls.rebuild_status(version_id))
        return job

    async def audit(self, limit: int = 100) -> list[AuditEntry]:
        """The audit log of version changes, newest first."""
        return await self._c._run(calls.audit(limit))

    async def rounds(self, limit: int = 50) -> list[Round]:
        """Learner rounds, newest first."""
        return await self._c._run(calls.rounds(limit))

    async def round(self, round_id: int) -> Round:
        """One round with its per-iteration metrics and gate decision."""
        return await self._c._run(calls.round_by_id(round_id))

    async def trigger_round(self, **overrides: Any) -> Round:
        """Queue a round now (see :meth:`Admin.trigger_round` for the overrides)."""
        return await self._c._run(calls.trigger(calls.round_overrides(**overrides)))

    async def wait_round(
        self,
        round_id: int,
        *,
        timeout: float = 3600.0,
        poll_s: float = 2.0,
        on_progress: Callable[[Round], None] | None = None,
    ) -> Round:
        """Poll a round until it finished (see :meth:`Admin.wait_round`)."""
        deadline = time.monotonic() + timeout
        seen = None
        while True:
            current = await self.round(round_id)
            if on_progress and current.progress_key() != seen:
                seen = current.progress_key()
                on_progress(current)
            if current.finished:
                return current
            if time.monotonic() + poll_s > deadline:
                raise PerennialTimeoutError(f"round {round_id} still {current.phase} after {timeout:g} s")
            await asyncio.sleep(poll_s)

    async def suites(self, model_version: str | None = None) -> list[Suite]:
        """Registered suites (with ``model_version``'s cached scores when given)."""
        return await self._c._run(calls.suites(model_version))

    async def add_suite(
        self,
        path: str | Path | None = None,
        *,
        content: str | None = None,
        name: str | None = None,
        version: int | None = None,
    ) -> Suite:
        """Upload an operator suite from ``path`` or ``content`` (see :meth:`Admin.add_suite`)."""
        return await self._c._run(calls.add_suite(calls.suite_content(path, content), name, version))

    async def remove_suite(self, name: str, *, version: str | None = None) -> list[Suite]:
        """Stop scoring a suite (every version, or one); returns the disabled rows."""
        return await self._c._run(calls.remove_suite(name, version))

    async def feedback(self, *, limit: int = 50, after: str | None = None, **filters: Any) -> FeedbackPage:
        """One page of stored feedback (see :meth:`Admin.feedback`)."""
        return await self._c._run(calls.stored_feedback(limit=limit, after=after, **filters))

    async def disable_feedback(self, *, reason: str | None = None, **selection: Any) -> FeedbackAction:
        """Disable feedback (see :meth:`Admin.disable_feedback`)."""
        return await self._c._run(calls.feedback_action("disable", reason=reason, **selection))

    async def enable_feedback(self, *, reason: str | None = None, **selection: Any) -> FeedbackAction:
        """Enable disabled feedback again (see :meth:`Admin.enable_feedback`)."""
        return await self._c._run(calls.feedback_action("enable", reason=reason, **selection))

    async def delete_feedback(self, *, reason: str | None = None, **selection: Any) -> FeedbackAction:
        """Delete feedback for good (see :meth:`Admin.delete_feedback`)."""
        return await self._c._run(calls.feedback_action("delete", reason=reason, **selection))

    async def learner(self) -> dict[str, Any]:
        """The learner's mode, running round and engine."""
        return await self._c._run(calls.learner())

    async def engine(self) -> dict[str, Any]:
        """The serving engine's state."""
        return await self._c._run(calls.engine())

    async def interactions(
        self, *, limit: int = 50, after: str | None = None, order: str = "desc", **filters: Any
    ) -> InteractionPage:
        """One page of logged interactions (see :meth:`Admin.interactions`)."""
        return await self._c._run(calls.interactions(limit=limit, after=after, order=order, **filters))

    async def export_interactions(self, **filters: Any) -> AsyncIterator[Interaction]:
        """Every matching interaction with its feedback, oldest first, streamed."""
        headers = {"Authorization": f"Bearer {self._c.admin_key}"} if self._c.admin_key else {}
        try:
            # The client's timeout bounds each read, not the whole export: long exports are fine.
            async with self._c._http.stream(
                "GET", "/admin/interactions/export", headers=headers, params=calls.query(filters)
            ) as response:
                if not response.is_success:
                    raise api_error(response.status_code, await response.aread(), response.headers)
                async for line in response.aiter_lines():
                    if line.strip():
                        yield Interaction.model_validate(json.loads(line))
        except httpx.TransportError as exc:
            raise transport_error(exc, self._c.url) from exc
