"""The fused keyed race (keyed_race.py, Triton) draws the same token as sampling.sample_keyed's PyTorch
race for the same key, run by Triton's interpreter on the CPU: a realistic 2^17 vocabulary filtered
by top-k / top-p / min-p (most probabilities exactly 0), a vocabulary that is not a multiple of the
kernel's block, one-token supports, and the 23-bit uniforms at both ends of their range."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, torch
from orthrus_sglang.keyed_race import fused_race_enabled
from orthrus_sglang.sampling import exponentials, filtered_probs, race, row_keys, sample_keyed
assert fused_race_enabled(torch.device("cpu"))
gen = torch.Generator().manual_seed(0)
report = []
for vocab, rows, filters in [(1 << 17, 24, "k20"), (1 << 17, 24, "p0.9-minp0.1"), (1000, 64, "none"),
                             (16, 256, "none"), (3000, 32, "k1")]:
    logits = torch.randn(rows, 1, vocab, generator=gen) * 6.0
    ones = torch.ones(rows)
    top_k = torch.full((rows,), 20 if filters == "k20" else 1 if filters == "k1" else 0, dtype=torch.int64)
    top_p = torch.full((rows,), 0.9 if filters.startswith("p0.9") else 1.0)
    min_p = torch.full((rows,), 0.1 if "minp" in filters else 0.0)
    probs = filtered_probs(logits, ones * 0.8, top_k, top_p, min_p)[:, 0]
    seeds = torch.randint(0, 2**62, (rows,), generator=gen)
    keys = row_keys(seeds, torch.randint(0, 4096, (rows, 1), generator=gen), 3).view(-1)
    fused = sample_keyed(probs.unsqueeze(1), keys.view(rows, 1)).view(-1)
    torch_race = race(probs, exponentials(keys, torch.arange(vocab)))
    report.append([vocab, filters, int((fused == torch_race).sum()), rows, bool((probs.gather(1, fused.view(-1, 1)) > 0).all())])
print(json.dumps(report))
"""


def test_fused_race_equals_the_pytorch_race_in_triton_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", ORTHRUS_FUSED_RACE="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print("\n[keyed race, interpreter] vocab, filter, equal/rows, drawn p > 0:", report)
    for vocab, filters, equal, rows, positive in report:
        assert equal == rows, (vocab, filters)
        assert positive, (vocab, filters)


def test_off_unless_enabled_and_cuda_only_outside_the_interpreter(monkeypatch):
    import torch

    from orthrus_sglang.keyed_race import ENV, fused_race_enabled

    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not fused_race_enabled(torch.device("cuda")) and not fused_race_enabled(torch.device("cpu"))
    monkeypatch.setenv(ENV, "1")
    assert fused_race_enabled(torch.device("cuda")) and not fused_race_enabled(torch.device("cpu"))
