"""The reference-likelihood fitness and the held-out pool: arithmetic checked against a direct
computation with transformers on a tiny random-weights model, and the stable split."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace as NS

import pytest

from learner.feedback_items import build_round_items, heldout_bucket, heldout_pool
from learner.fitness import FitnessEvaluator, mean_logprob
from learner.heldout import TargetScores, paired, resolve_scoring
from learner.items import ItemSet, parse_item


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny Llama (tests/support/tiny_model.py) and its tokenizer, loaded with transformers."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.processes import CACHE
    from tests.support.tiny_model import write_tiny_model

    bundled = next((p for p in (CACHE / "models").glob("*") if (p / "tokenizer.json").exists()), None)
    if bundled is None:
        pytest.skip("the bundled model is not converted on this machine yet")
    out = write_tiny_model(tmp_path_factory.mktemp("tiny"), bundled, init=0.05)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(out), torch


def chat_ids(tok, messages, generation_prompt: bool) -> list[int]:
    text = tok.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)
    return list(tok(text, add_special_tokens=False)["input_ids"])


class TransformersClient:
    """The two engine calls the likelihood path makes (/tokenize, /v1/completions with
    prompt_logprobs), answered by a transformers model the way vLLM answers them."""

    def __init__(self, model, tokenizer, torch):
        self.model, self.tok, self.torch = model, tokenizer, torch

    async def tokenize(self, body: dict) -> dict:
        return {"tokens": chat_ids(self.tok, body["messages"], body["add_generation_prompt"])}

    async def completions(self, body: dict) -> dict:
        assert body["max_tokens"] == 1 and body["prompt_logprobs"] == 0
        ids = body["prompt"]
        with self.torch.no_grad():
            logits = self.model(self.torch.tensor([ids])).logits[0]
        logp = self.torch.log_softmax(logits.double(), dim=-1)
        rows = [None] + [{str(ids[i]): {"logprob": float(logp[i - 1, ids[i]])}} for i in range(1, len(ids))]
        return {"choices": [{"prompt_logprobs": rows}]}


def direct_reference_logprob(model, tok, torch, messages, reference) -> float:
    """Mean log-probability of the reference's tokens (end of turn included), computed directly."""
    head = chat_ids(tok, messages, True)
    full = chat_ids(tok, [*messages, {"role": "assistant", "content": reference}], False)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0].double(), dim=-1)
    values = [float(logp[i - 1, full[i]]) for i in range(len(head), len(full))]
    return sum(values) / len(values)


def test_reference_fitness_equals_a_direct_computation(tiny):
    model, tok, torch = tiny
    engine = NS(client=TransformersClient(model, tok, torch), served_name="tiny")
    items = ItemSet(
        verifiable=[
            parse_item({"prompt": f"What is {a} + {b}?", "reference": str(a + b), "verifier": "number"}, k)
            for k, (a, b) in enumerate([(12, 30), (45, 47), (9, 99)], start=1)
        ]
    )
    ev = FitnessEvaluator(engine, items, minibatch=3, max_tokens=4, weights={"reference": 1.0})
    member = asyncio.run(ev.evaluate(ev.batch(0)))
    direct = [direct_reference_logprob(model, tok, torch, i.messages, i.reference) for i in items.verifiable]
    assert member.verifiable is None and member.likelihood is None and member.failed == 0
    assert member.reference == pytest.approx(sum(direct) / 3, abs=1e-9)
    one = asyncio.run(mean_logprob(engine, items.verifiable[0]))
    assert one == pytest.approx(direct[0], abs=1e-9) and one < 0


def test_a_verifier_weight_of_0_decodes_nothing():
    class NoChat:
        async def chat(self, body):
            raise AssertionError("decoded")

    from evals.verifiers import parse_verifier
    from learner.items import VerifiableItem

    user = ({"role": "user", "content": "q"},)
    items = ItemSet(
        verifiable=[VerifiableItem("v", user, "", parse_verifier({"type": "regex", "pattern": "x"}))]
    )
    ev = FitnessEvaluator(
        NS(client=NoChat(), served_name="m"), items, minibatch=1, max_tokens=4, weights={"reference": 1}
    )
    member = asyncio.run(ev.evaluate(ev.batch(0)))
    assert member.reference is None and member.verifiable is None  # no reference text: not scored


# ---- the held-out pool -----------------------------------------------------------------------


def row(seq: int, cid: str, task: str | None = "addition", caller: str = "c"):
    fb = NS(
        id=f"fb{seq}",
        seq=seq,
        completion_id=cid,
        caller=caller,
        task=task,
        reward=None,
        label="up",
        correction=None,
        reference=str(seq),
        verifier=None,
        choice_index=0,
    )
    chat = NS(kind="chat", messages=[{"role": "user", "content": f"q{seq}"}], params={}, choices=[])
    return NS(seq=seq, feedback=fb, interaction=chat, response=f"a{seq}")


