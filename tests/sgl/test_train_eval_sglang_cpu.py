"""`orthrus eval`'s SGLang path (its own sglang.Engine on SGLang's CPU engine) = its reference-engine path."""

from __future__ import annotations

from orthrus_sglang.ref.loader import load_model
from orthrus_sglang.testing import write_tiny_checkpoint
from orthrus_sglang.train.evaluate import eval_reference, eval_sglang
from sgl_engine import raise_on_sigquit, require_sglang

PROMPTS = [[257, 72, 101, 108, 108, 111, 258], [40, 41, 42], [5, 6, 7, 8, 9, 10, 11, 12], [99, 98]]
BLOCK = 4


def test_sglang_eval_equals_reference_eval(tmp_path):
    require_sglang()
    checkpoint = write_tiny_checkpoint(tmp_path, backbone="llama", diff_from_ar=True, block_size=BLOCK)
    got = eval_sglang(str(checkpoint), PROMPTS, block_size=BLOCK, max_new_tokens=32, device="cpu",
                      custom_sigquit_handler=raise_on_sigquit)
    expected = eval_reference(load_model(checkpoint), PROMPTS, block_size=BLOCK, max_new_tokens=32)
    assert got.outputs == expected.outputs
    assert got.num_steps == expected.num_steps and got.num_tokens == expected.num_tokens
    assert got.accept_length_histogram == expected.accept_length_histogram
    assert got.tau == expected.tau and 1 < got.tau < BLOCK  # some drafts accepted, not all
    assert len(got.acceptance_per_position) == BLOCK - 1
