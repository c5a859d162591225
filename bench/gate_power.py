"""Does the gate tell forgetting from noise? False rejections and detections, beside today's rule.

    .venv/bin/python bench/gate_power.py [--noise 2e-3,4e-3] [--seeds 3] [--first-seed 1] [--damage 1.0]
                                         [--damage-suites factual_qa,arithmetic] [--max-items 200]
                                         [--suites a,b] [--greedy-copies format_following]

One engine on the bundled model (as ``perennial serve`` starts it); against it:

1. the base is scored on every shipped suite, item by item (the gate's own scorer);
2. **noise-only candidates**: for each ``--noise`` RMS s and ``--seeds`` seeds, base + s * N(0, 1)
   (one seeded stream per tensor), scored the same way, KL(candidate || base) on the probes;
   ``||noise||_2`` is printed next to it so the level can be compared with the drift a round
   records (``||theta - theta0||`` of a candidate: 20-50 for the ``cpu`` preset's 12 iterations);
3. **forgetting candidates**: for each suite in ``--damage-suites`` and each ``--damage`` step
   size, the base after 12 steps of gradient *ascent* on the negative log-likelihood of that
   suite's correct answers (transformers, float32, SGD with the gradient norm clipped to 1, so
   the whole damage moves the weights by at most 12 x lr in L2: far less than the noise),
   using only its even-numbered items; the
   odd-numbered items, which the damage never saw, measure the drop independently of the
   gate's own numbers;
4. each candidate goes through ``learner.gate.decide`` with the default thresholds (the base as
   incumbent, the first round's situation) and through **today's rule** (before this gate:
   suite mean >= base - 0.05 per suite, KL <= 0.02) on 40-item slices (today's suite size)
   and on the whole suites.

Prints the tables, writes ``bench/results/gate_power.json`` and plots the per-suite intervals
(``bench/results/gate_power.png``). Also reported: the paired standard error per suite under
noise, and from it the smallest drop the gate rejects with 95% probability:
``margin + (1.96 + 1.645) * se`` (a one-sided 95% test at 95% power, normal approximation).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.suite_baseline import MODEL, engine, load, perturbed_copy, table  # noqa: E402
from engine.client import EngineClient  # noqa: E402
from evals.scoring import score_suites  # noqa: E402
from evals.suites import Suite, load_builtin_suites, load_probes, split_looks, trim  # noqa: E402
from harness.processes import shared_model_dir  # noqa: E402
from learner.gate import Scores, Thresholds, at_look, decide, suite_check_of  # noqa: E402
from learner.kl import kl_estimate, sample_continuations, score_samples  # noqa: E402

RESULTS = REPO / "bench" / "results" / "gate_power.json"
TODAY = {"tolerance": 0.05, "max_kl": 0.02, "items": 40}  # the rule and suite size before this gate


def damaged_copy(model_dir: Path, out_dir: Path, suite: Suite, lr: float, steps: int = 12) -> dict:
    """Base after ``steps`` of gradient ascent on the NLL of ``suite``'s even items' answers."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    model.train()
    names = set(_checkpoint_names(model_dir))
    items = [item for k, item in enumerate(suite.items) if k % 2 == 0]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        batch = items[(step * 16) % len(items) :][:16]
        total = 0.0
        optimizer.zero_grad()
        for item in batch:
            prompt = _ids(tok, list(item.messages), add_generation_prompt=True)
            full = _ids(tok, [*item.messages, {"role": "assistant", "content": item.reference}])
            ids = torch.tensor([full])
            labels = ids.clone()
            labels[0, : len(prompt)] = -100
            nll = model(input_ids=ids, labels=labels).loss
            (-nll / len(batch)).backward()  # ascent: make the right answers unlikely
            total += float(nll)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(total / len(batch))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k in names}
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    return {"nll_first": round(losses[0], 3), "nll_last": round(losses[-1], 3)}


