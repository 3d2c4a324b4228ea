"""fp8 drafts in the reference engine (emulated: quantise, dequantise, ordinary matmul): the draft
pass reads fp8 copies of the MLP, diffusion attention and lm_head; output stays exactly AR's."""

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


def test_fp8_drafts_keep_greedy_output_equal_to_ar(checkpoint):
    params = SamplingParams(max_new_tokens=40, ignore_eos=True)
    fp8 = Engine(checkpoint, block_size=4, max_batch_size=4, fp8_drafts=True)
    full = Engine(checkpoint, block_size=4, max_batch_size=4)
    ar = full.generate(PROMPTS, params, ar_only=True)
    got = fp8.generate(PROMPTS, params)
    base = full.generate(PROMPTS, params)
    assert [g.token_ids for g in got] == [a.token_ids for a in ar] == [b.token_ids for b in base]
    assert sum(g.stats.num_accepted_drafts for g in got) > 0, "the test needs accepted fp8 drafts"
    # The draft pass holds fp8 copies of its MLP, diffusion attention and lm_head.
    layer = fp8.model.model.layers[0]
    assert layer.fp8_mlp is not None and layer.self_attn.fp8 is not None and fp8.model.fp8_lm_head is not None
