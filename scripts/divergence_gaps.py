"""Where ORTHRUS and AR greedy outputs differ on the GPU, were the two tokens a near-tie?

    ORTHRUS_GPU_REPORT_DIR=out bash scripts/gpu_tests.sh -k test_a_   # on the GPU host: dumps the sequences
    python scripts/divergence_gaps.py out/a_tiny_bfloat16.json        # anywhere: fp32 logits on CPU

Test (b)'s dump (b_tiny_float16.json) holds the reference engine's tokens under "ar" and SGLang's
under "orthrus". For each differing pair it recomputes, in fp32 with the reference engine, the logits at the first
differing position (after the common prefix) and prints the gap between the two chosen tokens
next to the typical top-2 gap: rounding flips show up as gaps far below the typical one, with fp32
siding with either path about equally often. Uses the same tiny checkpoint as tests/gpu.
"""

from __future__ import annotations

import json
import sys
import tempfile

import torch

from orthrus_sglang.ref.loader import load_model
from orthrus_sglang.ref.model import ForwardBatch
from orthrus_sglang.testing import write_tiny_checkpoint


def main(paths: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:  # the tests/gpu `tiny` fixture's checkpoint
        model = load_model(write_tiny_checkpoint(tmp, diff_from_ar=True, block_size=4, max_position_embeddings=2048))
    for path in paths:
        dump = json.load(open(path))
        gaps, typical, sides = [], [], {"ar": 0, "orthrus": 0, "neither": 0}
        for prompt, ar, orthrus in zip(dump["prompts"], dump["ar"], dump["orthrus"]):
            seq = prompt + ar[:-1]
            batch = ForwardBatch(torch.tensor([0]), torch.tensor([0]), len(seq))
            logits = model(torch.tensor([seq]), model.new_cache(1, len(seq)), batch, "ar")[0, len(prompt) - 1:]
            top2 = logits.topk(2, dim=-1).values
            typical += (top2[:, 0] - top2[:, 1]).tolist()
            if ar == orthrus:
                continue
            i = next(i for i, (x, y) in enumerate(zip(ar, orthrus)) if x != y)
            gaps.append(abs(logits[i, ar[i]] - logits[i, orthrus[i]]).item())
            best = int(logits[i].argmax())
            sides["ar" if best == ar[i] else "orthrus" if best == orthrus[i] else "neither"] += 1
        typical = torch.tensor(typical)
        print(f"{path}: {len(gaps)} differing sequences; fp32 logit gap between the two tokens at the first "
              f"difference: median {torch.tensor(gaps or [0.0]).median():.4f}, max {max(gaps or [0.0]):.4f}; "
              f"top-2 gap over all steps: median {typical.median():.3f}, 5th percentile {typical.quantile(0.05):.4f}; "
              f"fp32 argmax sides with {sides}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main(sys.argv[1:])
