"""The default round, end to end: how long it takes, and what it costs the chats served meanwhile.

    .venv/bin/python bench/round_time.py [--arms before,after] [--feedback 96] [--chat-seconds 60]
                                         [--think 4]

Per arm, a fresh ``perennial serve`` (embedded default: SQLite, a supervised serving engine, the
embedded learner, every learner and gate default) on its own data directory:

1. 96 simulated users' addition chats with reference feedback (``perennial simulate --task
   addition --feedback reference``), the newcomer's first workload;
2. a chat client (one chat at a time, 16 greedy tokens, through the gateway with the official
   ``openai`` client, ``--think`` seconds between a reply and the next chat: a user, not a
   load test) for ``--chat-seconds`` with the learner idle;
3. one round queued through the admin API with no overrides (what the schedule would queue),
   the same client running until the round ends.

Arms (the learner's settings; everything else default):

* ``before``: both engines as they were: float32, vLLM's auto thread binding and its 1 s idle
  poll, equal CPU priority, no preparation at boot, the full gate for every candidate;
* ``after``: today's defaults (see docs/cpu.md, CPU thread plan): the learner engine at nice 19, the
  learner prepares at boot (its engine up, the base's gate scores cached; the bench waits for
  that before the round, as a scheduled round finds it done, and reports its time), a
  candidate without target gain is rejected before its suites are scored, the serving worker
  sleeps after 50 ms idle, and both engines run eager bf16 on a CPU with native bf16;
* ``after+pause``: ``after``, and the learner engine paused while chats are in flight
  (``PERENNIAL_LEARNER_CHAT_PAUSE_MAX_S=2``);
* ``after+bf16`` / ``after+float32``: ``after`` with both engines in that dtype (bf16 runs
  eager on a CPU; the ES master stays float32). ``auto`` is bf16 on CPUs with native bf16 and
  float32 on other CPUs, so one of the two equals ``after`` on any machine;
* ``after+serving_sleep`` / ``after+serving_sleep50`` / ``after+serving_poll``: ``after``
  with the serving engine's idle worker polling 5 ms / 50 ms (the default) / vLLM's 1 s
  before it sleeps (``PERENNIAL_ENGINE_IDLE_SPIN_S``). After each chat a polling worker holds
  a core the learner could use; 50 ms outlasts the gap between two steps of one chat, so the
  worker sleeps between chats but not between their steps, where 5 ms sleeps at every step.

Prints a table (round seconds and its phases, iterations/s, chat p50/p95 idle and during) and
writes ``bench/results/round_time.json``. One round per arm: a round is many members, and the
phases are medians over its iterations; run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.processes import shared_model_dir, start_server  # noqa: E402

ADMIN_KEY = "pk-bench-admin"
ARMS = {
    "before": {
        "PERENNIAL_ENGINE_CPU_THREADS": "auto",
        "PERENNIAL_LEARNER_CPU_THREADS": "auto",
        "PERENNIAL_LEARNER_PREFIX_CACHE": "false",
        "PERENNIAL_LEARNER_YIELD_MAX_S": "0",
        "PERENNIAL_LEARNER_PREPARE": "false",
        "PERENNIAL_LEARNER_CHAT_PAUSE_MAX_S": "0",
        "PERENNIAL_GATE_EARLY_REJECT": "false",
        "PERENNIAL_LEARNER_NICE": "0",
        "PERENNIAL_ENGINE_IDLE_SPIN_S": "",
        "PERENNIAL_ENGINE_DTYPE": "float32",
    },
    "after": {"PERENNIAL_LEARNER_PREPARE": "true"},
    "after+pause": {"PERENNIAL_LEARNER_PREPARE": "true", "PERENNIAL_LEARNER_CHAT_PAUSE_MAX_S": "2"},
    "after+bf16": {"PERENNIAL_LEARNER_PREPARE": "true", "PERENNIAL_ENGINE_DTYPE": "bfloat16"},
    "after+float32": {"PERENNIAL_LEARNER_PREPARE": "true", "PERENNIAL_ENGINE_DTYPE": "float32"},
    "after+serving_sleep": {"PERENNIAL_LEARNER_PREPARE": "true", "PERENNIAL_ENGINE_IDLE_SPIN_S": "0.005"},
    "after+serving_sleep50": {"PERENNIAL_LEARNER_PREPARE": "true", "PERENNIAL_ENGINE_IDLE_SPIN_S": "0.05"},
    "after+serving_poll": {"PERENNIAL_LEARNER_PREPARE": "true", "PERENNIAL_ENGINE_IDLE_SPIN_S": ""},
}
PREPARED = re.compile(r"learner prepared in (\d+) s")
PAUSED = re.compile(r"learner paused (\d+) times for chats, ([\d.]+) s in all")
HEADERS = {"authorization": f"Bearer {ADMIN_KEY}"}


class ClosedLoop(threading.Thread):
    """One chat at a time through the gateway, ``think_s`` between them; latencies with start times."""

    def __init__(self, url: str, think_s: float):
        super().__init__(daemon=True)
        from openai import OpenAI

        self.client = OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=300)
        self.samples: list[tuple[float, float]] = []
        self.failed = 0
        self.stop = threading.Event()
        self.think_s = think_s

    def run(self) -> None:
        model = self.client.models.list().data[0].id
        while not self.stop.is_set():
            started = time.time()
            try:
                self.client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": "Name three colours."}],
                    max_tokens=16,
                    temperature=0,
                )
            except Exception:  # noqa: BLE001 - counted, the loop goes on
                self.failed += 1
                continue
            self.samples.append((started, time.time() - started))
            self.stop.wait(self.think_s)


def stats(latencies: list[float]) -> dict:
    lat = sorted(latencies)
    if not lat:
        return {"chats": 0, "p50_s": None, "p95_s": None}
    return {
        "chats": len(lat),
        "p50_s": round(statistics.median(lat), 3),
        "p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3),
    }


def simulate(url: str, count: int) -> None:
    cmd = [
        sys.executable,
        "-m",
        "perennial.cli",
        "simulate",
        "--url",
        url,
        "--task",
        "addition",
        "--count",
        str(count),
        "--feedback",
        "reference",
        "--concurrency",
        "4",
    ]
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    time.sleep(6)  # the learner only takes feedback that has settled


def run_arm(name: str, args, work: Path) -> dict:
    env = {
        "PERENNIAL_MODEL_DIR": str(shared_model_dir()),
        "PERENNIAL_ADMIN_KEY": ADMIN_KEY,
        "PERENNIAL_LEARNER_INTERVAL_S": "0",
        **ARMS[name],
    }
    shutil.rmtree(work / name, ignore_errors=True)  # a fresh data dir: the newcomer's first round
    server = start_server(work / name, env, timeout=1200)
    try:
        simulate(server.url, args.feedback)
        prepared_s = None
        if env.get("PERENNIAL_LEARNER_PREPARE") == "true":
            while not (found := PREPARED.search(server.log_file.read_text())):
                time.sleep(5)
            prepared_s = int(found.group(1))
            print(f"[{name}] learner prepared in {prepared_s} s", flush=True)
        client = ClosedLoop(server.url, args.think)
        client.start()
        time.sleep(args.chat_seconds)
        idle_end = time.time()
        run = httpx.post(server.url + "/admin/learner/rounds", headers=HEADERS, json={}, timeout=30).json()
        print(f"[{name}] round {run['id']} queued; chats so far {len(client.samples)}", flush=True)
        while True:
            time.sleep(5)
            run = httpx.get(server.url + f"/admin/learner/rounds/{run['id']}", headers=HEADERS).json()
            done = len(run.get("iterations") or [])
            print(
                f"[{name}] {run['status']} phase {(run['metrics'] or {}).get('phase')} it {done}", flush=True
            )
            if run["status"] in ("succeeded", "failed"):
                break
        round_end = time.time()
        client.stop.set()
        client.join(timeout=300)
        paused = PAUSED.findall(server.log_file.read_text())
    finally:
        server.stop()
    its = run.get("iterations") or []
    phases = (run.get("metrics") or {}).get("phases") or {}
    timings = [i.get("timings", {}) for i in its]
    idle = [lat for t, lat in client.samples if t < idle_end]
    during = [lat for t, lat in client.samples if idle_end <= t < round_end]
    result = {
        "status": run["status"],
        "error": run.get("error"),
        "decision": run.get("decision"),
        # why: each failed check with its numbers, and every suite's paired CI (issue: the gate
        # must say precisely which suite fell and by how much)
        "gate": run.get("gate"),
        "seconds": run.get("seconds"),
        "iterations": len(its),
        "iteration_s": round(statistics.median(i["wall_s"] for i in its), 2) if its else None,
        "per_iteration": {
            k: round(statistics.median(t.get(k, 0.0) for t in timings), 2)
            for k in ("load_s", "evaluate_s", "update_s", "yield_s")
        }
        if timings
        else {},
        "phases_at": phases,
        "phase_s": phase_seconds(phases, run.get("seconds"), run.get("started_at")),
        "prepared_s": prepared_s,
        "chat_pauses": int(paused[-1][0]) if paused else 0,
        "chat_paused_s": float(paused[-1][1]) if paused else 0.0,
        "chat_idle": stats(idle),
        "chat_during": stats(during),
        "chat_failed": client.failed,
        "settings": ARMS[name],
    }
    if result["chat_idle"]["p50_s"] and result["chat_during"]["p50_s"]:
        result["p50_ratio"] = round(result["chat_during"]["p50_s"] / result["chat_idle"]["p50_s"], 2)
    return result


def phase_seconds(
    phases: dict[str, float], seconds: float | None, started_at: str | None
) -> dict[str, float]:
    """Seconds per phase (engine start = round start to its first phase; the last runs to the end)."""
    from datetime import datetime

    if not phases or seconds is None or not started_at:
        return {}
    start = datetime.fromisoformat(started_at).timestamp()
    marks = sorted(phases.items(), key=lambda kv: kv[1])
    out = {"engine": round(marks[0][1] - start, 1)}
    for (name, at), (_, nxt) in zip(marks, [*marks[1:], ("end", start + seconds)], strict=True):
        out[name] = round(nxt - at, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", default="before,after")
    parser.add_argument("--feedback", type=int, default=96)
    parser.add_argument("--chat-seconds", type=float, default=60.0)
    parser.add_argument("--think", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "round_time.json")
    args = parser.parse_args()
    work = REPO / "bench" / ".work" / "round_time"
    results = {}
    for name in args.arms.split(","):
        results[name] = run_arm(name, args, work)
        print(json.dumps(results[name], indent=2), flush=True)
    print(
        "\n| arm | prepared at boot s | round s | engine start s | ES s | gate s | s / iteration | "
        "evaluate s / it | chat p50 idle | chat p50 during | ratio | chat p95 during | learner paused s |"
        "\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for name, r in results.items():
        ph = r.get("phase_s") or {}
        print(
            f"| {name} | {r.get('prepared_s') or '-'} | {r['seconds']:.0f} | {ph.get('engine', '-')} | "
            f"{ph.get('es', '-')} | {ph.get('gate', '-')} | {r['iteration_s']} | "
            f"{r['per_iteration'].get('evaluate_s')} | {r['chat_idle']['p50_s']} | "
            f"{r['chat_during']['p50_s']} | {r.get('p50_ratio')} | {r['chat_during']['p95_s']} | "
            f"{r.get('chat_paused_s')} |"
        )
    for name, r in results.items():
        gate = r.get("gate") or {}
        print(f"\n{name}: {r['decision']}; gate reasons: {gate.get('reasons') or 'none'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"results": results, "command": " ".join(sys.argv), "cores": os.cpu_count()}, indent=2)
        + "\n"
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
