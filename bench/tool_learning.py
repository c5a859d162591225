"""Tool-call learning: does a learner round on reference tool calls make the served model call its
tools correctly more often? (slow; by hand)

    .venv/bin/python bench/tool_learning.py [--train 96] [--check 100] [--rounds 1] [--seed 0]
        [--iterations N --population N --minibatch N --max-tokens N ...] [--out bench/results/tool_learning.json]

A fresh ``perennial serve`` on the embedded default (SQLite, the learner inside the gateway, the
bundled SmolLM2-135M-Instruct with its default tool template and ``pythonic`` parser; data in
``bench/.work/tool_learning``), the schedule off (``PERENNIAL_LEARNER_INTERVAL_S=0``): only this
script triggers rounds.

The task: three fixed function tools (:data:`TOOLS`: ``get_weather(city)``,
``get_time(city)``, ``convert_currency(amount, from_currency, to_currency)``) and generated user
requests that each call for one of them with specific arguments (:func:`requests`), asked as the
next turn of an agent session whose earlier turns hold one call of each tool with its result
(:data:`HISTORY`; without it the base model calls no tool at all under ``auto``). A TRAIN set
(the users' chats, ``--train``) and a disjoint CHECK set (``--check``; no prompt of it is ever
asked before it is measured, nor given feedback).

1. **Before**: through the gateway with the official ``openai`` client, greedy, ``tools`` and
   ``tool_choice="auto"`` as an agent would, every CHECK prompt once: a reply is *correct* when its
   tool calls, written as ``evals.verifiers.tool_call_text`` writes them, pass the project's
   ``json`` verifier against the reference call (the learner's own comparison: name and arguments
   equal as JSON, no case folding); *name* when its first call names the right function.
2. **Feedback**: every TRAIN prompt is asked the same way (the users' chats), and its completion
   gets feedback with the reference call, the form docs/tools.md documents:
   ``{"completion_id": ..., "verifier": "json", "reference": "{\\"name\\": ..., \\"arguments\\": {...}}"}``.
3. **Rounds**: ``POST /admin/learner/rounds`` (ES knobs from the flags, the learner's defaults for
   any not given), waited for; its decision and gate reasons printed; the CHECK set measured again
   (what serves after the round). With ``--rounds 2`` the TRAIN requests are asked again (new
   completions, each with its reference call as feedback) before the second round, which starts
   from what serves then: a round learns from the feedback that came since the last one.

Prints a table (before / after each round: correct-call share with a 95% Wilson interval, the
paired change against before with a 95% bootstrap interval, name-only share, decision, round
seconds) and writes ``--out``. Measured (bench/README.md, "Tool-call learning"): with N = 8, 3
iterations, one round took 10 min and the whole run 26 min on 2 loaded vCPUs; the default
round (N = 16, 12 iterations) scores 8x as many members.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.online_measure import base_intervals, gate_record  # noqa: E402
from evals.verifiers import VerifierError, score, tool_call_text  # noqa: E402
from harness.processes import shared_model_dir, start_server  # noqa: E402
from learner.gate import paired_interval  # noqa: E402
from weights.config import ESConfig, scalar_type  # noqa: E402

API_KEY, ADMIN_KEY = "sk-tools", "admin-tools"
WORK = REPO / "bench/.work/tool_learning"
ROUND_FLAGS = ("iterations", "population", "sigma", "alpha", "awd_lambda", "minibatch", "max_tokens")


def _tool(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(properties)},
        },
    }


TOOLS = [
    _tool("get_weather", "Get the current weather in a city.", {"city": {"type": "string"}}),
    _tool("get_time", "Get the current local time in a city.", {"city": {"type": "string"}}),
    _tool(
        "convert_currency",
        "Convert an amount of money from one currency to another (ISO codes, e.g. USD).",
        {
            "amount": {"type": "number"},
            "from_currency": {"type": "string"},
            "to_currency": {"type": "string"},
        },
    ),
]
CITIES = [
    "Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Cairo", "Lima", "Oslo", "Dublin",
    "Vienna", "Prague", "Lisbon", "Athens", "Warsaw", "Seoul", "Delhi", "Sydney", "Toronto", "Chicago",
    "Boston", "Denver", "Miami", "Nairobi", "Lagos", "Bangkok", "Manila", "Jakarta", "Havana", "Quito",
]  # fmt: skip
CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "INR"]
WEATHER = [
    "What's the weather like in {city}?",
    "Is it raining in {city} right now?",
    "How hot is it in {city} today?",
    "Tell me the weather in {city}.",
]
TIME = [
    "What time is it in {city}?",
    "What's the local time in {city} right now?",
    "Tell me the current time in {city}.",
]
MONEY = [
    "Convert {amount} {src} to {dst}.",
    "How much is {amount} {src} in {dst}?",
    "I have {amount} {src}. What is that in {dst}?",
]


def requests(seed: int = 0) -> list[dict[str, Any]]:
    """Every distinct request the generator can write, shuffled: ``{"prompt", "call"}`` where
    ``call`` is the reference ``{"name", "arguments"}``."""
    out, seen = [], set()
    rng = random.Random(seed)
    for city in CITIES:
        for t in WEATHER:
            out.append(
                {"prompt": t.format(city=city), "call": {"name": "get_weather", "arguments": {"city": city}}}
            )
        for t in TIME:
            out.append(
                {"prompt": t.format(city=city), "call": {"name": "get_time", "arguments": {"city": city}}}
            )
    for _ in range(400):
        amount, src, dst = rng.choice([5, 10, 20, 50, 75, 100, 250, 500, 1000]), *rng.sample(CURRENCIES, 2)
        t = rng.choice(MONEY)
        prompt = t.format(amount=amount, src=src, dst=dst)
        if prompt in seen:
            continue
        seen.add(prompt)
        args = {"amount": amount, "from_currency": src, "to_currency": dst}
        out.append({"prompt": prompt, "call": {"name": "convert_currency", "arguments": args}})
    rng.shuffle(out)
    return out


def split(n_train: int, n_check: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Disjoint TRAIN and CHECK sets, each a third per tool as far as the pool allows."""
    by_tool: dict[str, list[dict]] = {}
    for r in requests(seed):
        by_tool.setdefault(r["call"]["name"], []).append(r)
    train, check = [], []
    for k, rows in enumerate(by_tool.values()):
        c = n_check // 3 + (k < n_check % 3)
        t = n_train // 3 + (k < n_train % 3)
        check += rows[:c]
        train += rows[c : c + t]
    rng = random.Random(seed + 1)
    rng.shuffle(train)
    rng.shuffle(check)
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in check}
    return train, check


