"""Worker extension loaded into every vLLM worker of a Perennial serving engine.

vLLM mixes this class into its worker (``--worker-extension-cls
engine.serving_worker.ServingWorkerExtension``); its methods run inside the engine process
and are reached through ``POST /collective_rpc {"method": "perennial_..."}``. Every method is an
:func:`engine.rpc.worker_method`: arguments arrive as strings, errors come back as
``{"error": ...}`` instead of killing the engine (the caller gets ``EngineRPCError``). A snapshot
is also checked (names, shapes, dtypes from the safetensors headers) before any weight is
touched: a reload that fails half-way leaves a half-loaded model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from engine.group_watch import watch_group_leader
from engine.idle import sleep_when_idle
from engine.rpc import worker_method
from engine.threads import worker_threads

# this module is loaded in every engine worker: end the engine's processes with their leader
watch_group_leader()
sleep_when_idle()  # only where EngineSpec.idle_spin_s asks for it (engine.idle)

log = logging.getLogger(__name__)


def checkpoint_layout(directory: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Tensor name -> (shape, dtype) from the safetensors headers of ``directory`` (no data read)."""
    from safetensors import safe_open

    layout: dict[str, tuple[tuple[int, ...], str]] = {}
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no safetensors weights in {directory}")
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                sl = f.get_slice(name)
                layout[name] = (tuple(sl.get_shape()), str(sl.get_dtype()))
    return layout


def reload_in_place(worker: Any, **kwargs: Any) -> bool:
    """``worker.reload_weights(**kwargs)``, then re-tie and re-pack a tied ``lm_head``.

    vLLM 0.32's layerwise reload loads nothing into a tied head, so it keeps the packed CPU copy
    of the *previous* embedding: a swapped-in snapshot then answered differently from an engine
    started on it, with equal parameter checksums. ``refresh_tied_lm_head`` (shared with the
    learner's reload path) fixes that. Returns True if the head was re-packed.
    """
    from engine.kernel_load import refresh_tied_lm_head  # torch: engine process only

    # The worker's reload_weights (not the runner's) sets vLLM's current config around it.
    worker.reload_weights(**kwargs)
    runner = worker.model_runner
    tied = bool(getattr(runner.model_config.hf_config, "tie_word_embeddings", False))
    return refresh_tied_lm_head(runner.get_model(), tied)


