"""Score prior-capability suites against any vLLM OpenAI server (serving or learner engine).

A suite says how its items are scored (``Suite.scoring``):

* ``greedy``: one greedy (temperature 0) chat completion per item, scored in [0, 1] by the
  item's verifier. For items whose answer must be generated (arithmetic, format following).
* ``likelihood``: multiple choice, without decoding. The item's score is the probability of
  the answer normalized over the choices (a softmax of the choices' log-probabilities as the
  assistant's reply to ``messages``, the engine's chat template applied): 1 when the model is
  sure of the right answer, 1/k when it cannot tell k choices apart, 0 when it is sure of a
  wrong one. Its mean over a suite is the accuracy the model would have if it picked a choice
  in proportion to these probabilities. Continuous, so a small weight change moves an item's
  score a little instead of flipping it between 0 and 1: the paired comparison of two versions
  on these items is far less noisy than greedy scoring (see ``learner.gate``).
  ``SuiteScore.accuracy`` also reports the share of items whose answer is strictly the most
  likely choice (lm-evaluation-harness's ``acc``; for greedy suites, the share scored 1).

  How the log-probabilities are read (``method``): ``first_token`` (the default) reads the
  log-probability of each choice's *first* reply token from one forward pass over the prompt
  (``/v1/completions`` with ``max_tokens=1`` and ``logprob_token_ids``); it is used where the
  choices' first tokens all differ (the options are listed in the prompt, so the first token
  commits to one of them) and falls back to ``sequence`` for the other items. ``sequence``
  sums the log-probabilities of every token of each choice's reply (end of turn included), one
  ``prompt_logprobs`` pass per choice, as lm-evaluation-harness does. On the 2-vCPU EPYC a
  prompt pass runs at ~360 tokens/s and the shipped suites' choices are 4 x 60-110 tokens, so
  ``sequence`` costs ~4x as much; ``bench/gate_power.py`` compares the two.
* ``reference``: items written like greedy ones (a reference reply and its verifier), scored
  without decoding by how likely the model is to give exactly the reference as its reply: the
  geometric mean of the reference tokens' probabilities (end of turn included), from one
  ``prompt_logprobs`` pass. 1 when the model is sure of every token of it. For suites whose
  reference is the one right reply up to what the verifier forgives (yes/no, a quoted word, a
  number in words): greedy scoring of such items flips whole items under small weight noise
  (a near-tie at one token), this moves a little. ``accuracy`` is then the share of items whose
  every reference token is the model's most likely one (greedy decoding would reproduce it).

All requests go out concurrently (bounded by a semaphore) so vLLM batches them. An item whose
request fails scores 0 and is counted in ``failed``, never raised: a broken candidate must lose
the gate, not crash the round.

    scores = await score_suites(EngineClient(url), "smollm2-135m-instruct", load_builtin_suites())
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from evals.suites import Suite, SuiteItem
from evals.verifiers import score as verify

log = logging.getLogger(__name__)


class EngineAPI(Protocol):
    """What scoring needs from an engine client (``engine.client.EngineClient`` fits)."""

    async def chat(self, body: dict) -> dict: ...

    async def completions(self, body: dict) -> dict: ...

    async def tokenize(self, body: dict) -> dict: ...


@dataclass(frozen=True)
class ReplyTokens:
    """A chat with an assistant reply as token ids; ``ids[start:]`` are the reply's tokens."""

    ids: list[int]
    start: int


# Token ids depend on the tokenizer and chat template only, never on the weights: a suite's
# choices are tokenized once per process (two /tokenize calls each, a few ms of HTTP apiece,
# ~12,000 calls for the shipped suites) and reused for every version scored after.
_TOKEN_CACHE: OrderedDict[str, ReplyTokens] = OrderedDict()
TOKEN_CACHE_SIZE = 100_000


async def reply_tokens(
    client: EngineAPI,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    reply: str,
    *,
    tools: Sequence[Mapping[str, Any]] = (),
    tool_calls: Sequence[Mapping[str, Any]] = (),
) -> ReplyTokens:
    """Tokenize ``messages`` + ``reply`` (as the assistant's turn) with the engine's chat template.

    ``tools`` are rendered as a chat request's (into the prompt, as served); with ``tool_calls``
    the reply is an assistant message making those calls (``reply`` is then not rendered), so
    its tokens are the calls as the template writes them. Cached per (model name, messages,
    reply, tools, calls) for the life of the process.

    Raises:
        ValueError: the template does not render the reply as an extension of the prompt
            (then the reply's tokens cannot be told apart).
    """
    key = json.dumps(
        [model, list(messages), reply, *([list(tools), list(tool_calls)] if tools or tool_calls else [])],
        sort_keys=True,
    )
    if key in _TOKEN_CACHE:
        _TOKEN_CACHE.move_to_end(key)
        return _TOKEN_CACHE[key]
    answer: dict[str, Any] = {"role": "assistant", "content": reply}
    if tool_calls:
        answer = {"role": "assistant", "content": None, "tool_calls": [dict(c) for c in tool_calls]}
    tokens = await _tokenize_reply(client, model, messages, answer, [dict(t) for t in tools])
    _TOKEN_CACHE[key] = tokens
    if len(_TOKEN_CACHE) > TOKEN_CACHE_SIZE:
        _TOKEN_CACHE.popitem(last=False)
    return tokens


