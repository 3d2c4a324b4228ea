"""Sampling through real SGLang on a CUDA GPU on a realistic vocabulary (2^17 tokens, fp32, CUDA
graphs, overlap scheduler): no filtered-out token is ever emitted and (t1, t2) fits the exact AR law,
target-only and with drafts sampled from q inside the captured graph. The GPU half of
tests/sgl/test_sampling_large_vocab_cpu.py; the sampler itself is pinned in
tests/test_sampling_large_vocab.py (a leak of V/2^24 per keyed draw is ~0.8% of draws here)."""

from __future__ import annotations

import pytest
from test_sglang_gpu import launch

pytestmark = pytest.mark.gpu
V, PROMPT = 1 << 17, [11, 5, 42, 7]
SETTINGS = [dict(temperature=0.7, top_k=50, top_p=0.9, min_p=0.1), dict(temperature=1.0, top_k=20)]


@pytest.fixture(scope="module")
def large_vocab(tmp_path_factory):
    from orthrus_sglang.testing import write_large_vocab_checkpoint

    return write_large_vocab_checkpoint(tmp_path_factory.mktemp("gpu-v131k"), vocab_size=V)


@pytest.mark.parametrize("rejection", [False, True], ids=["target-only", "q-sampled-in-graph"])
def test_sglang_gpu_never_emits_a_filtered_out_token(large_vocab, rejection):
    from orthrus_sglang.ref.loader import load_model
    from orthrus_sglang.testing import sglang_large_vocab_check

    model = load_model(large_vocab)
    engine = launch(large_vocab, dtype="float32", speculative_algorithm="ORTHRUS", max_running_requests=32,
                    speculative_use_rejection_sampling=rejection, enable_deterministic_inference=True)
    try:
        for setting in SETTINGS:
            r = sglang_large_vocab_check(engine, model, PROMPT, setting, n=2000)
            print(f"[gpu] V=2^17 {'q-sampled' if rejection else 'target-only'} {setting}: {r['tokens']} tokens from "
                  f"{r['draws']} keyed draws, {r['filtered_out']} filtered out; (t1, t2) chi-square p "
                  f"{r['pvalue']:.3g} over {r['support']} support tokens", flush=True)
            assert r["first_token_support"] >= 2 and r["support"] < V / 10
            assert r["filtered_out"] == 0
            assert r["pvalue"] > 1e-3
    finally:
        engine.shutdown()
