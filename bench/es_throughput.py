"""ES throughput: seconds per population member (load / evaluate / update), members per minute,
and what a learner costs the chats served beside it.

    .venv/bin/python bench/es_throughput.py [--members 8] [--prompts 16] [--max-tokens 16]
        [--arms auto,all,all+prefix,reload,transformers] [--setups default,split,all,all+yield,all+passive,all+pause,all+pause+chunk]
        [--chat-seconds 30] [--ray 1,2] [--ray-iterations 3] [--out FILE]

Part 1, the learner alone (``--arms``), one arm after the other, a fresh learner engine each:

* ``auto``: the learner engine with vLLM's own CPU thread binding (one core reserved for its
  scheduler, OpenMP bound to the others), members written straight into the CPU kernels'
  buffers from the fp32 master plus a slice of the shared noise table (the direct path);
* ``all``: the same with the thread plan ``all`` (OpenMP on every core, none reserved);
* ``all+prefix``: plan ``all`` and prompt prefixes cached within a member (the cache dropped
  at every weight change; the items share their chat template's system prompt);
* ``reload``: thread plan ``auto``, members loaded through vLLM's generic ``reload_weights``;
* ``all+eager``: plan ``all`` without torch.compile (``--enforce-eager``);
* ``all+bf16``: plan ``all``, the engine in bfloat16 and eager (the master stays fp32; a
  member is rounded to bf16 as it is loaded). Not in the default list; its scores are compared
  like every arm's, and differ where bf16 changes a greedy answer;
* ``transformers``: the naive baseline of the original ES-at-scale code: a transformers
  model, fresh seeded Gaussians per tensor added in place, batched greedy ``generate``,
  restore by subtraction (the table also reports the drift that leaves).

Every member is scored on the same ``--prompts`` addition prompts, greedy, ``--max-tokens``
(generation stops at EOS), and the per-member scores of each vLLM arm are compared with the
first arm's: a thread plan changes how fast, not what (``same scores``).

Part 2, the learner beside a serving engine (``--setups``): a closed-loop client (one chat at a
time, 16 greedy tokens, the next as soon as one returns) talks to a serving engine while the
learner engine is idle, then while it evaluates members. Setups (serving plan / learner plan):

* ``default``: auto / auto, the plans before thread plans existed (not in the default list:
  on 2 cores vLLM's auto binding puts both engines' OpenMP threads on core 0, where they spin
  against each other; learner requests then waited minutes and timed out after 300 s);
* ``split``: ``0`` / ``1``, a core each;
* ``all``: ``all`` / ``all``, both engines on both cores;
* ``all+yield``: ``all`` / ``all``, and the learner waits before each member while a chat is
  in flight (up to 2 s; ``learner.yielding.ChatYield``, as the embedded learner does);
* ``all+passive``: ``all`` / ``all`` with ``OMP_WAIT_POLICY=PASSIVE`` for both engines
  (waiting OpenMP threads sleep instead of spinning on the cores the other engine needs);
* ``all+pause``: ``all`` / ``all``, and the learner engine's scheduler is paused (requests
  kept) while a chat is in flight, at most 2 s at a time with at least 0.5 s of learner work
  between pauses (``learner.yielding.ChatGuard``, as the embedded learner does);
* ``all+spin``, ``all+pause+spin``: ``all`` and ``all+pause`` with vLLM's own idle wait in
  both engines' workers (polling for 1 s after every step; ``engine.idle``: the others sleep
  after 5 ms);
* ``all+nice``: ``all+spin`` with the learner engine at CPU priority nice 19 (the kernel gives
  the serving engine the cores whenever it has work);
* ``all+nice+sleep``: ``all+nice`` with the learner's worker sleeping when idle (the
  embedded learner's default: serving keeps vLLM's wait);
* ``all+nice+sleep+pause``: ``all+nice+sleep`` and the chat pause (``all+pause``);
* ``all+pause+chunk``: ``all+pause`` with the learner's prefill in chunks of 256 tokens
  (``--max-num-batched-tokens 256``; vLLM's CPU default is 2048, so a member's 16 prompts are
  one step, and a pause waits for it).

Part 3, whole iterations and the learner on Ray (``--ray 1,2``; off unless given): whole ES
iterations through ``learner.es_loop.run_es`` (N = ``--members``, the same prompts), first on
one learner engine without Ray (float32, plan ``all``), then each arm of ``--ray``:
``K[+bf16][+auto]`` is K learner actors of a private local Ray cluster (``learner.distributed``;
with plan ``all`` each actor gets its share of the cores), K = 0 one engine without Ray,
``+bf16`` the engines in eager bf16 (the master stays float32), ``+auto`` vLLM's own thread
binding (the plan before thread plans existed).
Members per minute = N / the iteration's population wall time (load + evaluate, the update
excluded), median over ``--ray-iterations``; ``same weights`` compares the final master's
checksum with the one-engine run's (same seeds; it differs only where a thread count changed a
greedy near-tie, hence a fitness value).

Medians over members and chats. Writes ``bench/results/es_throughput.json``. Timings depend on
what else runs on the machine: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.client import EngineClient  # noqa: E402
from engine.idle import IDLE_SPIN_S  # noqa: E402
from engine.learner_engine import LearnerEngine  # noqa: E402
from engine.supervisor import EngineSpec, EngineSupervisor  # noqa: E402
from harness.processes import shared_model_dir  # noqa: E402
from learner.engines import LocalLearnerEngine  # noqa: E402
from learner.fitness import FitnessEvaluator  # noqa: E402
from learner.items import ItemSet, load_items  # noqa: E402
from learner.yielding import ChatGuard, ChatYield  # noqa: E402
from weights.es import iteration_seeds, zscore  # noqa: E402

SIGMA, ALPHA = 3e-3, 4e-3


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


# arm -> (thread plan, load mode, prefix cache within a member) of the learner engine
ARMS = {
    "auto": ("auto", "direct", False),
    "all": ("all", "direct", False),
    "all+prefix": ("all", "direct", True),
    "reload": ("auto", "reload", False),
    "all+eager": ("all", "direct", False),
    "all+bf16": ("all", "direct", False),
}
# arm -> extra vLLM arguments of its learner engine, and its dtype. bf16 runs eager (the
# supervisor adds --enforce-eager on a CPU: vLLM's compiled CPU path gives wrong greedy answers
# in bf16, bench/bf16_cpu.py); "all+eager" separates the two effects.
ARM_ARGS = {"all+eager": ["--enforce-eager"]}
ARM_DTYPE = {"all+bf16": "bfloat16"}
# Every engine of this bench runs float32 unless its arm says bf16: the engines' own ``auto`` is
# bf16 on CPUs with native bf16, and the arms keep their meaning on every machine.
DTYPE = "float32"
# setup -> (serving plan, learner plan, learner prefix cache, yield seconds per member)
SETUPS = {
    "default": ("auto", "auto", False, 0.0),
    "split": ("0", "1", False, 0.0),
    "all": ("all", "all", False, 0.0),
    "all+yield": ("all", "all", False, 2.0),
    "all+passive": ("all", "all", False, 0.0),
    "all+pause": ("all", "all", False, 0.0),
    "all+pause+chunk": ("all", "all", False, 0.0),
    "all+spin": ("all", "all", False, 0.0),
    "all+pause+spin": ("all", "all", False, 0.0),
    "all+nice": ("all", "all", False, 0.0),
    "all+nice+sleep": ("all", "all", False, 0.0),
    "all+nice+sleep+pause": ("all", "all", False, 0.0),
}
# setup -> (serving worker's idle spin s, learner worker's idle spin s, learner niceness).
# vLLM's own idle wait polls the queue for 1 s after every step; engine.idle makes a worker
# sleep after IDLE_SPIN_S instead. Setups not listed: both workers sleep, nice 0.
SPIN_NICE = {
    "all+spin": (1.0, 1.0, 0),
    "all+pause+spin": (1.0, 1.0, 0),
    "all+nice": (1.0, 1.0, 19),
    "all+nice+sleep": (1.0, IDLE_SPIN_S, 19),
    "all+nice+sleep+pause": (1.0, IDLE_SPIN_S, 19),
}
# setup -> extra vLLM arguments of its learner engine: prefill in chunks of 256 tokens, so that
# a pause takes effect within a short step (a member's 16 prompts are one ~750-token step)
SETUP_ARGS = {"all+pause+chunk": ["--max-num-batched-tokens", "256"]}
# setups whose learner engine is paused (requests kept) while a chat is in flight:
# setup -> (longest pause s, shortest run between pauses s), learner.yielding.ChatGuard
PAUSE = {
    "all+pause": (2.0, 0.5),
    "all+pause+chunk": (2.0, 0.5),
    "all+pause+spin": (2.0, 0.5),
    "all+nice+sleep+pause": (2.0, 0.5),
}
# setups whose engines' OpenMP threads sleep instead of spinning when they wait
PASSIVE = {"all+passive"}
CHAT = {"messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 16,
        "temperature": 0.0, "min_tokens": 16}  # fmt: skip


async def start_learner(
    model_dir: Path,
    plan: str,
    load_mode: str,
    prefix: bool,
    extra_args: list[str] | None = None,
    idle_spin_s: float = IDLE_SPIN_S,
    nice: int = 0,
    dtype: str = DTYPE,
) -> LearnerEngine:
    log = Path(tempfile.mkdtemp(prefix="es-bench-")) / "engine.log"
    started = time.monotonic()
    engine = await LearnerEngine.start(
        model_dir,
        log_file=log,
        cpu_threads=plan,
        load_mode=load_mode,
        prefix_cache=prefix,
        extra_args=extra_args,
        idle_spin_s=idle_spin_s,
        nice=nice,
        dtype=dtype,
    )
    threads = (await engine.ping())["threads"]
    print(
        f"learner engine ({plan}, {engine.init_info['load_mode']}, prefix cache {prefix}) up in {time.monotonic() - started:.0f} s:"
        f" {threads['omp_threads']} OpenMP threads on cores {threads['omp_cores']}"
    )
    return engine


async def engine_arms(model_dir: Path, items: ItemSet, args, arms: list[str]) -> dict[str, dict]:
    """Measure the vLLM arms, a fresh learner engine each."""
    results: dict[str, dict] = {}
    for arm in arms:
        plan, load_mode, prefix = ARMS[arm]
        engine = await start_learner(
            model_dir, plan, load_mode, prefix, ARM_ARGS.get(arm), dtype=ARM_DTYPE.get(arm, DTYPE)
        )
        try:
            if engine.init_info["load_mode"] != load_mode:
                print(f"  {arm}: {load_mode} unavailable ({engine.init_info['rejected']}); skipped")
                continue
            results[arm] = await _engine_arm(engine, items, args)
            results[arm].update(plan=plan, prefix_cache=prefix)
        finally:
            await engine.close()
    first = next(iter(results.values()), None)
    for r in results.values():
        r["same_scores"] = first is not None and r["scores"] == first["scores"]
    return results


async def _engine_arm(engine, items: ItemSet, args, before_member=None) -> dict:
    evaluator = FitnessEvaluator(engine, items, minibatch=args.prompts, max_tokens=args.max_tokens)
    batch = evaluator.batch(0)
    await evaluator.evaluate(batch)  # warm-up
    seeds = iteration_seeds(0, 0, args.members // 2)
    rows, scores = [], []
    wall = time.perf_counter()
    for seed in seeds:
        for sign in (1, -1):
            waited = 0.0
            if before_member is not None:
                t = time.perf_counter()
                await before_member()
                waited = time.perf_counter() - t
            t0 = time.perf_counter()
            timing = await engine.load_member(seed, SIGMA, sign)
            t1 = time.perf_counter()
            scores.append((await evaluator.evaluate(batch)).verifiable or 0.0)
            rows.append(
                {
                    "load_s": t1 - t0,
                    "perturb_s": timing["perturb_s"],
                    "repack_s": timing["reload_s"],
                    "evaluate_s": time.perf_counter() - t1,
                    "yield_s": waited,
                }
            )
    z = zscore(scores)
    t0 = time.perf_counter()
    await engine.apply_update(seeds, (z[0::2] - z[1::2]).tolist(), alpha=ALPHA, population=len(rows))
    await engine.load_master()
    update_s = time.perf_counter() - t0
    wall_min = (time.perf_counter() - wall) / 60
    extra = {
        "mean_score": statistics.fmean(scores),
        "scores": scores,
        "wall_members_per_min": round(len(rows) / wall_min, 2),
    }
    return _summary(rows, update_s, extra)


class ClosedLoopChats:
    """One chat at a time against an engine, the next as soon as one returns."""

    def __init__(self, client: EngineClient, model: str):
        self.client, self.model = client, model
        self.latencies: list[float] = []
        self.in_flight = 0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            self.in_flight += 1
            started = time.perf_counter()
            try:
                await self.client.chat({**CHAT, "model": self.model})
            finally:
                self.in_flight -= 1
            self.latencies.append(time.perf_counter() - started)

    async def measure(self, seconds: float | None = None, during=None) -> dict:
        """Chat latencies over ``seconds``, or while the coroutine ``during`` runs."""
        self.latencies = []
        self._task = asyncio.create_task(self._run())
        try:
            if during is not None:
                result = await during
            else:
                await asyncio.sleep(seconds or 0)
                result = None
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        lat = sorted(self.latencies)
        stats = {
            "chats": len(lat),
            "p50_s": round(statistics.median(lat), 3) if lat else None,
            "p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3) if lat else None,
        }
        return {"chat": stats, "learner": result}


async def setups(model_dir: Path, items: ItemSet, args, names: list[str]) -> dict[str, dict]:
    """The learner beside a serving engine under a closed-loop chat client."""
    results: dict[str, dict] = {}
    for name in names:
        serving_plan, learner_plan, prefix, yield_s = SETUPS[name]
        if name in PASSIVE:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # inherited by both engines
        else:
            os.environ.pop("OMP_WAIT_POLICY", None)
        log = Path(tempfile.mkdtemp(prefix="es-bench-serving-")) / "engine.log"
        serving_spin, learner_spin, nice = SPIN_NICE.get(name, (IDLE_SPIN_S, IDLE_SPIN_S, 0))
        spec = EngineSpec(
            model_dir=model_dir,
            served_name="served",
            log_file=log,
            cpu_threads=serving_plan,
            idle_spin_s=serving_spin,
            dtype=DTYPE,
        )
        serving = EngineSupervisor(spec, start_timeout_s=900, max_restarts=0)
        await serving.start()
        client = EngineClient(serving.url)
        learner = await start_learner(
            model_dir, learner_plan, "direct", prefix, SETUP_ARGS.get(name), learner_spin, nice
        )
        try:
            chats = ClosedLoopChats(client, "served")
            await chats.measure(5)  # warm-up
            idle = await chats.measure(args.chat_seconds)
            hook = ChatYield(lambda c=chats: c.in_flight, max_wait_s=yield_s) if yield_s else None
            guard = (
                ChatGuard(
                    lambda c=chats: c.in_flight,
                    learner.client,
                    max_pause_s=PAUSE[name][0],
                    min_run_s=PAUSE[name][1],
                )
                if name in PAUSE
                else contextlib.nullcontext()
            )
            async with guard:
                busy = await chats.measure(during=_engine_arm(learner, items, args, before_member=hook))
            results[name] = {
                "serving_plan": serving_plan,
                "learner_plan": learner_plan,
                "learner_prefix_cache": prefix,
                "yield_s": yield_s,
                "idle": idle["chat"],
                "during": busy["chat"],
                "learner": busy["learner"],
                "p50_ratio": round(busy["chat"]["p50_s"] / idle["chat"]["p50_s"], 2),
                "serving_idle_spin_s": serving_spin,
                "learner_idle_spin_s": learner_spin,
                "learner_nice": nice,
                "paused_s": round(getattr(guard, "paused_s", 0.0), 2),
                "pauses": getattr(guard, "pauses", 0),
            }
            r = results[name]
            print(
                f"  {name}: chat p50 {r['idle']['p50_s']:.2f} s idle -> {r['during']['p50_s']:.2f} s during "
                f"({r['p50_ratio']:.2f}x); learner {r['learner']['members_per_min']:.1f} members/min"
            )
        finally:
            await learner.close()
            await client.aclose()
            await serving.stop()
    return results


def _summary(rows: list[dict], update_s: float, extra: dict) -> dict:
    out = {k: round(_median(rows, k), 4) for k in rows[0]}
    out["yield_total_s"] = round(sum(r.get("yield_s", 0.0) for r in rows), 3)
    out["update_per_member_s"] = round(update_s / len(rows), 4)
    out["total_per_member_s"] = round(out["load_s"] + out["evaluate_s"] + out["update_per_member_s"], 4)
    out["members_per_min"] = round(60 / out["total_per_member_s"], 2)
    out["members"] = len(rows)
    return {**out, **extra}


def transformers_arm(model_dir: Path, items: ItemSet, args) -> dict:
    """The naive loop: fresh noise per tensor, perturb in place, generate, subtract to restore."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    params = [p for _, p in sorted(model.named_parameters())]  # tied head appears once
    theta0 = [p.detach().clone() for p in params]
    chats = [
        tok.apply_chat_template(list(i.messages), add_generation_prompt=True, tokenize=False)
        for i in items.verifiable[: args.prompts]
    ]
    inputs = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False)

    def noise(seed: int, i: int, p: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed * 100_003 + i)  # one stream per tensor
        return torch.randn(p.shape, generator=g)

    @torch.no_grad()
    def add(seed: int, scale: float) -> None:
        for i, p in enumerate(params):
            p.add_(noise(seed, i, p), alpha=scale)

    @torch.no_grad()
    def evaluate() -> float:
        from evals.verifiers import score

        out = model.generate(
            **inputs, max_new_tokens=args.max_tokens, do_sample=False, pad_token_id=tok.pad_token_id
        )
        texts = tok.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return statistics.fmean(
            score(t, i.reference, i.verifier) for t, i in zip(texts, items.verifiable, strict=False)
        )

    evaluate()  # warm-up
    seeds = iteration_seeds(0, 0, args.members // 2)
    rows, scores = [], []
    for seed in seeds:
        for sign in (1, -1):
            t0 = time.perf_counter()
            add(seed, sign * SIGMA)
            t1 = time.perf_counter()
            scores.append(evaluate())
            t2 = time.perf_counter()
            add(seed, -sign * SIGMA)  # restore by subtraction, as the original code did
            rows.append({"load_s": (t1 - t0) + (time.perf_counter() - t2), "evaluate_s": t2 - t1})
    drift = max(float((p.detach() - q).abs().max()) for p, q in zip(params, theta0, strict=True))
    z = zscore(scores)
    t0 = time.perf_counter()
    for seed, c in zip(seeds, (z[0::2] - z[1::2]).tolist(), strict=True):
        add(seed, ALPHA / len(rows) * c)
    update_s = time.perf_counter() - t0
    return _summary(rows, update_s, {"mean_score": statistics.fmean(scores), "restore_max_abs_error": drift})


def ray_arm(spec: str) -> tuple[str, int, str, str]:
    """``K[+bf16][+auto]`` -> (name, actors, dtype, thread plan); K = 0: one engine without Ray."""
    count, *flags = spec.split("+")
    unknown = set(flags) - {"bf16", "auto"}
    if unknown:
        raise SystemExit(f"--ray {spec}: unknown flag(s) {sorted(unknown)}; use +bf16 and +auto")
    k = int(count)
    name = "one engine" if k == 0 else f"ray, {k} actor{'s' if k > 1 else ''}"
    dtype = "bfloat16" if "bf16" in flags else DTYPE
    plan = "auto" if "auto" in flags else "all"
    suffix = ", ".join(
        x for x in (dtype == "bfloat16" and "bf16 eager", plan == "auto" and "vLLM's auto binding") if x
    )
    return (f"{name}, {suffix}" if suffix else name), k, dtype, plan


async def ray_arms(model_dir: Path, items: ItemSet, args, counts: list[str]) -> dict[str, dict]:
    """Whole ES iterations on one engine (no Ray), then on K Ray actors, same seeds and items."""
    from learner.distributed import RayLearnerEngine
    from learner.es_loop import run_es
    from weights.config import ESConfig

    config = ESConfig.preset(
        "cpu",
        population=args.members,
        iterations=args.ray_iterations,
        minibatch=args.prompts,
        max_tokens=args.max_tokens,
        sigma=SIGMA,
        alpha=ALPHA,
        awd_lambda=0.0,
    )
    results: dict[str, dict] = {}
    arms = [("one engine", 0, "auto", "all"), *(ray_arm(spec) for spec in counts)]
    for name, count, dtype, plan in arms:
        started = time.monotonic()
        logs = Path(tempfile.mkdtemp(prefix="es-bench-ray-"))
        if not count:
            engine = await LocalLearnerEngine.start(
                model_dir, log_file=logs / "engine.log", cpu_threads=plan, dtype=dtype
            )
        else:
            engine = await RayLearnerEngine.start(
                model_dir, address="local", actors=count, log_dir=logs, cpu_threads=plan, dtype=dtype
            )
        print(f"{name}: up in {time.monotonic() - started:.0f} s")
        try:
            result = await run_es(
                engine,
                items,
                config,
                on_iteration=lambda r, n=name: print(f"  {n}: iteration {r.iteration} {r.wall_s:.1f} s"),
            )
            master = (await engine.checksum())["master"]
        finally:
            await engine.close()
        walls = [r.wall_s - r.timings["update_s"] - r.timings["target_s"] for r in result.records]
        per_member = [r.timings["evaluate_s"] / config.population for r in result.records]
        results[name] = {
            "actors": count,
            "dtype": dtype,
            "plan": plan,
            "population_wall_s": round(statistics.median(walls), 2),
            "members_per_min": round(60 * config.population / statistics.median(walls), 2),
            "evaluate_per_member_s": round(statistics.median(per_member), 3),
            "update_s": round(statistics.median(r.timings["update_s"] for r in result.records), 2),
            "master": master,
            "workers": result.records[-1].workers,
        }
    first = results["one engine"]
    for r in results.values():
        r["speedup"] = round(r["members_per_min"] / first["members_per_min"], 2)
        r["same_weights"] = r["master"] == first["master"]
    return results


def print_ray(results: dict[str, dict]) -> None:
    if not results:
        return
    print(
        "\n| learner | members/min | x one engine | population wall s | evaluate s per member (in its engine) "
        "| update s | same weights |\n|---|---|---|---|---|---|---|"
    )
    for name, r in results.items():
        print(
            f"| {name} | {r['members_per_min']:.1f} | {r['speedup']:.2f}x | {r['population_wall_s']:.1f} "
            f"| {r['evaluate_per_member_s']:.2f} | {r['update_s']:.2f} | {'yes' if r['same_weights'] else 'no'} |"
        )


def print_table(results: dict[str, dict]) -> None:
    cols = ["load_s", "evaluate_s", "update_per_member_s", "total_per_member_s", "members_per_min"]
    print(f"\n| arm | {' | '.join(cols)} |\n|---|{'---|' * len(cols)}")
    for arm, r in results.items():
        print(
            f"| {arm} | {' | '.join(f'{r[c]:.3f}' if c != 'members_per_min' else f'{r[c]:.1f}' for c in cols)} |"
        )
    for arm, r in results.items():
        share = {k: r[k] / r["total_per_member_s"] for k in ("load_s", "evaluate_s", "update_per_member_s")}
        split = ", ".join(f"{k.removesuffix('_s')} {v:.0%}" for k, v in share.items())
        extra = f"; perturb {r['perturb_s']:.3f} s + repack {r['repack_s']:.3f} s" if "perturb_s" in r else ""
        same = f"; same scores as the first arm: {r['same_scores']}" if "same_scores" in r else ""
        print(f"  {arm}: {split}{extra}{same}")


def print_setups(results: dict[str, dict]) -> None:
    if not results:
        return
    print(
        "\n| setup (serving / learner plan) | chat p50 idle | chat p50 during | ratio | chat p95 idle "
        "| chat p95 during | learner members/min (wall) | learner paused s |\n|---|---|---|---|---|---|---|---|"
    )
    for name, r in results.items():
        print(
            f"| {name} ({r['serving_plan']} / {r['learner_plan']}) | {r['idle']['p50_s']:.2f} "
            f"| {r['during']['p50_s']:.2f} | {r['p50_ratio']:.2f}x | {r['idle']['p95_s']:.2f} "
            f"| {r['during']['p95_s']:.2f} | {r['learner']['wall_members_per_min']:.1f} | {r.get('paused_s', 0):.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--arms", default="auto,all,all+prefix,reload,transformers")
    parser.add_argument("--setups", default="split,all,all+yield,all+passive")
    parser.add_argument("--chat-seconds", type=float, default=30.0)
    parser.add_argument(
        "--ray",
        default="",
        help="arms of the whole-iteration part after the one-engine baseline: K[+bf16][+auto], "
        "K actors on Ray (0: one engine without Ray), +bf16 eager bf16, +auto vLLM's thread binding; "
        "e.g. 1,2 or 0+auto,0+bf16,2,2+bf16",
    )
    parser.add_argument("--ray-iterations", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "es_throughput.json")
    args = parser.parse_args()
    arms = args.arms.split(",")
    model_dir = shared_model_dir()
    items = load_items(REPO / "evals" / "tasks" / "addition" / "train.jsonl")
    load_before = os.getloadavg()
    results = asyncio.run(engine_arms(model_dir, items, args, [a for a in arms if a in ARMS]))
    if "transformers" in arms:
        results["transformers"] = transformers_arm(model_dir, items, args)
    print_table(results)
    names = [n for n in args.setups.split(",") if n]
    beside = asyncio.run(setups(model_dir, items, args, names)) if names else {}
    print_setups(beside)
    counts = [k for k in args.ray.split(",") if k]
    on_ray = asyncio.run(ray_arms(model_dir, items, args, counts)) if counts else {}
    print_ray(on_ray)
    report = {
        "results": results,
        "beside_serving": beside,
        "ray": on_ray,
        "members": args.members,
        "prompts": args.prompts,
        "max_tokens": args.max_tokens,
        "sigma": SIGMA,
        "model": str(model_dir),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "command": " ".join(["bench/es_throughput.py", *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
