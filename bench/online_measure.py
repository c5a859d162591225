"""What bench/online.py measures on a running gateway, and what it reads from the admin API.

* ``measure_served``: the served version's held-out target score and every prior suite's score,
  greedy, through the public chat API (the gate's own scorer, ``evals.scoring``, fed by the
  official ``openai`` client), with the ``x-perennial-model-version`` of every reply counted so
  a swap during the measurement cannot go unnoticed.
* ``round_record``: one finished learner round, flattened from ``GET /admin/learner/rounds/{id}``
  and ``GET /admin/versions``: decision and reasons, thresholds, the gate's scores (round
  held-out target of incumbent and candidate, suites of candidate / incumbent / base, the
  paired interval of candidate - base per suite), KL to the base, ||theta - theta0||, per-iteration metrics. (A round shows its train / held-out split
  and resolved ES config only while it runs; bench/online.py keeps them from its polling.)
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI

from evals.scoring import score_suite, score_suites
from evals.suites import Suite, load_builtin_suites, parse_suite_jsonl
from learner.gate import suite_check_of


class GatewayChat:
    """``evals.scoring``'s chat client, over the gateway's public API."""

    def __init__(self, oai: AsyncOpenAI):
        self.oai = oai
        self.versions: Counter = Counter()

    async def chat(self, body: dict) -> dict:
        raw = await self.oai.chat.completions.with_raw_response.create(**body)
        self.versions[raw.headers.get("x-perennial-model-version", "unknown")] += 1
        return raw.parse().model_dump()


def heldout_suite(path: Path) -> Suite:
    """The fixed held-out target items as a suite (``prompt`` / ``reference`` / ``verifier`` lines)."""
    return parse_suite_jsonl(
        path.read_text(), name=f"{path.parent.name}_heldout", version=1, source=str(path)
    )


async def measure_served(
    url: str,
    api_key: str,
    model: str,
    heldout: Suite,
    *,
    max_tokens: int,
    concurrency: int = 32,
    suites: dict[str, Suite] | None = None,
) -> dict[str, Any]:
    """Score what the gateway serves now: the held-out target and the prior suites.

    Args:
        url: the gateway root.
        api_key: a chat key.
        model: the served model id.
        heldout: the fixed held-out target items (never asked by the simulated users).
        max_tokens: the reply budget of target items (the learner's generation budget).
        concurrency: requests in flight (the engine batches them).
        suites: the prior suites (default: the shipped ones); only greedy ones are measured.
    Returns:
        ``{"version", "target", "target_exact", "suites": {name: score}, "failed", "versions", "wall_s"}``.
    """
    suites = suites if suites is not None else load_builtin_suites()
    # Likelihood and reference scoring read prompt log-probabilities, which the public API does
    # not give: those suites are scored by the gate only (the learner engine, same weights).
    suites = {name: s for name, s in suites.items() if s.scoring == "greedy"}
    started = time.perf_counter()
    async with AsyncOpenAI(base_url=url + "/v1", api_key=api_key, max_retries=2, timeout=600) as oai:
        client = GatewayChat(oai)
        target = await score_suite(client, model, heldout, concurrency=concurrency, max_tokens=max_tokens)
        prior = await score_suites(client, model, suites, concurrency=concurrency)
    versions = dict(client.versions)
    return {
        "version": next(iter(versions)) if len(versions) == 1 else None,
        "target": round(target.score, 4),
        "target_exact": round(sum(s == 1.0 for s in target.items.values()) / max(1, target.n), 4),
        "n_target": target.n,
        "suites": {name: round(s.score, 4) for name, s in prior.items()},
        "n_suites": {name: s.n for name, s in prior.items()},
        "failed": target.failed + sum(s.failed for s in prior.values()),
        "versions": versions,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def admin_get(url: str, admin_key: str, path: str, attempts: int = 5) -> dict[str, Any]:
    """GET an admin route; timeouts and connection errors are retried (a busy gateway answers late)."""

    def get() -> dict[str, Any]:
        r = httpx.get(url + path, headers={"authorization": f"Bearer {admin_key}"}, timeout=60)
        return r.raise_for_status().json()

    for _ in range(attempts - 1):
        try:
            return get()
        except httpx.TransportError:
            time.sleep(5)
    return get()


def _rounded(values: dict[str, float] | None) -> dict[str, float]:
    return {k: round(v, 4) for k, v in (values or {}).items() if v is not None}


def _iterations(run: dict[str, Any]) -> list[dict[str, Any]]:
    keep = ("iteration", "fitness_mean", "fitness_max", "drift", "update_norm", "update_sparsity", "wall_s")
    return [{k: it.get(k) for k in keep} for it in run.get("iterations") or []]


def base_intervals(checks: list[dict[str, Any]] | None) -> dict[str, dict[str, float]]:
    """The gate's paired intervals of candidate - base per suite (``suite:<name>:base`` checks):
    {suite: {mean, low, high, n, confidence}}, empty where the decision holds none."""
    found = {}
    for check in checks or []:
        parsed = suite_check_of(check.get("name", ""))
        if parsed and parsed[1] == "base" and check.get("interval"):
            found[parsed[0]] = check["interval"]
    return found


def gate_record(run: dict[str, Any]) -> dict[str, Any]:
    """The gate's whole record of a round as ``GET /admin/learner/rounds/{id}`` returns it, under
    ``gate.checks`` (thresholds, target, scores, KL, and the list of check rows under its own
    ``checks``); {} for a round without a decision."""
    record = (run.get("gate") or {}).get("checks")
    return record if isinstance(record, dict) else {}


def round_record(url: str, admin_key: str, round_id: int) -> dict[str, Any]:
    """One finished round, flattened (see the module docstring); missing parts are None."""
    run = admin_get(url, admin_key, f"/admin/learner/rounds/{round_id}")
    gate = gate_record(run)
    scores = gate.get("scores") or {}
    candidate = run.get("candidate_version")
    cand_version = admin_get(url, admin_key, f"/admin/versions/{candidate}") if candidate else {}
    listing = admin_get(url, admin_key, "/admin/versions")
    served = listing.get("serving")
    served_row = next((v for v in listing["data"] if v["id"] == served), {})
    return {
        "round_id": round_id,
        "status": run["status"],
        "error": run.get("error"),
        "decision": run.get("decision"),
        "parent": run.get("parent_version"),
        "candidate": candidate,
        "served": served,
        "round_s": run.get("seconds"),
        "reasons": (run.get("gate") or {}).get("reasons"),
        "thresholds": gate.get("thresholds"),
        "gate_target": {
            "incumbent": (scores.get("incumbent") or {}).get("target"),
            "candidate": (scores.get("candidate") or {}).get("target"),
            "kind": gate.get("target_kind"),
        },
        "gate_suites": {
            "candidate": _rounded((scores.get("candidate") or {}).get("suites")),
            "incumbent": _rounded((scores.get("incumbent") or {}).get("suites")),
            "base": _rounded((scores.get("base") or {}).get("suites")),
        },
        "gate_intervals": base_intervals(gate.get("checks")),
        "kl": (gate.get("kl") or {}).get("kl"),
        "kl_stderr": (gate.get("kl") or {}).get("stderr"),
        "candidate_drift": (cand_version.get("metrics") or {}).get("drift"),
        "served_drift": (served_row.get("metrics") or {}).get("drift", 0.0 if served == "base" else None),
        "iterations": _iterations(run),
        "phases": (run.get("metrics") or {}).get("phases"),
    }
