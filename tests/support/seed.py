"""Store rows for the dashboard tests: judged candidates and the learner rounds that made them.

A real round takes minutes on this machine, and the dashboard only reads what rounds store, so
the tests write those rows straight into the shared server's SQLite store, in the shapes the
learner writes them (``learner/round.py``): the gate record comes from the real
:func:`learner.gate.decide`, iteration rows from the real :class:`IterationRecord`. The numbers
are invented (a smooth trajectory), not measured; the weights are real perturbed snapshots, so
promoting and rolling back from the page does real hot swaps.
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from learner.es_loop import IterationRecord
from learner.gate import Scores, Thresholds, decide
from store.db import Database
from store.models import utcnow
from store.rounds import add_iteration, add_round, update_round
from store.versions import add_candidate, record_decision, set_status

BASE_SUITES = {
    "arithmetic": 0.62,
    "factual_qa": 0.85,
    "format_following": 0.9,
    "reading": 0.74,
    "word_knowledge": 0.7,
}
SUITE_ITEMS = 400


def item_scores(means: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per-item scores with these means, paired across versions: item k of a suite is right
    for every version whose mean reaches it, so a lower mean is items lost, never swapped."""
    n = SUITE_ITEMS
    return {name: {f"{name}-{k:04d}": float(k < round(m * n)) for k in range(n)} for name, m in means.items()}


@dataclass
class Candidate:
    """One judged candidate to insert, and what its round measured."""

    version: str
    snapshot: Path
    target: float  # held-out target of the candidate (the incumbent's is ``incumbent_target``)
    drift: float  # ||theta - theta0|| at the end of the round
    kl: float
    suites: dict[str, float]
    iterations: int
    incumbent_target: float = 0.3
    round_id: int | None = None  # set by :func:`seed`
    gate: dict = field(default_factory=dict)  # set by :func:`seed`: the stored gate record
    on_ray: bool = False  # iterations carry a learner-on-Ray work report (actor-1 dies in the last)

    @property
    def approved(self) -> bool:
        return bool(self.gate.get("promote"))


def workers_report(actor_dies: bool) -> dict[str, dict]:
    """Two learner actors' work in one iteration, as ``RayLearnerEngine.work_report`` gives it."""
    failures = (
        ["ActorDiedError: The actor died unexpectedly before finishing this task."] if actor_dies else []
    )
    return {
        "actor-0": {
            "node": "10.0.0.1",
            "alive": True,
            "members": 5 if actor_dies else 4,
            "load_s": 0.4,
            "evaluate_s": 9.5,
            "failures": [],
        },
        "actor-1": {
            "node": "10.0.0.2",
            "alive": not actor_dies,
            "members": 3 if actor_dies else 4,
            "load_s": 0.3,
            "evaluate_s": 7.1,
            "failures": failures,
        },
    }


def iteration_rows(c: Candidate) -> list[dict]:
    """Per-iteration metrics rising towards the candidate's target and drift."""
    rows = []
    for i in range(c.iterations):
        frac = (i + 1) / c.iterations
        fitness = c.incumbent_target + (c.target - c.incumbent_target) * frac
        record = IterationRecord(
            iteration=i,
            seeds=[1000 * i + k for k in range(4)],
            coefficients=[0.5, -0.5, 1.0, -1.0],
            fitness_mean=fitness,
            fitness_max=fitness + 0.08,
            components={"verifiable": fitness, "likelihood": None},
            failed_items=0,
            update_norm=c.drift / c.iterations * (1.2 - 0.3 * frac),
            update_sparsity=0.02 + 0.01 * i,
            drift=c.drift * math.sqrt(frac),
            drift_sparsity=0.01,
            target_score=fitness - 0.02,
            timings={"members": 8.0 + i, "update": 2.5},
            wall_s=10.5 + i,
            workers=workers_report(i == c.iterations - 1) if c.on_ray else None,
        )
        rows.append(record.to_json())
    return rows


def target_items(level: float, n: int = 64) -> dict[str, float]:
    """A held-out pool whose item scores average ``level`` (a fixed spread over the items)."""
    return {f"h{i:02d}": level + 0.02 * ((i % 5) - 2) for i in range(n)}


def gate_record(c: Candidate) -> dict:
    """The gate record a round stores as the decision's ``checks`` (see learner/round.py)."""
    thresholds = Thresholds()
    decision = decide(
        Scores(target_items(c.target), item_scores(c.suites), c.kl),
        Scores(target_items(c.incumbent_target), item_scores(BASE_SUITES), None),
        Scores(None, item_scores(BASE_SUITES), 0.0),
        thresholds,
    )
    return {
        **decision.to_json(),
        "thresholds": thresholds.to_json(),
        "kl": {"kl": c.kl},
        "target_kind": "verifier",
        "scores": {
            "candidate": {"target": c.target, "suites": c.suites},
            "incumbent": {"id": "base", "target": c.incumbent_target, "suites": BASE_SUITES},
            "base": {"suites": BASE_SUITES},
        },
    }


async def _insert(db: Database, c: Candidate) -> None:
    gate = gate_record(c)
    started = utcnow() - timedelta(seconds=12 * c.iterations)
    async with db.sessions() as session:
        # queued -> succeeded in one transaction: no learner service can see it queued.
        run = await add_round(session, config={"trigger": "dashboard-test", "overrides": {}})
        await add_candidate(
            session,
            version_id=c.version,
            parent_id="base",
            snapshot_path=str(c.snapshot),
            sha256=None,
            meta={"round_id": run.id},
            metrics={
                "target": c.target,
                "incumbent_target": c.incumbent_target,
                "drift": c.drift,
                "unchanged": 0.01,
            },
        )
        for metrics in iteration_rows(c):
            await add_iteration(session, round_id=run.id, iteration=metrics["iteration"], metrics=metrics)
        await record_decision(
            session,
            version_id=c.version,
            promote=gate["promote"],
            reasons=gate["reasons"],
            checks=gate,
            round_id=run.id,
        )
        if not gate["promote"]:
            await set_status(session, version_id=c.version, status="rejected")
        # feedback_to_seq stays NULL: these rounds consumed no feedback (the cursor ignores them).
        await update_round(
            session,
            round_id=run.id,
            status="succeeded",
            parent_version="base",
            base_version="base",
            candidate_version=c.version,
            decision="promoted" if gate["promote"] else "rejected",
            metrics={"phase": "promote" if gate["promote"] else "reject"},
            created_at=started - timedelta(seconds=1),
            started_at=started,
            finished_at=utcnow(),
        )
        await session.commit()
    c.round_id, c.gate = run.id, gate


def seed(data_dir: Path, candidates: list[Candidate]) -> None:
    """Insert ``candidates`` (in order) into the store of the server kept in ``data_dir``."""

    async def insert_all() -> None:
        db = Database.connect(f"sqlite:///{data_dir / 'perennial.db'}")
        try:
            for c in candidates:
                await _insert(db, c)
        finally:
            await db.close()

    # In a thread of its own: playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, insert_all()).result()
