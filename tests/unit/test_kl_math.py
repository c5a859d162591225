"""KL estimator math, vLLM reply parsing, doctests, and failure handling without an engine."""

from __future__ import annotations

import doctest
import math

import pytest

import learner.gate as gate
import learner.kl as kl
from engine.client import EngineClient
from engine.supervisor import free_port
from evals.scoring import score_suites
from evals.suites import load_builtin_suites, load_probes
from learner.kl import Sample, Samples, kl_estimate, measure_kl


def sample(lps, probe="p", prompt=(1, 2, 3)) -> Sample:
    return Sample(probe, tuple(prompt), tuple(range(100, 100 + len(lps))), tuple(lps))


def test_identical_logprobs_give_zero():
    s = [sample([-1.0, -2.5, -0.1]), sample([-3.0])]
    est = kl_estimate(s, [[-1.0, -2.5, -0.1], [-3.0]])
    assert est.kl == 0.0 and est.stderr == 0.0 and est.n_tokens == 4 and est.n_samples == 2


def test_per_token_ratio_and_per_sequence_mean():
    s = [sample([-1.0, -1.0]), sample([-2.0, -2.0, -2.0, -2.0])]
    base = [[-1.5, -1.5], [-2.25, -2.25, -2.25, -2.25]]  # sums of differences: 1.0 and 1.0
    est = kl_estimate(s, base)
    assert est.kl == pytest.approx(2.0 / 6)
    assert est.kl_per_sequence == pytest.approx(1.0)
    # delta-method standard error of the ratio estimator, written out
    r = 2.0 / 6
    resid = (1.0 - r * 2) ** 2 + (1.0 - r * 4) ** 2
    assert est.stderr == pytest.approx(math.sqrt(2 / 1 * resid) / 6)


def test_negative_terms_are_kept_unbiased():
    # single-sample log-ratios can be negative; the estimator must not clip them
    est = kl_estimate([sample([-2.0]), sample([-1.0])], [[-1.0], [-2.0]])
    assert est.kl == 0.0


def test_unscored_and_misaligned_samples_are_skipped():
    s = [sample([-1.0, -1.0]), sample([-1.0]), sample([-1.0, -1.0])]
    est = kl_estimate(Samples(s, 3, 1, 2, 0), [[-1.5, -1.5], None, [-1.0]])
    assert est.skipped == 2 and est.n_samples == 1 and est.kl == pytest.approx(0.5)


def test_nothing_scored_is_nan():
    est = kl_estimate([sample([-1.0])], [None])
    assert math.isnan(est.kl) and est.n_samples == 0 and est.skipped == 1


def test_continuation_logprobs_from_a_vllm_shaped_reply():
    s = Sample("p", (7, 8), (5, 2), (-0.5, -0.1))
    reply = {
        "choices": [
            {
                "prompt_logprobs": [
                    None,
                    {"8": {"logprob": -3.0, "rank": 4, "decoded_token": "a"}},
                    {"5": {"logprob": -0.7, "rank": 1, "decoded_token": "b"}},
                    {
                        "2": {"logprob": -0.2, "rank": 1, "decoded_token": ""},
                        "9": {"logprob": -0.1, "rank": 1},
                    },
                ]
            }
        ]
    }
    assert kl._continuation_logprobs(reply, s) == [-0.7, -0.2]
    reply["choices"][0]["prompt_logprobs"].pop()
    assert kl._continuation_logprobs(reply, s) is None


def test_sampling_request_disables_every_processor():
    for key, neutral in {
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
    }.items():
        assert kl.UNPROCESSED_SAMPLING[key] == neutral


@pytest.mark.parametrize("module", [kl, gate])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


async def test_dead_engine_scores_zero_and_nan_never_raises():
    client = EngineClient(f"http://127.0.0.1:{free_port()}", timeout_s=5)
    try:
        suites = dict(list(load_builtin_suites().items())[:1])
        scores = await score_suites(client, "m", suites)
        (only,) = scores.values()
        assert only.score == 0.0 and only.failed == only.n == len(next(iter(suites.values())).items)
        est = await measure_kl(client, "m", load_probes()[:3], k=2)
        assert math.isnan(est.kl) and est.skipped == 6 and est.n_samples == 0
    finally:
        await client.aclose()
