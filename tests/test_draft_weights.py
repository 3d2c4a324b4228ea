"""Low-precision draft weights in the reference engine (emulated: quantise, dequantise, ordinary
matmul): the draft pass reads fp8 or int4 copies of the MLP, diffusion attention and lm_head
(draft_weights.py); output stays exactly AR's whatever the kind."""

from __future__ import annotations

import pytest
import torch

from orthrus_sglang import SamplingParams
from orthrus_sglang.fp8 import FP8, fp8_linear, quantize_rows, quantize_weight
from orthrus_sglang.ref.engine import Engine
from orthrus_sglang.testing import write_tiny_checkpoint

PROMPTS = [[257, 72, 101, 108, 108, 111, 258], [40, 41], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], [99]]


def test_quantisation_is_per_channel_and_per_token():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(48, 32, generator=gen) * torch.logspace(-3, 1, 48).unsqueeze(1)  # rows of very different ranges
    q = quantize_weight(w)
    assert q.weight.dtype == FP8 and q.scale.shape == (48,)
    rel = ((q.dequantized(torch.float32) - w).abs().amax(1) / w.abs().amax(1))
    assert rel.max() < 0.07  # e4m3 keeps 3 mantissa bits in every row, whatever its range
    x = torch.randn(5, 32, generator=gen) * torch.tensor([1e-3, 1.0, 10.0, 100.0, 0.0]).unsqueeze(1)
    xq, sx = quantize_rows(x)
    assert sx.shape == (5, 1) and torch.isfinite(xq.float()).all()
    y, want = fp8_linear(x, q), x @ w.t()
    # e4m3 rounds each of x and w by at most 2**-4 (relative), so each product by at most
    # (1 + 2**-4)**2 - 1 < 0.13 of its magnitude: a bound on every output, whatever the inputs.
    assert ((y - want).abs() <= 0.13 * (x.abs() @ w.abs().t()) + 1e-9).all()


@pytest.fixture(scope="module", params=["qwen3", "llama"])
def checkpoint(request, tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp(f"fp8-{request.param}"), backbone=request.param,
                                 diff_from_ar=True, block_size=4)


@pytest.mark.parametrize("kind", ["fp8", "int4", "int4-g32"])
def test_low_precision_drafts_keep_greedy_output_equal_to_ar(checkpoint, kind):
    params = SamplingParams(max_new_tokens=40, ignore_eos=True)
    low = Engine(checkpoint, block_size=4, max_batch_size=4, draft_weights=kind)
    full = Engine(checkpoint, block_size=4, max_batch_size=4)
    ar = full.generate(PROMPTS, params, ar_only=True)
    got = low.generate(PROMPTS, params)
    base = full.generate(PROMPTS, params)
    assert [g.token_ids for g in got] == [a.token_ids for a in ar] == [b.token_ids for b in base]
    assert sum(g.stats.num_accepted_drafts for g in got) > 0, f"the test needs accepted {kind} drafts"
    # The draft pass holds copies of its MLP, diffusion attention and lm_head, of that kind.
    layer = low.model.model.layers[0]
    assert layer.draft_mlp is not None and layer.self_attn.draft is not None and low.model.draft_lm_head is not None
    assert type(low.model.draft_lm_head).__name__ == ("Fp8Weight" if kind == "fp8" else "Int4Weight")
    assert low.model.draft_weights == kind and full.model.draft_weights == "bf16"


def test_draft_weight_kinds_are_checked(checkpoint):
    with pytest.raises(ValueError, match="expected one of bf16, auto, fp8, int4, int4-g64, int4-g32"):
        Engine(checkpoint, block_size=4, draft_weights="int3")
    with pytest.raises(ValueError, match="disagree"):
        Engine(checkpoint, block_size=4, fp8_drafts=True, draft_weights="int4")
    engine = Engine(checkpoint, block_size=4, draft_weights="fp8")
    engine.model.quantize_drafts("fp8")  # the same kind again: nothing to do
    with pytest.raises(ValueError, match="already read fp8 weights"):
        engine.model.quantize_drafts("int4")


def test_int4_is_round_to_nearest_per_group_of_128():
    from orthrus_sglang.int4 import group_for, quantize_int4

    gen = torch.Generator().manual_seed(3)
    w = torch.randn(8, 256, generator=gen) * torch.logspace(-2, 1, 256)  # input channels of very different ranges
    q = quantize_int4(w)
    assert q.group == 128 and q.scale.shape == (8, 2) and int(q.q.min()) >= -8 and int(q.q.max()) <= 7
    deq = q.dequantized(torch.float32).view(8, 2, 128)
    scale = q.scale.unsqueeze(-1)
    assert ((deq - w.view(8, 2, 128)).abs() <= scale / 2 + 1e-7).all()  # each weight within half a step
    assert torch.equal(q.scale, w.view(8, 2, 128).abs().amax(-1) / 7)
    assert group_for(96) == 96 and group_for(384) == 128  # K not in 128s: one group per row


