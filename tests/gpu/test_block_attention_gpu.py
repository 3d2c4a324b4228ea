"""block_attention on the GPU equals its PyTorch definition (compiled Triton, real shapes:
Qwen3-8B heads, B=16 and 32, prefixes up to 9K, every split count the step may pick)."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.block_attention_cases import make_case, max_error

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("B", [16, 32])
@pytest.mark.parametrize("causal", [True, False])
def test_block_attention_8b_heads(dtype, B, causal):
    case = make_case(bs=5, B=B, Hq=32, Hkv=8, D=128, prefix_lens=[1, 63, 512, 2049, 9000], dtype=dtype,
                     device="cuda")
    for splits in (1, 2, 8, 32):
        err, scale = max_error(case, B=B, causal=causal, num_splits=splits)
        assert err <= 2e-2 * max(1.0, scale), (splits, err)


def test_block_attention_fp32_exact():
    case = make_case(bs=3, B=4, Hq=4, Hkv=2, D=64, prefix_lens=[3, 100, 700], dtype=torch.float32, device="cuda")
    for causal in (True, False):
        for splits in (1, 4):
            err, _ = max_error(case, B=4, causal=causal, num_splits=splits)
            assert err < 1e-4, (causal, splits, err)