def test_the_split_is_stable_across_rounds_and_restarts():
    ids = [f"chatcmpl-{k:04d}" for k in range(400)]
    held = {c for c in ids if heldout_bucket(c, 0.25)}
    assert 60 < len(held) < 140  # about a quarter
    assert held == {c for c in ids if heldout_bucket(c, 0.25)}  # a pure hash: a restart agrees
    # rounds see different slices of the feedback; an item held out in one is held out in all,
    # and no round trains on a held-out completion (the split is never rebalanced)
    rows = [row(k, c) for k, c in enumerate(ids)]
    for lo, hi in [(0, 3), (0, 40), (40, 41), (100, 400)]:
        items = build_round_items(rows[lo:hi], 0.25)
        trained = {i.id.split(":")[0] for i in [*items.train.verifiable, *items.train.rated]}
        assert not trained & {f"fb{k}" for k, c in enumerate(ids) if c in held}
    # the pool of a later round holds every held-out item of the earlier ones
    pool, summary = heldout_pool(
        [r for r in reversed(rows) if r.feedback.completion_id in held], max_per_task=10_000
    )
    assert {i.id for i in pool.verifiable} == {f"fb{k}:ref" for k, c in enumerate(ids) if c in held}
    assert summary["tasks"] == {"addition": 2 * len(held)}


def test_the_pool_keeps_the_newest_items_per_task():
    rows = [row(s, f"c{s}", task="a" if s % 2 else None) for s in range(20, 0, -1)]  # newest first
    pool, summary = heldout_pool(rows, max_per_task=4)
    assert summary["tasks"] == {"": 4, "a": 4} and summary["left_out"] == {"over_cap": 32}
    refs = sorted(int(i.id[2:].split(":")[0]) for i in pool.verifiable)
    assert refs == [17, 18, 19, 20]  # each task's 4 newest items: two rows of two items each


def test_items_that_failed_for_one_version_are_left_out_of_the_comparison():
    cand = TargetScores({"a": -1.0, "b": -2.0, "c": -0.5}, failed=0)
    inc = TargetScores({"a": -1.1, "c": -0.7}, failed=1)
    assert paired(cand, inc) == ({"a": -1.0, "c": -0.5}, {"a": -1.1, "c": -0.7})
    assert math.isclose(cand.mean, -7 / 6) and cand.to_json()["items"] == 3


def test_greedy_target_scoring_pairs_the_verifiers_scores_of_greedy_replies():
    """learner_target_scoring=greedy: the check compares what users see (the verifier's score of
    each verifiable item's greedy reply), whatever the reference likelihood did."""
    cand = TargetScores({"a": -2.5, "b": -2.4, "r": -1.0}, greedy={"a": 1.0, "b": 1.0})
    inc = TargetScores({"a": -2.2, "b": -2.1, "r": -1.1}, greedy={"a": 0.0, "b": 1.0})
    assert paired(cand, inc, "greedy") == ({"a": 1.0, "b": 1.0}, {"a": 0.0, "b": 1.0})
    assert paired(cand, inc, "likelihood") == paired(cand, inc)
    assert set(paired(cand, inc)[0]) == {"a", "b", "r"}


def _greedy(n: int, score: float = 1.0) -> TargetScores:
    return TargetScores({f"r{i}": -1.0 for i in range(n)}, greedy={f"v{i}": score for i in range(n)})


@pytest.mark.parametrize(
    ("setting", "cand_n", "inc_n", "min_items", "expected"),
    [
        ("auto", 16, 16, 16, "greedy"),  # enough verifiable items both versions answered
        ("auto", 40, 15, 16, "likelihood"),  # only 15 in common: too few for a 0/1 decision
        ("auto", 0, 0, 16, "likelihood"),  # thumbs only: no verifier, likelihood decides
        ("auto", 1, 1, 0, "greedy"),  # min_target_items 0 still needs one verifiable item
        ("auto", 0, 0, 0, "likelihood"),
        ("likelihood", 64, 64, 16, "likelihood"),  # forced either way
        ("greedy", 0, 0, 16, "greedy"),  # forced: the check then says the pool is too small
    ],
)
def test_auto_target_scoring_decides_on_greedy_where_the_pool_has_verifiable_items(
    setting, cand_n, inc_n, min_items, expected
):
    assert resolve_scoring(setting, _greedy(cand_n), _greedy(inc_n), min_items) == expected


def test_auto_scoring_turns_a_greedy_gain_with_a_likelihood_drop_into_a_promotion():
    """The case behind ``auto``: the candidate answers more held-out items right while its
    reference likelihood falls. Likelihood rejects it; auto (greedy) promotes it."""
    from evals.thresholds import Thresholds
    from learner.gate import reject_without_suites
    from learner.heldout import TARGET_UNITS

    n = 48
    inc = TargetScores({f"v{i}": -1.0 for i in range(n)}, greedy={f"v{i}": float(i < 15) for i in range(n)})
    cand = TargetScores({f"v{i}": -1.2 for i in range(n)}, greedy={f"v{i}": float(i < 27) for i in range(n)})
    t = Thresholds()
    verdicts = {}
    for setting in ("likelihood", "auto"):
        scoring = resolve_scoring(setting, cand, inc, t.min_target_items)
        c, i = paired(cand, inc, scoring)
        verdicts[setting] = reject_without_suites(c, i, t, unit=TARGET_UNITS[scoring])
    assert verdicts["likelihood"] is not None and not verdicts["likelihood"].promote
    assert "nats/token" in verdicts["likelihood"].reasons[0]
    assert verdicts["auto"] is None  # passed the target check: the suites decide next
