"""``perennial learn``: ES + AWD on a JSONL item file, from a model directory, to a snapshot.

    perennial learn --model DIR --items FILE --iterations K --out DIR \\
        [--preset paper|cpu] [--config FILE.yaml] [--base DIR] [--heldout FILE] \\
        [--eval-every N] [--population N] [--sigma S] [--alpha A] [--awd-lambda L] \\
        [--awd-kind l2|l1] [--minibatch M] [--max-tokens T] [--seed S] [--resume] [--eager]
        [--ray local|auto|ADDRESS] [--ray-actors K]

Example (the shipped addition task, CPU settings, L2 AWD):

    perennial learn --model .data/test-cache/models/SmolLM2-135M-Instruct \\
        --items evals/tasks/addition/train.jsonl --heldout evals/tasks/addition/heldout.jsonl \\
        --preset cpu --iterations 12 --awd-lambda 5 --eval-every 4 --out runs/addition

It starts its own learner engine (a vLLM server with prefix caching off and the ES worker
extension), runs the loop with a progress bar, and writes into ``--out``:

* ``config.json``  the resolved config and paths;
* ``metrics.jsonl`` one record per iteration (fitness, drift, update norm/sparsity, seeds,
  coefficients, timings, target score when evaluated);
* ``snapshot/``     the final weights as a HF model directory with ``meta.json``;
* ``engine.log``    the engine's output (with ``--ray``: ``ray/actor-<i>.log``, one per actor).

``--resume`` re-applies the iterations recorded in ``metrics.jsonl`` (bit-exact) and goes on.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from learner.engines import ESEngine, LocalLearnerEngine
from learner.es_loop import IterationRecord, replay, run_es
from learner.items import ItemError, load_items
from weights.config import ESConfig
from weights.meta import SnapshotMeta, read_meta
from weights.prep import read_record, weights_sha256

log = logging.getLogger(__name__)


def _banner(text: str) -> None:
    log.info("== %s", text)


def model_sha256(model_dir: Path) -> str:
    """The weights' sha256: from meta.json / the preparation record if present, else computed."""
    recorded = getattr(read_meta(model_dir), "sha256", None) or (read_record(model_dir) or {}).get("sha256")
    return recorded or weights_sha256(model_dir)


def _resume_records(out_dir: Path, run: dict[str, Any]) -> list[dict[str, Any]]:
    metrics, saved = out_dir / "metrics.jsonl", out_dir / "config.json"
    if not metrics.is_file() or not saved.is_file():
        return []
    previous = json.loads(saved.read_text())

    def key(r: dict[str, Any]) -> dict[str, Any]:
        # Everything but the iteration count must match: a resumed run may go further.
        return {
            "model": r.get("model"),
            "base": r.get("base"),
            "items": r.get("items"),
            "config": {k: v for k, v in (r.get("config") or {}).items() if k != "iterations"},
        }

    if key(previous) != key(run):
        raise ValueError("--resume: config.json in --out was written by a different run")
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    if [r["iteration"] for r in records] != list(range(len(records))):
        raise ValueError("--resume: metrics.jsonl is not a contiguous run from iteration 0")
    return records


