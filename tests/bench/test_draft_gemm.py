"""bench/draft_gemm.py on the CPU: the harness (shapes, variants, errors, the draft pass's sum, the
table) with the variants that run here (bf16 and the emulated fp8 path); tests/gpu runs the fused
and Marlin variants. No timing is asserted."""

from __future__ import annotations

import pytest
import torch

from bench.draft_gemm import Gemm, draft_gemms, main, markdown, run
from bench.shapes import SHAPES


def test_draft_gemms_of_the_8b_shape():
    gemms = {g.name: g for g in draft_gemms(SHAPES["qwen3-8b"])}
    assert (gemms["qkv_diff"].n, gemms["qkv_diff"].k, gemms["qkv_diff"].per_pass) == (6144, 4096, 36)
    assert (gemms["o_diff"].n, gemms["o_diff"].k) == (4096, 4096)
    assert (gemms["gate_up"].n, gemms["down"].k) == (24576, 12288)
    assert (gemms["lm_head"].n, gemms["lm_head"].per_pass) == (151936, 1)


def test_run_times_every_variant_and_sums_the_pass():
    gemms = [Gemm("a", 32, 64, 3), Gemm("b", 48, 32, 1)]
    lines = []
    results = run(gemms, [2, 5], ["bf16", "fp8-torch", "int4-emulated"], torch.device("cpu"), torch.bfloat16,
                  calls=1, replays=3, log=lines.append)
    assert len(lines) == 2 * 2 * 3
    for m in ("2", "5"):
        assert results["rel_err"]["bf16"]["a"][m] == 0.0
        assert 0.0 < results["rel_err"]["fp8-torch"]["a"][m] < 0.1  # e4m3: 3 mantissa bits, both operands
        assert 0.0 < results["rel_err"]["int4-emulated"]["a"][m] < 0.25  # 16 levels per group
        want = results["us"]["fp8-torch"]["a"][m] * 3 + results["us"]["fp8-torch"]["b"][m]
        assert results["pass_ms"]["fp8-torch"][m] == pytest.approx(want / 1e3)
    text = markdown(results, "t")
    assert "| a 32x64 |" in text and "## M = 5" in text and "draft-pass GEMMs, ms" in text


def test_bad_arguments_are_one_line_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--variants", "bf16,int3", "--device", "cpu"])
    assert e.value.code == 2 and "unknown variant(s) int3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--variants", "w8a8", "--device", "cpu"])
    assert "w8a8 needs a CUDA GPU" in str(e.value.code)
