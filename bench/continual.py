"""The continual run: users keep chatting and rating, the schedule runs rounds, the served model is
measured after each one (slow; by hand).

    .venv/bin/python bench/continual.py [--arms "defaults;NAME:KEY=VALUE,..."] [--rounds 6] [--task addition|concise]
        [--feedback-per-round 96] [--rate 0.5] [--check-items 200] [--user-temperature 0.0]
        [--out bench/results/continual.json]

Per arm, a fresh ``perennial serve`` on the embedded default (SQLite, the learner inside the
gateway, the bundled SmolLM2-135M-Instruct; data in ``bench/.work/continual/<arm>``) with the
scheduler on (``PERENNIAL_LEARNER_INTERVAL_S`` short, ``PERENNIAL_LEARNER_MIN_FEEDBACK`` =
``--feedback-per-round``): nothing here triggers a round. Simulated users (``clients.simulator``)
chat at ``--rate`` chats per second through the gateway the whole time and give feedback the way
the task's users do (``addition``: the reference answer; ``concise``: thumbs only).

Measured through the gateway, greedy, as users see it: before the first round (the base) and
after each round,

* ``addition``: the served accuracy on ``--check-items`` fixed additions that no user ever asks
  (the shipped held-out file, then more pairs drawn apart from everything users may ask);
  ``concise``: the share of replies to the open prompts that the hidden preference accepts;
* every prior suite: the paired interval of served - base per suite that the gate measured for
  the served version (its decision's ``suite:<name>:base`` checks: the same items scored on the
  learner engine, whose prompt log-probabilities the public API does not give). A rejected round
  leaves the served version, and so its intervals, as they were.

Arms: ``defaults`` (no setting changed) and any ``name:KEY=VALUE,KEY=VALUE`` of ``PERENNIAL_*``
settings separated by ``;`` (``--arms "defaults;small_pool:LEARNER_HELDOUT_MAX_ITEMS=32"``).

Writes ``--out`` (JSON: per arm ``rounds`` [{round, decision, served_version, target,
suites: {name: interval}, seconds}], ``target_gain`` (served after the last round - base, a
fraction) and ``worst_suite_lower_bound`` (the lowest served - base lower bound over all rounds
and suites, a fraction)), and a plot beside it (target and every suite against round number).
A round here takes 7-15 min on 2 CPU cores, so 6 rounds take 1-2 hours per arm.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.online_measure import GatewayChat, base_intervals, gate_record  # noqa: E402
from clients.sim_tasks import ADDITION_PROMPT, OPEN_PROMPTS, STYLES, Ask, ReferenceTask, builtin_task  # noqa: E402
from clients.simulator import SimulationConfig, simulate  # noqa: E402
from evals.scoring import score_suite  # noqa: E402
from evals.suites import Suite, parse_suite_jsonl  # noqa: E402
from evals.tasks.make_addition import _excluded as suite_pairs  # noqa: E402
from evals.thresholds import Thresholds  # noqa: E402
from harness.processes import shared_model_dir, start_server  # noqa: E402
from learner.gate import paired_interval  # noqa: E402

API_KEY, ADMIN_KEY = "sk-continual", "admin-continual"
HELDOUT = REPO / "evals/tasks/addition/heldout.jsonl"
TRAIN = REPO / "evals/tasks/addition/train.jsonl"


def addends(text: str) -> set[tuple[int, int]]:
    """The (a, b) of every "What is a + b?" in ``text`` (the shipped addition prompts)."""
    return {(int(a), int(b)) for a, b in re.findall(r"What is (\d+) \+ (\d+)\?", text)}


def check_items(n: int, seed: int = 7) -> tuple[list[dict[str, Any]], set[tuple[int, int]]]:
    """``n`` fixed addition items (the shipped held-out ones first) and their pairs (never asked)."""
    rows = [json.loads(line) for line in HELDOUT.read_text().splitlines() if line.strip()][:n]
    pairs, train = addends(" ".join(r["prompt"] for r in rows)), addends(TRAIN.read_text())
    rng = random.Random(seed)
    while len(rows) < n:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if (a, b) in pairs or (a, b) in train:
            continue
        pairs.add((a, b))
        prompt = ADDITION_PROMPT.format(a=a, b=b)
        rows.append(
            {"id": f"check-{len(rows):03d}", "prompt": prompt, "reference": str(a + b), "verifier": "number"}
        )
    return rows, pairs


def user_task(name: str, excluded: set[tuple[int, int]], seed: int):
    """What the simulated users ask: additions apart from the check set, or open prompts."""
    if name != "addition":
        return builtin_task(name)
    # nor their reverses, nor the prior arithmetic suite's additions (that would train on the suite)
    excluded = excluded | {(b, a) for a, b in excluded} | suite_pairs()
    rng, asks = random.Random(seed), []
    while len(asks) < 2000:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if (a, b) not in excluded:
            messages = ({"role": "user", "content": ADDITION_PROMPT.format(a=a, b=b)},)
            asks.append(Ask(messages, "addition", str(a + b), "number"))
    return ReferenceTask("addition", asks)


async def measure(url: str, model: str, task: str, check: Suite) -> dict[str, Any]:
    """The served model's target score through the gateway, per item, as users see it."""
    started = time.perf_counter()
    async with AsyncOpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=2, timeout=600) as oai:
        client = GatewayChat(oai)
        if task == "addition":
            scored = await score_suite(client, model, check, concurrency=16, max_tokens=16)
            target = dict(scored.items)
        else:  # the hidden preference of the users, on every open prompt
            prefers, target = STYLES[task], {}
            for i, prompt in enumerate(OPEN_PROMPTS):
                body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 64}
                reply = await client.chat({**body, "temperature": 0.0})
                target[f"open-{i}"] = float(prefers(reply["choices"][0]["message"]["content"] or ""))
    return {
        "target": target,
        "versions": dict(client.versions),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def admin(url: str, path: str) -> Any:
    return httpx.get(url + path, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=60).json()


async def users(
    url: str, task, rate: float, stop: asyncio.Event, report: list, temperature: float = 0.0
) -> None:
    """Simulated users chatting and giving feedback at a steady rate until ``stop``."""
    batch = 0
    while not stop.is_set():
        config = SimulationConfig(
            url=url, api_key=API_KEY, count=16, rate=rate, concurrency=4, seed=batch, temperature=temperature
        )
        report.append((await simulate(task, config)).to_json())
        batch += 1


def mean(values: dict[str, float]) -> float:
    return sum(values.values()) / max(1, len(values))


async def run_arm(name: str, env: dict[str, str], args, save) -> dict[str, Any]:
    """One arm's run; ``save(result)`` after each measured round, so a stopped run keeps its rounds."""
    work = REPO / "bench/.work/continual" / name
    rows, excluded = check_items(args.check_items)
    check = parse_suite_jsonl(
        "\n".join(json.dumps(r) for r in rows), name="addition_check", version=1, source="bench"
    )
    confidence = Thresholds().confidence
    server_env = {
        "PERENNIAL_MODEL_DIR": str(shared_model_dir()),
        "PERENNIAL_API_KEYS": API_KEY,
        "PERENNIAL_ADMIN_KEY": ADMIN_KEY,
        "PERENNIAL_ENGINE_START_TIMEOUT_S": "900",
        "PERENNIAL_LEARNER_INTERVAL_S": "20",
        "PERENNIAL_LEARNER_MIN_FEEDBACK": str(args.feedback_per_round),
        "PERENNIAL_LEARNER_FAILURE_BACKOFF_S": "30",
        **env,
    }
    if work.exists() and args.fresh:
        import shutil

        shutil.rmtree(work)
    gw = start_server(work, server_env, timeout=900)
    model = httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {API_KEY}"}).json()["data"][
        0
    ]["id"]
    print(f"[{name}] gateway up: {gw.url}", flush=True)
    stop, traffic = asyncio.Event(), []
    result: dict[str, Any] = {"env": env, "rounds": []}
    try:
        base = await measure(gw.url, model, args.task, check)
        result["base"] = {"target": mean(base["target"]), "n_target": len(base["target"])}
        print(
            f"[{name}] base: target {result['base']['target']:.3f} on {len(base['target'])} items", flush=True
        )
        intervals: dict[str, dict[str, float]] = {}  # the served version's suites vs the base (none yet)
        feeder = asyncio.create_task(
            users(
                gw.url,
                user_task(args.task, excluded, args.seed),
                args.rate,
                stop,
                traffic,
                args.user_temperature,
            )
        )
        seen: set[int] = set()
        deadline = time.monotonic() + args.budget_minutes * 60
        while len(result["rounds"]) < args.rounds and time.monotonic() < deadline:
            await asyncio.sleep(10)
            finished = [
                r
                for r in admin(gw.url, "/admin/learner/rounds")["data"]
                if r["id"] not in seen and r["status"] in ("succeeded", "failed")
            ]
            for r in sorted(finished, key=lambda r: r["id"]):
                seen.add(r["id"])
                served = await measure(gw.url, model, args.task, check)
                if r["decision"] == "promoted":
                    detail = admin(gw.url, f"/admin/learner/rounds/{r['id']}")
                    intervals = base_intervals(gate_record(detail).get("checks"))
                record = {
                    "round": len(result["rounds"]) + 1,
                    "id": r["id"],
                    "decision": r["decision"] or r["status"],
                    "reasons": (r.get("gate") or {}).get("reasons"),
                    "served_version": next(iter(served["versions"]), None),
                    "target": mean(served["target"]),
                    "target_interval": paired_interval(
                        served["target"], base["target"], confidence, key=name
                    ).to_json(),
                    "suites": intervals,
                    "seconds": r["seconds"],
                    "measure_s": served["wall_s"],
                }
                result["rounds"].append(record)
                save(result)
                worst = min((i["low"] for i in intervals.values()), default=0.0)
                print(
                    f"[{name}] round {record['round']} ({r['id']}): {record['decision']} in {r['seconds']} s; "
                    f"served {record['served_version']} target {record['target']:.3f} "
                    f"(base {result['base']['target']:.3f}); worst suite lower bound {worst:+.3f}",
                    flush=True,
                )
        stop.set()
        await feeder
    finally:
        stop.set()
        gw.stop()
    rounds = result["rounds"]
    result["target_gain"] = round(rounds[-1]["target"] - result["base"]["target"], 4) if rounds else None
    result["worst_suite_lower_bound"] = (
        round(min((i["low"] for r in rounds for i in r["suites"].values()), default=0.0), 4)
        if rounds
        else None
    )
    result["promoted"] = sum(r["decision"] == "promoted" for r in rounds)
    result["traffic"] = {
        "chats": sum(t["chats"] for t in traffic),
        "feedback": sum(t["feedback_sent"] for t in traffic),
    }
    return result


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for arm, res in results["arms"].items():
        xs = [0] + [r["round"] for r in res["rounds"]]
        top.plot(xs, [res["base"]["target"]] + [r["target"] for r in res["rounds"]], marker="o", label=arm)
        for suite in sorted({s for r in res["rounds"] for s in r["suites"]}):
            rs = [r for r in res["rounds"] if suite in r["suites"]]
            mid = [r["suites"][suite]["mean"] for r in rs]
            top_err = [r["suites"][suite]["high"] - r["suites"][suite]["mean"] for r in rs]
            low_err = [r["suites"][suite]["mean"] - r["suites"][suite]["low"] for r in rs]
            bottom.errorbar(
                [r["round"] for r in rs],
                mid,
                yerr=[low_err, top_err],
                capsize=3,
                marker=".",
                label=f"{arm}: {suite}",
            )
    top.set_ylabel("served target (fraction)")
    top.legend(fontsize=7)
    bottom.axhline(0, color="gray", lw=0.5)
    bottom.set_ylabel("served - base per suite (CI)")
    bottom.set_xlabel("round")
    bottom.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default="defaults")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--task", choices=["addition", *STYLES], default="addition")
    p.add_argument("--feedback-per-round", type=int, default=96)
    p.add_argument("--rate", type=float, default=0.5, help="chats started per second")
    p.add_argument("--check-items", type=int, default=200)
    p.add_argument(
        "--user-temperature",
        type=float,
        default=0.0,
        help="the users' sampling temperature (0: greedy, every user sees one reply per prompt)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-minutes", type=float, default=180, help="per arm")
    p.add_argument("--fresh", action="store_true", help="wipe the arms' data directories first")
    p.add_argument("--out", type=Path, default=REPO / "bench/results/continual.json")
    return p.parse_args()


