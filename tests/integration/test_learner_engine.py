"""The learner engine on real vLLM (CPU): exact restore, ES iterations, snapshots that load.

One learner engine for the module (engine start dominates: 1-2 minutes on a quiet 2-core
machine). The snapshot is checked three ways: vLLM's own directory loader in this engine,
transformers (same log-probabilities), and, marked ``slow``, a fresh vLLM server started on it.
Every engine here runs float32, whatever this CPU's ``auto`` dtype is: transformers' float32
function is the reference, and the engines compared with each other must share a dtype.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

from engine.client import EngineClient
from engine.learner_engine import LearnerEngine
from engine.supervisor import EngineSpec, EngineSupervisor
from engine.threads import cores
from learner.engines import LocalLearnerEngine
from learner.es_loop import run_es
from learner.fitness import FitnessEvaluator
from learner.items import load_items
from learner.round import snapshot_meta
from learner.yielding import ChatGuard
from weights.config import ESConfig
from weights.es import NoiseTable, es_step, tensors_sha256
from weights.lineage import Generation, rebuild
from weights.meta import SnapshotMeta
from weights.snapshot import WEIGHTS, load_tensors

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

DTYPE = "float32"  # see the module docstring
PROMPTS = ["What is the capital of France?", "Name a primary color.", "What is 25 + 17?"]
TEXT = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
]
ITEMS = [
    {"prompt": "What is 25 + 50? Reply with only the number.", "reference": "75", "verifier": "number"},
    {"prompt": "What is 31 + 18? Reply with only the number.", "reference": "49", "verifier": "number"},
    {"prompt": "Capital of Italy?", "completion": "The capital of Italy is Rome.", "reward": 1.0},
    {"prompt": "What is 40 + 41?", "correction": "81"},
]
CONFIG = ESConfig.preset("cpu", population=4, iterations=2, minibatch=4, max_tokens=8)


async def greedy(client: EngineClient, model: str) -> list[str]:
    replies = []
    for prompt in PROMPTS:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0.0,
            "max_tokens": 12,
        }
        replies.append((await client.chat(body))["choices"][0]["message"]["content"])
    return replies


async def token_ids(client: EngineClient, model: str) -> list[int]:
    return (await client.tokenize({"model": model, "messages": TEXT, "add_generation_prompt": False}))[
        "tokens"
    ]


async def logprobs(client: EngineClient, model: str) -> list[float]:
    ids = await token_ids(client, model)
    body = {"model": model, "prompt": ids, "max_tokens": 1, "prompt_logprobs": 0, "temperature": 0.0}
    rows = (await client.completions(body))["choices"][0]["prompt_logprobs"]
    return [rows[i][str(ids[i])]["logprob"] for i in range(1, len(ids))]


@pytest.fixture(scope="module")
async def engine(model_dir, tmp_path_factory):
    handle = await LocalLearnerEngine.start(
        model_dir,
        log_file=tmp_path_factory.mktemp("learner") / "engine.log",
        dtype=DTYPE,
        snapshot_root=tmp_path_factory.getbasetemp(),  # the tests' snapshots go to tmp dirs
    )
    yield handle
    await handle.close()


@pytest.fixture(scope="module")
async def base_outputs(engine):
    return await greedy(engine.client, engine.served_name), await logprobs(engine.client, engine.served_name)


async def test_loading_the_master_after_members_restores_base_outputs_exactly(engine, base_outputs):
    base_text, base_lp = base_outputs
    sums = await engine.checksum()
    assert sums["master"] == sums["base"]
    await engine.load_member(seed=5, sigma=3e-3, sign=1)
    member_lp = await logprobs(engine.client, engine.served_name)
    assert max(abs(a - b) for a, b in zip(member_lp, base_lp, strict=True)) > 1e-3
    await engine.load_member(seed=5, sigma=3e-3, sign=-1)
    await engine.load_master()
    assert (await engine.checksum())["master"] == sums["master"]  # a member never touches it
    assert await greedy(engine.client, engine.served_name) == base_text
    assert await logprobs(engine.client, engine.served_name) == base_lp  # bit for bit


async def test_the_chat_guard_freezes_the_engine_mid_request_and_the_replies_are_unchanged(
    engine, base_outputs
):
    """While chats are in flight the learner engine schedules nothing; its requests wait and end the same."""
    base_text, _ = base_outputs
    await engine.load_base()
    chats = {"n": 1}
    async with ChatGuard(
        lambda: chats["n"], engine.client, max_pause_s=600, min_run_s=0, poll_s=0.005
    ) as guard:
        for _ in range(500):
            if guard.pauses:
                break
            await asyncio.sleep(0.01)
        assert await engine.client.is_paused()
        replies = asyncio.create_task(greedy(engine.client, engine.served_name))
        await asyncio.sleep(2.0)
        assert not replies.done()  # frozen, not refused
        chats["n"] = 0
        assert await asyncio.wait_for(replies, 300) == base_text
    assert not await engine.client.is_paused()
    assert guard.pauses == 1 and guard.paused_s >= 2.0


async def test_the_thread_plan_is_applied_and_members_score_the_same(engine, model_dir, tmp_path):
    """Another CPU thread plan changes the engine's OpenMP binding, not what a member scores."""
    ours = (await engine.ping())["threads"]
    assert ours["omp_threads"] == len(ours["omp_cores"])
    plan = "all" if ours["omp_threads"] < len(cores("all")) else "0"
    other = await LearnerEngine.start(
        model_dir, log_file=tmp_path / "other.log", cpu_threads=plan, dtype=DTYPE
    )
    try:
        threads = (await other.ping())["threads"]
        assert threads["omp_cores"] == cores(plan) and threads["omp_threads"] == len(cores(plan))
        items = load_items_from(tmp_path, [i for i in ITEMS if "reference" in i])
        scores = []
        for handle in (engine, other):
            evaluator = FitnessEvaluator(handle, items, minibatch=len(items), max_tokens=16)
            member = []
            for seed, sign in ((11, 1), (11, -1), (12, 1)):
                await handle.load_member(seed, 3e-3, sign)
                member.append((await evaluator.evaluate(evaluator.batch(0))).verifiable)
            scores.append(member)
        assert scores[0] == scores[1]
    finally:
        await other.close()
        await engine.load_master()


