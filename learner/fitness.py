"""Fitness of the model an engine serves right now, on a minibatch of items.

* **verifiable**: greedy chat completion per item, scored in [0, 1] by the item's verifier
  (the ES paper's setting); the component is the mean score.
* **likelihood**: for rated replies and corrections, the mean per-token log-likelihood of the
  reply under the member minus the same under theta0, times the item's reward (up-rated
  replies become likelier, down-rated ones less likely), centred over the minibatch's rated
  replies where they are mostly rated down (:func:`learner.items.rated_weights`: otherwise
  drift alone, which makes any sampled reply less likely, scores as a gain). It reads
  ``prompt_logprobs`` of one ``/v1/completions`` call per item: a forward pass, no generation.
* **reference**: for verifiable items with a reference reply (not a tool call), the mean
  per-token log-probability of the reference as the member's reply, from one ``prompt_logprobs``
  pass over prompt + reference (``max_tokens=1``): the MeZO objective, continuous where the
  verifier is 0/1, and no decoding. Corrections are rated items already (the likelihood
  component, reward +1: the same quantity up to a per-item constant that z-scoring removes).
* **combined**: each component is z-scored across the population, then weighted
  (``ESConfig.fitness_weights``); a component of weight 0 is not computed at all (with
  ``verifiable`` at 0 a member decodes nothing). The raw scales differ by orders of magnitude (a verifier
  moves in steps of 1/batch, a log-likelihood by ~1e-3 per member), so a plain sum would let
  one component drown the other.

A failing item (engine error, over-long prompt, malformed reply, a verifier that fails or goes
past its bounds) scores 0 for that item and is counted in ``failed``; a round never crashes on
one bad item. Of those, the items whose verifier failed (``evals.verifiers.VerifierFailed``: a
hostile or broken spec) are counted again in ``verifier_failed``, so the round's record tells
an operator how many replies scored 0 for their verifier rather than for the engine.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from evals.scoring import ReplyTokens, reply_logprobs, reply_tokens
from evals.verifiers import VerifierError, tool_call_text
from evals.verifiers import score as verify
from learner.items import ItemSet, RatedItem, VerifiableItem, rated_weights
from weights.config import FITNESS_COMPONENTS as COMPONENTS
from weights.config import ESConfig
from weights.es import zscore

log = logging.getLogger(__name__)


class ServingEngine(Protocol):
    """What fitness needs: an engine client and the served model name (``LearnerEngine``)."""

    client: Any
    served_name: str


@dataclass(frozen=True)
class Batch:
    """The items every member of one iteration is scored on."""

    verifiable: list[VerifiableItem] = field(default_factory=list)
    rated: list[RatedItem] = field(default_factory=list)


@dataclass(frozen=True)
class MemberFitness:
    """Raw component values of one member (None: no item of that kind in the batch)."""

    verifiable: float | None
    likelihood: float | None
    failed: int
    items: int
    reference: float | None = None
    verifier_failed: int = 0  # of ``failed``: items whose verifier errored or went past its bounds


class Scored(NamedTuple):
    """Verifier scores of items (a failed item scores 0), and how many failed."""

    scores: list[float]
    failed: int  # engine error, malformed reply, or verifier failure
    verifier_failed: int  # of ``failed``: the verifier errored or went past its bounds


def greedy_body(model: str, item: VerifiableItem, max_tokens: int) -> dict[str, Any]:
    """The chat request for one verifiable item: greedy, bounded."""
    body = {
        "model": model,
        "messages": [dict(m) for m in item.messages],
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": item.max_tokens or max_tokens,
    }
    if item.tools:
        body["tools"] = [dict(t) for t in item.tools]
        if item.tool_choice is not None:
            body["tool_choice"] = item.tool_choice
    return body


def reply_text(message: dict[str, Any]) -> str:
    """What a verifier scores of a reply: its tool calls as JSON when it made any, else its text."""
    if message.get("tool_calls"):
        return tool_call_text(message["tool_calls"])
    return message.get("content") or ""


async def score_verifiable(
    engine: ServingEngine, items: list[VerifiableItem], *, max_tokens: int, concurrency: int = 32
) -> Scored:
    """Score every item with greedy generation; failed items score 0 and are counted."""
    sem = asyncio.Semaphore(concurrency)
    verifier_failed = 0

    async def one(item: VerifiableItem) -> float | None:
        nonlocal verifier_failed
        async with sem:
            try:
                reply = await engine.client.chat(greedy_body(engine.served_name, item, max_tokens))
                text = reply_text(reply["choices"][0]["message"])
            except Exception as exc:  # noqa: BLE001 - any failure scores 0, never crashes a round
                log.warning("item %s failed: %s", item.id, exc)
                return None
        try:  # in a thread: a verifier is bounded (evals.bounded), yet may take ~0.1 s of CPU
            return await asyncio.to_thread(verify, text, item.reference, item.verifier)
        except VerifierError as exc:  # a hostile or broken verifier scores 0 and is counted
            log.warning("item %s: verifier failed: %s", item.id, exc)
            verifier_failed += 1
            return None

    results = await asyncio.gather(*(one(item) for item in items))
    return Scored([r or 0.0 for r in results], sum(r is None for r in results), verifier_failed)


def reference_text(item: VerifiableItem | RatedItem) -> str | None:
    """The reply whose likelihood scores an item: a rated item's reply (or correction), a
    verifiable item's reference; None for a tool-call item or one with a verifier alone."""
    if isinstance(item, RatedItem):
        return item.completion
    return item.reference if item.reference and not item.tools else None


