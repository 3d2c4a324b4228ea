"""bench/cells.py: the cells a bench.throughput run plans (warm-ups, repeats, requests per level) and which
of them each mode runs."""

import sys
from pathlib import Path

import pytest

# bench/ is not an installed package: import it from the repo root whatever the pytest invocation.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import throughput  # noqa: E402
from bench.cells import Cell, cells_of, plan_cells, requests_at  # noqa: E402


def test_sampled_only_modes_skip_the_greedy_cells_their_twin_runs():
    """Drafts from q and accept graphs change only the sampled acceptance: where the run has the same
    mode without them, they skip T=0 (the same step); alone, they run it."""
    cells = [Cell("concurrency", "synthetic", 1, 8, [[1]], temperature=t) for t in (0.0, 0.7)]
    args = throughput.parse_args(["--backend", "sglang", "--modes", "ar,orthrus,orthrus-sd,orthrus-sd-ag,"
                                  "orthrus-adaptive-ag", "--block-sizes", "16"])
    modes = throughput.build_modes(args)
    temps = {m.label: [c.temperature for c in cells_of(m, modes, cells)] for m in modes}
    assert temps == {"AR": [0.0, 0.7], "ORTHRUS B=16": [0.0, 0.7], "ORTHRUS sampled-drafts B=16": [0.7],
                     "ORTHRUS sampled-drafts accept-graphs B=16": [0.7],
                     "ORTHRUS adaptive accept-graphs B<=16": [0.0, 0.7]}  # no adaptive twin in this run


def test_warm_up_runs_every_concurrency_at_every_temperature():
    """One-time costs at a batch size (a kernel specialisation, a graph's first replay, accept graphs captured)
    fall in an untimed warm-up at that concurrency, not in the first timed cell of it."""
    args = throughput.parse_args(["--concurrency", "1,8", "--temperature", "0,0.7", "--contexts", ""])
    warmups, cells = plan_cells(args, 1000, None)
    assert [(w.concurrency, len(w.prompts), w.temperature) for w in warmups] == [
        (1, 2, 0.0), (8, 8, 0.0), (1, 2, 0.7), (8, 8, 0.7)]
    timed = {tuple(p) for c in cells for p in c.prompts}
    assert not timed & {tuple(p) for w in warmups for p in w.prompts}  # no prefix-cache hits in timed cells


@pytest.mark.parametrize("requests, levels", [(None, [2, 2, 8]), ("16", [16, 16, 16]), ("4x", [4, 8, 32]),
                                              ("0.5x", [2, 2, 4])])
def test_requests_per_level(requests, levels):
    """--requests: a number for every level, Kx for K times the level (at least 2), default max(c, 2)."""
    assert [requests_at(requests, c) for c in (1, 2, 8)] == levels