def _exchange(user: str, name: str, args: dict[str, Any], result: str, answer: str) -> list[dict[str, Any]]:
    call = {
        "id": f"call_{name}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }
    return [
        {"role": "user", "content": user},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": result},
        {"role": "assistant", "content": answer},
    ]


# The agent session so far: one call of each tool, its result and the answer (a city and
# currencies that no TRAIN or CHECK request names). Without it the base model never calls a
# tool under auto (0 of 100 CHECK requests; it answers in text, often inventing a time or
# weather), so a round would have no correct member to learn from.
HISTORY = [
    *_exchange(
        "What's the weather in Reykjavik?",
        "get_weather",
        {"city": "Reykjavik"},
        '{"temp_c": 3, "sky": "snow"}',
        "It is 3 °C and snowing in Reykjavik.",
    ),
    *_exchange(
        "What time is it in Auckland?",
        "get_time",
        {"city": "Auckland"},
        '{"time": "09:41"}',
        "It is 09:41 in Auckland.",
    ),
    *_exchange(
        "How much is 40 SEK in NOK?",
        "convert_currency",
        {"amount": 40, "from_currency": "SEK", "to_currency": "NOK"},
        '{"amount": 41.2}',
        "40 SEK is 41.20 NOK.",
    ),
]


def body(model: str, prompt: str) -> dict[str, Any]:
    """An agent's turn: the session so far (:data:`HISTORY`), the user's request, the tools,
    auto, greedy."""
    return {
        "model": model,
        "messages": [*HISTORY, {"role": "user", "content": prompt}],
        "tools": TOOLS,
        "tool_choice": "auto",
        "temperature": 0.0,
        "max_tokens": 64,
    }


def judge(message: dict[str, Any], call: dict[str, Any]) -> tuple[float, float, str]:
    """(correct, name right, what the model wrote) of one reply against the reference call."""
    calls = message.get("tool_calls") or []
    text = tool_call_text(calls) if calls else (message.get("content") or "")
    try:
        correct = score(text, json.dumps(call), "json") if calls else 0.0
    except VerifierError:
        correct = 0.0
    name = float(bool(calls) and (calls[0].get("function") or {}).get("name") == call["name"])
    return correct, name, text


async def ask_all(oai: AsyncOpenAI, model: str, rows: list[dict], concurrency: int = 8) -> list[dict]:
    """Each row asked once through the gateway: its completion id, version and judgement."""
    sem = asyncio.Semaphore(concurrency)

    async def one(row: dict) -> dict:
        async with sem:
            raw = await oai.chat.completions.with_raw_response.create(**body(model, row["prompt"]))
        reply = raw.parse().model_dump()
        correct, name, text = judge(reply["choices"][0]["message"], row["call"])
        return {
            "id": reply["id"],
            "version": raw.headers.get("x-perennial-model-version", "unknown"),
            "correct": correct,
            "name": name,
            "text": text,
        }

    return list(await asyncio.gather(*(one(r) for r in rows)))


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if not n:
        return (0.0, 0.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


async def measure(oai: AsyncOpenAI, model: str, check: list[dict], label: str) -> dict[str, Any]:
    started = time.perf_counter()
    replies = await ask_all(oai, model, check)
    n = len(replies)
    correct = sum(r["correct"] for r in replies)
    versions: dict[str, int] = {}
    for r in replies:
        versions[r["version"]] = versions.get(r["version"], 0) + 1
    per_tool: dict[str, list[float]] = {}
    for row, r in zip(check, replies, strict=True):
        per_tool.setdefault(row["call"]["name"], []).append(r["correct"])
    out = {
        "label": label,
        "n": n,
        "correct": round(correct / n, 4),
        "correct_ci95": wilson(correct, n),
        "name": round(sum(r["name"] for r in replies) / n, 4),
        "no_call": round(sum(not r["text"].startswith(("{", "[")) for r in replies) / n, 4),
        "per_tool": {k: round(sum(v) / len(v), 4) for k, v in per_tool.items()},
        "versions": versions,
        "items": {row["prompt"]: r["correct"] for row, r in zip(check, replies, strict=True)},
        "examples": [
            {"prompt": row["prompt"], "reference": row["call"], "reply": r["text"][:200]}
            for row, r in list(zip(check, replies, strict=True))[:6]
        ],
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(
        f"[{label}] correct {out['correct']:.3f} {out['correct_ci95']} name {out['name']:.3f} "
        f"no call {out['no_call']:.3f} per tool {out['per_tool']} versions {versions} ({out['wall_s']} s)",
        flush=True,
    )
    return out


async def give_feedback(url: str, oai: AsyncOpenAI, model: str, train: list[dict]) -> dict[str, Any]:
    """The users' chats, then the reference call as feedback on each (docs/tools.md's form)."""
    replies = await ask_all(oai, model, train)
    sent = 0
    async with httpx.AsyncClient(
        base_url=url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=120
    ) as c:
        for row, reply in zip(train, replies, strict=True):
            fb = {
                "completion_id": reply["id"],
                "verifier": "json",
                "reference": json.dumps(row["call"]),
                "task": "tool_calls",
            }
            r = await c.post("/v1/feedback", json=fb)
            r.raise_for_status()
            sent += 1
    correct = sum(r["correct"] for r in replies) / max(1, len(replies))
    print(
        f"[feedback] {sent} reference calls sent (the users' own replies were correct {correct:.3f})",
        flush=True,
    )
    return {"sent": sent, "train_correct_as_served": round(correct, 4)}


def admin_headers() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN_KEY}"}


async def run_round(url: str, knobs: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    r = httpx.post(url + "/admin/learner/rounds", json=knobs, headers=admin_headers(), timeout=60)
    if r.status_code != 202:
        raise RuntimeError(f"round trigger refused: {r.status_code} {r.text}")
    round_id, seen, deadline = r.json()["id"], None, time.monotonic() + timeout_s
    print(f"[round {round_id}] triggered with {knobs or 'the learner defaults'}", flush=True)
    kept: dict[str, Any] = {}  # a round shows its items and resolved ES config only while it runs
    while time.monotonic() < deadline:
        try:
            run = httpx.get(
                f"{url}/admin/learner/rounds/{round_id}", headers=admin_headers(), timeout=60
            ).json()
        except httpx.HTTPError:  # a gateway starved of CPU answers late; ask again
            await asyncio.sleep(10)
            continue
        metrics = run.get("metrics") or {}
        kept.update({k: metrics[k] for k in ("items", "config") if k in metrics})
        now = (run["status"], metrics.get("phase"))
        if now != seen:
            print(f"[round {round_id}] {now[0]} {now[1] or ''}", flush=True)
            seen = now
        if run["status"] in ("succeeded", "failed"):
            run["metrics"] = {**kept, **(run.get("metrics") or {})}
            return run
        await asyncio.sleep(5)
    raise TimeoutError(f"round {round_id} not finished after {timeout_s} s")


def round_summary(run: dict[str, Any]) -> dict[str, Any]:
    gate, metrics = run.get("gate") or {}, run.get("metrics") or {}
    rows = gate_record(run).get("checks") or []  # the decision's check rows
    target = next((c for c in rows if isinstance(c, dict) and c.get("name") == "target_gain"), None)
    suites = base_intervals(rows)  # served - base per suite, as the gate measured it
    return {
        "id": run["id"],
        "status": run["status"],
        "decision": run.get("decision") or run["status"],
        "error": run.get("error"),
        "reasons": gate.get("reasons"),
        "target_gain": target,
        "suites_vs_base": suites,
        "gate_target": (metrics.get("gate") or {}).get("target"),
        "items": metrics.get("items"),
        "config": metrics.get("config"),
        "seconds": run.get("seconds"),
        "candidate_version": run.get("candidate_version"),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    train, check = split(args.train, args.check, args.seed)
    knobs = {k: getattr(args, k) for k in ROUND_FLAGS if getattr(args, k) is not None}
    if WORK.exists():
        shutil.rmtree(WORK)
    env = {
        "PERENNIAL_MODEL_DIR": str(shared_model_dir()),
        "PERENNIAL_API_KEYS": API_KEY,
        "PERENNIAL_ADMIN_KEY": ADMIN_KEY,
        "PERENNIAL_ENGINE_START_TIMEOUT_S": "900",
        "PERENNIAL_LEARNER_INTERVAL_S": "0",  # no schedule: only this script triggers rounds
    }
    started = time.perf_counter()
    gw = start_server(WORK, env, timeout=900)
    result: dict[str, Any] = {
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "knobs": knobs,
        "tools": [t["function"]["name"] for t in TOOLS],
        "train": len(train),
        "check": len(check),
        "rounds": [],
    }

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        slim = json.loads(json.dumps(result))
        for m in (slim.get("before"), *(r.get("after") for r in slim["rounds"])):
            if m:
                m.pop("items", None)
        args.out.write_text(json.dumps(slim, indent=1) + "\n")

    try:
        async with AsyncOpenAI(base_url=gw.url + "/v1", api_key=API_KEY, max_retries=2, timeout=900) as oai:
            model = (await oai.models.list()).data[0].id
            print(f"gateway up: {gw.url} ({time.perf_counter() - started:.0f} s); model {model}", flush=True)
            before = result["before"] = await measure(oai, model, check, "before")
            save()
            for r in range(args.rounds):
                result.setdefault("feedback", []).append(await give_feedback(gw.url, oai, model, train))
                run = await run_round(gw.url, knobs, args.round_timeout_s)
                record = round_summary(run)
                print(
                    f"[round {record['id']}] {record['decision']} in {record['seconds']} s; "
                    f"reasons: {record['reasons']}; error: {record['error']}",
                    flush=True,
                )
                after = await measure(oai, model, check, f"after round {r + 1}")
                record["after"] = after
                record["change"] = paired_interval(
                    after["items"], before["items"], 0.95, key="tool_learning"
                ).to_json()
                result["rounds"].append(record)
                save()
    finally:
        gw.stop()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    save()
    return result


def table(result: dict[str, Any]) -> None:
    b = result["before"]
    print(
        f"\n{'':<14} {'correct call':>13} {'95% CI':>16} {'change vs before [95% CI]':>28} "
        f"{'name only':>10} {'decision':>10} {'round s':>8}"
    )
    print(
        f"{'before':<14} {b['correct']:>13.3f} {str(tuple(b['correct_ci95'])):>16} {'':>28} {b['name']:>10.3f}"
    )
    for k, r in enumerate(result["rounds"], 1):
        a, ch = r["after"], r["change"]
        change = f"{ch['mean']:+.3f} [{ch['low']:+.3f}, {ch['high']:+.3f}]"
        print(
            f"{f'after round {k}':<14} {a['correct']:>13.3f} {str(tuple(a['correct_ci95'])):>16} {change:>28} "
            f"{a['name']:>10.3f} {r['decision']:>10} {r['seconds'] or 0:>8.0f}"
        )


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=96)
    p.add_argument("--check", type=int, default=100)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--round-timeout-s", type=float, default=5400)
    for knob in ROUND_FLAGS:
        kind, _ = scalar_type(ESConfig.model_fields[knob].annotation)  # the knob's one declaration
        p.add_argument(
            f"--{knob.replace('_', '-')}", type=kind, default=None, help="round knob (default: the learner's)"
        )
    p.add_argument("--out", type=Path, default=REPO / "bench/results/tool_learning.json")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    result = asyncio.run(main_async(args))
    table(result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
