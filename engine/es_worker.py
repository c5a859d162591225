"""vLLM worker extension of the learner engine: fp32 master, perturbed members, ES updates.

Loaded into the learner engine's worker with ``--worker-extension-cls
engine.es_worker.ESWorkerExtension``; every ``es_*`` method is reached through
``POST /collective_rpc``. Each is an :func:`engine.rpc.worker_method` (the serving worker's
convention too): arguments arrive as strings and are decoded, and an error comes back to the
driver as ``EngineRPCError`` instead of taking the engine down.

The worker keeps, as CPU float32 tensors keyed by checkpoint names, the ``master`` (theta, the
current ES solution, starting from a parent model directory) and the ``base`` (theta0, the AWD
anchor, possibly another directory). A member is ``master + sign * sigma * eps(seed)`` written
into load buffers and handed to the engine; the master itself is never perturbed, so restoring
it is an exact reload, not a subtract (bf16 subtract-restore drifts).

Two ways into the engine (see ``kernel_load``): ``direct`` writes straight into the CPU
kernels' fused buffers and re-packs (checked once against vLLM's own loader at init), and
``reload`` uses vLLM's ``reload_weights`` plus a re-pack of the tied ``lm_head``.
Only seeds and coefficients come in and scalars go out, so an engine on another machine can
serve the same handle.

Any local process can reach ``/collective_rpc``, and a snapshot replaces its directory, so
``es_snapshot`` writes only strictly inside the ``snapshot_root`` the first ``es_init`` gave
(the learner's versions directory, or a run's output directory), after resolving symlinks;
a later ``es_init`` cannot move that root, and without one no snapshot is written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from engine.group_watch import watch_group_leader
from engine.idle import idle_spin, sleep_when_idle
from engine.kernel_load import refresh_tied_lm_head, verified_direct_loader
from engine.rpc import worker_method
from engine.threads import worker_threads
from weights.es import NOISE_TABLE_SIZE, NoiseTable, es_step, l2_distance, perturbed, tensors_sha256
from weights.meta import SnapshotMeta
from weights.snapshot import load_tensors, write_snapshot

# this module is loaded in every engine worker: end the engine's processes with their leader
watch_group_leader()
sleep_when_idle()  # only where EngineSpec.idle_spin_s asks for it (engine.idle)

LOAD_MODES = ("auto", "direct", "reload")


class ESWorkerExtension:
    """ES state and weight operations inside one vLLM worker."""

    @worker_method
    def es_init(
        self,
        master_dir: str,
        base_dir: str,
        table_size: str = str(NOISE_TABLE_SIZE),
        table_seed: str = "0",
        load_mode: str = "auto",
        snapshot_root: str = "",
    ) -> dict:
        """Load theta (``master_dir``) and theta0 (``base_dir``), build the noise table.

        ``snapshot_root``: the only directory ``es_snapshot`` may write into; set by the first
        call that gives one, and any other root later is refused.

        Returns:
            Sizes, timings, the chosen load mode and, if the direct path was rejected, why.
        """
        started = time.perf_counter()
        master_dir, base_dir = str(master_dir), str(base_dir)
        mode = str(load_mode)
        if mode not in LOAD_MODES:
            raise ValueError(f"load_mode must be one of {LOAD_MODES}")
        self._es_snapshot_root = _fixed_root(getattr(self, "_es_snapshot_root", None), str(snapshot_root))
        # safetensors maps files copy-on-write: theta0 stays file-backed page cache (shared,
        # reclaimable), the master turns into private memory only as updates write to it.
        self._es_master = load_tensors(Path(master_dir))
        self._es_base = load_tensors(Path(base_dir))
        _check_same_layout(self._es_master, self._es_base)
        self._es_table = NoiseTable(int(table_size), int(table_seed))
        self._es_source = master_dir
        self._es_scratch = {k: torch.empty_like(v) for k, v in self._es_master.items()}
        self._es_direct = None
        self._es_out = self._es_scratch
        self._es_load_copy(self._es_master)  # vLLM's own path: the reference for the check
        rejected = self._es_try_direct() if mode != "reload" else "load_mode=reload"
        if mode == "direct" and self._es_direct is None:
            raise RuntimeError(f"direct weight load unavailable: {rejected}")
        self._es_loaded = "master"
        numel = sum(v.numel() for v in self._es_master.values())
        return {
            "tensors": len(self._es_master),
            "numel": numel,
            "rejected": rejected,
            "load_mode": "direct" if self._es_direct else "reload",
            "init_s": round(time.perf_counter() - started, 3),
        }

    def _es_try_direct(self) -> str | None:
        """Enable the direct path if it reproduces vLLM's loader exactly; else say why not."""
        from vllm.config import set_current_vllm_config

        model = self.model_runner.get_model()  # type: ignore[attr-defined]
        with set_current_vllm_config(self.vllm_config):  # type: ignore[attr-defined]
            direct, rejected = verified_direct_loader(
                model, self._es_master, restore=lambda: self._es_load_copy(self._es_master)
            )
        if direct is None:
            return rejected
        self._es_direct = direct
        fp32 = all(t.dtype == torch.float32 for t in direct.targets.values())
        if fp32:  # members are written straight into the kernels' buffers: no scratch copy
            self._es_out = direct.targets
            self._es_scratch = {}
        return None

    def _es_commit(self) -> float:
        """Make the engine serve what is in ``self._es_out``; returns seconds."""
        from vllm.config import set_current_vllm_config

        started = time.perf_counter()
        if self._es_direct is not None:
            if self._es_out is not self._es_direct.targets:
                for name, tensor in self._es_out.items():
                    self._es_direct.targets[name].copy_(tensor)
            with set_current_vllm_config(self.vllm_config):  # type: ignore[attr-defined]
                self._es_direct.finalize()
        else:
            self._es_vllm_reload(weights_iterator=list(self._es_out.items()))
        return time.perf_counter() - started

    def _es_vllm_reload(self, **kwargs: Any) -> None:
        # The worker's reload_weights sets vLLM's current config around the runner's.
        self.reload_weights(is_checkpoint_format=True, **kwargs)  # type: ignore[attr-defined]
        runner = self.model_runner  # type: ignore[attr-defined]
        tied = bool(getattr(runner.model_config.hf_config, "tie_word_embeddings", False))
        refresh_tied_lm_head(runner.get_model(), tied)

    def _es_load_copy(self, params: dict[str, torch.Tensor]) -> float:
        for name, tensor in params.items():
            self._es_out[name].copy_(tensor)
        return self._es_commit()

    @worker_method
    def es_ping(self) -> dict:
        """The worker's pid, thread plan as applied (OpenMP threads and cores) and idle spin."""
        return {
            "extension": type(self).__name__,
            "pid": os.getpid(),
            "threads": worker_threads(),
            "idle_spin_s": idle_spin(),
        }

    @worker_method
    def es_load_member(self, seed: str, sigma: str, sign: str) -> dict:
        """Serve ``master + sign * sigma * eps(seed)``; the master is untouched."""
        seed_i, sigma_f, sign_i = int(seed), float(sigma), int(sign)
        started = time.perf_counter()
        for _ in perturbed(self._es_master, self._es_table, seed_i, sigma_f, sign_i, out=self._es_out):
            pass
        perturb_s = time.perf_counter() - started
        reload_s = self._es_commit()
        self._es_loaded = f"member:{seed_i}:{sign_i:+d}:{sigma_f:g}"
        return {"perturb_s": perturb_s, "reload_s": reload_s, "load_s": perturb_s + reload_s}

    @worker_method
    def es_load_master(self) -> dict:
        """Serve theta exactly."""
        reload_s = self._es_load_copy(self._es_master)
        self._es_loaded = "master"
        return {"reload_s": reload_s, "loaded": self._es_loaded}

    @worker_method
    def es_load_base(self) -> dict:
        """Serve theta0 exactly (for baselines such as log-likelihoods under the base)."""
        reload_s = self._es_load_copy(self._es_base)
        self._es_loaded = "base"
        return {"reload_s": reload_s, "loaded": self._es_loaded}

    @worker_method
    def es_load_dir(self, model_dir: str) -> dict:
        """Serve a model directory through vLLM's own reload (the serving hot-swap path).

        Plus the tied ``lm_head`` re-pack vLLM's reload misses on CPU. The master is untouched.
        """
        started = time.perf_counter()
        self._es_vllm_reload(weights_path=str(model_dir))
        self._es_loaded = f"dir:{model_dir}"
        return {"reload_s": time.perf_counter() - started, "loaded": self._es_loaded}

    @worker_method
    def es_update(
        self,
        seeds: str,
        coefficients: str,
        alpha: str,
        population: str,
        awd_lambda: str = "0",
        awd_kind: str = "l2",
    ) -> dict:
        """``theta += alpha/N sum c_i eps_i`` then AWD, on the master; returns the step stats.

        The engine keeps serving what it had; ``es_load_master`` serves the new master.
        """
        started = time.perf_counter()
        stats = es_step(
            self._es_master,
            self._es_base,
            self._es_table,
            [int(s) for s in seeds],
            [float(c) for c in coefficients],
            alpha=float(alpha),
            population=int(population),
            awd_lambda=float(awd_lambda),
            awd_kind=str(awd_kind),
        )
        return {**stats.__dict__, "update_s": time.perf_counter() - started}

    @worker_method
    def es_snapshot(self, out_dir: str, meta: str = "{}") -> dict:
        """Write the master as a HF model directory with ``meta.json``; return the meta."""
        if int(getattr(self, "rank", 0) or 0) != 0:
            return {}
        written = write_snapshot(
            snapshot_target(getattr(self, "_es_snapshot_root", None), str(out_dir)),
            self._es_master,
            Path(self._es_source),
            SnapshotMeta.model_validate(meta or {}),
        )
        return written.model_dump(mode="json")

    @worker_method
    def es_checksum(self) -> dict:
        """sha256 of the master's and the base's tensors, and what the engine serves."""
        return {
            "master": tensors_sha256(self._es_master),
            "base": tensors_sha256(self._es_base),
            "loaded": self._es_loaded,
        }

    @worker_method
    def es_drift(self) -> dict:
        """||theta - theta0||_2 and the share of values equal to the base."""
        numel = sum(v.numel() for v in self._es_master.values())
        same = sum(int((self._es_master[k] == self._es_base[k]).sum()) for k in self._es_master)
        return {
            "drift": l2_distance(self._es_master, self._es_base),
            "unchanged": same / max(numel, 1),
            "loaded": self._es_loaded,
        }