async def _tokenize_reply(
    client: EngineAPI, model: str, messages: Sequence[Mapping[str, Any]], answer: dict, tools: list
) -> ReplyTokens:
    with_tools = {"tools": tools} if tools else {}
    prompt = await client.tokenize(
        {"model": model, "messages": list(messages), "add_generation_prompt": True, **with_tools}
    )
    full = await client.tokenize(
        {"model": model, "add_generation_prompt": False, "messages": [*messages, answer], **with_tools}
    )
    head, ids = prompt["tokens"], full["tokens"]
    if ids[: len(head)] != head or len(ids) <= len(head):
        raise ValueError("the chat template does not extend the prompt with the reply")
    return ReplyTokens(ids, len(head))


async def reply_logprobs(client: EngineAPI, model: str, tokens: ReplyTokens) -> list[float]:
    """Log-probability of each reply token given what precedes it: one forward pass, no decoding."""
    return [logprob for logprob, _ in await _reply_rows(client, model, tokens)]


async def _reply_rows(client: EngineAPI, model: str, tokens: ReplyTokens) -> list[tuple[float, int]]:
    """(log-probability, rank among the vocabulary; 1 = the most likely) of each reply token."""
    body = {"model": model, "prompt": tokens.ids, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
    rows = (await client.completions(body))["choices"][0]["prompt_logprobs"]
    entries = [rows[i][str(tokens.ids[i])] for i in range(tokens.start, len(tokens.ids))]
    return [(float(e["logprob"]), int(e.get("rank") or 0)) for e in entries]


@dataclass
class SuiteScore:
    """The result of one suite on one model version.

    ``score`` is the mean item score in [0, 1]; ``items`` maps item id -> score (the gate's
    paired comparison needs them); ``failed`` counts items whose request failed (scored 0);
    ``wall_s`` is the time until the suite's last item finished (suites scored together
    overlap).
    """

    suite: str
    version: int
    sha256: str
    score: float
    n: int
    failed: int
    wall_s: float
    scoring: str = "greedy"
    items: dict[str, float] = field(default_factory=dict)
    accuracy: float | None = None  # share of items answered right

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


async def _greedy_item(
    client: EngineAPI, model: str, item: SuiteItem, sem: asyncio.Semaphore, max_tokens: int | None
) -> float:
    async with sem:
        reply = await client.chat(greedy_body(model, item, max_tokens))
    return verify(reply["choices"][0]["message"]["content"] or "", item.reference, item.verifier)


async def _likelihood_item(
    client: EngineAPI, model: str, item: SuiteItem, sem: asyncio.Semaphore, method: str
) -> tuple[float, bool]:
    """(normalized probability of the answer, whether it is strictly the most likely choice)."""
    # Tokenizing counts against the concurrency bound too: unbounded, a 439-item suite sent
    # ~1,800 tokenize requests at once, and httpx's pool spent minutes of CPU queueing them
    # (192 s against a dead engine; the item requests below take the semaphore again).
    async with sem:
        tokens = await asyncio.gather(*(reply_tokens(client, model, item.messages, c) for c in item.choices))
    firsts = [t.ids[t.start] for t in tokens]
    prompt = tokens[0].ids[: tokens[0].start]
    one_pass = (
        method == "first_token"
        and len(set(firsts)) == len(firsts)
        and all(t.ids[: t.start] == prompt for t in tokens)
    )
    if one_pass:
        logprobs = await _first_token_logprobs(client, model, prompt, firsts, sem)
    else:

        async def whole(t: ReplyTokens) -> float:
            async with sem:
                return sum(await reply_logprobs(client, model, t))

        logprobs = list(await asyncio.gather(*(whole(t) for t in tokens)))
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    best = logprobs[item.answer]
    return weights[item.answer] / sum(weights), all(
        best > lp for i, lp in enumerate(logprobs) if i != item.answer
    )


async def _reference_item(
    client: EngineAPI, model: str, item: SuiteItem, sem: asyncio.Semaphore
) -> tuple[float, bool]:
    """(geometric-mean probability of the reference reply's tokens, whether each is the top one)."""
    async with sem:
        tokens = await reply_tokens(client, model, item.messages, item.reference)
        rows = await _reply_rows(client, model, tokens)
    mean = sum(logprob for logprob, _ in rows) / len(rows)
    return math.exp(mean), all(rank == 1 for _, rank in rows)


async def _first_token_logprobs(
    client: EngineAPI, model: str, prompt: list[int], firsts: list[int], sem: asyncio.Semaphore
) -> list[float]:
    """Log-probability of each of ``firsts`` as the reply's first token: one forward pass."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": 1,
        "temperature": 0.0,
        "logprobs": 1,
        "logprob_token_ids": firsts,
        "return_tokens_as_token_ids": True,
    }
    async with sem:
        reply = await client.completions(body)
    top = reply["choices"][0]["logprobs"]["top_logprobs"][0]
    return [float(top[f"token_id:{t}"]) for t in firsts]


async def _score_item(
    client: EngineAPI,
    model: str,
    suite: Suite,
    item: SuiteItem,
    sem: asyncio.Semaphore,
    max_tokens: int | None,
    method: str,
) -> tuple[float, bool, str | None]:
    """Return (score, answered right, error). An item that fails twice scores 0.

    One retry, because a loaded engine sometimes drops a pooled keep-alive connection (seen as
    ``ReadError`` on 1 of 1,000 items on 2 busy cores): a lost connection must not count as a
    forgotten answer. EngineClient raises EngineUnavailable / EngineHTTPError, other clients
    httpx errors, a malformed body KeyError / IndexError / TypeError, a template ValueError.
    """
    error = ""
    for attempt in range(2):
        try:
            if suite.scoring == "likelihood":
                return *(await _likelihood_item(client, model, item, sem, method)), None
            if suite.scoring == "reference":
                return *(await _reference_item(client, model, item, sem)), None
            score = await _greedy_item(client, model, item, sem, max_tokens)
            return score, score == 1.0, None
        except Exception as exc:  # noqa: BLE001 - any failure of this item, see above
            error = f"{type(exc).__name__}: {exc}"
            if attempt == 0:
                await asyncio.sleep(0.2)
    return 0.0, False, error


async def _score_one(
    client: EngineAPI,
    model: str,
    suite: Suite,
    sem: asyncio.Semaphore,
    max_tokens: int | None,
    started: float,
    method: str = "first_token",
) -> SuiteScore:
    results = await asyncio.gather(
        *(_score_item(client, model, suite, item, sem, max_tokens, method) for item in suite.items)
    )
    items = {item.id: score for item, (score, _, _) in zip(suite.items, results, strict=True)}
    errors = [err for _, _, err in results if err is not None]
    if errors:
        log.warning(
            "suite %s: %d of %d items failed (scored 0), e.g. %s",
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
        scoring=suite.scoring,
        items=items,
        accuracy=sum(right for _, right, _ in results) / n if n else None,
    )


async def score_suite(
    client: EngineAPI,
    model: str,
    suite: Suite,
    *,
    concurrency: int = 16,
    max_tokens: int | None = None,
    method: str = "first_token",
) -> SuiteScore:
    """Score one suite (greedy or likelihood, as the suite says).

    Args:
        client: an engine client (``chat``, ``completions``, ``tokenize``), e.g. ``EngineClient``.
        model: the served model name.
        suite: the suite to score.
        concurrency: requests in flight at once (vLLM batches them).
        max_tokens: overrides every greedy item's ``max_tokens`` when given.
    Returns:
        The :class:`SuiteScore`; failed requests score 0 and are counted, never raised.
    """
    sem = asyncio.Semaphore(concurrency)
    return await _score_one(client, model, suite, sem, max_tokens, time.perf_counter(), method)


async def score_suites(
    client: EngineAPI,
    model: str,
    suites: Mapping[str, Suite] | Iterable[Suite],
    *,
    concurrency: int = 16,
    max_tokens: int | None = None,
    method: str = "first_token",
) -> dict[str, SuiteScore]:
    """Score several suites at once, sharing one concurrency limit so vLLM batches across them.

    Args:
        client: an engine client (``chat``, ``completions``, ``tokenize``).
        model: the served model name.
        suites: ``{name: Suite}`` (as from ``load_builtin_suites``) or an iterable of suites.
        concurrency: requests in flight at once, over all suites.
        max_tokens: overrides every greedy item's ``max_tokens`` when given.
        method: likelihood items: ``first_token`` (one forward pass per item where the choices'
            first tokens differ) or ``sequence`` (every choice's whole reply, one pass each).
    Returns:
        ``{suite name: SuiteScore}`` in the order given.
    """
    listed = list(suites.values()) if isinstance(suites, Mapping) else list(suites)
    sem = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    results = await asyncio.gather(
        *(_score_one(client, model, suite, sem, max_tokens, started, method) for suite in listed)
    )
    return {score.suite: score for score in results}