async def learn(
    model_dir: Path,
    items_path: Path,
    out_dir: Path,
    config: ESConfig,
    *,
    base_dir: Path | None = None,
    heldout_path: Path | None = None,
    eval_every: int = 0,
    resume: bool = False,
    engine_args: list[str] | None = None,
    dtype: str = "auto",
    progress: bool = True,
    ray: str | None = None,
    ray_actors: int | None = None,
) -> SnapshotMeta:
    """Run ES + AWD and write metrics and a final snapshot under ``out_dir``.

    Args:
        model_dir: parent model directory (theta starts here).
        items_path: JSONL training items (see :mod:`learner.items`).
        out_dir: output directory.
        config: hyper-parameters.
        base_dir: theta0 for AWD and likelihood baselines (default: ``model_dir``).
        heldout_path: verifiable JSONL items for the target score.
        eval_every: evaluate ``heldout`` every N iterations (0: only before and after).
        resume: continue the run recorded in ``out_dir``.
        engine_args: extra vLLM server arguments.
        dtype: the learner engine's vLLM ``--dtype`` (``engine.supervisor.resolve_dtype``).
        progress: show a tqdm progress bar.
        ray: run the population on learner engines that are Ray actors at this address
            (``local``, ``auto``, ``HOST:PORT``; see docs/ray.md); None: one engine.
        ray_actors: how many actors (None: one per GPU, or per CPU without GPUs).

    Returns:
        The snapshot's ``meta.json`` content.
    """
    _banner("items")
    items = load_items(items_path)
    heldout = load_items(heldout_path).verifiable if heldout_path else []
    if not len(items):
        raise ItemError(f"{items_path} holds no items")
    base_dir = base_dir or model_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    run = {
        "model": str(model_dir),
        "base": str(base_dir),
        "items": str(items_path),
        "heldout": str(heldout_path) if heldout_path else None,
        "config": config.to_dict(),
    }
    records = _resume_records(out_dir, run) if resume else []
    (out_dir / "config.json").write_text(json.dumps(run, indent=2) + "\n")
    if not records:
        (out_dir / "metrics.jsonl").write_text("")
    log.info(
        "%d verifiable + %d rated items, %d held out", len(items.verifiable), len(items.rated), len(heldout)
    )

    _banner("learner engine")
    started = time.monotonic()
    engine: ESEngine
    options = {"base_dir": base_dir, "noise": config.noise, "extra_args": engine_args, "dtype": dtype}
    options["snapshot_root"] = out_dir  # the engine writes snapshots nowhere else
    if ray:
        from learner.distributed import RayLearnerEngine

        engine = await RayLearnerEngine.start(
            model_dir, address=ray, actors=ray_actors, log_dir=out_dir / "ray", **options
        )
    else:
        engine = await LocalLearnerEngine.start(model_dir, log_file=out_dir / "engine.log", **options)
    try:
        log.info(
            "engine ready in %.0f s (%s load)", time.monotonic() - started, engine.init_info.get("load_mode")
        )
        start = await replay(engine, records, config) if records else 0
        if start:
            log.info("resumed: re-applied %d recorded iterations", start)
        _banner("ES + AWD")
        result = await _run_with_progress(
            engine, items, heldout, config, eval_every, start, out_dir, progress
        )
        _banner("snapshot")
        drift = await engine.drift()
        meta = SnapshotMeta(
            parent=str(model_dir),
            parent_sha256=model_sha256(model_dir),
            base=str(base_dir),
            base_sha256=model_sha256(base_dir),
            config=config.to_dict(),
            seeds=[r["seeds"] for r in records] + result.seeds,
            coefficients=[r["coefficients"] for r in records] + result.coefficients,
            noise=config.noise,
            drift=drift["drift"],
            metrics={
                **(result.records[-1].to_json() if result.records else {}),
                "initial_target": result.initial_target,
                **drift,
            },
        )
        written = await engine.snapshot(out_dir / "snapshot", meta)
        log.info("snapshot %s (sha256 %s)", out_dir / "snapshot", (written.sha256 or "")[:16])
        return written
    finally:
        await engine.close()


async def _run_with_progress(engine, items, heldout, config, eval_every, start, out_dir, progress):
    from tqdm import tqdm

    bar = tqdm(total=config.iterations, initial=start, disable=not progress, unit="it", desc="ES")
    metrics = out_dir / "metrics.jsonl"

    def on_iteration(record: IterationRecord) -> None:
        with metrics.open("a") as f:
            f.write(json.dumps(record.to_json()) + "\n")
        postfix = {"fit": f"{record.fitness_mean:.3f}", "drift": f"{record.drift:.2f}"}
        if record.target_score is not None:
            postfix["target"] = f"{record.target_score:.3f}"
        bar.set_postfix(postfix)
        bar.update(1)

    try:
        return await run_es(
            engine,
            items,
            config,
            heldout=heldout,
            eval_every=eval_every or (config.iterations if heldout else 0),
            start_iteration=start,
            on_iteration=on_iteration,
        )
    finally:
        bar.close()
