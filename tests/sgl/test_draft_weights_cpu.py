"""ORTHRUS_DRAFT_WEIGHTS=fp8 / int4 (and the older ORTHRUS_FP8_DRAFTS=1) in real SGLang (CPU engine,
emulated): greedy tokens equal plain AR, and the drafts equal the reference engine's drafts of the
same kind (same per-request accept histograms)."""

from __future__ import annotations

import os

import pytest

from orthrus_sglang import SamplingParams
from orthrus_sglang.ref.engine import Engine as ReferenceEngine
from orthrus_sglang.testing import write_tiny_checkpoint

PROMPTS = [[257, 72, 101, 108, 108, 111, 258], [40, 41], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], [99]]
BLOCK = 4


# (backbone, kind, environment): the older switch on one of them
CASES = [("qwen3", "fp8", {"ORTHRUS_DRAFT_WEIGHTS": "fp8"}), ("llama", "fp8", {"ORTHRUS_FP8_DRAFTS": "1"}),
         ("qwen3", "int4", {"ORTHRUS_DRAFT_WEIGHTS": "int4"})]


@pytest.fixture(scope="module", params=CASES, ids=[f"{b}-{k}" for b, k, _ in CASES])
def case(request, tmp_path_factory):
    backbone, kind, env = request.param
    path = write_tiny_checkpoint(tmp_path_factory.mktemp(f"sgl-{kind}-{backbone}"), backbone=backbone,
                                 diff_from_ar=True, block_size=BLOCK)
    return path, kind, env


@pytest.fixture(scope="module")
def draft_engine(case, engine_factory):
    path, _, env = case
    os.environ.update(env)  # read by the scheduler process SGLang spawns now
    try:
        return engine_factory(path, speculative_algorithm="ORTHRUS", skip_tokenizer_init=True)
    finally:
        for key in env:
            del os.environ[key]


def test_draft_weights_equal_ar_and_the_reference_drafts(draft_engine, case):
    checkpoint, kind, _ = case
    params = SamplingParams(max_new_tokens=40, ignore_eos=True)
    reference = ReferenceEngine(checkpoint, block_size=BLOCK, max_batch_size=len(PROMPTS), draft_weights=kind)
    expected = reference.generate(PROMPTS, params)
    ar = reference.generate(PROMPTS, params, ar_only=True)
    got = draft_engine.generate(input_ids=PROMPTS, sampling_params={"temperature": 0.0, "max_new_tokens": 40,
                                                                  "ignore_eos": True})
    for e, g, a in zip(expected, got, ar):
        assert g["output_ids"] == e.token_ids == a.token_ids
        hist = g["meta_info"]["spec_correct_drafts_histogram"]
        assert hist == e.stats.accept_length_histogram[: len(hist)]
        assert sum(e.stats.accept_length_histogram[len(hist):]) == 0
    assert any(e.stats.num_accepted_drafts for e in expected), "the test needs accepted drafts"
    # Each kind changes some drafts on these checkpoints, so matching histograms show SGLang read that kind.
    full = ReferenceEngine(checkpoint, block_size=BLOCK, max_batch_size=len(PROMPTS)).generate(PROMPTS, params)
    assert [f.stats.accept_length_histogram for f in full] != [e.stats.accept_length_histogram for e in expected]


def test_auto_reads_bf16_where_fp8_would_be_an_emulation(engine_factory, tmp_path_factory):
    """ORTHRUS_DRAFT_WEIGHTS=auto on a CPU (no fused fp8 kernels): the model resolves it at load
    (OrthrusLM._resolve_auto) to bf16, so the drafts are the checkpoint's: accept histograms equal the
    reference engine's bf16 drafts (fp8 drafts change them on this checkpoint: the test above)."""
    checkpoint = write_tiny_checkpoint(tmp_path_factory.mktemp("sgl-auto"), backbone="qwen3", diff_from_ar=True,
                                       block_size=BLOCK)
    os.environ["ORTHRUS_DRAFT_WEIGHTS"] = "auto"
    try:
        engine = engine_factory(checkpoint, speculative_algorithm="ORTHRUS", skip_tokenizer_init=True)
    finally:
        del os.environ["ORTHRUS_DRAFT_WEIGHTS"]
    params = SamplingParams(max_new_tokens=40, ignore_eos=True)
    reference = ReferenceEngine(checkpoint, block_size=BLOCK, max_batch_size=len(PROMPTS))
    expected, fp8 = reference.generate(PROMPTS, params), ReferenceEngine(
        checkpoint, block_size=BLOCK, max_batch_size=len(PROMPTS), draft_weights="fp8").generate(PROMPTS, params)
    got = engine.generate(input_ids=PROMPTS, sampling_params={"temperature": 0.0, "max_new_tokens": 40,
                                                            "ignore_eos": True})
    hists = [g["meta_info"]["spec_correct_drafts_histogram"] for g in got]
    assert [g["output_ids"] for g in got] == [e.token_ids for e in expected]
    assert hists == [e.stats.accept_length_histogram[: len(h)] for e, h in zip(expected, hists)]
    assert hists != [f.stats.accept_length_histogram[: len(h)] for f, h in zip(fp8, hists)]
