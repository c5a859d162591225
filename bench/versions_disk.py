"""What a version costs on disk, how long a rebuild takes, and disk use over 50 rounds.

    .venv/bin/python bench/versions_disk.py [--generations 3] [--iterations 12] [--pairs 8]
                                            [--rounds 50] [--promote-every 3] [--repeats 3]

1. **bytes per version**: a chain of ``--generations`` versions made as a round makes them
   (``--iterations`` ES + AWD steps of ``--pairs`` antithetic pairs each: the ``cpu`` preset's
   12 x 8), on the bundled model, written as snapshots: the snapshot's bytes against its seed
   log's (``weights.lineage.seed_log_bytes``);
2. **rebuild seconds per generation**: the last version's weights dropped and rebuilt from the
   base (``weights.lineage.rebuild``, verified by the recorded checksums), ``--repeats`` times,
   median; the time is split into load, noise table, replay per generation and write;
3. **disk use after ``--rounds`` simulated rounds**: the registry of a deployment where every
   round makes a candidate and every ``--promote-every``-th one is promoted (the rest rejected),
   one round every 15 minutes, each snapshot the measured size: disk use with every snapshot
   kept (today before this policy) against the default retention policy
   (``store.retention.plan``; K=3 promoted, a checkpoint every 10 generations, rejected weights
   dropped after 1 h). Plotted over the rounds.

Prints the tables, writes ``bench/results/versions_disk.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.suite_baseline import table  # noqa: E402
from harness.processes import shared_model_dir  # noqa: E402
from store.retention import RetentionPolicy, VersionDisk, plan, weights_bytes  # noqa: E402

RESULTS = REPO / "bench" / "results" / "versions_disk.json"


def make_chain(model_dir: Path, root: Path, generations: int, iterations: int, pairs: int) -> list:
    """Versions v1..vn, each ES + AWD from the last (weights.es, as the learner engine runs it)."""
    from weights.es import NoiseTable, es_step, iteration_seeds, pair_coefficients
    from weights.lineage import Generation
    from weights.meta import NoiseSpec, SnapshotMeta
    from weights.snapshot import load_tensors, write_snapshot

    theta0 = load_tensors(model_dir)
    theta = {k: v.clone() for k, v in theta0.items()}
    table_ = NoiseTable()
    chain, parent = [], "base"
    for g in range(1, generations + 1):
        config = {"alpha": 1e-3, "sigma": 1e-3, "population": 2 * pairs, "awd_lambda": 0.5, "awd_kind": "l2"}
        seeds, coefs = [], []
        for it in range(iterations):
            s = iteration_seeds(g, it, pairs)
            c = pair_coefficients([((i * 7 + it * 3 + g) % 5) / 4 for i in range(2 * pairs)])
            es_step(theta, theta0, table_, s, c, alpha=1e-3, population=2 * pairs, awd_lambda=0.5)
            seeds.append(s)
            coefs.append(c)
        meta = SnapshotMeta(
            parent=parent, base="base", config=config, seeds=seeds, coefficients=coefs, noise=NoiseSpec()
        )
        chain.append(Generation(f"v{g}", write_snapshot(root / f"v{g}", theta, model_dir, meta)))
        parent = f"v{g}"
        print(f"made v{g}", flush=True)
    return chain


def simulate(rounds: int, promote_every: int, size: int, policy: RetentionPolicy | None) -> list[int]:
    """Bytes of snapshots on disk after each simulated round (base included)."""
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    versions = {"base": VersionDisk("base", None, "promoted", True, t0, t0, t0, size)}
    serving = "base"
    out = []
    for r in range(1, rounds + 1):
        now = t0 + timedelta(minutes=15 * r)
        vid = f"v{r}"
        promoted = r % promote_every == 0
        versions[vid] = VersionDisk(
            vid, serving, "promoted" if promoted else "rejected", False, now, None, None, size
        )
        if promoted:
            old = versions[serving]
            versions[serving] = VersionDisk(**{**old.__dict__, "serving": False})
            versions[vid] = VersionDisk(
                **{**versions[vid].__dict__, "serving": True, "promoted_at": now, "served_at": now}
            )
            serving = vid
        if policy is not None:
            for drop in plan(list(versions.values()), policy, now).drop:
                versions[drop] = VersionDisk(**{**versions[drop].__dict__, "bytes": 0})
        out.append(sum(v.bytes for v in versions.values()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--promote-every", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from weights.lineage import rebuild, seed_log_bytes

    model_dir = shared_model_dir()
    with tempfile.TemporaryDirectory(prefix="perennial-versions-") as tmp:
        root = Path(tmp)
        chain = make_chain(model_dir, root, args.generations, args.iterations, args.pairs)
        snap = weights_bytes(root / "v1")
        logs = [seed_log_bytes(g.meta) for g in chain]
        runs = []
        for rep in range(args.repeats):
            (root / chain[-1].version / "model.safetensors").unlink()
            started = time.perf_counter()
            report = rebuild(
                chain, start="base", start_dir=model_dir, base_dir=model_dir, out_dir=root / chain[-1].version
            )
            runs.append(
                {"total_s": time.perf_counter() - started, "per_generation_s": report.per_generation_s}
            )
            print(f"rebuild {rep + 1}: {runs[-1]['total_s']:.1f} s", flush=True)
    per_gen = statistics.median(s for r in runs for s in r["per_generation_s"])
    total = statistics.median(r["total_s"] for r in runs)
    policy = RetentionPolicy()
    kept_all = simulate(args.rounds, args.promote_every, snap, None)
    kept_policy = simulate(args.rounds, args.promote_every, snap, policy)
    result = {
        "model": "smollm2-135m-instruct (float32)",
        "chain": {"generations": args.generations, "iterations": args.iterations, "pairs": args.pairs},
        "snapshot_bytes": snap,
        "seed_log_bytes": logs,
        "rebuild": {"runs": runs, "median_total_s": total, "median_per_generation_s": per_gen},
        "simulation": {
            "rounds": args.rounds,
            "promote_every": args.promote_every,
            "policy": policy.__dict__,
            "bytes_all_kept": kept_all,
            "bytes_with_policy": kept_policy,
        },
        "command": " ".join(["bench/versions_disk.py", *sys.argv[1:]]),
    }
    table(
        "Bytes per version",
        ["what", "bytes", "ratio"],
        [
            ["snapshot (model.safetensors, fp32)", f"{snap:,}", "1"],
            [
                "seed log (median)",
                f"{int(statistics.median(logs)):,}",
                f"1/{snap / statistics.median(logs):,.0f}",
            ],
        ],
    )
    table(
        f"Rebuild ({args.iterations} iterations x {args.pairs} pairs per generation, median of {args.repeats})",
        ["generations replayed", "total s", "s per generation (replay only)"],
        [[args.generations, f"{total:.1f}", f"{per_gen:.1f}"]],
    )
    table(
        f"Disk after {args.rounds} rounds (one promoted in {args.promote_every})",
        ["snapshots", "GB", "versions with weights"],
        [
            ["all kept", f"{kept_all[-1] / 1e9:.1f}", f"{kept_all[-1] // snap}"],
            ["retention policy (defaults)", f"{kept_policy[-1] / 1e9:.1f}", f"{kept_policy[-1] // snap}"],
        ],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sim = result["simulation"]
    x = range(1, sim["rounds"] + 1)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(x, [b / 1e9 for b in sim["bytes_all_kept"]], label="every snapshot kept")
    ax.plot(x, [b / 1e9 for b in sim["bytes_with_policy"]], label="retention policy (defaults)")
    ax.set_xlabel("round")
    ax.set_ylabel("GB of snapshots")
    ax.set_title(f"Disk use, one round every 15 min, one in {sim['promote_every']} promoted", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
