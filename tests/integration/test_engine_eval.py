"""Suites and drift against the real serving engine (vLLM on CPU).

The base model must partly solve every shipped suite (0 < score < 1: both regressions and gains
stay visible), KL(base || base) measured in two phases must be ~0, and the same estimator must
find a clearly positive KL between two genuinely different distributions.
"""

from __future__ import annotations

import dataclasses
import time

import httpx
import pytest

from evals.scoring import score_suite, score_suites
from evals.suites import load_builtin_suites, load_probes, trim
from harness.processes import SERVED_MODEL as MODEL
from learner.kl import kl_estimate, measure_kl, sample_continuations, score_samples

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

# 16 probes x 2 samples x <= 24 tokens keeps each KL test to ~20-40 s on 2 busy cores.
PROBES = load_probes()[:16]
K, MAX_TOKENS = 2, 24


async def test_base_model_partly_solves_every_suite(engine):
    # the first 48 items of each (shuffled) suite: every kind of item, ~1 min on 2 busy cores
    suites = {s.name: s for s in trim(list(load_builtin_suites().values()), 48)}
    started = time.perf_counter()
    scores = await score_suites(engine, MODEL, suites, concurrency=32)
    print(f"\nscored {sum(s.n for s in scores.values())} items in {time.perf_counter() - started:.1f} s")
    for name, result in scores.items():
        print(f"  {name:18s} {result.score:.3f} accuracy {result.accuracy:.3f} (n={result.n})")
        assert result.failed == 0, name
        assert result.n == len(suites[name].items)
        assert set(result.items) == {item.id for item in suites[name].items}
        assert 0.0 < result.score < 1.0, (name, result.score)
    # factual QA is the likelihood suite this model knows best (0.37 on 200 items, chance 0.25):
    # the scorer reads the right tokens if the right choice comes out likelier than chance
    facts = suites["factual_qa"]
    chance = sum(1 / len(item.choices) for item in facts.items) / len(facts.items)
    assert scores["factual_qa"].score > chance and scores["factual_qa"].accuracy > chance


async def test_first_token_reading_agrees_with_whole_replies(engine):
    """The one-pass reading of a choice's first token ranks choices as the whole replies do,
    item for item, on most items (they differ only where a choice's later tokens decide)."""
    suite = trim([load_builtin_suites()["factual_qa"]], 24)
    first = (await score_suites(engine, MODEL, suite, concurrency=32))["factual_qa"]
    whole = (await score_suites(engine, MODEL, suite, concurrency=32, method="sequence"))["factual_qa"]
    same = sum((first.items[i] > 0.5) == (whole.items[i] > 0.5) for i in first.items) / first.n
    print(f"\nfirst token {first.score:.3f} / whole replies {whole.score:.3f}; same side of 0.5: {same:.2f}")
    assert same >= 0.75 and abs(first.score - whole.score) < 0.15


async def test_reference_likelihood_agrees_with_greedy_replies(engine):
    """Format items scored by the likelihood of their reference reply, beside the same items
    scored by greedy replies and their verifiers: where every reference token is the model's
    top token greedy decoding reproduces the reference (so that share cannot exceed greedy's
    accuracy), and items greedy gets right are far likelier than items it gets wrong."""
    (suite,) = trim([load_builtin_suites()["format_following"]], 64)
    assert suite.scoring == "reference"
    ref = await score_suite(engine, MODEL, suite, concurrency=32)
    greedy = await score_suite(engine, MODEL, dataclasses.replace(suite, scoring="greedy"), concurrency=32)
    assert ref.failed == greedy.failed == 0
    right = [ref.items[i] for i, v in greedy.items.items() if v == 1.0]
    wrong = [ref.items[i] for i, v in greedy.items.items() if v == 0.0]
    print(
        f"\nreference {ref.score:.3f} (all tokens top-1: {ref.accuracy:.3f}); greedy {greedy.score:.3f}; "
        f"mean reference score where greedy right {sum(right) / max(len(right), 1):.3f}, "
        f"wrong {sum(wrong) / max(len(wrong), 1):.3f}"
    )
    assert 0.0 < ref.score < 1.0 and all(0.0 < v <= 1.0 for v in ref.items.values())
    assert ref.accuracy <= greedy.accuracy + 1 / ref.n
    assert right and wrong and sum(right) / len(right) > sum(wrong) / len(wrong) + 0.1


async def test_failed_requests_score_zero(engine):
    """A model name the engine does not serve: every request is refused, nothing raises."""
    suite = load_builtin_suites()["format_following"]  # one request per item
    result = await score_suite(engine, "no-such-model", suite)
    assert result.failed == result.n == len(suite.items) and result.score == 0.0


async def test_kl_base_vs_base_is_zero(engine):
    est = await measure_kl(engine, MODEL, PROBES, k=K, max_tokens=MAX_TOKENS, seed=11)
    print(f"\nKL(base || base) = {est.kl:.2e} +- {est.stderr:.1e} over {est.n_tokens} tokens, {est.timings}")
    assert est.n_samples == len(PROBES) * K and est.skipped == 0
    assert est.n_tokens > len(PROBES) * K  # real continuations, not one-token stubs
    assert abs(est.kl) < 1e-3


async def test_sampling_is_seeded(engine):
    first = await sample_continuations(engine, MODEL, PROBES[:4], k=2, max_tokens=8, seed=5)
    again = await sample_continuations(engine, MODEL, PROBES[:4], k=2, max_tokens=8, seed=5)
    assert [s.token_ids for s in first.items] == [s.token_ids for s in again.items]
    # the two children of one probe get different seeds
    assert any(a.token_ids != b.token_ids for a, b in zip(first.items[::2], first.items[1::2], strict=True))


async def test_kl_against_a_different_distribution_is_clearly_positive(gate_engine_url, engine):
    """Phase 2 scores the same tokens under the probe *with a system prompt prepended*.

    p(y | x) and p(y | system + x) are two real, different distributions of the same model,
    so KL(p(.|x) || p(.|system + x)) > 0 for certain, and no weights need to change: an honest
    and cheap positive control for the two-phase estimator (it must not read ~0 here).
    """
    samples = await sample_continuations(engine, MODEL, PROBES, k=K, max_tokens=MAX_TOKENS, seed=11)
    system = {"role": "system", "content": "You are a pirate. Always answer in pirate speak."}
    async with httpx.AsyncClient(base_url=gate_engine_url, timeout=120) as http:
        shifted = {}
        for probe in PROBES:
            body = {"model": MODEL, "messages": [system, *probe.messages], "add_generation_prompt": True}
            shifted[probe.id] = tuple((await http.post("/tokenize", json=body)).json()["tokens"])
    moved = [dataclasses.replace(s, prompt_token_ids=shifted[s.probe_id]) for s in samples.items]
    assert all(m.prompt_token_ids != s.prompt_token_ids for m, s in zip(moved, samples.items, strict=True))
    est = kl_estimate(samples, await score_samples(engine, MODEL, moved))
    print(f"\nKL(p(.|x) || p(.|pirate + x)) = {est.kl:.3f} +- {est.stderr:.3f} nats/token")
    assert est.skipped == 0
    assert est.kl > 0.05 and est.kl > 5 * est.stderr