def test_int4_kernels_get_the_layouts_they_expect():
    """int4_linear with Int4Kernels attached (SGLang's Marlin on CUDA, tests/gpu runs it): packed once
    by prepare_for, the unpacked q dropped, shapes the kernel refuses left to the emulation."""
    from orthrus_sglang.int4 import Int4Kernels, int4_linear, path_for, prepare_for, quantize_int4

    packs = []

    def pack(q, scale, group, dtype):
        packs.append((tuple(q.shape), tuple(scale.shape), group, dtype))
        return (q.to(torch.float32).view(q.shape[0], -1, group) * scale.unsqueeze(-1)).view(q.shape).to(dtype)

    kernels = Int4Kernels(pack=pack, gemm=lambda x, w, bias: x @ w.t() + (0 if bias is None else bias),
                          supports=lambda n, k, group: n % 64 == 0 and k % 128 == 0)
    gen = torch.Generator().manual_seed(4)
    w, b = torch.randn(64, 256, generator=gen), torch.randn(64, generator=gen)
    fused, emulated = quantize_int4(w, b, kernels), quantize_int4(w, b)
    prepare_for(fused, torch.bfloat16)
    assert packs == [((64, 256), (64, 2), 128, torch.bfloat16)] and fused.q.numel() == 0
    assert path_for(fused, torch.bfloat16) == "marlin" and path_for(fused, torch.float32) == "emulated"
    x = torch.randn(3, 256, generator=gen).to(torch.bfloat16)
    torch.testing.assert_close(int4_linear(x, fused), int4_linear(x, emulated))
    odd = quantize_int4(torch.randn(40, 256, generator=gen), kernels=kernels)
    assert path_for(odd, torch.bfloat16) == "emulated"


