"""DirectLoader.mismatch: a kernel left computing with other weights than those written is found.

The modules are fakes (named so): a ``cpu_linear`` that computes with whatever tensor it was
"packed" from, as vLLM's CPU kernels do.
"""

from __future__ import annotations

import torch

from engine.kernel_load import DirectLoader, _Linear


class FakePackedLinear(torch.nn.Module):
    def __init__(self, packed_from: torch.Tensor):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(0), requires_grad=False)  # removed, as on CPU
        self.bias = None
        packed = packed_from.clone()
        self.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, packed, bias)


def loader(
    written: torch.Tensor, packed: torch.Tensor, head_packed: torch.Tensor | None = None
) -> DirectLoader:
    direct = DirectLoader(
        linears={"model.layers.0.mlp.down_proj": _Linear(FakePackedLinear(packed), written)}
    )
    if head_packed is not None:
        head = FakePackedLinear(head_packed)
        head.weight = torch.nn.Parameter(head_packed.clone(), requires_grad=False)
        direct.lm_head, direct.head_source = head, written
    return direct


def test_kernels_that_hold_the_written_weights_pass():
    w = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    assert loader(w, w, head_packed=w).mismatch() is None


def test_a_stale_linear_kernel_is_named():
    w = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    assert loader(w, w + 0.05 * torch.randn(8, 4)).mismatch() == "model.layers.0.mlp.down_proj"


def test_a_head_that_lost_its_tie_to_the_embedding_is_named():
    w = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    assert loader(w, w, head_packed=w + 0.05 * torch.randn(8, 4)).mismatch() == "lm_head"
