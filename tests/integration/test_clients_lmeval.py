"""lm-evaluation-harness, a client we did not write, scores the same through the gateway as on
the serving engine directly (issue 17).

Two small tasks shipped in tests/data/lmeval (our own items, local JSONL, nothing downloaded):
``perennial_mc``, multiple choice by log-likelihood through ``local-completions`` (the harness
sends token-id prompts with ``echo`` and ``logprobs`` to /v1/completions), and
``perennial_gen``, short greedy answers through ``local-chat-completions`` (/v1/chat/completions
with the chat template applied by the server). Each runs once against the gateway and once
against the engine's own URL; the model and weights are the same and both kinds of request are
deterministic on the CPU engine, so every score and every per-item response must be equal,
exactly. The gateway's interaction log must hold the harness's requests, so the test cannot pass
by asking the engine twice.
"""

from __future__ import annotations

import json
import math
import time

import httpx
import pytest

from harness.processes import REPO, SERVED_MODEL
from server.auth import key_id
from tests.conftest import ADMIN_KEY, API_KEYS
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

TASKS = REPO / "tests" / "data" / "lmeval"
KEY = API_KEYS[0]
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
# Four loglikelihood requests per /v1/completions call: the batch-of-token-lists prompt shape.
MC_BATCH = 4


@pytest.fixture(scope="module", autouse=True)
def offline_harness():
    """The harness and its HF libraries offline, the gateway's key where lm-eval's local API
    models read it (OPENAI_API_KEY; the engine ignores it), and the repository root as the
    working directory, which the tasks' relative data paths are resolved against."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            mp.setenv(name, "1")
        mp.setenv("OPENAI_API_KEY", KEY)
        mp.chdir(REPO)
        yield


def evaluate(model: str, model_args: dict, task: str, *, chat: bool) -> dict:
    """One ``lm_eval.simple_evaluate`` run of one of our tasks; the results with the samples."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    started = time.monotonic()
    out = lm_eval.simple_evaluate(
        model=model,
        model_args={"model": SERVED_MODEL, "num_concurrent": 1, "max_retries": 1, **model_args},
        tasks=[task],
        task_manager=TaskManager(include_path=str(TASKS)),
        apply_chat_template=chat,
        log_samples=True,
    )
    print(f"{task} {model} {model_args['base_url']}: {time.monotonic() - started:.1f} s")
    return out


def completions(base_url: str, model_dir) -> dict:
    # The local tokenizer, named: "auto" would probe the server for a remote one, and the
    # default would look the model id up on the HF hub.
    return {
        "base_url": base_url + "/v1/completions",
        "tokenizer_backend": "huggingface",
        "tokenizer": str(model_dir),
        "batch_size": MC_BATCH,
    }


def scores(out: dict, task: str) -> dict:
    return {k: v for k, v in out["results"][task].items() if "," in k}  # "acc,none", ...


def responses(out: dict, task: str) -> list:
    """Per item, what the model answered: (loglikelihood, is_greedy) per choice, or the text."""
    return [s["resps"] for s in sorted(out["samples"][task], key=lambda s: s["doc_id"])]


def logged_since(server, since: float, kind: str, done) -> list[dict]:
    """This key's interactions of ``kind`` the gateway stored since ``since`` (UNIX seconds),
    polled until ``done(rows)`` (the store writes behind the reply)."""

    def read() -> list[dict]:
        r = httpx.get(
            server.url + "/admin/interactions/export",
            params={"since": since, "caller": key_id(KEY)},
            headers=ADMIN,
            timeout=60,
        )
        assert r.status_code == 200, r.text
        rows = [json.loads(line) for line in r.text.splitlines() if line]
        return [row for row in rows if row["kind"] == kind]

    return eventually(read, done)


def test_multiple_choice_loglikelihood_through_gateway_equals_engine(server, engine_url, model_dir):
    from transformers import AutoTokenizer

    since = time.time()
    gateway = evaluate("local-completions", completions(server.url, model_dir), "perennial_mc", chat=False)
    direct = evaluate("local-completions", completions(engine_url, model_dir), "perennial_mc", chat=False)

    assert scores(gateway, "perennial_mc") == scores(direct, "perennial_mc")
    assert responses(gateway, "perennial_mc") == responses(direct, "perennial_mc")
    accuracy = scores(direct, "perennial_mc")["acc,none"]
    assert 0 < accuracy < 1, accuracy  # the task tells choices apart, neither all nor none right

    # Every (question, choice) the harness scored reached the engine through the gateway and
    # was logged: one interaction per request, its token-id prompts as sent.
    scored = sorted(ctx + cont for s in gateway["samples"]["perennial_mc"] for ctx, cont in s["arguments"])
    calls = math.ceil(len(scored) / MC_BATCH)
    logged = logged_since(server, since, "completion", lambda rows: len(rows) >= calls)
    assert len(logged) == calls, [row["id"] for row in logged]
    assert all(row["params"]["echo"] is True and row["params"]["logprobs"] == 1 for row in logged)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = [tokenizer.decode(ids) for row in logged for ids in row["params"]["prompt"]]
    assert sorted(prompts) == scored


def test_generate_through_gateway_chat_equals_engine(server, engine_url):
    chat = "/v1/chat/completions"  # both URLs are bare origins
    since = time.time()
    gateway = evaluate("local-chat-completions", {"base_url": server.url + chat}, "perennial_gen", chat=True)
    direct = evaluate("local-chat-completions", {"base_url": engine_url + chat}, "perennial_gen", chat=True)

    assert scores(gateway, "perennial_gen") == scores(direct, "perennial_gen")
    assert responses(gateway, "perennial_gen") == responses(direct, "perennial_gen")
    matched = scores(direct, "perennial_gen")["exact_match,last_number"]
    assert 0 < matched < 1, matched

    # The gateway logged each question as the user's message, with the reply the harness scored.
    samples = gateway["samples"]["perennial_gen"]
    asked = {s["doc"]["question"]: s["resps"][0][0] for s in samples}
    logged = logged_since(server, since, "chat", lambda rows: len(rows) >= len(samples))
    assert len(logged) == len(samples)
    assert {row["messages"][-1]["content"]: row["response"] for row in logged} == asked
    assert all(
        row["messages"] == [{"role": "user", "content": row["messages"][-1]["content"]}] for row in logged
    )