def load_items_from(tmp_path, rows):
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return load_items(path)


@pytest.fixture(scope="module")
async def trained(engine, base_outputs, model_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("items") / "items.jsonl"
    path.write_text("\n".join(json.dumps(i) for i in ITEMS) + "\n")
    result = await run_es(engine, load_items(path), CONFIG)
    out = tmp_path_factory.mktemp("snap") / "snapshot"
    meta = await engine.snapshot(
        out, SnapshotMeta(parent=str(model_dir), seeds=result.seeds, coefficients=result.coefficients)
    )
    text = await greedy(engine.client, engine.served_name)
    lp = await logprobs(engine.client, engine.served_name)
    ids = await token_ids(engine.client, engine.served_name)
    return result, out, meta, text, lp, ids


async def test_es_iterations_change_the_weights_reproducibly(engine, trained, model_dir):
    result, _, meta, _, _, _ = trained
    assert len(result.records) == 2
    assert all(r.failed_items == 0 for r in result.records)
    assert any(c != 0 for r in result.records for c in r.coefficients)
    drift = await engine.drift()
    assert drift["drift"] > 0 and drift["drift"] == pytest.approx(
        result.records[-1].drift, rel=1e-5
    )  # es_step: float32 norms of slices
    sums = await engine.checksum()
    assert sums["master"] != sums["base"] and sums["loaded"] == "master"
    # The seed log is the audit trail: replaying it on the parent gives the same bits.
    theta = load_tensors(model_dir)
    theta0 = {k: v.clone() for k, v in theta.items()}
    table = NoiseTable(engine.noise.size, engine.noise.seed)
    for seeds, coefficients in zip(meta.seeds, meta.coefficients, strict=True):
        es_step(
            theta,
            theta0,
            table,
            seeds,
            coefficients,
            alpha=CONFIG.alpha,
            population=CONFIG.population,
            awd_lambda=CONFIG.awd_lambda,
            awd_kind=CONFIG.awd_kind,
        )
    assert tensors_sha256(theta) == sums["master"] == meta.tensors_sha256


async def test_engine_serves_the_master_function(trained):
    from transformers import AutoModelForCausalLM

    _, snapshot, _, _, master_lp, ids = trained
    model = AutoModelForCausalLM.from_pretrained(snapshot, dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double().log_softmax(-1)
    hf = logits[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0].tolist()
    # Same fp32 function up to kernel rounding; a stale layer (e.g. the tied lm_head) is ~1e-1 off.
    assert max(abs(a - b) for a, b in zip(hf, master_lp, strict=True)) < 2e-3


async def test_snapshot_loads_through_vllms_loader_and_reproduces_master_outputs(
    engine, trained, base_outputs
):
    _, snapshot, _, master_text, master_lp, _ = trained
    await engine.load_base()  # serve something else first, so stale layers would show
    assert await logprobs(engine.client, engine.served_name) == base_outputs[1]
    await engine.load_weights_from(snapshot)  # vLLM's reload_weights(weights_path=snapshot)
    assert await greedy(engine.client, engine.served_name) == master_text
    assert await logprobs(engine.client, engine.served_name) == master_lp
    await engine.load_master()


async def test_three_rounds_of_the_learner_engine_rebuild_bit_for_bit_from_their_seed_logs(
    engine, model_dir, tmp_path
):
    """Rounds as the learner runs them (each from the last snapshot, anchored to the base, one
    with AWD), then their seed logs replayed outside the engine (weights.lineage): same file."""
    items = load_items_from(tmp_path, [i for i in ITEMS if "reference" in i])
    chain, parent, parent_dir = [], "base", model_dir
    try:
        for g, lam in enumerate([0.0, 0.5, 0.0], start=1):
            config = ESConfig.preset(
                "cpu", population=2, iterations=1, minibatch=2, max_tokens=4, awd_lambda=lam, seed=g
            )
            await engine.init_state(parent_dir, model_dir, config.noise)
            result = await run_es(engine, items, config)
            drift = (await engine.drift())["drift"]
            out = tmp_path / f"g{g}"
            meta = await engine.snapshot(out, snapshot_meta(g, parent, config, result.records, drift))
            chain.append(Generation(f"g{g}", meta))
            parent, parent_dir = f"g{g}", out
    finally:
        await engine.init_state(model_dir, model_dir)
    recorded = (tmp_path / "g3" / WEIGHTS).read_bytes()
    for g in ("g2", "g3"):
        (tmp_path / g / WEIGHTS).unlink()
    report = await asyncio.to_thread(
        rebuild, chain[1:], start="g1", start_dir=tmp_path / "g1", base_dir=model_dir, out_dir=tmp_path / "g3"
    )
    assert (tmp_path / "g3" / WEIGHTS).read_bytes() == recorded
    assert report.sha256 == chain[-1].meta.sha256 and report.generations == ["g2", "g3"]
    # the whole chain from the base gives the same bytes too
    rebuild(chain, start="base", start_dir=model_dir, base_dir=model_dir, out_dir=tmp_path / "again")
    assert (tmp_path / "again" / WEIGHTS).read_bytes() == recorded


@pytest.mark.slow
async def test_snapshot_loads_in_a_fresh_vllm_and_reproduces_master_outputs(
    engine, trained, base_outputs, tmp_path
):
    """A plain vLLM server started on the snapshot (a cold compile: minutes; run by hand)."""
    _, snapshot, _, master_text, master_lp, _ = trained
    await engine.close()  # one engine at a time on the 2-core machine
    spec = EngineSpec(
        model_dir=snapshot,
        served_name="snap",
        log_file=tmp_path / "snap.log",
        prefix_caching=False,
        dtype=DTYPE,
    )
    supervisor = EngineSupervisor(spec, start_timeout_s=900, max_restarts=0)
    await supervisor.start()
    client = EngineClient(supervisor.url)
    try:
        assert await greedy(client, "snap") == master_text
        lp = await logprobs(client, "snap")
        assert max(abs(a - b) for a, b in zip(lp, master_lp, strict=True)) < 1e-4
        assert lp != base_outputs[1]
    finally:
        await client.aclose()
        await supervisor.stop()
