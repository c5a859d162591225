"""The Perennial Python SDK (sync). :class:`clients.aio.AsyncPerennial` has the same surface.

    from clients import Perennial, ConflictError

    with Perennial("http://127.0.0.1:8000", api_key="sk-...", admin_key="pk-...") as p:
        reply = p.chat("What is the capital of France?", temperature=0, max_tokens=16)
        print(reply.text, reply.id, reply.version)          # ... chatcmpl-3f... base

        for delta in (stream := p.chat_stream("Name a color.")):
            print(delta, end="")
        print(stream.id, stream.version, stream.usage)

        p.feedback(reply.id, label="up")                         # retried safely: one row
        p.feedback(reply.id, reference="Paris", verifier="contains", task="capitals")
        p.feedback_batch([{"completion_id": reply.id, "reward": 0.5}])

        print(p.admin.versions().serving)                        # "base"
        run = p.admin.trigger_round(iterations=2, population=4)
        run = p.admin.wait_round(run.id, on_progress=lambda r: print(r.phase, r.iterations_done))
        print(run.decision, run.gate.reasons if run.gate else None)
        try:
            p.admin.promote(run.candidate_version)
        except ConflictError as exc:                             # error 409 gate_not_passed: ...
            p.admin.promote(run.candidate_version, force=True, reason=f"override: {exc.message}")
        p.admin.rollback(reason="regression report")

Chat goes through the official ``openai`` client (its own retries: ``chat_retries``); the
feedback and admin routes through httpx with :class:`~clients.transport.RetryPolicy`. Every
error is a :class:`~clients.errors.PerennialError`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import openai

from clients import calls
from clients.chat import ChatResult, ChatStream, Messages, messages_list, openai_errors
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
from clients.transport import Call, RetryPolicy, T, send, transport_error

DEFAULT_URL = "http://127.0.0.1:8000"


class Perennial:
    """A client of one Perennial gateway.

    Args:
        url: the gateway's root URL (the OpenAI API is under ``<url>/v1``).
        api_key: key for chat and feedback (None if the server runs without API keys).
        admin_key: key for :attr:`admin` calls.
        model: model id for chat; default: the one the server serves (asked once).
        timeout: seconds per HTTP request.
        retry: retry policy of feedback and admin calls.
        chat_retries: retries of the openai client for chat (connection errors, 429, 5xx).
    """

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
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._openai = openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=api_key or "none", timeout=timeout, max_retries=chat_retries
        )
        self.admin = Admin(self)

    def _run(self, call: Call[T]) -> T:
        return send(self._http, call, self.retry, self.admin_key if call.admin else self.api_key)

    @property
    def openai(self) -> openai.OpenAI:
        """The underlying official client, for anything the SDK does not wrap."""
        return self._openai

    def model(self) -> str:
        """The model id chat uses: the one given, else the served one (asked once)."""
        if self._model is None:
            self._model = self._run(calls.model_name())
        return self._model

    def health(self) -> dict[str, Any]:
        """``GET /health``: status, model, serving version. Raises ServerError (503) if degraded."""
        return self._run(calls.health())

    def chat(self, messages: Messages, *, model: str | None = None, **params: Any) -> ChatResult:
        """One chat completion.

        Args:
            messages: a user prompt, or OpenAI message dicts.
            model: default :meth:`model`.
            **params: any chat parameter (``temperature``, ``max_tokens``, ``n``...).

        Returns:
            A :class:`ChatResult` with the completion id and model version.
        """
        with openai_errors():
            raw = self._openai.chat.completions.with_raw_response.create(
                model=model or self.model(), messages=messages_list(messages), **params
            )
            return ChatResult.from_raw(raw.parse(), raw.headers)

    def chat_stream(self, messages: Messages, *, model: str | None = None, **params: Any) -> ChatStream:
        """A streamed chat completion (usage is always requested).

        Args:
            messages: a user prompt, or OpenAI message dicts.
            model: default :meth:`model`.
            **params: any chat parameter.

        Returns:
            A :class:`ChatStream`: iterate it for text deltas; ``id``/``version`` are set at once,
            ``text``/``usage``/``finish_reason`` once the iteration ends.
        """
        options = {**params.pop("stream_options", {}), "include_usage": True}
        with openai_errors():
            raw = self._openai.chat.completions.with_raw_response.create(
                model=model or self.model(),
                messages=messages_list(messages),
                stream=True,
                stream_options=options,
                **params,
            )
            return ChatStream(raw.headers, raw.parse())

    def feedback(
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
        """Rate, correct or give a reference answer for a completion (``POST /v1/feedback``).

        Args:
            completion_id: the ``chatcmpl-...`` id.
            reward, label, correction, reference, verifier, task, metadata, choice_index: see
                :class:`~clients.models.FeedbackItem` (at least one signal is required).
            idempotency_key: default: a fresh key for this call, reused by its retries.

        Returns:
            The stored :class:`Feedback` (``replayed`` if the server had it already).
        """
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
        return self._run(calls.feedback(item, idempotency_key))

    def feedback_batch(
        self, items: Iterable[FeedbackItem | Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> FeedbackBatch:
        """Several feedback items, all or nothing (``POST /v1/feedback/batch``).

        Args:
            items: :class:`FeedbackItem` objects or dicts of the same fields.
            idempotency_key: default: a fresh key for this call, reused by its retries.

        Returns:
            The stored items, in order.
        """
        return self._run(calls.feedback_batch(items, idempotency_key))

    def feedback_for(self, completion_id: str) -> list[Feedback]:
        """Stored feedback on one completion (``GET /v1/feedback``)."""
        return self._run(calls.feedback_list(completion_id))

    def close(self) -> None:
        self._http.close()
        self._openai.close()

    def __enter__(self) -> Perennial:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Admin:
    """The admin API (``/admin``, admin key): versions, rounds, suites, audit, interactions, feedback."""

    def __init__(self, client: Perennial):
        self._c = client

    def versions(self, limit: int = 200) -> VersionList:
        """Every version (newest first) with its gate decision, and the one serving."""
        return self._c._run(calls.versions(limit))

    def version(self, version_id: str) -> Version:
        """One version (raises NotFoundError)."""
        return self._c._run(calls.version(version_id))

    def promote(self, version_id: str, *, force: bool = False, reason: str | None = None) -> SwapResult:
        """Serve ``version_id`` (hot swap). Raises ConflictError ``gate_not_passed`` unless the
        gate approved it or ``force`` is given with a ``reason``."""
        return self._c._run(calls.promote(version_id, force, reason))

    def rollback(self, *, to: str | None = None, reason: str | None = None) -> SwapResult:
        """Serve ``to`` (a promoted version), by default the one that served before."""
        return self._c._run(calls.rollback(to, reason))

    def rebuild(
        self,
        version_id: str,
        *,
        wait: bool = True,
        timeout: float = 3600.0,
        poll_s: float = 1.0,
        on_progress: Callable[[Rebuild], None] | None = None,
    ) -> Rebuild:
        """Rebuild ``version_id``'s dropped snapshot from its seed log (verified by checksum).

        With ``wait`` it polls until the rebuild finished (``state`` done, present or failed),
        calling ``on_progress`` whenever the progress changes; PerennialTimeoutError after
        ``timeout`` seconds.
        """
        job = self._c._run(calls.rebuild(version_id))
        deadline = time.monotonic() + timeout
        seen = None
        while wait and not job.finished:
            if on_progress and (key := (job.state, str(job.progress))) != seen:
                seen = key
                on_progress(job)
            if time.monotonic() + poll_s > deadline:
                raise PerennialTimeoutError(f"rebuild of {version_id} still {job.state} after {timeout:g} s")
            time.sleep(poll_s)
            job = self._c._run(calls.rebuild_status(version_id))
        return job

    def audit(self, limit: int = 100) -> list[AuditEntry]:
        """The audit log of version changes, newest first."""
        return self._c._run(calls.audit(limit))

    def rounds(self, limit: int = 50) -> list[Round]:
        """Learner rounds, newest first."""
        return self._c._run(calls.rounds(limit))

    def round(self, round_id: int) -> Round:
        """One round with its per-iteration metrics and gate decision."""
        return self._c._run(calls.round_by_id(round_id))

    def trigger_round(self, **overrides: Any) -> Round:
        """Queue a round now (raises ConflictError ``round_in_progress`` if one is active).

        Args:
            **overrides: iterations, population, sigma, alpha, awd_lambda, awd_kind ("l1"/"l2"),
                minibatch, max_tokens, gate (dict: min_gain, margin, max_total_drop, confidence,
                max_kl).

        Returns:
            The queued :class:`Round`.
        """
        return self._c._run(calls.trigger(calls.round_overrides(**overrides)))

    def wait_round(
        self,
        round_id: int,
        *,
        timeout: float = 3600.0,
        poll_s: float = 2.0,
        on_progress: Callable[[Round], None] | None = None,
    ) -> Round:
        """Poll a round until it succeeded or failed.

        Args:
            round_id: the round.
            timeout: seconds before PerennialTimeoutError.
            poll_s: seconds between polls.
            on_progress: called with the round whenever its status, phase or iteration changes.

        Returns:
            The finished round (check ``status`` and ``decision``).
        """
        deadline = time.monotonic() + timeout
        seen = None
        while True:
            current = self.round(round_id)
            if on_progress and current.progress_key() != seen:
                seen = current.progress_key()
                on_progress(current)
            if current.finished:
                return current
            if time.monotonic() + poll_s > deadline:
                raise PerennialTimeoutError(f"round {round_id} still {current.phase} after {timeout:g} s")
            time.sleep(poll_s)

    def suites(self, model_version: str | None = None) -> list[Suite]:
        """Registered suites (with ``model_version``'s cached scores when given)."""
        return self._c._run(calls.suites(model_version))

    def add_suite(
        self,
        path: str | Path | None = None,
        *,
        content: str | None = None,
        name: str | None = None,
        version: int | None = None,
    ) -> Suite:
        """Upload an operator suite (JSONL: prompt, reference, verifier per line).

        Args:
            path: a JSONL file to read, or
            content: the JSONL text.
            name: default: the file's header name.
            version: default: the header's, else 1.

        Returns:
            The registered :class:`Suite` (BadRequestError names the faulty line and field).
        """
        return self._c._run(calls.add_suite(calls.suite_content(path, content), name, version))

    def remove_suite(self, name: str, *, version: str | None = None) -> list[Suite]:
        """Stop scoring a suite (every version, or one); returns the disabled rows."""
        return self._c._run(calls.remove_suite(name, version))

    def feedback(self, *, limit: int = 50, after: str | None = None, **filters: Any) -> FeedbackPage:
        """One page of stored feedback, newest first, with its caller and whether it is disabled.

        Args:
            limit, after: paging (pass the page's ``last_id`` as ``after``).
            **filters: caller (a key id), since, until (datetime or ISO text), disabled (bool).
        """
        return self._c._run(calls.stored_feedback(limit=limit, after=after, **filters))

    def disable_feedback(self, *, reason: str | None = None, **selection: Any) -> FeedbackAction:
        """Disable feedback: kept and listed, never used by the learner; audited with ``reason``.

        Args:
            reason: why (in the audit log and on the items).
            **selection: ids (a list), caller, since, until; combined with AND, at least one.

        Returns:
            The :class:`FeedbackAction` (``count`` and ``ids`` of the items disabled now).
        """
        return self._c._run(calls.feedback_action("disable", reason=reason, **selection))

    def enable_feedback(self, *, reason: str | None = None, **selection: Any) -> FeedbackAction:
        """Enable disabled feedback again (same selection as :meth:`disable_feedback`); audited."""
        return self._c._run(calls.feedback_action("enable", reason=reason, **selection))

    def delete_feedback(self, *, reason: str | None = None, **selection: Any) -> FeedbackAction:
        """Delete feedback for good (same selection as :meth:`disable_feedback`); audited."""
        return self._c._run(calls.feedback_action("delete", reason=reason, **selection))

    def learner(self) -> dict[str, Any]:
        """The learner's mode, running round and engine."""
        return self._c._run(calls.learner())

    def engine(self) -> dict[str, Any]:
        """The serving engine's state."""
        return self._c._run(calls.engine())

    def interactions(
        self, *, limit: int = 50, after: str | None = None, order: str = "desc", **filters: Any
    ) -> InteractionPage:
        """One page of logged interactions.

        Args:
            limit, after, order: paging (pass the page's ``last_id`` as ``after``).
            **filters: since, until (datetime or ISO text), version, has_feedback, caller.
        """
        return self._c._run(calls.interactions(limit=limit, after=after, order=order, **filters))

    def export_interactions(self, **filters: Any) -> Iterator[Interaction]:
        """Every matching interaction with its feedback, oldest first, streamed (JSONL)."""
        headers = {"Authorization": f"Bearer {self._c.admin_key}"} if self._c.admin_key else {}
        try:
            # The client's timeout bounds each read, not the whole export: long exports are fine.
            with self._c._http.stream(
                "GET", "/admin/interactions/export", params=calls.query(filters), headers=headers
            ) as response:
                if not response.is_success:
                    raise api_error(response.status_code, response.read(), response.headers)
                for line in response.iter_lines():
                    if line.strip():
                        yield Interaction.model_validate(json.loads(line))
        except httpx.TransportError as exc:
            raise transport_error(exc, self._c.url) from exc
