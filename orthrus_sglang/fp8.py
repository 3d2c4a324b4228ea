"""fp8 (e4m3) weights for the draft pass: per-output-channel weight scales, per-token activation scales.

Drafts only decide how many tokens a step accepts; the verify pass, which keeps the checkpoint's
dtype, alone decides which tokens are emitted. So the draft pass may read fp8 copies of its
largest weights (MLP, diffusion attention projections, lm_head) and output stays token-identical
to AR decoding. Used by both engines: on Hopper-class GPUs the matmul is ``torch._scaled_mm``
(row-wise scales, bf16 out); elsewhere the same quantisation is emulated (quantise, then
dequantise, then an ordinary matmul), so CPU tests see the same drafts' arithmetic up to the
accumulation order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
_MIN_SCALE = 1e-12


@dataclass
class Fp8Weight:
    weight: torch.Tensor  # [N, K] float8_e4m3fn
    scale: torch.Tensor  # [N] float32: w ~= weight * scale[:, None]
    bias: Optional[torch.Tensor] = None
    _dequantized: dict = field(default_factory=dict, repr=False)  # emulation cache, per dtype

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype not in self._dequantized:
            self._dequantized[dtype] = (self.weight.to(torch.float32) * self.scale[:, None]).to(dtype)
        return self._dequantized[dtype]

    def nbytes(self) -> int:
        return self.weight.numel() + self.scale.numel() * 4 + (self.bias.numel() * self.bias.element_size()
                                                               if self.bias is not None else 0)


def quantize_weight(weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> Fp8Weight:
    """Per output channel (row): scale = max|w_row| / 448."""
    w = weight.detach().to(torch.float32)
    scale = (w.abs().amax(dim=1) / FP8_MAX).clamp(min=_MIN_SCALE)
    q = (w / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return Fp8Weight(weight=q, scale=scale, bias=None if bias is None else bias.detach())


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token (row) of a [M, K] activation: (fp8 [M, K], fp32 scale [M, 1])."""
    scale = (x.abs().amax(dim=1, keepdim=True).to(torch.float32) / FP8_MAX).clamp(min=_MIN_SCALE)
    return (x.to(torch.float32) / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def _scaled_mm_ok(dtype: torch.dtype, w: Fp8Weight) -> bool:
    """Whether fp8_linear on activations of ``dtype`` runs torch._scaled_mm (else it emulates)."""
    if not w.weight.is_cuda or dtype != torch.bfloat16:  # row-wise _scaled_mm writes bf16
        return False
    if torch.cuda.get_device_capability(w.weight.device) < (8, 9):
        return False
    return w.weight.shape[1] % 16 == 0 and w.out_features % 16 == 0


def prepare_for(w: Fp8Weight, dtype: torch.dtype) -> None:
    """Build now whatever fp8_linear will need for ``dtype`` (the emulation's dequantised copy), so
    that nothing is allocated later, e.g. inside CUDA-graph capture."""
    if not _scaled_mm_ok(dtype, w):
        w.dequantized(dtype)


def fp8_linear(x: torch.Tensor, w: Fp8Weight) -> torch.Tensor:
    """y = x @ w.T (+ bias) with x quantised per token and w per channel; y in x's dtype."""
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    xq, x_scale = quantize_rows(x2)
    if _scaled_mm_ok(x.dtype, w):
        y = torch._scaled_mm(xq, w.weight.t(), scale_a=x_scale, scale_b=w.scale.view(1, -1), out_dtype=x.dtype)
    else:
        y = ((xq.to(torch.float32) * x_scale).to(x.dtype) @ w.dequantized(x.dtype).t())
    if w.bias is not None:
        y = y + w.bias
    return y.view(*shape[:-1], w.out_features)
