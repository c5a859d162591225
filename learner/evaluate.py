"""Score prior-capability suites against any vLLM OpenAI server (serving or learner engine).

Every item is one greedy (temperature 0) chat completion; its reply is scored by the item's
verifier. All requests go out concurrently (bounded by a semaphore) so vLLM batches them: on
the 2-core CPU machine batching is what makes ~180 items take well under a minute. An item
whose request fails scores 0 and is counted in ``failed``, never raised: a broken candidate
must lose the gate, not crash the round.

    scores = await score_suites(EngineClient(url), "smollm2-135m-instruct", load_builtin_suites())
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from evals.suites import Suite, SuiteItem
from evals.verifiers import score as verify

log = logging.getLogger(__name__)


class ChatClient(Protocol):
    """What scoring needs from an engine client (``engine.client.EngineClient`` fits)."""

    async def chat(self, body: dict) -> dict: ...


@dataclass
class SuiteScore:
    """The result of one suite on one model version.

    ``score`` is the mean item score in [0, 1]; ``items`` maps item id -> score; ``failed`` counts
    items whose request failed (scored 0); ``wall_s`` is the time until the suite's last item
    finished (suites scored together overlap).
    """

    suite: str
    version: int
    sha256: str
    score: float
    n: int
    failed: int
    wall_s: float
    items: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def greedy_body(model: str, item: SuiteItem, max_tokens: int | None = None) -> dict[str, Any]:
    """The chat request for one item: greedy, the item's (or the given) token budget."""
    return {
        "model": model,
        "messages": [dict(m) for m in item.messages],
        "max_tokens": max_tokens or item.max_tokens,
        "temperature": 0.0,
        "top_p": 1.0,
    }


async def _score_item(
    client: ChatClient, model: str, item: SuiteItem, sem: asyncio.Semaphore, max_tokens: int | None
) -> tuple[float, str | None]:
    """Return (score, error). Any error of the request or of the reply's shape scores 0."""
    async with sem:
        try:
            reply = await client.chat(greedy_body(model, item, max_tokens))
            text = reply["choices"][0]["message"]["content"] or ""
        # EngineClient raises EngineUnavailable / EngineHTTPError, other clients httpx errors, a
        # malformed body KeyError / IndexError / TypeError: all mean "this item failed".
        except Exception as exc:  # noqa: BLE001
            return 0.0, f"{type(exc).__name__}: {exc}"
    return verify(text, item.reference, item.verifier), None


async def _score_one(
    client: ChatClient,
    model: str,
    suite: Suite,
    sem: asyncio.Semaphore,
    max_tokens: int | None,
    started: float,
) -> SuiteScore:
    results = await asyncio.gather(
        *(_score_item(client, model, item, sem, max_tokens) for item in suite.items)
    )
    items = {item.id: s for item, (s, _) in zip(suite.items, results, strict=True)}
    errors = [err for _, err in results if err is not None]
    if errors:
        log.warning(
            "suite %s: %d of %d requests failed (scored 0), e.g. %s",
            suite.name,
            len(errors),
            len(items),
            errors[0],
        )
    n = len(items)
    return SuiteScore(
        suite=suite.name,
        version=suite.version,
        sha256=suite.sha256,
        score=sum(items.values()) / n if n else 0.0,
        n=n,
        failed=len(errors),
        wall_s=time.perf_counter() - started,
        items=items,
    )


async def score_suite(
    client: ChatClient,
    model: str,
    suite: Suite,
    *,
    concurrency: int = 16,
    max_tokens: int | None = None,
) -> SuiteScore:
    """Score one suite with greedy chat completions.

    Args:
        client: an engine client with ``async chat(body) -> dict`` (e.g. ``EngineClient``).
        model: the served model name.
        suite: the suite to score.
        concurrency: requests in flight at once (vLLM batches them).
        max_tokens: overrides every item's ``max_tokens`` when given.
    Returns:
        The :class:`SuiteScore`; failed requests score 0 and are counted, never raised.
    """
    sem = asyncio.Semaphore(concurrency)
    return await _score_one(client, model, suite, sem, max_tokens, time.perf_counter())


async def score_suites(
    client: ChatClient,
    model: str,
    suites: Mapping[str, Suite] | Iterable[Suite],
    *,
    concurrency: int = 16,
    max_tokens: int | None = None,
) -> dict[str, SuiteScore]:
    """Score several suites at once, sharing one concurrency limit so vLLM batches across them.

    Args:
        client: an engine client with ``async chat(body) -> dict``.
        model: the served model name.
        suites: ``{name: Suite}`` (as from ``load_builtin_suites``) or an iterable of suites.
        concurrency: requests in flight at once, over all suites.
        max_tokens: overrides every item's ``max_tokens`` when given.
    Returns:
        ``{suite name: SuiteScore}`` in the order given.
    """
    listed = list(suites.values()) if isinstance(suites, Mapping) else list(suites)
    sem = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    results = await asyncio.gather(
        *(_score_one(client, model, suite, sem, max_tokens, started) for suite in listed)
    )
    return {score.suite: score for score in results}
