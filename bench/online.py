"""Learning without forgetting on the running system, driven by simulated users (slow; by hand).

    .venv/bin/python bench/online.py [--arms es,es_awd,es_awd_nogate] [--rounds 3] [--iterations 4]
        [--alpha 2e-3] [--awd-lambda 50] [--minibatch 12] [--feedback-per-round 64] [--seed 0]
        [--budget-minutes 85] [--fresh]

Per arm, a fresh ``perennial serve`` on the embedded default (SQLite, the learner inside the
gateway, the bundled SmolLM2-135M-Instruct; data in ``bench/.work/online/<arm>``), then:

* round 0: the base, measured through the gateway: the held-out target
  (``evals/tasks/addition/heldout.jsonl``: 100 additions the simulated users never ask) and
  every shipped prior suite (``evals/suites/data``, 195 items), greedy;
* round r: simulated users (``clients.simulator``) ask ``--feedback-per-round`` additions from
  ``evals/tasks/addition/train.jsonl`` (fresh ones each round until the 200 are used) and send
  the reference answers; then ``POST /admin/learner/rounds`` with the arm's ES settings: the
  gateway's learner splits that feedback train / held-out, runs ES(+AWD) from the served version
  anchored to the base, gates the candidate and promotes or rejects it. Recorded: the decision
  and reasons, the gate's numbers (round held-out target, suites of candidate / incumbent / base,
  KL(candidate || base)), ||theta - theta0||, per-iteration fitness and drift, wall times; and,
  when the served version changed, the served version measured through the gateway again.

Arms (``--arms``, any of): ``es`` (lambda = 0, gate on), ``es_awd`` (``--awd-lambda``, gate on),
``es_awd_nogate`` (AWD, every candidate passes: what the gate prevents), ``es_nogate``.

Why ``--alpha 2e-3 --awd-lambda 50`` by default (the ``cpu`` preset has alpha = 4e-3; the
learner's default lambda is 10, the paper's value at alpha = 5e-4): one ES step at alpha = 4e-3
moved theta by 15.7 in L2 (``bench/results/learning.json``, N = 16), in a nearly random
direction, and after two steps (20.8) a prior suite had already lost 6 points; the smoke run's
candidates exceeded the gate's ``max_kl`` (0.02) at drift 22-30. So the gate lets through about
one such step. At alpha = 2e-3 a step is about 7.9; L2 AWD shrinks theta - theta0 by
(1 - alpha * lambda) per step, which bounds the random walk near 7.9 / sqrt(1 - (1 - alpha *
lambda)^2): about 18 at lambda = 50 (14, 16, 17 after rounds 1-3 of 4 steps), while plain ES
keeps walking (about 16, 22, 27). At lambda = 10 the bound (about 40) is never reached here and
the two arms would hardly differ. These are predictions from measured step
sizes, not results; any setting can be given on the command line.

The target overlaps one prior suite: ``arithmetic`` holds 20 one- and two-digit additions (none
of the target's pairs). A change there is transfer within the skill, not forgetting of another;
the summary reports it beside the other three suites, never hidden.

Measurement noise: greedy answers that sit on near-ties flip with the batch a request lands in
(CPU kernels round differently per batch shape). The same weights scored by the gate (learner
engine) and through the gateway (serving engine, ``--measure-concurrency`` in flight) can differ
by an item or more per suite; the summary's "gate vs served, same weights" column reports the
largest such gap seen, which bounds what a 1-point change can mean.

Time, measured (2026-11-28, 2-vCPU EPYC, float32, defaults): 16.6 / 18.1 / 18.7 min for the
three arms, 54 min in all (gateway start ~1 min, base measurement ~1 min, a round 4-7 min: 4 ES
iterations ~3.3 min, the gate ~1.5 min, the first round also starts the learner engine). The
budget guard (``--budget-minutes 85``, split over the arms) skips a round that would not fit.

Resumable: every step is written to ``bench/.work/online/state.json``; a rerun restarts the
arm's gateway on its data directory and continues with the next step (the simulated feedback
of a round is never sent twice); finished arms are skipped. ``--fresh`` starts over; other
settings than the recorded ones are refused. ``--budget-minutes`` stops starting rounds an arm
has no time left for (recorded as such). Outputs: ``bench/results/online.json``,
``online.png``, ``online.md`` (``bench/online_plot.py`` redraws them from the JSON).

Smoke run (~20 min on a busy machine): ``--arms es_awd,es_awd_nogate --rounds 2 --iterations 1
--population 4 --feedback-per-round 12 --suite-max-items 4 --heldout-items 12 --kl-samples 1
--kl-max-tokens 8 --alpha 4e-3 --awd-lambda 10 --work /tmp/online-smoke/work --out /tmp/online-smoke/online_smoke.json``
(its output is ``bench/results/online_smoke.*``: it proves the pipeline, its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.online_measure import heldout_suite, measure_served, round_record  # noqa: E402
from bench.online_plot import num, render  # noqa: E402
from clients.sim_tasks import ReferenceTask, load_items  # noqa: E402
from clients.simulator import SimulationConfig, simulate  # noqa: E402
from evals.suites import load_builtin_suites  # noqa: E402
from harness.processes import RunningServer, shared_model_dir, start_server  # noqa: E402
from weights.config import ROUND_KNOBS  # noqa: E402

TASK = REPO / "evals" / "tasks" / "addition"
WORK = REPO / "bench" / ".work" / "online"
RESULTS = REPO / "bench" / "results"
API_KEY, ADMIN_KEY = "sk-bench-online", "pk-bench-online"
SETTLE_S = 6.0  # the learner takes feedback only once it is 5 s old
GATE_OFF = {"min_gain": -1.0, "margin": 1.0, "max_total_drop": 1.0}
ARMS = {  # name -> (AWD on, gate on)
    "es": (False, True),
    "es_awd": (True, True),
    "es_awd_nogate": (True, False),
    "es_nogate": (False, False),
}
# settings that change what a resumed run measures (the others, e.g. --budget-minutes, may change)
RUN_KEYS = (
    "arms",
    "rounds",
    *ROUND_KNOBS,
    "feedback_per_round",
    "seed",
    "suite_max_items",
    "heldout_items",
    "kl_samples",
    "kl_max_tokens",
    "gate_min_gain",
    "gate_margin",
    "gate_confidence",
    "gate_max_total_drop",
    "gate_max_kl",
    "rate",
    "eager",
    "measure_concurrency",
    "served_suites",
)


class State:
    """The run's progress, saved after every step (atomic replace)."""

    def __init__(self, path: Path, settings: dict[str, Any], fresh: bool):
        self.path = path
        if fresh:  # only what this script writes there
            path.unlink(missing_ok=True)
            for arm in ARMS:
                shutil.rmtree(path.parent / arm, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.data = json.loads(path.read_text()) if path.is_file() else {"settings": settings, "arms": {}}
        recorded = {k: self.data["settings"].get(k) for k in RUN_KEYS}
        if recorded != {k: settings.get(k) for k in RUN_KEYS}:
            changed = sorted(k for k in RUN_KEYS if recorded[k] != settings.get(k))
            sys.exit(f"{path} was recorded with other settings ({', '.join(changed)}); use --fresh")
        self.data["settings"] = settings

    def arm(self, name: str) -> dict[str, Any]:
        return self.data["arms"].setdefault(name, {"rounds": [], "elapsed_s": 0.0, "status": "running"})

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


def server_env(args, model_dir: Path) -> dict[str, str]:
    env = {
        "PERENNIAL_MODEL_DIR": str(model_dir),
        "PERENNIAL_API_KEYS": API_KEY,
        "PERENNIAL_ADMIN_KEY": ADMIN_KEY,
        "PERENNIAL_ENGINE_START_TIMEOUT_S": "900",
        "PERENNIAL_LEARNER_INTERVAL_S": "0",  # rounds are triggered by this script, one per batch
        "PERENNIAL_LEARNER_SEED": str(args.seed),
        "PERENNIAL_GATE_SUITE_MAX_ITEMS": str(args.suite_max_items),
        "PERENNIAL_GATE_KL_SAMPLES": str(args.kl_samples),
        "PERENNIAL_GATE_KL_MAX_TOKENS": str(args.kl_max_tokens),
    }
    if args.eager:
        env["PERENNIAL_ENGINE_ARGS"] = env["PERENNIAL_LEARNER_ENGINE_ARGS"] = "--enforce-eager"
    return env


def round_body(args, arm: str) -> dict[str, Any]:
    """The admin trigger's body: the arm's ES settings and, gate off, thresholds that always pass."""
    awd, gate_on = ARMS[arm]
    body: dict[str, Any] = {
        "iterations": args.iterations,
        "population": args.population,
        "sigma": args.sigma,
        "alpha": args.alpha,
        "awd_lambda": args.awd_lambda if awd else 0.0,
        "awd_kind": args.awd_kind,
        "minibatch": args.minibatch,
        "max_tokens": args.max_tokens,
    }
    gate = {
        k: getattr(args, f"gate_{k}")
        for k in ("min_gain", "margin", "max_total_drop", "confidence", "max_kl")
    }
    gate = {k: v for k, v in gate.items() if v is not None}
    if not gate_on:
        gate = GATE_OFF
    if gate:
        body["gate"] = gate
    return body


def round_asks(args, train: ReferenceTask, r: int) -> ReferenceTask:
    """Round r's prompts: the next slice of one seeded order of the train items (wrapping)."""
    order = list(train.items)
    random.Random(args.seed).shuffle(order)
    n = args.feedback_per_round
    return ReferenceTask(train.name, [order[((r - 1) * n + i) % len(order)] for i in range(n)])


class Arm:
    """One arm's gateway, inputs and progress (its slice of the state)."""

    def __init__(self, name: str, args, state: State, inputs: dict[str, Any]):
        self.name, self.args, self.state = name, args, state
        self.st = state.arm(name)
        self.inputs = inputs
        self.gw: RunningServer | None = None
        self.model = ""
        self._t0, self._before = time.monotonic(), self.st["elapsed_s"]

    @property
    def elapsed_s(self) -> float:
        """This arm's wall time, over every invocation that worked on it."""
        return self._before + time.monotonic() - self._t0

    def log(self, text: str) -> None:
        print(f"[{self.name} {self.elapsed_s / 60:5.1f} min] {text}", flush=True)

    def save(self) -> None:
        self.st["elapsed_s"] = round(self.elapsed_s, 1)
        self.state.save()

    @property
    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {ADMIN_KEY}"}

    async def measure(self, version: str, with_suites: bool) -> dict[str, Any]:
        """The served version through the gateway: the held-out target, and the prior suites if
        asked (once per version; later rounds reuse it)."""
        measures = self.st.setdefault("measures", {})
        known = measures.get(version)
        if known is None or (with_suites and not known["suites"]):
            a, i = self.args, self.inputs
            found = await measure_served(
                self.gw.url,
                API_KEY,
                self.model,
                i["heldout"],
                suites=i["suites"] if with_suites else {},
                max_tokens=a.max_tokens,
                concurrency=a.measure_concurrency,
            )
            if found["version"] != version:
                raise RuntimeError(f"measured {found['versions']} while {version} should be served")
            measures[version] = found
            self.save()
            self.log(
                f"measured {version}: target {found['target']:.3f} (exact {found['target_exact']:.3f}) "
                f"suites {found['suites']} in {found['wall_s']:.0f} s"
            )
        return measures[version]

    async def wait_round(self, round_id: int, seen_metrics: dict[str, Any]) -> dict[str, Any]:
        """Poll the round until it ends; keep what its ES phase shows only while it runs."""
        deadline, seen = time.monotonic() + self.args.round_timeout_s, None
        while time.monotonic() < deadline:
            try:
                run = (
                    httpx.get(
                        f"{self.gw.url}/admin/learner/rounds/{round_id}", headers=self.admin, timeout=60
                    )
                    .raise_for_status()
                    .json()
                )
            except httpx.HTTPError as exc:  # a gateway starved of CPU answers late; ask again
                self.log(
                    f"learner run {round_id}: status poll failed ({type(exc).__name__}: {exc}); retrying"
                )
                await asyncio.sleep(10)
                continue
            metrics = run.get("metrics") or {}
            seen_metrics.update({k: metrics[k] for k in ("items", "config") if k in metrics})
            now = (run["status"], metrics.get("phase"))
            if now != seen:
                self.log(f"learner run {round_id}: {now[0]} {now[1] or ''}")
                seen = now
            if run["status"] in ("succeeded", "failed"):
                return run
            await asyncio.sleep(3)
        raise TimeoutError(f"round {round_id} not finished after {self.args.round_timeout_s} s")

    async def simulate(self, r: int) -> dict[str, Any]:
        a = self.args
        task = round_asks(a, self.inputs["train"], r)
        config = SimulationConfig(
            self.gw.url,
            API_KEY,
            count=len(task.items),
            rate=a.rate,
            concurrency=8,
            seed=a.seed * 1000 + r,
            model=self.model,
            max_tokens=a.max_tokens,
        )
        report = await simulate(task, config)
        self.log(f"round {r} users: {report.summary()}")
        if report.feedback_sent == 0:
            raise RuntimeError(f"the simulated users could not give feedback: {report.errors}")
        return {k: v for k, v in report.to_json().items() if k != "completion_ids"}

    def trigger(self) -> int:
        r = httpx.post(
            self.gw.url + "/admin/learner/rounds",
            json=round_body(self.args, self.name),
            headers=self.admin,
            timeout=60,
        )
        if r.status_code != 202:
            raise RuntimeError(f"round trigger refused: {r.status_code} {r.text}")
        return r.json()["id"]

    async def round(self, r: int) -> None:
        """Simulated feedback -> a learner round -> its record (each step saved, none repeated)."""
        pend = self.st.get("pending")
        if not pend or pend["round"] != r:
            pend = self.st["pending"] = {"round": r, "wall_s": 0.0}
        started = time.monotonic()
        if "simulation" not in pend:
            pend["simulation"] = await self.simulate(r)
            self.save()
            await asyncio.sleep(SETTLE_S)
        if "round_id" not in pend:
            pend["round_id"] = self.trigger()
            self.save()
        seen = pend.setdefault("seen", {})  # the split and the resolved ES config
        run = await self.wait_round(pend["round_id"], seen)
        if run["status"] == "failed" and (run.get("error") or "").startswith(("interrupted", "cancelled")):
            self.log(
                f"learner run {pend['round_id']} was cut off by a stop ({run['error']}); running it again"
            )
            pend.setdefault("interrupted_runs", []).append(pend.pop("round_id"))
            pend["round_id"] = self.trigger()
            self.save()
            run = await self.wait_round(pend["round_id"], seen)
        record = {
            "round": r,
            **round_record(self.gw.url, ADMIN_KEY, pend["round_id"]),
            "simulation": pend["simulation"],
            "interrupted_runs": pend.get("interrupted_runs", []),
        }
        record.update(items=seen.get("items"), es_config=seen.get("config"), loadavg=os.getloadavg())
        via_gateway = self.args.served_suites == "gateway"
        record["served_measure"] = await self.measure(record["served"], with_suites=via_gateway)
        if not via_gateway and record["gate_suites"]["base"] and self.st["base_suites_from"] != "gate":
            self.st.update(base_suites=record["gate_suites"]["base"], base_suites_from="gate")
        record["served_suites"] = (
            record["served_measure"]["suites"] if via_gateway else self.gate_suites_of(record)
        )
        record["wall_s"] = round(pend["wall_s"] + time.monotonic() - started, 1)
        self.st["rounds"].append(record)
        del self.st["pending"]
        self.save()
        self.log(progress_line(record))

    def gate_suites_of(self, record: dict[str, Any]) -> dict[str, float]:
        """The served version's suite scores as the gate measured them (learner engine)."""
        if record["served"] == record["candidate"]:
            return record["gate_suites"]["candidate"]
        if record["served"] == "base":
            return self.st["base_suites"]
        earlier = [r for r in self.st["rounds"] if r["served"] == record["served"]]
        return earlier[-1]["served_suites"] if earlier else {}

    def over_budget(self, share_s: float) -> str | None:
        walls = [rec["wall_s"] for rec in self.st["rounds"]]
        estimate = sum(walls) / len(walls) if walls else 0.0
        if self.elapsed_s + estimate > share_s:
            return (
                f"budget: {self.elapsed_s / 60:.1f} min used + ~{estimate / 60:.1f} min per round "
                f"> {share_s / 60:.1f} min for this arm"
            )
        return None

    async def run(self, share_s: float) -> None:
        if self.st["status"] == "done":
            print(f"[{self.name}] finished earlier; reusing its records")
            return
        self.st["settings"] = {
            "awd": ARMS[self.name][0],
            "gate": ARMS[self.name][1],
            "round_body": round_body(self.args, self.name),
        }
        started = time.monotonic()
        self.gw = start_server(
            self.args.work / self.name, server_env(self.args, self.inputs["model_dir"]), timeout=1200
        )
        try:
            self.st.setdefault("server_start_s", []).append(round(time.monotonic() - started, 1))
            self.model = httpx.get(
                self.gw.url + "/v1/models", headers={"authorization": f"Bearer {API_KEY}"}, timeout=30
            ).json()["data"][0]["id"]
            self.log(
                f"gateway {self.gw.url} up in {time.monotonic() - started:.0f} s; data {self.args.work / self.name}"
            )
            self.st["base"] = await self.measure("base", with_suites=True)  # also the noise check
            self.st.setdefault("base_suites", self.st["base"]["suites"])
            self.st.setdefault("base_suites_from", "gateway")
            for r in range(len(self.st["rounds"]) + 1, self.args.rounds + 1):
                self.save()
                stop = self.over_budget(share_s)
                if stop:
                    self.st["stopped"] = stop
                    self.log(f"stopping before round {r}: {stop}")
                    break
                await self.round(r)
            self.st["status"] = "done"
        finally:
            self.save()
            self.gw.stop(timeout=120)


def progress_line(rec: dict[str, Any]) -> str:
    served, gt = rec["served_measure"], rec["gate_target"]
    suites = " ".join(f"{k} {v:.3f}" for k, v in rec["served_suites"].items())
    return (
        f"round {rec['round']}: {rec['status']} {rec['decision'] or rec['error']} {rec['candidate']} | "
        f"gate target {num(gt['incumbent'], '.3f')} -> {num(gt['candidate'], '.3f')} | "
        f"KL {num(rec['kl'], '.4f')} | drift {num(rec['candidate_drift'], '.2f')} | served {rec['served']}: "
        f"target {served['target']:.3f} {suites} | {rec['wall_s'] / 60:.1f} min"
    )


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arms", default="es,es_awd,es_awd_nogate", help=f"comma-separated, of {list(ARMS)}")
    p.add_argument("--rounds", type=int, default=3, help="learner rounds per arm")
    p.add_argument("--iterations", type=int, default=4, help="ES iterations per round")
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--sigma", type=float, default=3e-3)
    p.add_argument("--alpha", type=float, default=2e-3, help="ES learning rate (see above)")
    p.add_argument("--awd-lambda", type=float, default=50.0, help="AWD strength of the AWD arms (see above)")
    p.add_argument("--awd-kind", choices=["l2", "l1"], default="l2")
    p.add_argument("--minibatch", type=int, default=12, help="items each member is scored on")
    p.add_argument("--max-tokens", type=int, default=16, help="reply budget of target items")
    p.add_argument("--feedback-per-round", type=int, default=64, help="simulated chats + feedback per round")
    p.add_argument("--rate", type=float, default=None, help="simulated chats per second (default: unpaced)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--suite-max-items", type=int, default=0, help="cut each prior suite (0: whole; smoke runs)"
    )
    p.add_argument("--heldout-items", type=int, default=0, help="cut the held-out target (0: all 100)")
    p.add_argument(
        "--served-suites",
        choices=["gate", "gateway"],
        default="gate",
        help="prior-suite scores of a served version: the gate's (learner engine, same "
        "weights) or measured again through the gateway (~1 min more per promotion)",
    )
    p.add_argument(
        "--measure-concurrency",
        type=int,
        default=32,
        help="requests in flight when measuring the served version (1: no batching, slow)",
    )
    p.add_argument("--kl-samples", type=int, default=1, help="gate: sampled continuations per probe")
    p.add_argument("--kl-max-tokens", type=int, default=32, help="gate: length of each continuation")
    for name in ("min_gain", "margin", "max_total_drop", "confidence", "max_kl"):
        p.add_argument(
            f"--gate-{name.replace('_', '-')}", type=float, help="gated arms (default: the server's)"
        )
    p.add_argument(
        "--eager", action="store_true", help="engines with --enforce-eager (faster start, slower run)"
    )
    p.add_argument("--budget-minutes", type=float, default=85.0, help="whole run; split evenly over arms")
    p.add_argument("--round-timeout-s", type=float, default=3600.0)
    p.add_argument("--fresh", action="store_true", help="forget recorded progress (in --work)")
    p.add_argument("--work", type=Path, default=WORK, help="state file and the arms' data directories")
    p.add_argument("--out", type=Path, default=RESULTS / "online.json")
    args = p.parse_args()
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown or not args.arms:
        p.error(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
    return args


def load_inputs(args) -> dict[str, Any]:
    from evals.suites import trim

    heldout = heldout_suite(TASK / "heldout.jsonl")
    if args.heldout_items:
        heldout = trim([heldout], args.heldout_items)[0]
    suites = {s.name: s for s in trim(list(load_builtin_suites().values()), args.suite_max_items)}
    train = load_items(TASK / "train.jsonl", name="addition")
    asked = {a.messages[-1]["content"] for a in train.items}
    leaked = [i.id for i in heldout.items if i.messages[-1]["content"] in asked]
    if leaked:
        sys.exit(f"held-out items also in the train split: {leaked[:5]}")
    return {"model_dir": shared_model_dir(), "heldout": heldout, "suites": suites, "train": train}


def main() -> None:
    args = parse_args()
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "fresh"}
    state = State(args.work / "state.json", settings, args.fresh)
    state.data.setdefault("loadavg_before", os.getloadavg())
    inputs = load_inputs(args)
    started = time.monotonic()
    for i, name in enumerate(args.arms):  # each arm gets an even share of what is left
        spent = sum(state.arm(n)["elapsed_s"] for n in args.arms[:i])
        asyncio.run(
            Arm(name, args, state, inputs).run((args.budget_minutes * 60 - spent) / (len(args.arms) - i))
        )
    state.data["loadavg_after"] = os.getloadavg()
    state.save()
    results = {
        **state.data,
        "command": " ".join(["bench/online.py", *sys.argv[1:]]),
        "this_invocation_minutes": round((time.monotonic() - started) / 60, 1),
        "target": {
            "task": "addition",
            "train": "evals/tasks/addition/train.jsonl",
            "heldout": "evals/tasks/addition/heldout.jsonl",
            "n_heldout": len(inputs["heldout"].items),
            "overlap": "the arithmetic prior suite holds 20 one- and two-digit additions "
            "(none of the target's pairs): same skill, reported separately",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table = render(results, args.out.with_suffix(".png"), args.out.with_suffix(".md"))
    results["summary_table"] = table
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print("\n" + table)
    print(f"\nwrote {args.out}, {args.out.with_suffix('.png')}, {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
