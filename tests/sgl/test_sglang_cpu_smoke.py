"""Smoke test: real SGLang 0.5.17 runs on this CPU-only machine and matches HF transformers.

Starts one ``sglang.Engine`` (CPU engine, torch_native attention) on a tiny random Qwen3 and checks
that SGLang's greedy tokens equal ``transformers``' greedy ``generate`` token for token in fp32.
Install SGLang with ``bash scripts/install_sglang_cpu.sh`` (see docs/design.md, "SGLang on a CPU machine").

A missing sglang is a FAILURE by default (CI must have it); set ORTHRUS_SGLANG_TESTS_OPTIONAL=1 to
skip this module instead on a machine without SGLang.
"""

from __future__ import annotations

import time

import pytest
import torch

from sgl_engine import launch_engine

from orthrus_sglang.testing import write_tiny_plain_qwen3

PROMPTS = ["Hello, world!", "The quick brown fox", "1 2 3"]
MAX_NEW_TOKENS = 16


@pytest.fixture(scope="module")
def tiny_qwen3_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("sgl-tiny-qwen3")
    tok, model = write_tiny_plain_qwen3(path)
    return path, tok, model


@pytest.fixture(scope="module")
def engine(tiny_qwen3_dir):
    path, _, _ = tiny_qwen3_dir
    eng = launch_engine(path, context_length=1024, max_total_tokens=4096, skip_tokenizer_init=True)
    try:
        yield eng
    finally:
        eng.shutdown()


def test_engine_runs_on_cpu_engine_path(engine):
    from sglang.srt.utils import is_cpu

    assert is_cpu(), "SGLANG_USE_CPU_ENGINE=1 did not take effect"


def test_greedy_matches_transformers(engine, tiny_qwen3_dir):
    _, tok, model = tiny_qwen3_dir
    prompts = [tok.encode(p) for p in PROMPTS]

    expected = []
    for ids in prompts:
        input_ids = torch.tensor([ids])
        with torch.no_grad():
            out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                                 max_new_tokens=MAX_NEW_TOKENS, min_new_tokens=MAX_NEW_TOKENS,
                                 pad_token_id=tok.pad_token_id)
        expected.append(out[0, len(ids):].tolist())
    assert all(len(e) == MAX_NEW_TOKENS for e in expected)

    t0 = time.perf_counter()
    results = engine.generate(input_ids=prompts, sampling_params={"temperature": 0.0,
                                                                  "max_new_tokens": MAX_NEW_TOKENS,
                                                                  "ignore_eos": True})
    print(f"\n[sglang] generate 3 x {MAX_NEW_TOKENS} tokens: {time.perf_counter() - t0:.2f} s")
    got = [r["output_ids"] for r in results]
    for prompt, g, e in zip(PROMPTS, got, expected):
        assert g == e, f"SGLang != transformers for {prompt!r}:\n  sglang:       {g}\n  transformers: {e}"
