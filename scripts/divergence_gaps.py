"""Where ORTHRUS and AR greedy outputs differ on the GPU, were the two tokens a near-tie?

    ORTHRUS_GPU_REPORT_DIR=out bash scripts/gpu_tests.sh -k test_a_   # on the GPU host: dumps the sequences
    python scripts/divergence_gaps.py out/a_tiny_bfloat16.json        # anywhere: fp32 logits on CPU

The GPU tests run the same analysis (orthrus_sglang.testing.near_tie_report) in fp32 on the GPU and
assert on it; this script re-examines their dumps anywhere. Test (b)'s dump holds the reference
engine's tokens under "ar" and SGLang's under "orthrus". Uses the tests/gpu tiny checkpoint.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile

import torch

from orthrus_sglang.ref.loader import load_model
from orthrus_sglang.testing import near_tie_report, write_tiny_checkpoint


def main(paths: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:  # the tests/gpu `tiny` fixture's checkpoint
        model = load_model(write_tiny_checkpoint(tmp, diff_from_ar=True, block_size=4, max_position_embeddings=2048))
    for path in paths:
        dump = json.load(open(path))
        r = near_tie_report(model, dump["prompts"], dump["ar"], dump["orthrus"])
        print(f"{path}: {r['differing']} differing sequences; fp32 gap at the first difference: "
              f"{[round(g, 4) for g in r['gaps']]}; its percentile among all {len(r['top2_gaps'])} top-2 gaps: "
              f"{[round(p, 1) for p in r['percentile_of_gaps']]}; median top-2 gap "
              f"{statistics.median(r['top2_gaps']):.3f}; fp32 argmax sides with {r['fp32_sides']} (a = AR)")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main(sys.argv[1:])
