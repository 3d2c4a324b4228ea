"""The weights the draft pass reads (ORTHRUS_DRAFT_WEIGHTS; the reference engine's ``draft_weights``).

``bf16`` (the default): the checkpoint's own. ``fp8`` (fp8.py: e4m3 weights per output channel and
activations per token, w8a8) and ``int4`` (int4.py: round-to-nearest groups of 128 input channels,
w4a16; ``int4-g64`` and ``int4-g32``: groups of 64 and 32, which Marlin also takes): copies of the
draft pass's GEMM weights (the diffusion attention projections, the MLP, lm_head). Lossless
whatever the kind: the verify pass reads the checkpoint's weights and alone decides the tokens; a
kind only changes how many drafts are accepted (tau) and what the draft pass costs. Both engines
build and run them through these functions, so the reference engine's drafts are SGLang's up to
the kernels' rounding (identical in fp32, where every kind runs its emulation).

torch, fp8.py and int4.py are imported on first use: the CLI reads KINDS while it parses flags.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:
    import torch

    from .fp8 import Fp8Weight
    from .int4 import Int4Weight

    DraftWeight = Union[Fp8Weight, Int4Weight]

KINDS = ("bf16", "fp8", "int4", "int4-g64", "int4-g32")
INT4_GROUP = 128  # input channels per scale of plain "int4"


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"draft weights {kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def int4_group(kind: str) -> int:
    """Input channels per scale of an int4 kind: int4 -> 128, int4-g32 -> 32."""
    return int(kind.partition("-g")[2] or INT4_GROUP)


def quantize(kind: str, weight: "torch.Tensor", bias: Optional["torch.Tensor"] = None, kernels=None) -> "DraftWeight":
    """A ``kind`` copy of ``weight`` ([N, K]); ``kernels``: that kind's fused kernels for its device, or None."""
    from . import fp8, int4

    if kind == "fp8":
        return fp8.quantize_weight(weight, bias, kernels)
    if kind.startswith("int4"):
        return int4.quantize_int4(weight, bias, kernels, group=int4_group(kind))
    raise ValueError(f"draft weights {kind!r} have no quantised copy (expected fp8 or int4)")


def draft_linear(x: "torch.Tensor", w: "DraftWeight") -> "torch.Tensor":
    from . import fp8, int4

    return fp8.fp8_linear(x, w) if isinstance(w, fp8.Fp8Weight) else int4.int4_linear(x, w)


def prepare_for(w: "DraftWeight", dtype: "torch.dtype") -> None:
    """Everything draft_linear needs for activations of ``dtype``, built now (not inside graph capture)."""
    from . import fp8, int4

    (fp8.prepare_for if isinstance(w, fp8.Fp8Weight) else int4.prepare_for)(w, dtype)


def path_for(w: "DraftWeight", dtype: "torch.dtype") -> str:
    """How draft_linear runs ``w`` on activations of ``dtype``: a kernel's name, 'scaled_mm' or 'emulated'."""
    from . import fp8, int4

    return (fp8.path_for if isinstance(w, fp8.Fp8Weight) else int4.path_for)(w, dtype)
