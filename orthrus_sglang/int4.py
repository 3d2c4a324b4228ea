"""int4 weights for the draft pass: round to nearest, symmetric, one scale per group of 128 input
channels (GPTQ's uint4b8 layout, without GPTQ's calibration).

As with fp8 (fp8.py), only the draft pass reads these copies; the verify pass keeps the checkpoint's
weights and alone decides the tokens, so output stays AR's whatever int4 does to the drafts. The
activations stay in the model dtype (w4a16). Two ways to run the GEMM:

1. ``Int4Kernels`` attached to the weight (the SGLang plugin attaches SGLang's Marlin w4a16 GEMM,
   compat.int4_marlin_kernels; Marlin is JIT-compiled on first use, minutes on a cold host);
2. emulation elsewhere: the weight dequantised once into the activation dtype, an ordinary matmul.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

GROUP = 128  # input channels per scale (draft_weights.INT4_GROUP)
QMAX = 7  # q in [-8, 7]; the scale maps a group's largest magnitude to 7


@dataclass(frozen=True)
class Int4Kernels:
    """A w4a16 GEMM: ``pack`` turns (q [N, K] int8, scale [N, K // group] fp32, group, dtype) into its
    own layout once; ``gemm`` (x [M, K], packed, bias) -> y [M, N] runs it."""
    pack: Callable[[torch.Tensor, torch.Tensor, int, torch.dtype], Any]
    gemm: Callable[[torch.Tensor, Any, Optional[torch.Tensor]], torch.Tensor]
    supports: Callable[[int, int, int], bool]  # (N, K, group): whether the kernel takes this shape
    dtypes: tuple = (torch.bfloat16, torch.float16)
    name: str = "marlin"


@dataclass
class Int4Weight:
    q: torch.Tensor  # [N, K] int8 in [-8, 7]; emptied once packed for a kernel (prepare_for)
    scale: torch.Tensor  # [N, K // group] float32: w ~= q * scale (per group of input channels)
    group: int
    shape: tuple  # (N, K)
    bias: Optional[torch.Tensor] = None
    kernels: Optional[Int4Kernels] = None
    _packed: dict = field(default_factory=dict, repr=False)  # kernel layout, per activation dtype
    _dequantized: dict = field(default_factory=dict, repr=False)  # emulation cache, per dtype

    @property
    def out_features(self) -> int:
        return self.shape[0]

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype not in self._dequantized:
            n, k = self.shape
            w = self.q.to(torch.float32).view(n, k // self.group, self.group) * self.scale.unsqueeze(-1)
            self._dequantized[dtype] = w.view(n, k).to(dtype)
        return self._dequantized[dtype]

    def nbytes(self) -> int:
        """What the kernel's copy holds: half a byte per weight, and the scales in the model dtype."""
        return self.shape[0] * self.shape[1] // 2 + self.scale.numel() * 2 + (self.bias.numel() * self.bias.element_size()
                                                               if self.bias is not None else 0)


def group_for(k: int, group: int = GROUP) -> int:
    """The group size for K input channels: ``group`` where it divides K, else one group per row."""
    return group if k % group == 0 else k


def quantize_int4(weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                  kernels: Optional[Int4Kernels] = None, group: int = GROUP) -> Int4Weight:
    """Round to nearest: per group of ``group`` input channels, scale = max|w| / 7, q = round(w / scale)."""
    w = weight.detach()
    n, k = w.shape
    g = group_for(k, group)
    q = torch.empty((n, k), dtype=torch.int8, device=w.device)
    scale = torch.empty((n, k // g), dtype=torch.float32, device=w.device)
    for start in range(0, n, _QUANT_ROWS):  # bounded fp32 scratch, as fp8.quantize_weight
        rows = w[start: start + _QUANT_ROWS].to(torch.float32).view(-1, k // g, g)
        s = (rows.abs().amax(dim=-1) / QMAX).clamp(min=1e-12)
        q[start: start + _QUANT_ROWS] = torch.round(rows / s.unsqueeze(-1)).clamp(-8, QMAX).view(-1, k).to(torch.int8)
        scale[start: start + _QUANT_ROWS] = s
    return Int4Weight(q=q, scale=scale, group=g, shape=(n, k), bias=None if bias is None else bias.detach(),
                      kernels=kernels)


_QUANT_ROWS = 2048


def _kernel_ok(dtype: torch.dtype, w: Int4Weight) -> bool:
    return w.kernels is not None and dtype in w.kernels.dtypes and w.kernels.supports(*w.shape, w.group)


def path_for(w: Int4Weight, dtype: torch.dtype) -> str:
    return w.kernels.name if _kernel_ok(dtype, w) else "emulated"


def prepare_for(w: Int4Weight, dtype: torch.dtype) -> None:
    """Pack for the kernel now (or build the emulation's copy), never during CUDA-graph capture.
    With a kernel, the int8 q is dropped afterwards: the packed copy is all the GEMM reads."""
    if _kernel_ok(dtype, w):
        if dtype not in w._packed:
            w._packed[dtype] = w.kernels.pack(w.q, w.scale, w.group, dtype)
            w.q = w.q.new_empty(0)
            if w.bias is not None:
                w.bias = w.bias.to(dtype)
            # One call now: a JIT-compiled kernel compiles here, at load, not inside a graph capture.
            w.kernels.gemm(torch.zeros((1, w.shape[1]), dtype=dtype, device=w.scale.device), w._packed[dtype], None)
    else:
        w.dequantized(dtype)


def int4_linear(x: torch.Tensor, w: Int4Weight) -> torch.Tensor:
    """y = x @ w.T (+ bias) with w dequantised from int4; y in x's dtype."""
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    if _kernel_ok(x.dtype, w):
        packed = w._packed.get(x.dtype)
        if packed is None:
            raise RuntimeError("int4 weight not packed for this dtype: call int4.prepare_for first")
        y = w.kernels.gemm(x2, packed, w.bias)
    else:
        y = x2 @ w.dequantized(x.dtype).t()
        if w.bias is not None:
            y = y + w.bias.to(y.dtype)
    return y.view(*shape[:-1], w.out_features)
