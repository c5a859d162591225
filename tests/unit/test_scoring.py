"""Likelihood scoring of multiple-choice items (evals.scoring) against a fake engine.

``FakeEngine`` (a fake, named so) tokenizes one token per character and gives every token a
fixed log-probability, so each expected number below can be worked out by hand: what is tested
is how the scorer asks (one pass per item, or one per choice) and how it turns the answers
into an item score, not the engine.
"""

from __future__ import annotations

import math

from evals.scoring import score_suites
from evals.suites import parse_suite_jsonl

HEADER = '{"suite": {"name": "mc", "version": 1, "scoring": "likelihood"}}'


class FakeEngine:
    """Characters are tokens; ``logprob[c]`` is every token c's log-probability anywhere."""

    def __init__(self, logprob: dict[str, float], fail_on: str | None = None):
        self.logprob = logprob
        self.fail_on = fail_on
        self.calls: list[str] = []

    async def tokenize(self, body: dict) -> dict:
        text = "".join(f"<{m['role']}>{m['content']}" for m in body["messages"])
        text += "<assistant>" if body["add_generation_prompt"] else ""
        return {"tokens": [ord(ch) for ch in text]}

    async def completions(self, body: dict) -> dict:
        if self.fail_on and self.fail_on in "".join(map(chr, body["prompt"])):
            raise RuntimeError("engine hiccup")
        if body.get("logprob_token_ids"):
            self.calls.append("first_token")
            top = {f"token_id:{t}": self.logprob.get(chr(t), -9.0) for t in body["logprob_token_ids"]}
            return {"choices": [{"logprobs": {"top_logprobs": [top]}}]}
        self.calls.append("sequence")
        rows = [None] + [{str(t): {"logprob": self.logprob.get(chr(t), -9.0)}} for t in body["prompt"][1:]]
        return {"choices": [{"prompt_logprobs": rows}]}

    async def chat(self, body: dict) -> dict:
        raise AssertionError("likelihood items never generate")


def suite(*items: str):
    return parse_suite_jsonl("\n".join([HEADER, *items]))


def softmax_share(values: list[float], index: int) -> float:
    top = max(values)
    return math.exp(values[index] - top) / sum(math.exp(v - top) for v in values)


async def test_distinct_first_tokens_take_one_pass_per_item():
    mc = suite('{"id": "a", "prompt": "Capital?", "choices": ["Paris", "Lyon", "Nice"], "answer": 0}')
    engine = FakeEngine({"P": -0.5, "L": -1.5, "N": -2.5})
    result = (await score_suites(engine, "m", [mc]))["mc"]
    assert engine.calls == ["first_token"]
    assert result.items["a"] == softmax_share([-0.5, -1.5, -2.5], 0) and result.accuracy == 1.0


async def test_shared_first_tokens_fall_back_to_whole_replies():
    # "mice" and "mouses" start alike: their first token cannot tell them apart
    mc = suite('{"id": "b", "prompt": "Plural of mouse?", "choices": ["mice", "mouses"], "answer": 0}')
    engine = FakeEngine(
        {"m": -0.1, "i": -0.2, "c": -0.3, "e": -0.4, "o": -1.0, "u": -1.0, "s": -1.0, "<": 0.0}
    )
    result = (await score_suites(engine, "m", [mc]))["mc"]
    assert engine.calls == ["sequence", "sequence"]
    mice, mouses = -0.1 - 0.2 - 0.3 - 0.4, -0.1 - 1.0 - 1.0 - 1.0 - 1.0 - 0.4
    assert math.isclose(result.items["b"], softmax_share([mice, mouses], 0))


async def test_sequence_method_scores_every_choice_whole():
    mc = suite('{"id": "a", "prompt": "Capital?", "choices": ["Paris", "Lyon"], "answer": 1}')
    engine = FakeEngine({"P": -0.5, "L": -1.5})  # other letters: -9 each
    whole = (await score_suites(engine, "m", [mc], method="sequence"))["mc"]
    assert engine.calls == ["sequence", "sequence"]
    paris, lyon = -0.5 - 4 * 9.0, -1.5 - 3 * 9.0
    assert math.isclose(whole.items["a"], softmax_share([paris, lyon], 1)) and whole.accuracy == 1.0
    # the first token alone prefers Paris: the two methods differ where lengths do
    first = (await score_suites(FakeEngine({"P": -0.5, "L": -1.5}), "m", [mc]))["mc"]
    assert first.items["a"] == softmax_share([-0.5, -1.5], 1) and first.accuracy == 0.0


async def test_a_failed_item_scores_zero_and_is_counted():
    mc = suite(
        '{"id": "a", "prompt": "Capital?", "choices": ["Paris", "Lyon"], "answer": 0}',
        '{"id": "b", "prompt": "Broken?", "choices": ["Yes", "No"], "answer": 0}',
    )
    result = (await score_suites(FakeEngine({"P": -0.1}, fail_on="Broken"), "m", [mc]))["mc"]
    assert result.items["b"] == 0.0 and result.failed == 1 and result.items["a"] > 0.5