async def mean_logprob(engine: ServingEngine, item: VerifiableItem | RatedItem) -> float:
    """Mean per-token log-probability (nats) of the item's :func:`reference_text` as the assistant's
    reply to its messages, end of turn included: one prompt-logprob pass, no decoding.

    Raises whatever tokenizing or the engine raises, and ValueError for an item without one.
    """
    text = reference_text(item)
    if text is None:
        raise ValueError(f"item {item.id} has no reference reply")
    calls = getattr(item, "tool_calls", ())  # a rated tool-call reply: its calls as the template writes them
    tokens = await reply_tokens(
        engine.client, engine.served_name, item.messages, text, tools=item.tools, tool_calls=calls
    )
    lps = await reply_logprobs(engine.client, engine.served_name, tokens)
    return sum(lps) / len(lps)


class FitnessEvaluator:
    """Scores the engine's current weights on minibatches drawn from a fixed item set."""

    def __init__(
        self,
        engine: ServingEngine,
        items: ItemSet,
        *,
        minibatch: int,
        max_tokens: int,
        seed: int = 0,
        concurrency: int = 32,
        weights: dict[str, float] | None = None,
    ):
        """``weights``: ``ESConfig.fitness_weights``; components of weight 0 are skipped (None: its default)."""
        self.engine = engine
        self.items = items
        self.minibatch = minibatch
        self.max_tokens = max_tokens
        self.seed = seed
        self.concurrency = concurrency
        self._tokens: dict[str, ReplyTokens | None] = {}
        self._baseline: dict[str, float | None] = {}
        self.weights = (
            weights if weights is not None else ESConfig.model_fields["fitness_weights"].default_factory()
        )

    def _on(self, component: str) -> bool:
        return self.weights.get(component, 0.0) > 0

    async def prepare(self, load_base, load_master) -> None:
        """Tokenize rated items once and measure their log-likelihood under theta0.

        Args:
            load_base: coroutine function serving theta0 (``LearnerEngine.load_base``).
            load_master: coroutine function serving theta again afterwards.
        """
        if not self.items.rated or not self._on("likelihood"):
            return
        for item in self.items.rated:
            self._tokens[item.id] = await self._tokenize(item)
        await load_base()
        try:
            values = await self._loglik(self.items.rated)
        finally:
            await load_master()
        self._baseline = dict(zip((i.id for i in self.items.rated), values, strict=True))

    async def _tokenize(self, item: RatedItem) -> ReplyTokens | None:
        try:
            return await reply_tokens(
                self.engine.client,
                self.engine.served_name,
                item.messages,
                item.completion,
                tools=item.tools,  # rendered as served; a tool-call reply is weighed as its calls
                tool_calls=item.tool_calls,
            )
        except Exception as exc:  # noqa: BLE001
            log.warning("item %s cannot be tokenized: %s", item.id, exc)
            return None

    async def _loglik(self, items: list[RatedItem]) -> list[float | None]:
        """Mean per-token log-probability of each item's reply (None on failure)."""
        sem = asyncio.Semaphore(self.concurrency)

        async def one(item: RatedItem) -> float | None:
            tokens = self._tokens.get(item.id)
            if tokens is None:
                return None
            async with sem:
                try:
                    lps = await reply_logprobs(self.engine.client, self.engine.served_name, tokens)
                except Exception as exc:  # noqa: BLE001
                    log.warning("item %s: log-likelihood failed: %s", item.id, exc)
                    return None
            return sum(lps) / len(lps)

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def _reference_logliks(self, items: list[VerifiableItem]) -> list[float | None]:
        """:func:`mean_logprob` of each item that has a reference reply (None: none, or failed)."""
        sem = asyncio.Semaphore(self.concurrency)

        async def one(item: VerifiableItem) -> float | None:
            async with sem:
                try:
                    return await mean_logprob(self.engine, item)
                except Exception as exc:  # noqa: BLE001 - scores 0 and is counted, never crashes
                    log.warning("item %s: reference log-likelihood failed: %s", item.id, exc)
                    return None

        return list(await asyncio.gather(*(one(i) for i in items)))

    def batch(self, iteration: int) -> Batch:
        """The iteration's minibatch: a seeded sample (all items if there are fewer)."""
        pool: list[VerifiableItem | RatedItem] = [*self.items.verifiable, *self.items.rated]
        rng = random.Random(self.seed * 7919 + iteration)
        chosen = pool if len(pool) <= self.minibatch else rng.sample(pool, self.minibatch)
        return Batch(
            [i for i in chosen if isinstance(i, VerifiableItem)],
            [i for i in chosen if isinstance(i, RatedItem)],
        )

    async def evaluate(self, batch: Batch) -> MemberFitness:
        """Score whatever the engine serves now on ``batch``."""
        greedy = batch.verifiable if self._on("verifiable") else []
        rated = batch.rated if self._on("likelihood") else []
        refs = [i for i in batch.verifiable if reference_text(i) is not None] if self._on("reference") else []
        (scores, failed, verifier_failed), liks, ref_liks = await asyncio.gather(
            score_verifiable(self.engine, greedy, max_tokens=self.max_tokens, concurrency=self.concurrency),
            self._loglik(rated),
            self._reference_logliks(refs),
        )
        failed += sum(v is None for v in ref_liks)
        ref_values = [v if v is not None else 0.0 for v in ref_liks]
        rel = []
        for item, weight, value in zip(rated, rated_weights(rated), liks, strict=True):
            base = self._baseline.get(item.id)
            ok = value is not None and base is not None
            failed += not ok
            rel.append(weight * (value - base) if ok else 0.0)
        return MemberFitness(
            verifiable=sum(scores) / len(scores) if scores else None,
            likelihood=sum(rel) / len(rel) if rel else None,
            failed=failed,
            items=len(batch.verifiable) + len(batch.rated),
            reference=sum(ref_values) / len(ref_values) if ref_values else None,
            verifier_failed=verifier_failed,
        )


def combine(members: list[MemberFitness], weights: dict[str, float]) -> list[float]:
    """One fitness per member: z-score each present component, then a weighted sum.

    >>> combine([MemberFitness(1.0, None, 0, 1), MemberFitness(0.0, None, 0, 1)], {"verifiable": 1})
    [1.0, -1.0]
    """
    total = [0.0] * len(members)
    for name in COMPONENTS:
        values = [getattr(m, name) for m in members]
        weight = float(weights.get(name, 0.0))
        if weight == 0 or any(v is None for v in values):
            continue
        for i, z in enumerate(zscore(values).tolist()):
            total[i] += weight * z
    return total