def _fixed_root(current: Path | None, given: str) -> Path | None:
    """The snapshot root after an ``es_init`` that gave ``given`` ("" for none): set once."""
    if not given:
        return current
    root = Path(given).resolve()
    if current is not None and root != current:
        raise PermissionError(f"the snapshot root is {current}; it cannot be moved to {root}")
    return root


def snapshot_target(root: Path | None, out_dir: str) -> Path:
    """``out_dir`` resolved, if it lies strictly inside ``root``; refuse anything else.

    A snapshot replaces its directory (``write_snapshot`` removes the old one and a temporary
    sibling), so nothing outside the root may ever be named here.

    >>> snapshot_target(Path("/data/versions"), "/data/versions/v3")
    PosixPath('/data/versions/v3')
    """
    if root is None:
        raise PermissionError("no snapshot_root was given to es_init: snapshots are refused")
    target = Path(out_dir).resolve()
    if root not in target.parents:
        raise PermissionError(f"snapshot directory {target} is not inside the snapshot root {root}")
    return target


def _check_same_layout(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    if a.keys() != b.keys():
        missing = sorted(a.keys() ^ b.keys())[:3]
        raise ValueError(f"master and base hold different tensors (e.g. {missing})")
    for name, tensor in a.items():
        if tensor.shape != b[name].shape:
            raise ValueError(f"{name}: master {tuple(tensor.shape)} vs base {tuple(b[name].shape)}")
