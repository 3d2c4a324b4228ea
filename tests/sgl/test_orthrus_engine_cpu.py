"""ORTHRUS inside real SGLang (CPU engine): greedy tokens and acceptance equal the reference engine.

The diffusion view of these checkpoints starts as a copy of the AR attention, so drafts are
sometimes right and every acceptance length occurs: SGLang's per-request accept histogram
must then equal the reference engine's step for step, which checks the drafts themselves.
"""

from __future__ import annotations

import pytest

from orthrus_sglang import SamplingParams
from orthrus_sglang.ref.engine import Engine as ReferenceEngine
from orthrus_sglang.testing import write_tiny_checkpoint

PROMPTS = [[257, 72, 101, 108, 108, 111, 258], [40, 41], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], [99]]
BLOCK = 4


@pytest.fixture(scope="module", params=["qwen3", "llama"])
def checkpoint(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(f"sgl-orthrus-{request.param}")
    return write_tiny_checkpoint(path, backbone=request.param, diff_from_ar=True, block_size=BLOCK)


@pytest.fixture(scope="module")
def engines(checkpoint, engine_factory):
    orthrus = engine_factory(checkpoint, speculative_algorithm="ORTHRUS", skip_tokenizer_init=True)
    ar = engine_factory(checkpoint, own_process=True, skip_tokenizer_init=True)  # see sgl_engine.ChildEngine
    return orthrus, ar


def reference(checkpoint, prompts, params, ar_only=False):
    return ReferenceEngine(checkpoint, block_size=BLOCK, max_batch_size=len(prompts)).generate(prompts, params,
                                                                                              ar_only=ar_only)


def generate(engine, prompts, **sampling):
    return engine.generate(input_ids=prompts, sampling_params={"temperature": 0.0, **sampling})


def test_greedy_tokens_and_acceptance_equal_the_reference(engines, checkpoint):
    orthrus, ar = engines
    expected = reference(checkpoint, PROMPTS, SamplingParams(max_new_tokens=40, ignore_eos=True))
    got = generate(orthrus, PROMPTS, max_new_tokens=40, ignore_eos=True)
    plain = generate(ar, PROMPTS, max_new_tokens=40, ignore_eos=True)
    for e, g, p in zip(expected, got, plain):
        assert g["output_ids"] == e.token_ids == p["output_ids"]
        meta = g["meta_info"]
        hist = e.stats.accept_length_histogram
        assert meta["spec_correct_drafts_histogram"] == hist[: len(meta["spec_correct_drafts_histogram"])]
        assert sum(hist[len(meta["spec_correct_drafts_histogram"]):]) == 0
        assert meta["spec_verify_ct"] == e.stats.num_steps
    assert any(e.stats.num_accepted_drafts for e in expected), "the test needs accepted drafts"


def test_plain_sglang_without_orthrus_is_ar(engines, checkpoint):
    _, ar = engines
    expected = reference(checkpoint, PROMPTS, SamplingParams(max_new_tokens=24, ignore_eos=True), ar_only=True)
    got = generate(ar, PROMPTS, max_new_tokens=24, ignore_eos=True)
    assert [g["output_ids"] for g in got] == [e.token_ids for e in expected]
    assert "spec_verify_ct" not in got[0]["meta_info"] or not got[0]["meta_info"]["spec_verify_ct"]


@pytest.mark.parametrize("max_new_tokens", [1, 2, 5, 7])
def test_max_new_tokens_is_exact(engines, checkpoint, max_new_tokens):
    orthrus, _ = engines
    expected = reference(checkpoint, PROMPTS, SamplingParams(max_new_tokens=max_new_tokens, ignore_eos=True))
    got = generate(orthrus, PROMPTS, max_new_tokens=max_new_tokens, ignore_eos=True)
    assert [g["output_ids"] for g in got] == [e.token_ids for e in expected]
    assert all(len(g["output_ids"]) == max_new_tokens for g in got)


def test_stop_token_inside_an_accepted_block(engines, checkpoint):
    """Stop at a token that the reference emits inside a multi-token step: nothing after it comes out."""
    orthrus, _ = engines
    long = reference(checkpoint, PROMPTS, SamplingParams(max_new_tokens=40, ignore_eos=True))
    for prompt, ref in zip(PROMPTS, long):
        stop = ref.token_ids[5]
        # (SGLang's ignore_eos also disables stop_token_ids, so EOS stays live here, in both engines.)
        expected = reference(checkpoint, [prompt], SamplingParams(max_new_tokens=40, stop_token_ids=(stop,)))[0]
        got = generate(orthrus, [prompt], max_new_tokens=40, stop_token_ids=[stop])[0]
        assert got["output_ids"] == expected.token_ids
        assert expected.finish_reason == "stop" and got["meta_info"]["finish_reason"]["type"] == "stop"


def test_radix_prefix_reuse_sees_only_ar_kv(engines, checkpoint):
    """B's prompt = A's prompt + A's output: B reuses A's cached KV (written by ORTHRUS steps)."""
    orthrus, _ = engines
    a = generate(orthrus, [PROMPTS[0]], max_new_tokens=30, ignore_eos=True)[0]
    b_prompt = PROMPTS[0] + a["output_ids"][:20]
    b = generate(orthrus, [b_prompt], max_new_tokens=20, ignore_eos=True)[0]
    assert b["meta_info"]["cached_tokens"] > 0  # the radix tree served part of the prompt
    expected = reference(checkpoint, [b_prompt], SamplingParams(max_new_tokens=20, ignore_eos=True))[0]
    assert b["output_ids"] == expected.token_ids


def test_logprobs_equal_ar(engines):
    """return_logprob through an ORTHRUS step (each committed token's logprob from its verify row)
    equals plain AR decoding's, top logprobs included."""
    orthrus, ar = engines
    params = {"temperature": 0.0, "max_new_tokens": 16, "ignore_eos": True}
    got = orthrus.generate(input_ids=PROMPTS, sampling_params=params, return_logprob=True, top_logprobs_num=2)
    plain = ar.generate(input_ids=PROMPTS, sampling_params=params, return_logprob=True, top_logprobs_num=2)
    assert any(g["meta_info"]["spec_num_correct_drafts"] for g in got), "the test needs accepted drafts"
    for g, p in zip(got, plain):
        mine, theirs = g["meta_info"]["output_token_logprobs"], p["meta_info"]["output_token_logprobs"]
        assert [t for _, t, _ in mine] == [t for _, t, _ in theirs] == g["output_ids"]
        assert max(abs(a[0] - b[0]) for a, b in zip(mine, theirs)) < 1e-4
        tops = [[t for _, t, _ in top] for top in g["meta_info"]["output_top_logprobs"]]
        assert tops == [[t for _, t, _ in top] for top in p["meta_info"]["output_top_logprobs"]]
