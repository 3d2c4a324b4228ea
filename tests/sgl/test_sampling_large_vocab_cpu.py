"""Sampling through SGLang's CPU path on a realistic vocabulary (2^17 tokens): no filtered-out token
is ever emitted, and (t1, t2) fits the exact AR law. The first token is drawn by the seeded_sample
hook, later ones by the worker's acceptance; with --speculative-use-rejection-sampling the drafts
come from q. See tests/test_sampling_large_vocab.py for the sampler itself and the bug it pins."""

from __future__ import annotations

import pytest

from orthrus_sglang.ref.loader import load_model
from orthrus_sglang.testing import sglang_large_vocab_check, write_large_vocab_checkpoint

V, PROMPT = 1 << 17, [11, 5, 42, 7]
# top_p without top_k sorts the whole vocabulary per row: kept to the sampler-level tests.
SETTING = dict(temperature=0.7, top_k=50, top_p=0.9, min_p=0.1)


@pytest.fixture(scope="module")
def large_vocab(tmp_path_factory):
    return write_large_vocab_checkpoint(tmp_path_factory.mktemp("sgl-v131k"), vocab_size=V)


@pytest.mark.parametrize("rejection", [False, True], ids=["target-only", "drafts-from-q"])
def test_sglang_never_emits_a_filtered_out_token(large_vocab, engine_factory, rejection):
    engine = engine_factory(large_vocab, speculative_algorithm="ORTHRUS", skip_tokenizer_init=True,
                            max_running_requests=32, speculative_use_rejection_sampling=rejection)
    r = sglang_large_vocab_check(engine, load_model(large_vocab), PROMPT, SETTING, n=100)
    print(f"\n[sglang V=2^17 {'drafts from q' if rejection else 'target-only'} {SETTING}] {r['tokens']} tokens "
          f"from {r['draws']} keyed draws, {r['filtered_out']} filtered out; (t1, t2) chi-square p "
          f"{r['pvalue']:.3g} over {r['support']} support tokens")
    assert r["first_token_support"] >= 2 and r["support"] < V / 10
    assert r["filtered_out"] == 0
    assert r["pvalue"] > 1e-3
