"""Load checkpoint-format tensors into a running CPU vLLM model, straight into kernel layout.

Why this exists. On CPU, vLLM packs every linear weight into a oneDNN (or sgl/zentorch)
handle at load time and drops the checkpoint-shaped tensor. Its generic in-place
``reload_weights`` therefore rebuilds each layer on the meta device, loads, re-packs and copies
back: about 0.55 s for SmolLM2-135M here, most of it bookkeeping and copies around the
packing itself. It also has a bug that matters to us: a *tied* ``lm_head`` (SmolLM2, Qwen2.5
small models) loads no weights of its own, so vLLM puts its old packed handle back and the
output projection keeps the weights the engine started with (greedy answers went wrong after
an update). ``refresh_tied_lm_head`` fixes that for the generic path.

``DirectLoader`` skips the bookkeeping: it owns one fused buffer per linear layer (q|k|v,
gate|up stacked the way vLLM stacks them), exposes one view per checkpoint tensor as the
place to write that tensor, and ``finalize()`` re-runs the layer's own
``process_weights_after_loading`` (vLLM's kernel dispatch) on the fused buffer. Norms and the
embedding are written in place. It only handles what it can prove: CPU, tensor parallel 1,
unquantized layers, every checkpoint name resolved; ``build`` returns None otherwise, and the
worker checks it against vLLM's own loader once (``layer_probe``) before trusting it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)


@dataclass
class _Linear:
    module: torch.nn.Module
    weight: torch.Tensor  # fused [N, K] buffer in the layer's dtype
    bias: torch.Tensor | None = None
    rows: int = 0
    bias_rows: int = 0


@dataclass
class DirectLoader:
    """Where each checkpoint tensor goes, and how to make the kernels see it."""

    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    linears: dict[str, _Linear] = field(default_factory=dict)
    lm_head: torch.nn.Module | None = None
    head_source: torch.Tensor | None = None  # what the head must compute with: its own or the tied embedding

    @classmethod
    def build(cls, model: torch.nn.Module, shapes: Mapping[str, torch.Size]) -> DirectLoader | None:
        """A loader for ``model`` given the checkpoint's tensor shapes, or None if unsupported."""
        from vllm.distributed import get_tensor_model_parallel_world_size
        from vllm.platforms import current_platform

        if not current_platform.is_cpu() or get_tensor_model_parallel_world_size() != 1:
            return None
        loader = cls()
        try:
            loader._plan(model, shapes)
        except _Unsupported as exc:
            log.info("direct CPU weight load unavailable (%s); using vLLM's reload", exc)
            return None
        return loader

    def _plan(self, model: torch.nn.Module, shapes: Mapping[str, torch.Size]) -> None:
        modules = dict(model.named_modules())
        packed = getattr(model, "packed_modules_mapping", {}) or {}
        shard_of = {shard: (fused, i) for fused, shards in packed.items() for i, shard in enumerate(shards)}
        layout: dict[str, list[tuple[int, str, str]]] = {}  # fused module -> [(index, pname, name)]
        for name, shape in shapes.items():
            path, _, pname = name.rpartition(".")
            parent, _, leaf = path.rpartition(".")
            module = modules.get(path)
            if module is not None and hasattr(module, "cpu_linear") and _is_linear(module):
                layout.setdefault(path, []).append((0, pname, name))
            elif module is not None and _has_live(module, pname, shape):
                _check_unquantized(module)
                self.targets[name] = _live_view(getattr(module, pname), shape)
            elif leaf in shard_of and f"{parent}.{shard_of[leaf][0]}" in modules:
                fused, index = shard_of[leaf]
                layout.setdefault(f"{parent}.{fused}", []).append((index, pname, name))
            else:
                raise _Unsupported(f"cannot place checkpoint tensor {name}")
        for path, parts in layout.items():
            self._plan_linear(path, modules[path], sorted(parts), shapes)
        self._plan_lm_head(modules, shapes)

    def _plan_linear(self, path: str, module: torch.nn.Module, parts, shapes) -> None:
        _check_unquantized(module)
        dtype = module.weight.dtype
        weights = [(n, shapes[n]) for _, p, n in parts if p == "weight"]
        biases = [(n, shapes[n]) for _, p, n in parts if p == "bias"]
        rows = sum(s[0] for _, s in weights)
        cols = {s[1] for _, s in weights}
        if len(cols) != 1 or rows != _out_rows(module):
            raise _Unsupported(f"{path}: shards do not stack to the layer's shape")
        entry = _Linear(module, torch.empty(rows, cols.pop(), dtype=dtype), rows=rows)
        self._views(entry.weight, weights)
        if biases:
            entry.bias = torch.empty(sum(s[0] for _, s in biases), dtype=dtype)
            self._views(entry.bias, biases)
        self.linears[path] = entry

    def _views(self, buffer: torch.Tensor, parts: list[tuple[str, torch.Size]]) -> None:
        offset = 0
        for name, shape in parts:
            self.targets[name] = buffer[offset : offset + shape[0]]
            offset += shape[0]

    def _plan_lm_head(self, modules: dict[str, torch.nn.Module], shapes) -> None:
        head = modules.get("lm_head")
        if head is None or not hasattr(head, "cpu_linear"):
            return
        _check_unquantized(head)
        tied = "lm_head.weight" not in shapes
        if tied and not any(
            head.weight is getattr(m, "weight", None) for m in modules.values() if m is not head
        ):
            raise _Unsupported("lm_head is neither in the checkpoint nor tied to an embedding")
        self.lm_head = head  # re-packed after every load, tied or not
        self.head_source = self.targets.get("lm_head.weight") if not tied else head.weight.data

    def write(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Copy checkpoint tensors (any dtype) to their places, then re-pack the kernels."""
        for name, tensor in tensors.items():
            self.targets[name].copy_(tensor)
        self.finalize()

    def finalize(self) -> None:
        """Re-pack every linear layer from its fused buffer (vLLM's own kernel dispatch)."""
        for entry in self.linears.values():
            module = entry.module
            module.weight = torch.nn.Parameter(entry.weight, requires_grad=False)
            if entry.bias is not None:
                module.bias.data.copy_(entry.bias)
            module.quant_method.process_weights_after_loading(module)
        if self.lm_head is not None:
            self.lm_head.quant_method.process_weights_after_loading(self.lm_head)

    def mismatch(self) -> str | None:
        """The first kernel that does not compute with the weights just written, or None.

        Each linear layer's packed kernel and the head are run on a fixed random input and
        compared with ``torch.nn.functional.linear`` on the buffers the loader wrote (for a
        tied head, the embedding). A few milliseconds; it turns a kernel left holding old
        weights (a head whose tie to the embedding broke, say) into a fallback to vLLM's
        loader instead of a model that silently answers with a mix of two versions.
        """
        generator = torch.Generator().manual_seed(1)
        checks = [(p, e.module, e.weight, getattr(e.module, "bias", None)) for p, e in self.linears.items()]
        if self.lm_head is not None and self.head_source is not None:
            checks.append(("lm_head", self.lm_head, self.head_source, None))
        for name, module, weight, bias in checks:
            x = torch.randn(2, weight.shape[1], generator=generator).to(weight.dtype)
            with torch.no_grad():
                got = module.cpu_linear(x, module.weight, bias)[:, : weight.shape[0]].float()
                want = torch.nn.functional.linear(x, weight, bias).float()
            tol = 1e-3 if weight.dtype == torch.float32 else 3e-2
            if not torch.allclose(got, want, rtol=tol, atol=tol * float(want.abs().max().clamp(min=1.0))):
                return name
        return None


class _Unsupported(Exception):
    pass


def _is_linear(module: torch.nn.Module) -> bool:
    from vllm.model_executor.layers.linear import LinearBase

    return isinstance(module, LinearBase)


def _out_rows(module: torch.nn.Module) -> int:
    sizes = getattr(module, "output_partition_sizes", None)
    return int(sum(sizes)) if sizes else int(module.output_size_per_partition)


def _check_unquantized(module: torch.nn.Module) -> None:
    method = getattr(module, "quant_method", None)
    if method is not None and not type(method).__name__.startswith("Unquantized"):
        raise _Unsupported(f"{type(module).__name__} uses {type(method).__name__}")


def _has_live(module: torch.nn.Module, pname: str, shape: torch.Size) -> bool:
    tensor = getattr(module, pname, None)
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != len(shape) or tensor.numel() == 0:
        return False
    # A padded vocabulary has more rows than the checkpoint; everything else must match.
    return tensor.shape[0] >= shape[0] and tuple(tensor.shape[1:]) == tuple(shape[1:])


def _live_view(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return tensor.data[: shape[0]] if tensor.shape[0] != shape[0] else tensor.data


def refresh_tied_lm_head(model: torch.nn.Module, tied: bool) -> bool:
    """After vLLM's ``reload_weights``: re-tie a tied ``lm_head`` and re-pack it on CPU.

    The reload loads nothing for a tied head and puts its previous tensor (and packed CPU
    handle) back, so logits keep the old embedding. The serving worker extension uses this for
    hot swaps too (``engine.serving_worker.reload_in_place``).

    Args:
        model: the vLLM model.
        tied: the HF config's ``tie_word_embeddings``.

    Returns:
        True if the head was re-packed.
    """
    head = getattr(model, "lm_head", None)
    if head is None or not hasattr(head, "quant_method"):
        return False
    if tied:
        embed = next((m for n, m in model.named_modules() if n.endswith("embed_tokens")), None)
        if embed is not None and head.weight is not embed.weight:
            head.weight = embed.weight
    if not hasattr(head, "cpu_linear"):
        return False  # GPU: the head reads its (re-tied) weight directly
    head.quant_method.process_weights_after_loading(head)
    return True


UNSUPPORTED = "unsupported model or platform"


def verified_direct_loader(
    model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], restore: Callable[[], object]
) -> tuple[DirectLoader | None, str | None]:
    """Build the direct loader and prove it on the weights the model holds now.

    ``model`` must hold ``tensors`` as vLLM's own loader left them. The loader writes the same
    tensors through its own path; it is kept only if every probed kernel (each linear layer and
    the head) then answers bit for bit as before. If not, ``restore`` is called to load the
    tensors through vLLM again (the model then holds what the direct path wrote). Call inside
    ``set_current_vllm_config``.

    Returns:
        ``(loader, None)``, or ``(None, why)``.
    """
    direct = DirectLoader.build(model, {k: v.shape for k, v in tensors.items()})
    if direct is None:
        return None, UNSUPPORTED
    probes = list(direct.linears) + (["lm_head"] if direct.lm_head is not None else [])
    reference = layer_probe(model, probes)
    direct.write(tensors)
    for name, value in layer_probe(model, probes).items():
        if not torch.equal(value, reference[name]):
            restore()
            return None, f"direct load differs from vLLM's loader at {name}"
    return direct, None


def layer_probe(model: torch.nn.Module, names: list[str], seed: int = 0) -> dict[str, torch.Tensor]:
    """Outputs of each CPU linear layer (and the embedding table) on a fixed random input.

    Used once to prove the direct loader builds the same kernels as vLLM's own loader.
    """
    modules = dict(model.named_modules())
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name in names:
        module = modules[name]
        if hasattr(module, "cpu_linear") and hasattr(module, "input_size_per_partition"):
            k = module.input_size_per_partition
        elif hasattr(module, "cpu_linear"):
            k = module.embedding_dim if hasattr(module, "embedding_dim") else module.weight.shape[1]
        else:
            continue
        x = torch.randn(3, k, generator=generator).to(module.weight.dtype)
        with torch.no_grad():
            out[name] = module.cpu_linear(x, module.weight, getattr(module, "bias", None)).clone()
    return out
