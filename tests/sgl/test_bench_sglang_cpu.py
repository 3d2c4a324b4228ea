"""python -m bench.throughput --backend sglang on SGLang's CPU engine: the GPU harness, run for real.

Same harness as the GPU host's runs (engine per mode, streamed requests, meta_info acceptance,
server-info memory), on a tiny checkpoint. Checks completeness and losslessness, never a speed.
"""

import json
import math
import os
import sys
from pathlib import Path

import torch
from sgl_engine import require_sglang

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not an installed package

from bench import throughput  # noqa: E402
from bench.prompts import synthetic  # noqa: E402
from orthrus_sglang.testing import write_tiny_checkpoint  # noqa: E402

torch.set_num_threads(1)


def test_sglang_backend_on_cpu(tmp_path):
    require_sglang()
    model = write_tiny_checkpoint(tmp_path / "ckpt", diff_from_ar=True, block_size=4)
    out = tmp_path / "out"
    data = tmp_path / "gsm8k.jsonl"
    data.write_text('{"question": "What is 2 + 3?"}\n{"question": "Name a prime."}\n')
    rc = throughput.main(["--backend", "sglang", "--device", "cpu", "--model", str(model), "--modes", "ar,orthrus",
                          "--block-sizes", "4", "--concurrency", "1,3", "--prompt-len", "12", "--out-len", "10",
                          "--contexts", "40", "--context-out-len", "6", "--memory-context", "64", "--no-plots",
                          "--datasets", "gsm8k", "--dataset-path", str(data), "--dataset-requests", "2",
                          "--out-dir", str(out)])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert {(r["algorithm"], r["sweep"], r["concurrency"]) for r in runs} == {
        (a, s, c) for a in ("AR", "ORTHRUS")
        for s, c in (("concurrency", 1), ("concurrency", 3), ("context", 1), ("dataset", 2))}
    assert len(runs) == 8
    for r in runs:
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("total_tok_s", "per_request_tok_s", "ttft_ms", "wall_s"))
        assert r["out_len"] == (6 if r["sweep"] == "context" else 10)
        if r["sweep"] == "dataset":  # chat-templated questions through the checkpoint's tokenizer
            assert r["dataset"] == "gsm8k" and r["prompt_len"] > 10
        if r["algorithm"] == "ORTHRUS":
            assert r["outputs_equal_ar"] is True  # greedy ORTHRUS through SGLang == SGLang AR
            assert r["verify_steps"] == sum(r["accept_histogram"]) > 0
            assert r["tau"] >= 1 and len(r["accepted_per_position"]) <= 3
            # every output token but the prefill's comes from a verify step (the last step of a request
            # may commit up to B-1 tokens past max_new_tokens, which SGLang then drops)
            committed = sum((n + 1) * c for n, c in enumerate(r["accept_histogram"]))
            needed = r["num_requests"] * (r["out_len"] - 1)
            assert needed <= committed <= needed + r["num_requests"] * 3
            # --enable-metrics (the default): the run's request-steps from the scheduler's own counters
            assert r["steps_by_block_size"] == {"4": r["verify_steps"]}
        else:
            assert r["steps_by_block_size"] == {}
    memory = results["memory"]["modes"]
    assert all(m["kv_pool_tokens"] > 0 and m["admitted_at_context"] >= 1 for m in memory.values())
    assert results["env"]["backend"] == "sglang" and results["env"]["model"]["vocab_size"] == 260
    assert "ORTHRUS" in (out / "results.md").read_text()


def test_sglang_session_samples_at_the_cell_temperature(tmp_path):
    """The orthrus-sd mode (drafts drawn from q, rejection sampling) on SGLang's CPU engine: a cell at
    T=0.9 reaches the engine seeded per request (the same outputs twice, not the greedy ones), and
    its steps are verify steps."""
    require_sglang()
    model = write_tiny_checkpoint(tmp_path / "ckpt", diff_from_ar=True, block_size=4)
    args = throughput.parse_args(["--backend", "sglang", "--device", "cpu", "--model", str(model),
                                  "--modes", "orthrus-sd", "--block-sizes", "4", "--concurrency", "2",
                                  "--prompt-len", "12", "--out-len", "16", "--contexts", "", "--top-k", "50",
                                  "--top-p", "0.95", "--temperature", "0,0.9"])
    (mode,) = throughput.build_modes(args)
    assert mode.sampled_drafts and mode.label == "ORTHRUS sampled-drafts B=4"
    backend = throughput.get_backend("sglang", args)
    prompts = synthetic(3, 12, 260, "test", low=100)
    session = backend.open(mode)
    try:
        greedy = session.generate(prompts, 16, 2, 0.0)
        first, second = (session.generate(prompts, 16, 2, 0.9) for _ in range(2))
    finally:
        session.close()
        backend.close()
    out = lambda timings: [t.output_ids for t in timings]  # noqa: E731
    assert all(len(ids) == 16 for ids in out(greedy) + out(first))
    assert out(first) == out(second)  # sampling_seed = the request's index
    assert out(first) != out(greedy)
    assert all(t.verify_steps > 0 and sum(t.accept_histogram) == t.verify_steps for t in first)


