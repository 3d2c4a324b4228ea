"""The weights the draft pass reads (ORTHRUS_DRAFT_WEIGHTS; the reference engine's ``draft_weights``).

``bf16`` (the default): the checkpoint's own. ``fp8`` (fp8.py: e4m3 weights per output channel and
activations per token, w8a8) and ``int4`` (int4.py: round-to-nearest groups of 128 input channels,
w4a16; ``int4-g64`` and ``int4-g32``: groups of 64 and 32, which Marlin also takes): copies of the
draft pass's GEMM weights (the diffusion attention projections, the MLP, lm_head). Lossless
whatever the kind: the verify pass reads the checkpoint's weights and alone decides the tokens; a
kind only changes how many drafts are accepted (tau) and what the draft pass costs. Both engines
build and run them through these functions, so the reference engine's drafts are SGLang's up to
the kernels' rounding, and in fp32 (every kind's emulation) up to the last bit of the attention
both views compute: the per-token activation quantisation turns a 1e-7 difference there into a
whole e4m3 step, which can change a draft. Identical on the tiny test checkpoints; on the demo
(30 layers) the engines' fp8 drafts differ by about 3% of tau either way (docs/results.md). ``auto``: the
fastest of these where the server runs (resolve).

torch, fp8.py and int4.py are imported on first use: the CLI reads KINDS while it parses flags.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:
    import torch

    from .fp8 import Fp8Weight
    from .int4 import Int4Weight

    DraftWeight = Union[Fp8Weight, Int4Weight]

KINDS = ("bf16", "auto", "fp8", "int4", "int4-g64", "int4-g32")
INT4_GROUP = 128  # input channels per scale of plain "int4"


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"draft weights {kind!r}: expected one of {', '.join(KINDS)}")
    return kind


# The smallest draft weight (N x K elements) measured faster in fp8 than in bf16: the Qwen3-8B shape's
# o_diff, 4096 x 4096 (7.4 against 9.6 us at M=16 on an H100). Every weight of the demo's shape (at most
# 3072 x 576 in its layers) was slower in fp8 at every M from 16 to 1024: the per-token quantisation and
# the fp8 GEMM's fixed cost outweigh the bytes saved (docs/bench/h100-2026-12-08/draft_gemm_smollm2).
FP8_MIN_WEIGHT_ELEMENTS = 4096 * 4096


def resolve(kind: str, fp8_kernels=None, dtype: "torch.dtype | None" = None, shapes=(), tp_size: int = 1) -> str:
    """The kind a server loads for ``kind``: itself, or for ``auto`` fp8 where SGLang's fused w8a8
    kernels (``fp8_kernels``: compat.fp8_w8a8_kernels for the device, or None) take the model's
    ``dtype`` and every [N, K] of ``shapes``, every one of them at least FP8_MIN_WEIGHT_ELEMENTS
    large, with one GPU (--tp 1), else bf16.

    One kind for every batch size, chosen from the draft pass's GEMMs on an H100 (bench.draft_gemm):
    on the Qwen3-8B shape w8a8 fp8 is 1.6-1.7x faster than bf16 at every M from 16 to 1024 rows
    (docs/bench/h100-2026-12-06-draft-weights/draft_gemm.md); on the 135M demo's it is 1.4-1.9x
    slower at every M (docs/bench/h100-2026-12-08/draft_gemm_smollm2/draft_gemm.md), hence the size
    bound: models between the two stay bf16 until measured. Marlin int4 is faster still at M=16 only
    (2.51 vs 3.24 ms on the 8B shape) and slower from M=64 on; end to end that is +3% at c1 and -29%
    at c32. Carrying int4 copies beside the fp8 ones for the smallest graphs would cost ~3 GB of KV
    pool for those 3%. Without the fused kernels (CPU, before Ada, fp32) fp8 runs an emulation slower
    than bf16, so bf16."""
    if check_kind(kind) != "auto":
        return kind
    from .fp8 import shape_ok

    fused = fp8_kernels is not None and dtype in fp8_kernels.dtypes and tp_size == 1 and all(shape_ok(*s) for s in shapes)
    large = bool(shapes) and all(n * k >= FP8_MIN_WEIGHT_ELEMENTS for n, k in shapes)
    return "fp8" if fused and large else "bf16"


def draft_gemm_shapes(config: dict) -> list[tuple[str, int, int, int]]:
    """The GEMMs of one draft pass of a Qwen3/Llama-shaped model as SGLang's model fuses them:
    (name, N, K, how many per pass), from config.json's fields."""
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    head_dim = config.get("head_dim") or hidden // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * head_dim, config["num_key_value_heads"] * head_dim
    inter = config["intermediate_size"]
    return [("qkv_diff", q + 2 * kv, hidden, layers), ("o_diff", hidden, q, layers),
            ("gate_up", 2 * inter, hidden, layers), ("down", hidden, inter, layers),
            ("lm_head", config["vocab_size"], hidden, 1)]


def int4_group(kind: str) -> int:
    """Input channels per scale of an int4 kind: int4 -> 128, int4-g32 -> 32."""
    return int(kind.partition("-g")[2] or INT4_GROUP)


def quantize(kind: str, weight: "torch.Tensor", bias: Optional["torch.Tensor"] = None, kernels=None) -> "DraftWeight":
    """A ``kind`` copy of ``weight`` ([N, K]); ``kernels``: that kind's fused kernels for its device, or None."""
    from . import fp8, int4

    if kind == "auto":
        raise ValueError("draft weights 'auto' have no copy of their own: resolve() names the kind to build")
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