def test_server_option_names_the_kind(monkeypatch):
    from orthrus_sglang.sgl.options import draft_weights

    for env, want in [({}, "bf16"), ({"ORTHRUS_DRAFT_WEIGHTS": "INT4"}, "int4"), ({"ORTHRUS_FP8_DRAFTS": "1"}, "fp8"),
                      ({"ORTHRUS_FP8_DRAFTS": "1", "ORTHRUS_DRAFT_WEIGHTS": "fp8"}, "fp8")]:
        monkeypatch.delenv("ORTHRUS_DRAFT_WEIGHTS", raising=False)
        monkeypatch.delenv("ORTHRUS_FP8_DRAFTS", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert draft_weights() == want
    monkeypatch.setenv("ORTHRUS_DRAFT_WEIGHTS", "int4")
    with pytest.raises(ValueError, match="disagree"):
        draft_weights()
    monkeypatch.setenv("ORTHRUS_DRAFT_WEIGHTS", "nf4")
    monkeypatch.delenv("ORTHRUS_FP8_DRAFTS")
    with pytest.raises(ValueError, match="expected one of bf16, auto, fp8, int4"):
        draft_weights()
    monkeypatch.setenv("ORTHRUS_DRAFT_WEIGHTS", "Auto")
    assert draft_weights() == "auto"
    from orthrus_sglang.draft_weights import int4_group

    assert [int4_group(k) for k in ("int4", "int4-g64", "int4-g32")] == [128, 64, 32]


def test_fused_kernels_get_the_layouts_they_expect():
    """fp8_linear with Fp8Kernels attached (the SGLang plugin attaches SGLang's per-token quantisation
    and CUTLASS fp8_scaled_mm; they run on CUDA only, tests/gpu runs them): the kernels receive the
    weight as a column-major [K, N] view, [M, 1] and [N, 1] fp32 scales and a bias of the output dtype,
    and the result is the emulated path's up to the accumulation order. Here the contract is met by
    the same arithmetic in PyTorch."""
    from orthrus_sglang.fp8 import Fp8Kernels, path_for, prepare_for

    seen = {}

    def scaled_mm(xq, w_kn, x_scale, w_scale, out_dtype, bias):
        seen.update(w=(tuple(w_kn.shape), w_kn.stride()), x_scale=tuple(x_scale.shape),
                    w_scale=tuple(w_scale.shape), bias=None if bias is None else bias.dtype, out=out_dtype)
        y = (xq.float() * x_scale) @ (w_kn.float() * w_scale.view(1, -1))
        return (y + (0 if bias is None else bias.float())).to(out_dtype)

    kernels = Fp8Kernels(quantize_rows=quantize_rows, scaled_mm=scaled_mm, name="w8a8")
    gen = torch.Generator().manual_seed(1)
    w, b = torch.randn(48, 32, generator=gen), torch.randn(48, generator=gen)
    fused, emulated = quantize_weight(w, b, kernels), quantize_weight(w, b)
    for q in (fused, emulated):
        prepare_for(q, torch.bfloat16)
    assert path_for(fused, torch.bfloat16) == "w8a8" and path_for(emulated, torch.bfloat16) == "emulated"
    assert path_for(fused, torch.float32) == "emulated"  # fp32 activations: no fp8 kernel takes them
    x = torch.randn(2, 3, 32, generator=gen).to(torch.bfloat16)
    y = fp8_linear(x, fused)
    assert y.shape == (2, 3, 48) and y.dtype == torch.bfloat16
    assert seen == dict(w=((32, 48), (1, 32)), x_scale=(6, 1), w_scale=(48, 1), bias=torch.bfloat16, out=torch.bfloat16)
    # bf16 outputs of magnitude ~6 round by up to 0.03; the emulation also rounds its dequantised input
    torch.testing.assert_close(y.float(), fp8_linear(x, emulated).float(), rtol=0.02, atol=0.1)
    # Tiny weights (N or K not a multiple of 16) never reach CUTLASS.
    odd = quantize_weight(torch.randn(40, 24, generator=gen), kernels=kernels)
    assert path_for(odd, torch.bfloat16) == "emulated"


def test_weight_quantisation_in_row_blocks_equals_one_block():
    """quantize_weight works through rows in blocks (bounded fp32 scratch); each row's scale and
    values are those of quantising the whole matrix at once."""
    import orthrus_sglang.fp8 as fp8

    w = torch.randn(fp8._QUANT_ROWS * 2 + 5, 16, generator=torch.Generator().manual_seed(2))
    q = quantize_weight(w)
    scale = (w.abs().amax(dim=1) / fp8.FP8_MAX).clamp(min=fp8._MIN_SCALE)
    assert torch.equal(q.scale, scale)
    assert torch.equal(q.weight.view(torch.uint8), (w / scale[:, None]).clamp(-448, 448).to(FP8).view(torch.uint8))


def test_auto_is_fp8_where_the_fused_kernels_take_the_model_else_bf16(checkpoint):
    """ORTHRUS_DRAFT_WEIGHTS=auto (draft_weights.resolve): fp8 where SGLang's fused w8a8 kernels run
    every draft weight and each is large (the H100 tables: fp8 fastest at every M on the 8B shape, slower
    at every M on the demo's), bf16 where fp8 would be an emulation or the weights are small."""
    from orthrus_sglang.draft_weights import resolve
    from orthrus_sglang.fp8 import Fp8Kernels

    w8a8 = Fp8Kernels(quantize_rows=quantize_rows, scaled_mm=None, name="w8a8")  # dtypes: bf16, fp16
    served = [(6144, 4096), (4096, 4096), (24576, 4096), (4096, 12288), (151936, 4096)]  # Qwen3-8B's
    demo = [(960, 576), (576, 576), (3072, 576), (576, 1536), (49152, 576)]  # SmolLM2-135M's
    assert resolve("auto", w8a8, torch.bfloat16, demo) == "bf16"  # the kernels take it, but it is slower
    assert resolve("auto", w8a8, torch.bfloat16, served + [(2048, 2048)]) == "bf16"  # one weight below the bound
    assert resolve("auto", w8a8, torch.bfloat16, served) == resolve("auto", w8a8, torch.float16, served) == "fp8"
    assert resolve("auto", None, torch.bfloat16, served) == "bf16"  # CPU, before Ada: no fused kernels
    assert resolve("auto", w8a8, torch.float32, served) == "bf16"  # the kernels take half activations only
    assert resolve("auto", w8a8, torch.bfloat16, served + [(40, 4096)]) == "bf16"  # CUTLASS: N and K in 16s
    assert resolve("auto", w8a8, torch.bfloat16, served, tp_size=2) == "bf16"  # copies are --tp 1 only
    assert [resolve(k, w8a8, torch.bfloat16, served) for k in ("bf16", "fp8", "int4-g64")] == ["bf16", "fp8", "int4-g64"]
    # The reference engine has no fused kernels: auto is bf16 there, the same drafts as the default.
    engine = Engine(checkpoint, block_size=4, draft_weights="auto")
    assert engine.model.draft_weights == "bf16" and engine.model.draft_lm_head is None


def test_every_int4_kind_gets_marlin(monkeypatch):
    """compat.draft_kernels hands Marlin to int4-g64 and int4-g32 too (Marlin takes groups of 32 and 64),
    not only to int4: a group size must not turn the GPU path into an emulation."""
    from orthrus_sglang.sgl import compat

    monkeypatch.setattr(compat, "int4_marlin_kernels", lambda device: ("marlin", device))
    monkeypatch.setattr(compat, "fp8_w8a8_kernels", lambda device: ("w8a8", device))
    got = {kind: compat.draft_kernels(kind, "cuda:0") for kind in ("bf16", "fp8", "int4", "int4-g64", "int4-g32")}
    assert got == {"bf16": None, "fp8": ("w8a8", "cuda:0"), "int4": ("marlin", "cuda:0"),
                   "int4-g64": ("marlin", "cuda:0"), "int4-g32": ("marlin", "cuda:0")}
