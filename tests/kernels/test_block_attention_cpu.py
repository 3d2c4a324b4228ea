"""block_attention (the Triton kernel both passes of an ORTHRUS step use on CUDA) equals its PyTorch
definition, run here by Triton's interpreter on the CPU: causal (verify) and non-causal (diffusion)
rows, GQA groups, one and several key splits, prefixes shorter and longer than a split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys, torch
from tests.kernels.block_attention_cases import make_case, max_error
results = []
for dtype, B, Hq, Hkv, D, lens, splits, causal in json.loads(sys.argv[1]):
    dt = getattr(torch, dtype)
    case = make_case(bs=len(lens), B=B, Hq=Hq, Hkv=Hkv, D=D, prefix_lens=lens, dtype=dt, device="cpu")
    err, scale = max_error(case, B=B, causal=causal, num_splits=splits)
    results.append([err, scale])
print(json.dumps(results))
"""

CASES = [  # dtype, B, Hq, Hkv, D, prefix lens, splits, causal
    ("float32", 4, 4, 2, 32, [1, 77, 150], 1, True),
    ("float32", 4, 4, 2, 32, [1, 77, 150], 4, False),
    ("float32", 3, 6, 3, 16, [5, 40], 2, True),       # B*G not a power of two: padded rows
    ("float16", 8, 8, 2, 64, [300, 9], 8, True),      # more splits than a short prefix fills
    ("float16", 16, 4, 1, 128, [130], 16, False),
]


def test_block_attention_matches_definition_in_triton_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(CASES)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for (dtype, *_), (err, scale) in zip(CASES, results):
        tol = 1e-5 if dtype == "float32" else 2e-3
        assert err <= tol * max(1.0, scale), (dtype, err, scale)