def test_simulated_geometric_acceptance_on_cpu(tmp_path):
    """--simulate-accept-rate (ORTHRUS_SIMULATE_ACCEPT_RATE) through SGLang's CPU engine: each request
    accepts draft i with probability r after its predecessors, whatever the model drafted, so the
    per-position rates are near r and tau near (1 - r^B) / (1 - r); outputs are the fixed token."""
    require_sglang()
    from orthrus_sglang.sgl.pinned_acceptance import FIXED_TOKEN_ID

    B, rate = 8, 0.7
    model = write_tiny_checkpoint(tmp_path / "ckpt", block_size=B)
    args = throughput.parse_args(["--backend", "sglang", "--device", "cpu", "--model", str(model), "--modes", "orthrus",
                                  "--block-sizes", str(B), "--simulate-accept-rate", str(rate), "--concurrency", "4",
                                  "--prompt-len", "12", "--out-len", "64", "--contexts", ""])
    (mode,) = throughput.build_modes(args)
    assert mode.accept_rate == rate and mode.label == f"ORTHRUS B={B} acceptance {rate:g}/draft"
    backend = throughput.get_backend("sglang", args)
    session = backend.open(mode)
    assert "ORTHRUS_SIMULATE_ACCEPT_RATE" not in os.environ  # set for that engine's start only
    try:
        timings = session.generate(synthetic(8, 12, 260, "test", low=100), 64, 4, 0.0)
    finally:
        session.close()
        backend.close()
    histogram = [sum(c) for c in zip(*(t.accept_histogram for t in timings))]
    steps = sum(histogram)
    reached = [sum(histogram[i - 1:]) for i in range(1, B)]  # steps that verified draft i: n >= i - 1
    accepted = [sum(histogram[i:]) for i in range(1, B)]  # steps that accepted it: n >= i
    rates = [a / r for a, r in zip(accepted, reached) if r >= 40]
    tau = sum((n + 1) * c for n, c in enumerate(histogram)) / steps
    print(f"\n[geometric r={rate}] steps {steps}, tau {tau:.2f} (expected {(1 - rate ** B) / (1 - rate):.2f}), "
          f"rates {[round(r, 2) for r in rates]}")
    assert steps > 100 and len(rates) >= 3
    assert all(abs(r - rate) < 0.15 for r in rates)  # > 4 standard errors at >= 40 draws
    assert abs(tau - (1 - rate ** B) / (1 - rate)) < 0.5
    assert all(set(t.output_ids[1:]) == {FIXED_TOKEN_ID} for t in timings)


def test_adaptive_block_sizes_read_from_the_engine_metrics(tmp_path):
    """orthrus-adaptive through SGLang's CPU engine: the block sizes its steps took, read from the
    scheduler's orthrus:steps_by_block_size_total (prometheus multiprocess files, as /metrics serves them),
    add up to the requests' verify steps; every candidate ran (each is measured once before any choice),
    and the report shows the mix."""
    require_sglang()
    from bench.report import block_size_table
    from bench.engine_metrics import steps_between

    model = write_tiny_checkpoint(tmp_path / "ckpt", diff_from_ar=True, block_size=4)
    args = throughput.parse_args(["--backend", "sglang", "--device", "cpu", "--model", str(model),
                                  "--modes", "orthrus-adaptive", "--block-sizes", "4", "--concurrency", "2",
                                  "--prompt-len", "12", "--out-len", "24", "--contexts", ""])
    (mode,) = throughput.build_modes(args)
    backend = throughput.get_backend("sglang", args)
    session = backend.open(mode)
    try:
        before = session.block_sizes()
        timings = session.generate(synthetic(4, 12, 260, "test", low=100), 24, 2, 0.0)
        steps = steps_between(before, session.block_sizes())
    finally:
        session.close()
        backend.close()
    assert before is None  # nothing ran yet: no series
    assert sum(steps.values()) == sum(t.verify_steps for t in timings) > 0
    assert set(steps) == {"1", "2", "4"}
    table = block_size_table([{"mode": mode.label, "algorithm": "ORTHRUS adaptive", "dataset": "synthetic",
                               "concurrency": 2, "prompt_len": 12, "tau": 1.5, "pinned_tau": None, "lossless": True,
                               "steps_by_block_size": steps}])
    print("\n" + table)
    assert "B=4: " in table and "B=1: " in table


def test_ar_steps_mode_runs_every_step_at_block_size_one(tmp_path):
    """orthrus-ar-steps (ORTHRUS_BLOCK_SIZES=1 under the adaptive policy): every step through the ORTHRUS
    worker is a plain AR step (tau 1, the counters show only B=1) and the outputs are AR's: the floor the
    adaptive policy falls back to, timed beside AR on the GPU."""
    require_sglang()
    model = write_tiny_checkpoint(tmp_path / "ckpt", diff_from_ar=True, block_size=4)
    out = tmp_path / "out"
    assert throughput.main(["--backend", "sglang", "--device", "cpu", "--model", str(model), "--modes",
                            "ar,orthrus-ar-steps", "--block-sizes", "4", "--concurrency", "2", "--prompt-len", "12",
                            "--out-len", "12", "--contexts", "", "--no-plots", "--out-dir", str(out)]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    (steps,) = [r for r in runs if r["algorithm"] == "ORTHRUS AR-steps"]
    assert steps["mode"] == "ORTHRUS AR-steps B<=4"
    assert steps["outputs_equal_ar"] is True and steps["tau"] == 1.0
    assert steps["steps_by_block_size"] == {"1": steps["verify_steps"]} and steps["verify_steps"] > 0