class ServingWorkerExtension:
    """Methods the gateway calls on the serving engine's workers."""

    _perennial_layout: dict[str, tuple[tuple[int, ...], str]] | None = None

    @worker_method
    def perennial_ping(self) -> dict:
        """Proves the extension is loaded: the worker's pid and the model it holds."""
        model_config = self.model_runner.model_config  # type: ignore[attr-defined]
        return {
            "extension": type(self).__name__,
            "pid": os.getpid(),
            "model": str(model_config.model),
            "dtype": str(model_config.dtype),
            "direct_loader": self._perennial_direct_state(),
            "threads": worker_threads(),
        }

    @worker_method
    def perennial_weights_checksum(self) -> dict:
        """One sha256 over the live (kernel-format) weights: equal weights, equal checksum.

        Built on vLLM's per-tensor digests (``compute_weight_checksums``), folded in name order
        into one hex digest, so two loads of the same snapshot give the same value and any
        changed value changes it.
        """
        started = time.perf_counter()
        digests = self.compute_weight_checksums()  # type: ignore[attr-defined]
        folded = hashlib.sha256()
        for name in sorted(digests):
            folded.update(name.encode())
            folded.update(bytes.fromhex(digests[name]))
        return {"checksum": folded.hexdigest(), "seconds": time.perf_counter() - started}

    @worker_method
    def perennial_load_weights(self, path: str) -> dict:
        """Load the weights in place from the HF safetensors directory ``path``.

        Writing ``named_parameters`` is not enough on CPU: vLLM packs the linear weights for its
        kernels (``named_parameters`` there hold only a fraction of the model). Until the
        learner's direct kernel loader is proven (by :meth:`perennial_prepare_swaps` after each
        engine start, else after the first load), loads go through vLLM's ``reload_weights``
        (+ the tied-head fix) and the loader is then built and proven on those same weights
        (every linear layer and the head must answer bit for bit as after vLLM's load); later
        loads use it: 0.4 s instead of 0.8 s for SmolLM2 in float32, and the swap's pause is
        that much shorter. It keeps the checkpoint-shaped linear weights alive beside the
        packed ones (about 430 MB more for SmolLM2 in float32).
        Refuses a snapshot whose tensors differ in name, shape or dtype from the model the
        engine started with. Returns the timing and the path taken; the checksum is a
        separate call, so the caller can take it after resuming the engine.
        """
        from vllm.config import set_current_vllm_config

        from weights.snapshot import load_tensors

        directory = Path(path)
        if self._perennial_layout is None:
            type(self)._perennial_layout = checkpoint_layout(self._perennial_started_from())
        layout = checkpoint_layout(directory)
        if layout != self._perennial_layout:
            missing = sorted(set(self._perennial_layout) - set(layout))[:3]
            raise ValueError(f"snapshot does not match the served model's layout (e.g. {missing})")
        started = time.perf_counter()
        direct = getattr(self, "_perennial_direct", None)
        with set_current_vllm_config(self.vllm_config):  # type: ignore[attr-defined]
            if direct is not None and not isinstance(direct, str):
                direct.write(load_tensors(directory))
                bad = direct.mismatch()
                if bad is None:
                    return {
                        "load_seconds": time.perf_counter() - started,
                        "path": str(directory),
                        "via": "direct",
                    }
                # Never serve a mix of versions: vLLM's own loader from here on.
                log.error("direct load left %s computing with other weights; using vLLM's reload", bad)
                self._perennial_direct = f"kernel check failed at {bad}"
            reload_in_place(self, weights_path=str(directory), is_checkpoint_format=True)
            loaded_s = time.perf_counter() - started
            if direct is None:  # once: prove the direct loader on what vLLM just loaded
                self._perennial_prove_direct(directory)
        return {
            "load_seconds": loaded_s,
            "path": str(directory),
            "via": "reload",
            "direct_loader": self._perennial_direct_state(),
            "threads": worker_threads(),
        }

    @worker_method
    def perennial_prepare_swaps(self) -> dict:
        """Prove the direct loader on the weights the engine started with, before any swap.

        Without this the first swap of an engine pays for vLLM's reload *and* the proof (measured
        in float32 on a 2-vCPU Xeon: a 3.0 s pause, against 1.4-1.6 s once proven at boot). The
        gateway calls it after each start or restart of its engine, before the engine serves:
        the proof writes the same values through the direct path, and if they came out different
        the weights are loaded again through vLLM before returning.
        """
        from vllm.config import set_current_vllm_config

        started = time.perf_counter()
        if getattr(self, "_perennial_direct", None) is None:
            with set_current_vllm_config(self.vllm_config):  # type: ignore[attr-defined]
                self._perennial_prove_direct(self._perennial_started_from())
        return {"seconds": time.perf_counter() - started, "direct_loader": self._perennial_direct_state()}

    def _perennial_started_from(self) -> Path:
        """The model directory the engine process was started on."""
        return Path(str(self.model_runner.model_config.model))  # type: ignore[attr-defined]

    def _perennial_prove_direct(self, directory: Path) -> None:
        """Build and prove the direct loader on ``directory``, which the model holds as vLLM loaded it."""
        from engine.kernel_load import verified_direct_loader
        from weights.snapshot import load_tensors

        model = self.model_runner.get_model()  # type: ignore[attr-defined]
        direct, rejected = verified_direct_loader(
            model,
            load_tensors(directory),
            restore=lambda: reload_in_place(self, weights_path=str(directory), is_checkpoint_format=True),
        )
        self._perennial_direct = direct if direct is not None else rejected

    def _perennial_direct_state(self) -> str:
        state = getattr(self, "_perennial_direct", None)
        return "not built" if state is None else f"off: {state}" if isinstance(state, str) else "on"
