"""KL to the base: mean KL(candidate || base) on probe prompts, measured on one engine.

(How far a candidate moved in function space. Its distance in weight space, ||theta - theta0||,
is what the learner engine reports as ``drift``; the two are different measures.)

The learner engine holds the candidate and the base as fp32 masters and loads one at a time,
so the measurement has two phases:

1. candidate loaded: :func:`sample_continuations` draws ``k`` continuations per probe at
   temperature 1 (top_p 1, no top_k / min_p / penalties), keeping the sampled token ids and the
   candidate's log-probability of each (``logprobs`` of the chat API, ``return_token_ids``);
2. base loaded: :func:`score_samples` sends exactly those token sequences back as token-id
   prompts to ``/v1/completions`` with ``prompt_logprobs=0`` and ``max_tokens=1``, which returns
   the base's log-probability of every prompt token (vLLM skips the prefix cache for such
   requests, so no KV computed under other weights is reused).

:func:`kl_estimate` then averages ``log p_cand(y_t) - log p_base(y_t)`` over all sampled tokens:
a Monte Carlo estimate of the **per-token** KL(candidate || base) (sequence KL divided by the
mean continuation length; scale-free across ``max_tokens``), with a standard error. The
end-of-sequence token is included, so a change in when the model stops counts.

Why these logprobs are the right ones: vLLM's default ``logprobs_mode`` is ``raw_logprobs``
(the model's log-softmax before any sampling processor), and prompt logprobs are always raw.
Sampling at temperature 1 with every processor disabled therefore draws from exactly the
distribution whose logprobs are returned. The sampling parameters are all sent explicitly,
because vLLM otherwise fills omitted ones from the model's ``generation_config.json``
(some models set top_k or a repetition penalty there), which would bias the estimate.

Sampling is seeded per request (``seed + probe_index * k``; vLLM gives the j-th of ``n``
children ``seed + j``), so a given candidate always yields the same samples.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from evals.suites import Probe

log = logging.getLogger(__name__)

# Everything that could make the sampling distribution differ from the raw model distribution.
UNPROCESSED_SAMPLING = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}


class DriftClient(Protocol):
    """What the measurement needs from an engine client (``EngineClient`` fits)."""

    async def chat(self, body: dict) -> dict: ...

    async def completions(self, body: dict) -> dict: ...


@dataclass(frozen=True)
class Sample:
    """One continuation sampled from the candidate, with the candidate's per-token logprobs."""

    probe_id: str
    prompt_token_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]


@dataclass
class Samples:
    """Phase 1's output: the samples and how they were drawn."""

    items: list[Sample]
    n_probes: int
    k: int
    max_tokens: int
    seed: int
    failed_probes: int = 0
    wall_s: float = 0.0

    @property
    def missing(self) -> int:
        """Samples asked for but not obtained (failed probes, malformed choices)."""
        return self.n_probes * self.k - len(self.items)


@dataclass
class KLEstimate:
    """Mean KL(candidate || base) per token (``kl``), with its standard error and counts.

    ``kl`` is NaN when no sample could be scored (the gate then fails closed).
    """

    kl: float
    stderr: float
    kl_per_sequence: float
    n_samples: int
    n_tokens: int
    skipped: int
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _sample_from(probe_id: str, prompt_ids: list[int], choice: dict) -> Sample | None:
    ids = choice.get("token_ids") or []
    content = (choice.get("logprobs") or {}).get("content") or []
    if not ids or len(ids) != len(content):
        return None
    logprobs = tuple(float(c["logprob"]) for c in content)
    return Sample(probe_id, tuple(prompt_ids), tuple(ids), logprobs)


async def _sample_probe(
    client: DriftClient, model: str, probe: Probe, body: dict[str, Any], sem: asyncio.Semaphore
) -> list[Sample] | None:
    async with sem:
        try:
            messages = [dict(m) for m in probe.messages]
            reply = await client.chat({**body, "model": model, "messages": messages})
            prompt_ids = reply["prompt_token_ids"]
            samples = [_sample_from(probe.id, prompt_ids, choice) for choice in reply["choices"]]
        except Exception as exc:  # noqa: BLE001 - a failed probe is counted, not raised
            log.debug("KL probe %s failed: %s", probe.id, exc)
            return None
    return [s for s in samples if s is not None]


async def sample_continuations(
    client: DriftClient,
    model: str,
    probes: Sequence[Probe],
    *,
    k: int = 2,
    max_tokens: int = 32,
    seed: int = 0,
    concurrency: int = 16,
) -> Samples:
    """Phase 1 (candidate loaded): sample ``k`` continuations per probe with their logprobs.

    Args:
        client: engine client with ``chat`` (e.g. ``EngineClient``).
        model: the served model name.
        probes: the probe prompts (``evals.suites.load_probes()``).
        k: continuations per probe.
        max_tokens: the length cap of each continuation.
        seed: base seed; probe ``i`` uses ``seed + i * k`` (children ``+ j``).
        concurrency: probe requests in flight at once.
    Returns:
        :class:`Samples`; failed probes are counted in ``failed_probes`` and ``missing``.
    """
    started = time.perf_counter()
    sem = asyncio.Semaphore(concurrency)
    common = {
        **UNPROCESSED_SAMPLING,
        "n": k,
        "max_tokens": max_tokens,
        "logprobs": True,
        "return_token_ids": True,
    }
    results = await asyncio.gather(
        *(
            _sample_probe(client, model, probe, {**common, "seed": seed + i * k}, sem)
            for i, probe in enumerate(probes)
        )
    )
    items = [s for r in results if r for s in r]
    failed = sum(r is None for r in results)
    if failed:
        log.warning("KL sampling: %d of %d probe requests failed", failed, len(probes))
    return Samples(items, len(probes), k, max_tokens, seed, failed, time.perf_counter() - started)


