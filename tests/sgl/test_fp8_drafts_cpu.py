"""ORTHRUS_FP8_DRAFTS=1 in real SGLang (CPU engine, emulated fp8): greedy tokens equal plain AR, and
the drafts equal the reference engine's fp8 drafts (same per-request accept histograms)."""

from __future__ import annotations

import os

import pytest

from orthrus_sglang import SamplingParams
from orthrus_sglang.ref.engine import Engine as ReferenceEngine
from orthrus_sglang.testing import write_tiny_checkpoint

PROMPTS = [[257, 72, 101, 108, 108, 111, 258], [40, 41], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], [99]]
BLOCK = 4


@pytest.fixture(scope="module", params=["qwen3", "llama"])
def checkpoint(request, tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp(f"sgl-fp8-{request.param}"), backbone=request.param,
                                 diff_from_ar=True, block_size=BLOCK)


@pytest.fixture(scope="module")
def fp8_engine(checkpoint, engine_factory):
    os.environ["ORTHRUS_FP8_DRAFTS"] = "1"  # read by the scheduler process SGLang spawns now
    try:
        return engine_factory(checkpoint, speculative_algorithm="ORTHRUS", skip_tokenizer_init=True)
    finally:
        del os.environ["ORTHRUS_FP8_DRAFTS"]


def test_fp8_drafts_equal_ar_and_the_reference_fp8_drafts(fp8_engine, checkpoint):
    params = SamplingParams(max_new_tokens=40, ignore_eos=True)
    reference = ReferenceEngine(checkpoint, block_size=BLOCK, max_batch_size=len(PROMPTS), fp8_drafts=True)
    expected = reference.generate(PROMPTS, params)
    ar = reference.generate(PROMPTS, params, ar_only=True)
    got = fp8_engine.generate(input_ids=PROMPTS, sampling_params={"temperature": 0.0, "max_new_tokens": 40,
                                                                  "ignore_eos": True})
    for e, g, a in zip(expected, got, ar):
        assert g["output_ids"] == e.token_ids == a.token_ids
        hist = g["meta_info"]["spec_correct_drafts_histogram"]
        assert hist == e.stats.accept_length_histogram[: len(hist)]
        assert sum(e.stats.accept_length_histogram[len(hist):]) == 0
    assert any(e.stats.num_accepted_drafts for e in expected), "the test needs accepted drafts"
    # fp8 changes some drafts on these checkpoints, so matching histograms show SGLang read fp8.
    full = ReferenceEngine(checkpoint, block_size=BLOCK, max_batch_size=len(PROMPTS)).generate(PROMPTS, params)
    assert [f.stats.accept_length_histogram for f in full] != [e.stats.accept_length_histogram for e in expected]
