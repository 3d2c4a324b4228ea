"""bench/profile_step.py's trace arithmetic on a hand-made Kineto trace (the GPU run is on the GPU host)."""

import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not an installed package

from bench.profile_step import step_split, summarize_trace  # noqa: E402


def kernel(name, ts, dur, corr):
    return {"cat": "kernel", "name": name, "ts": ts, "dur": dur, "args": {"correlation": corr}}


def launch(corr, ts):
    return {"cat": "cuda_runtime", "name": "cudaGraphLaunch", "ts": ts, "dur": 5, "args": {"correlation": corr}}


# Two ORTHRUS steps (us): graph = draft GEMM 0-4000, draft argmax 4000-4100, verify GEMM 4200-9000;
# outside the graph an accept kernel of 300 us; then 700 us idle before the next step.
EVENTS = []
for step, corr in enumerate((11, 22)):
    t = step * 10_000
    EVENTS += [launch(corr, t - 50), kernel("gemm", t, 4000, corr),
               kernel("reduce_kernel<ArgMaxOps>", t + 4000, 100, corr), kernel("gemm", t + 4200, 4800, corr),
               kernel("accept", t + 9000, 300, 100 + corr)]


def test_step_split_separates_draft_verify_and_outside_kernels():
    kernels = [e for e in EVENTS if e["cat"] == "kernel"]
    runtime = [e for e in EVENTS if e["cat"] == "cuda_runtime"]
    split = step_split(kernels, runtime)
    assert split == {"steps": 2, "draft_ms": 4.1, "verify_ms": 4.8, "outside_graph_ms": 0.3}


def test_ar_graph_counts_as_verify_and_eager_gives_none():
    # AR: no argmax inside the graph (the sampler's runs outside it)
    ar = [kernel("gemm", 0, 5000, 1), kernel("reduce_kernel<ArgMaxOps>", 5000, 50, 9)]
    assert step_split(ar, [launch(1, 0)]) == {"steps": 1, "draft_ms": 0.0, "verify_ms": 5.0,
                                              "outside_graph_ms": 0.05}
    assert step_split(ar, []) is None  # eager mode: no graph launches to split by


def test_summary_reports_wall_busy_idle_and_the_split(tmp_path):
    path = tmp_path / "x-DECODE.trace.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": EVENTS}, f)
    text = summarize_trace(path, steps=2)
    # first kernel 0 -> last end 19,300 us: 9.65 ms/step; busy 4.0+0.1+4.8+0.3 = 9.2 ms/step
    assert "9.65 ms/step" in text and "GPU busy 9.20 ms/step" in text and "idle 0.45 ms/step" in text
    assert "draft pass 4.10 ms, verify pass 4.80 ms" in text and "sampling) 0.30 ms" in text
    assert "| gemm | 8.800 | 2.0 |" in text