def arm_env(spec: str) -> tuple[str, dict[str, str]]:
    name, _, pairs = spec.partition(":")
    env = dict(kv.split("=", 1) for kv in pairs.split(",") if kv)
    return name, {k if k.startswith("PERENNIAL_") else f"PERENNIAL_{k}": v for k, v in env.items()}


def main() -> None:
    args = parse_args()
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "arms": {}}
    for spec in args.arms.split(";"):
        name, env = arm_env(spec)
        args.out.parent.mkdir(parents=True, exist_ok=True)

        def save(partial: dict[str, Any], name: str = name) -> None:
            results["arms"][name] = partial
            args.out.write_text(json.dumps(results, indent=1))

        save(asyncio.run(run_arm(name, env, args, save)))
    first = next(iter(results["arms"].values()))
    results["target_gain"], results["worst_suite_lower_bound"] = (
        first["target_gain"],
        first["worst_suite_lower_bound"],
    )
    args.out.write_text(json.dumps(results, indent=1))
    plot(results, args.out.with_suffix(".png"))
    print(f"{'arm':<14} {'promoted':>8} {'target gain':>12} {'worst suite low':>16}")
    for name, res in results["arms"].items():
        gain, worst = res["target_gain"], res["worst_suite_lower_bound"]
        print(
            f"{name:<14} {res['promoted']:>5}/{len(res['rounds']):<2} {gain if gain is not None else '-':>12} "
            f"{worst if worst is not None else '-':>16}"
        )
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
