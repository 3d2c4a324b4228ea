"""fp8 (e4m3) weights for the draft pass: per-output-channel weight scales, per-token activation scales.

Drafts only decide how many tokens a step accepts; the verify pass, which keeps the checkpoint's
dtype, alone decides which tokens are emitted. So the draft pass may read fp8 copies of its
largest weights (MLP, diffusion attention projections, lm_head) and output stays token-identical
to AR decoding. Used by both engines. Three ways to run the same arithmetic, first that applies:

1. ``Fp8Kernels`` attached to the weight (the SGLang plugin attaches SGLang's fused per-token
   quantisation and CUTLASS ``fp8_scaled_mm``, orthrus_sglang/sgl/compat.py: fp8_w8a8_kernels);
2. ``torch._scaled_mm`` (row-wise scales, bf16 out) on Ada/Hopper GPUs;
3. emulation elsewhere (quantise, then dequantise, then an ordinary matmul), so CPU tests see the
   same drafts' arithmetic up to the accumulation order.

Path 2 quantises the activation with five unfused PyTorch ops and cuBLASLt picks a large fp8 tile
at small M: slower than bf16 on an H100 at every M of the draft pass (issue 21's table); path 1
is one quantisation kernel and a small-M CUTLASS tile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
_MIN_SCALE = 1e-12


@dataclass(frozen=True)
class Fp8Kernels:
    """A fused w8a8 GEMM: the same per-token / per-channel arithmetic as the emulation below."""
    quantize_rows: Callable  # x [M, K] contiguous -> (fp8 [M, K], fp32 scale [M, 1])
    scaled_mm: Callable  # (x_fp8 [M, K], w_fp8 [K, N] column-major, x_scale [M, 1], w_scale [N, 1], out_dtype, bias)
    dtypes: tuple = (torch.bfloat16, torch.float16)  # activation dtypes the kernels take
    name: str = "fused"


@dataclass
class Fp8Weight:
    weight: torch.Tensor  # [N, K] float8_e4m3fn
    scale: torch.Tensor  # [N] float32 ([N, 1] once prepared for fused kernels): w ~= weight * scale per row
    bias: Optional[torch.Tensor] = None
    kernels: Optional[Fp8Kernels] = None  # fused kernels for this weight's device, when there are
    _dequantized: dict = field(default_factory=dict, repr=False)  # emulation cache, per dtype

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def shape(self) -> tuple:
        """(N, K), as Int4Weight.shape."""
        return tuple(self.weight.shape)

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype not in self._dequantized:
            self._dequantized[dtype] = (self.weight.to(torch.float32) * self.scale.view(-1, 1)).to(dtype)
        return self._dequantized[dtype]

    def nbytes(self) -> int:
        return self.weight.numel() + self.scale.numel() * 4 + (self.bias.numel() * self.bias.element_size()
                                                               if self.bias is not None else 0)


def quantize_weight(weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                    kernels: Optional[Fp8Kernels] = None) -> Fp8Weight:
    """Per output channel (row): scale = max|w_row| / 448. In blocks of rows, so the fp32 scratch is
    a slice, not a copy of the whole weight (2.5 GB for a 152K x 4096 lm_head)."""
    w = weight.detach()
    q = torch.empty(w.shape, dtype=FP8, device=w.device)
    scale = torch.empty(w.shape[0], dtype=torch.float32, device=w.device)
    for start in range(0, w.shape[0], _QUANT_ROWS):
        rows = w[start: start + _QUANT_ROWS].to(torch.float32)
        s = (rows.abs().amax(dim=1) / FP8_MAX).clamp(min=_MIN_SCALE)
        q[start: start + _QUANT_ROWS] = (rows / s[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8)
        scale[start: start + _QUANT_ROWS] = s
    return Fp8Weight(weight=q, scale=scale, bias=None if bias is None else bias.detach(), kernels=kernels)


_QUANT_ROWS = 2048  # fp32 scratch of at most 2048 x K at a time


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token (row) of a [M, K] activation: (fp8 [M, K], fp32 scale [M, 1])."""
    scale = (x.abs().amax(dim=1, keepdim=True).to(torch.float32) / FP8_MAX).clamp(min=_MIN_SCALE)
    return (x.to(torch.float32) / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def shape_ok(n: int, k: int) -> bool:
    """Whether an [N, K] weight fits the fp8 GEMMs (CUTLASS and _scaled_mm: N and K in multiples of 16)."""
    return n % 16 == 0 and k % 16 == 0


def _scaled_mm_ok(dtype: torch.dtype, w: Fp8Weight) -> bool:
    """Whether fp8_linear on activations of ``dtype`` runs torch._scaled_mm (else it emulates)."""
    if not w.weight.is_cuda or dtype != torch.bfloat16:  # row-wise _scaled_mm writes bf16
        return False
    if torch.cuda.get_device_capability(w.weight.device) < (8, 9):
        return False
    return shape_ok(*w.shape)


def _fused_ok(dtype: torch.dtype, w: Fp8Weight) -> bool:
    """Whether fp8_linear on activations of ``dtype`` runs the weight's fused kernels."""
    return w.kernels is not None and dtype in w.kernels.dtypes and shape_ok(*w.shape)


def path_for(w: Fp8Weight, dtype: torch.dtype) -> str:
    """Which of the module docstring's paths fp8_linear takes: the kernels' name (SGLang's: 'w8a8'),
    'scaled_mm' or 'emulated'."""
    if _fused_ok(dtype, w):
        return w.kernels.name
    return "scaled_mm" if _scaled_mm_ok(dtype, w) else "emulated"


def prepare_for(w: Fp8Weight, dtype: torch.dtype) -> None:
    """Build now whatever fp8_linear will need for ``dtype`` (the fused kernels' [N, 1] scales, or
    the emulation's dequantised copy), so that nothing is allocated later, e.g. inside CUDA-graph capture."""
    if _fused_ok(dtype, w):
        w.scale = w.scale.reshape(-1, 1).contiguous()  # [N, 1]: the CUTLASS kernel's per-channel layout
        if w.bias is not None:
            w.bias = w.bias.to(dtype)  # the epilogue adds a bias of the output dtype
    elif not _scaled_mm_ok(dtype, w):
        w.dequantized(dtype)


def fp8_linear(x: torch.Tensor, w: Fp8Weight) -> torch.Tensor:
    """y = x @ w.T (+ bias) with x quantised per token and w per channel; y in x's dtype."""
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    if _fused_ok(x.dtype, w):
        xq, x_scale = w.kernels.quantize_rows(x2.contiguous())
        y = w.kernels.scaled_mm(xq, w.weight.t(), x_scale, w.scale.view(-1, 1), x.dtype, w.bias)
        return y.view(*shape[:-1], w.out_features)
    xq, x_scale = quantize_rows(x2)
    if _scaled_mm_ok(x.dtype, w):
        y = torch._scaled_mm(xq, w.weight.t(), scale_a=x_scale, scale_b=w.scale.view(1, -1), out_dtype=x.dtype)
    else:
        y = ((xq.to(torch.float32) * x_scale).to(x.dtype) @ w.dequantized(x.dtype).t())
    if w.bias is not None:
        y = y + w.bias
    return y.view(*shape[:-1], w.out_features)