def _continuation_logprobs(reply: dict, sample: Sample) -> list[float] | None:
    prompt_logprobs = reply["choices"][0].get("prompt_logprobs") or reply.get("prompt_logprobs")
    start = len(sample.prompt_token_ids)
    if not prompt_logprobs or len(prompt_logprobs) != start + len(sample.token_ids):
        return None
    out = []
    for token_id, entry in zip(sample.token_ids, prompt_logprobs[start:], strict=True):
        # The scored token is always in the dict, keyed by its id as a string.
        out.append(float(entry[str(token_id)]["logprob"]))
    return out


async def _score_one(
    client: DriftClient, model: str, sample: Sample, sem: asyncio.Semaphore
) -> list[float] | None:
    body = {
        "model": model,
        "prompt": [*sample.prompt_token_ids, *sample.token_ids],
        "max_tokens": 1,
        "temperature": 0.0,
        "prompt_logprobs": 0,
    }
    async with sem:
        try:
            return _continuation_logprobs(await client.completions(body), sample)
        except Exception as exc:  # noqa: BLE001 - an unscored sample is skipped, not raised
            log.debug("KL scoring of a %s sample failed: %s", sample.probe_id, exc)
            return None


async def score_samples(
    client: DriftClient, model: str, samples: Samples | Sequence[Sample], *, concurrency: int = 16
) -> list[list[float] | None]:
    """Phase 2 (reference loaded): the loaded model's logprob of every sampled token.

    Args:
        client: engine client with ``completions`` (e.g. ``EngineClient``).
        model: the served model name.
        samples: phase 1's samples (their prompt + continuation token ids are scored as is).
        concurrency: requests in flight at once.
    Returns:
        One list of per-token logprobs per sample, aligned with ``samples``; ``None`` where the
        request failed or the answer did not line up with the sample.
    """
    items = samples.items if isinstance(samples, Samples) else list(samples)
    sem = asyncio.Semaphore(concurrency)
    scored = list(await asyncio.gather(*(_score_one(client, model, s, sem) for s in items)))
    if unscored := sum(x is None for x in scored):
        log.warning("KL scoring: %d of %d samples could not be scored", unscored, len(items))
    return scored


def kl_estimate(
    samples: Samples | Sequence[Sample], base_logprobs: Sequence[Sequence[float] | None]
) -> KLEstimate:
    """Per-token Monte Carlo KL(candidate || base) from phase 1 and phase 2.

    ``kl = sum_i sum_t (lc_it - lb_it) / sum_i n_i`` (a ratio estimator; its standard error is
    the delta-method one, treating each sample as a unit).

    >>> s = [Sample("p", (1,), (5, 6), (-1.0, -2.0))]
    >>> kl_estimate(s, [[-1.5, -2.5]]).kl
    0.5

    Args:
        samples: phase 1's samples.
        base_logprobs: phase 2's result, aligned with ``samples``.
    Returns:
        A :class:`KLEstimate` (``kl`` NaN if nothing could be scored).
    """
    items = samples.items if isinstance(samples, Samples) else list(samples)
    sums, lengths, skipped = [], [], 0
    for sample, base in zip(items, base_logprobs, strict=True):
        if base is None or len(base) != len(sample.logprobs):
            skipped += 1
            continue
        sums.append(math.fsum(c - b for c, b in zip(sample.logprobs, base, strict=True)))
        lengths.append(len(base))
    n, tokens = len(sums), sum(lengths)
    if n == 0 or tokens == 0:
        return KLEstimate(math.nan, math.nan, math.nan, 0, 0, skipped)
    kl = math.fsum(sums) / tokens
    residuals = math.fsum((d - kl * m) ** 2 for d, m in zip(sums, lengths, strict=True))
    stderr = math.sqrt(n / (n - 1) * residuals) / tokens if n > 1 else math.nan
    return KLEstimate(kl, stderr, math.fsum(sums) / n, n, tokens, skipped)


async def measure_kl(
    client: DriftClient,
    model: str,
    probes: Sequence[Probe],
    *,
    load_reference: Callable[[], Awaitable[Any]] | None = None,
    k: int = 2,
    max_tokens: int = 32,
    seed: int = 0,
    concurrency: int = 16,
) -> KLEstimate:
    """Both phases: sample from what is loaded now, call ``load_reference``, score, estimate.

    Args:
        client: engine client with ``chat`` and ``completions``.
        model: the served model name.
        probes: the probe prompts.
        load_reference: awaited between the phases, e.g. to load the base into the engine (and
            reset its prefix cache); ``None`` measures the loaded model against itself.
        k, max_tokens, seed, concurrency: as in :func:`sample_continuations`.
    Returns:
        The :class:`KLEstimate`, with ``timings`` (``sample_s``, ``load_s``, ``score_s``).
    """
    samples = await sample_continuations(
        client, model, probes, k=k, max_tokens=max_tokens, seed=seed, concurrency=concurrency
    )
    loaded = time.perf_counter()
    if load_reference is not None:
        await load_reference()
    scored = time.perf_counter()
    base = await score_samples(client, model, samples, concurrency=concurrency)
    estimate = kl_estimate(samples, base)
    estimate.skipped += samples.missing
    estimate.timings = {
        "sample_s": samples.wall_s,
        "load_s": scored - loaded,
        "score_s": time.perf_counter() - scored,
    }
    return estimate