def _ids(tok, messages: list, **kwargs) -> list[int]:
    # transformers 5 returns an encoding unless asked for a dict; either way: the token ids
    return list(tok.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"])


def _checkpoint_names(model_dir: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        return list(f.keys())


async def measure(client: EngineClient, suites: dict[str, Suite], probes, args) -> dict:
    """Item scores on every suite and KL(loaded || base) (the base is reloaded for the KL)."""
    started = time.perf_counter()
    scores = await score_suites(client, MODEL, suites, concurrency=args.concurrency)
    scoring_s = time.perf_counter() - started
    samples = await sample_continuations(client, MODEL, probes, k=args.k, max_tokens=args.max_tokens)
    return {"scores": scores, "samples": samples, "scoring_s": scoring_s}


async def kl_of(client: EngineClient, samples) -> float:
    return kl_estimate(samples, await score_samples(client, MODEL, samples)).kl


def todays_rule(
    cand: dict[str, dict[str, float]], base: dict[str, dict[str, float]], kl: float, items: int | None
):
    """The rule before this gate: every suite mean >= base - 0.05, KL <= 0.02 (what failed)."""
    failed = []
    for name in base:
        ids = sorted(base[name])[:items] if items else sorted(base[name])
        drop = sum(base[name][i] - cand[name][i] for i in ids) / len(ids)
        if drop > TODAY["tolerance"] + 1e-9:
            failed.append(name)
    if not kl <= TODAY["max_kl"]:
        failed.append("kl")
    return failed


def two_looks(cand_items, base_items, kl: float, thresholds: Thresholds, first: dict[str, set[str]]) -> dict:
    """The default sequential gate on the same item scores: the first half of every suite
    (``split_looks``), then, if that did not settle it, all items (``learner.gate.at_look``)."""

    def half(items):
        return {n: {i: v for i, v in got.items() if i in first.get(n, ())} for n, got in items.items()}

    for look, (cand, ref) in enumerate(
        [(half(cand_items), half(base_items)), (cand_items, base_items)], start=1
    ):
        base = Scores(0.0, ref, 0.0)
        decision = at_look(Scores(1.0, cand, kl), base, base, thresholds, look=look, looks=2)
        if decision is not None:
            return {"rejected": not decision.promote, "look": look}
    raise AssertionError("the last look always decides")


def judge(
    kind: str,
    label: str,
    cand_items,
    base_items,
    kl: float,
    thresholds: Thresholds,
    extra: dict,
    first: dict[str, set[str]],
) -> dict:
    base = Scores(0.0, base_items, 0.0)
    decision = decide(Scores(1.0, cand_items, kl), base, base, thresholds)
    looks = two_looks(cand_items, base_items, kl, thresholds, first)
    suites = {}
    for check in decision.checks:
        parsed = suite_check_of(check.name)
        if parsed and parsed[1] == "base" and check.interval:
            ci = check.interval
            suites[parsed[0]] = {
                "mean": ci.mean,
                "low": ci.low,
                "high": ci.high,
                "passed": check.passed,
            }
    row = {
        "kind": kind,
        "label": label,
        "kl": kl,
        "rejected": not decision.promote,
        "two_looks_rejected": looks["rejected"],
        "two_looks_decided_at": looks["look"],
        "failed": sorted({c.name.split(":")[1] for c in decision.checks if not c.passed and ":" in c.name}),
        "today_40_failed": todays_rule(cand_items, base_items, kl, TODAY["items"]),
        "today_full_failed": todays_rule(cand_items, base_items, kl, None),
        "suites": suites,
        **extra,
    }
    print(
        f"{kind:7s} {label:28s} KL {kl:.4f}  gate {'REJECT' if row['rejected'] else 'pass  '} {row['failed']}  "
        f"two looks {'REJECT' if looks['rejected'] else 'pass  '} at look {looks['look']}  "
        f"today(40) {row['today_40_failed']}",
        flush=True,
    )
    return row


async def confirm_on_rest(client, cand, base_items, rest, thresholds) -> dict[str, dict[str, float]]:
    """Candidate item scores, past the gate's cut, on each suite the gate fails (call it while
    the candidate is loaded). A rejection that these unseen items repeat was a real loss."""
    names = [n for n in failed_suites(cand, base_items, thresholds) if n in rest and rest[n].items]
    got = await score_suites(client, MODEL, {n: rest[n] for n in names}) if names else {}
    return {n: got[n].items for n in names}


async def unseen_drops(client, confirm, rest, base_rest) -> dict:
    """Mean candidate - base on the unseen items (base loaded; its scores cached in base_rest)."""
    todo = {n: rest[n] for n in confirm if n not in base_rest}
    if todo:
        got = await score_suites(client, MODEL, todo)
        base_rest.update({n: got[n].items for n in todo})
    return {
        n: {"items": len(items), "diff": sum(items[i] - base_rest[n][i] for i in items) / len(items)}
        for n, items in confirm.items()
    }


def failed_suites(cand, base_items, thresholds) -> list[str]:
    base = Scores(0.0, base_items, 0.0)
    decision = decide(Scores(1.0, cand, 0.0), base, base, thresholds)  # max_kl unset: KL does not decide
    return sorted(
        {c.name.split(":")[1] for c in decision.checks if not c.passed and c.name.startswith("suite:")}
    )


def save_partial(args: argparse.Namespace, rows: list[dict]) -> None:
    """Every judged candidate so far, so a run cut short still leaves its measurements."""
    args.out.with_suffix(".partial.json").write_text(json.dumps({"candidates": rows}, indent=2) + "\n")


def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided upper bound of a binomial share (bisection on the exact tail; no scipy)."""
    if n == 0 or k == n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        tail = sum(math.comb(n, j) * mid**j * (1 - mid) ** (n - j) for j in range(k + 1))
        lo, hi = (mid, hi) if tail > 1 - confidence else (lo, mid)
    return hi


async def run(args: argparse.Namespace) -> dict:
    model_dir = shared_model_dir()
    whole = load_builtin_suites()
    if args.suites:
        whole = {n: whole[n] for n in args.suites.split(",")}
    for name in [x for x in args.greedy_copies.split(",") if x]:
        # the same items scored greedy by their verifiers, beside their reference likelihood
        copy = f"{name}_greedy"
        whole[copy] = replace(whole[name], name=copy, scoring="greedy")
    suites = {s.name: s for s in trim(list(whole.values()), args.max_items)}
    # items the gate never sees: a rejection is confirmed (or not) on them
    rest = {
        n: replace(s, items=s.items[args.max_items :])
        for n, s in whole.items()
        if args.max_items and len(s.items) > args.max_items
    }
    probes = load_probes()[: args.probes]
    thresholds = Thresholds()
    # the items of the sequential gate's first look (PERENNIAL_GATE_LOOKS=2, the default)
    first = {s.name: {i.id for i in s.items} for s in split_looks(list(suites.values()), 2)[0]}
    rows: list[dict] = []
    async with engine(args.engine_url, model_dir) as url:
        client = EngineClient(url, timeout_s=900)
        try:
            await score_suites(client, MODEL, dict(list(suites.items())[:1]), concurrency=8)  # warm-up
            base = await measure(client, suites, probes, args)
            base_items = {name: s.items for name, s in base["scores"].items()}
            print(
                f"base scored in {base['scoring_s']:.0f} s: "
                + ", ".join(f"{n} {s.score:.3f}" for n, s in base["scores"].items()),
                flush=True,
            )
            base_rest: dict[str, dict[str, float]] = {}  # filled per suite on first need
            for rms in [float(x) for x in args.noise.split(",") if x]:
                for seed in range(args.first_seed - 1, args.first_seed - 1 + args.seeds):
                    with tempfile.TemporaryDirectory(prefix="perennial-gate-") as tmp:
                        l2 = perturbed_copy(model_dir, Path(tmp), rms, seed=seed + 1)
                        await load(client, Path(tmp))
                        got = await measure(client, suites, probes, args)
                        cand = {name: s.items for name, s in got["scores"].items()}
                        confirm = await confirm_on_rest(client, cand, base_items, rest, thresholds)
                    await load(client, model_dir)
                    unseen = await unseen_drops(client, confirm, rest, base_rest)
                    kl = await kl_of(client, got["samples"])
                    rows.append(
                        judge(
                            "noise",
                            f"rms {rms:g} seed {seed + 1}",
                            cand,
                            base_items,
                            kl,
                            thresholds,
                            {
                                "noise_rms": rms,
                                "noise_l2": round(l2, 2),
                                "scoring_s": got["scoring_s"],
                                "unseen": unseen,
                            },
                            first,
                        )
                    )
                    for n, u in unseen.items():
                        print(
                            f"        {n}: {100 * u['diff']:+.1f} points on {u['items']} unseen items",
                            flush=True,
                        )
                    save_partial(args, rows)
            for name in [x for x in args.damage_suites.split(",") if x]:
                for lr in [float(x) for x in args.damage.split(",") if x]:
                    with tempfile.TemporaryDirectory(prefix="perennial-gate-") as tmp:
                        info = await asyncio.to_thread(damaged_copy, model_dir, Path(tmp), suites[name], lr)
                        await load(client, Path(tmp))
                        got = await measure(client, suites, probes, args)
                    await load(client, model_dir)
                    kl = await kl_of(client, got["samples"])
                    cand = {n: s.items for n, s in got["scores"].items()}
                    odd = [item.id for k, item in enumerate(suites[name].items) if k % 2]
                    unseen = sum(cand[name][i] - base_items[name][i] for i in odd) / len(odd)
                    rows.append(
                        judge(
                            "damage",
                            f"{name} lr {lr:g}",
                            cand,
                            base_items,
                            kl,
                            thresholds,
                            {"suite": name, "lr": lr, "unseen_drop": unseen, **info},
                            first,
                        )
                    )
                    save_partial(args, rows)
        finally:
            await client.aclose()
    noise = [r for r in rows if r["kind"] == "noise"]
    spread = {}
    for name in suites:
        diffs = [r["suites"][name]["mean"] for r in noise if name in r["suites"]]
        widths = [(r["suites"][name]["high"] - r["suites"][name]["low"]) / (2 * 1.96) for r in noise]
        se = sum(widths) / len(widths) if widths else float("nan")
        spread[name] = {
            "scoring": suites[name].scoring,
            "items": len(suites[name].items),
            "base": base["scores"][name].score,
            "noise_mean_diff": sum(diffs) / len(diffs) if diffs else None,
            "paired_se": se,
            "detectable_drop": thresholds.max_total_drop + (1.96 + 1.645) * se,
        }
    return {
        "model": MODEL,
        "thresholds": thresholds.to_json(),
        "today": TODAY,
        "base_scoring_s": base["scoring_s"],
        "suites": spread,
        "candidates": rows,
        "command": " ".join(["bench/gate_power.py", *sys.argv[1:]]),
    }


def report(result: dict) -> None:
    rows = [
        [
            n,
            s["scoring"],
            s["items"],
            f"{s['base']:.3f}",
            f"{100 * s['paired_se']:.2f}",
            f"{100 * s['detectable_drop']:.1f}",
        ]
        for n, s in result["suites"].items()
    ]
    table(
        "Suites: base score, paired s.e. under noise, smallest drop rejected at 95% (points)",
        ["suite", "scoring", "items", "base", "s.e.", "detectable drop"],
        rows,
    )
    out = []
    for kind in ("noise", "damage"):
        group = [r for r in result["candidates"] if r["kind"] == kind]
        if not group:
            continue
        for label, key in (
            ("this gate, one look", "rejected"),
            ("this gate, two looks (the default)", "two_looks_rejected"),
            ("today, 40 items", "today_40_failed"),
            ("today, whole suites", "today_full_failed"),
        ):
            k = sum(bool(r[key]) for r in group)
            out.append(
                [
                    kind,
                    label,
                    f"{k}/{len(group)}",
                    f"{100 * k / len(group):.0f}%",
                    f"{100 * clopper_pearson_upper(k, len(group)):.0f}%" if kind == "noise" else "",
                ]
            )
    table("Rejections", ["candidates", "rule", "rejected", "share", "95% upper bound"], out)
    for kind in ("noise", "damage"):
        group = [r for r in result["candidates"] if r["kind"] == kind and "two_looks_decided_at" in r]
        if group:
            early = sum(r["two_looks_decided_at"] == 1 for r in group)
            print(
                f"two looks, {kind}: {early}/{len(group)} settled at the first look (half of every suite's items)"
            )
    dmg = [
        [
            r["label"],
            f"{100 * r['unseen_drop']:+.1f}",
            f"{100 * r['suites'][r['suite']]['mean']:+.1f} [{100 * r['suites'][r['suite']]['low']:+.1f}, "
            f"{100 * r['suites'][r['suite']]['high']:+.1f}]",
            "REJECT" if r["rejected"] else "pass",
            ",".join(r["failed"]),
        ]
        for r in result["candidates"]
        if r["kind"] == "damage"
    ]
    confirmed = [
        [r["label"], n, f"{100 * r['suites'][n]['mean']:+.1f}", f"{100 * u['diff']:+.1f}", u["items"]]
        for r in result["candidates"]
        if r["kind"] == "noise"
        for n, u in r.get("unseen", {}).items()
    ]
    if confirmed:
        table(
            "Noise rejections checked on items the gate never saw (points vs base)",
            ["candidate", "suite", "gate's items", "unseen items", "n unseen"],
            confirmed,
        )
    if dmg:
        table(
            "Damaged candidates (points vs base)",
            ["candidate", "drop on unseen half", "gate: suite vs base [95% CI]", "gate", "failed"],
            dmg,
        )


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["suites"])
    cands = result["candidates"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 4.5), sharey=True)
    for ax, name in zip(axes, names, strict=True):
        for y, r in enumerate(cands):
            s = r["suites"].get(name)
            if not s:
                continue
            color = "tab:red" if not s["passed"] else ("tab:blue" if r["kind"] == "noise" else "tab:orange")
            ax.errorbar(
                100 * s["mean"],
                y,
                xerr=[[100 * (s["mean"] - s["low"])], [100 * (s["high"] - s["mean"])]],
                fmt="o",
                color=color,
                ms=3,
                capsize=2,
            )
        ax.axvline(-100 * result["thresholds"]["max_total_drop"], color="k", ls="--", lw=1)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_title(f"{name} ({result['suites'][name]['scoring']})", fontsize=9)
        ax.set_xlabel("candidate - base, points (95% CI)")
    axes[0].set_yticks(range(len(cands)), [r["label"] for r in cands], fontsize=7)
    fig.suptitle(
        "Gate: paired intervals per suite (blue noise, orange damaged, red rejected; dashed: -max_total_drop)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine-url", help=f"use a running engine serving {MODEL}")
    parser.add_argument("--noise", default="2e-3,4e-3", help="noise RMS levels")
    parser.add_argument("--seeds", type=int, default=3, help="noise candidates per level")
    parser.add_argument(
        "--first-seed", type=int, default=1, help="seed of the first noise candidate (to extend a run)"
    )
    parser.add_argument(
        "--damage", default="1.0", help="gradient-ascent step sizes (SGD, grad norm clipped to 1)"
    )
    parser.add_argument(
        "--max-items", type=int, default=200, help="items per suite (0: all), as gate_suite_max_items"
    )
    parser.add_argument("--damage-suites", default="factual_qa,arithmetic")
    parser.add_argument("--suites", default="", help="only these suites (comma-separated; default all)")
    parser.add_argument(
        "--greedy-copies",
        default="",
        help="reference suites to also score greedy (as <name>_greedy), e.g. format_following",
    )
    parser.add_argument("--k", type=int, default=2, help="continuations per probe (KL)")
    parser.add_argument("--max-tokens", type=int, default=32, help="length of each continuation (KL)")
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
