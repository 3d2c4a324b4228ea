"""ORTHRUS under tensor parallelism on SGLang's CPU engine: `--tp 2`, all-reduce and all-gather over gloo.

The tiny checkpoint's 4 query / 2 KV heads, MLP and vocabulary split over 2 ranks; the diffusion view's
projections are the same parallel layers as the AR view's, the drafts are TP-gathered logits. Greedy tokens
and per-request acceptance statistics must equal the reference engine's (which equal SGLang at TP=1:
tests/sgl/test_orthrus_server_cpu.py), and the orthrus:* counters must count each step once (rank 0
exports them), not once per rank.

What the CPU engine needs for TP>1 (SGLang 0.5.17), set here through the environment:
- SGLANG_NCCL_SO_PATH pointing at no file: the PyPI torch wheel we install is the CUDA build and carries
  libnccl, so SGLang's PyNcclCommunicator loads it and then fails on `torch.cuda.device("cpu")`
  ("ValueError: Expected a cuda device, but got: cpu"). Without NCCL it falls back to
  torch.distributed over the gloo group. (A +cpu torch build has no libnccl: nothing to do there.)
- SGLANG_CPU_OMP_THREADS_BIND with one core list per rank: without it SGLang asserts
  tp_size <= number of NUMA nodes (1 here). The binding itself only happens on AMX / arm64 CPUs.
- --disable-custom-all-reduce (the custom all-reduce is CUDA-only; it would only warn).
The shared-memory all-reduce (`torch.ops.sgl_kernel.shm_allreduce`) is used only when the real sgl_kernel
CPU build initialised it (AMX / arm64); our stand-in registers no ops, so gloo it is.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sgl_engine import require_sglang
from sgl_server import free_port, launch_sglang_server
from test_orthrus_server_cpu import metric, scrape

from orthrus_sglang import SamplingParams
from orthrus_sglang.ref.engine import Engine as ReferenceEngine
from orthrus_sglang.testing import write_tiny_checkpoint

BLOCK = 4
MAX_NEW_TOKENS = 24
TIMEOUT = 180
CPU_TP_ENV = {"SGLANG_NCCL_SO_PATH": "/nonexistent/libnccl.so.2", "SGLANG_CPU_OMP_THREADS_BIND": "0|1"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tp-qwen3"), backbone="qwen3", diff_from_ar=True,
                                 block_size=BLOCK)


@pytest.fixture(scope="module")
def tp2_server(checkpoint, tmp_path_factory):
    require_sglang()
    log = tmp_path_factory.mktemp("tp-logs") / "sglang-tp2.log"
    srv = launch_sglang_server(checkpoint, free_port(), log, timeout=300, env=CPU_TP_ENV, extra_args=[
        "--tp", "2", "--disable-custom-all-reduce", "--speculative-algorithm", "ORTHRUS",
        "--speculative-num-draft-tokens", str(BLOCK), "--enable-metrics"])
    try:
        yield srv
    finally:
        srv.stop()


def test_tp2_greedy_equals_reference_and_counts_once(tp2_server, checkpoint):
    assert "TP1" in tp2_server.log_path.read_text()  # two ranks did start
    reference = ReferenceEngine(checkpoint, block_size=BLOCK, max_batch_size=4)
    prompts = [list(f"Tensor parallel {i}".encode()) for i in range(3)]
    expected = reference.generate(prompts, SamplingParams(max_new_tokens=MAX_NEW_TOKENS))
    before = scrape(tp2_server.url)

    def generate(ids):
        r = httpx.post(tp2_server.url + "/generate", timeout=TIMEOUT, json={
            "input_ids": ids, "sampling_params": {"temperature": 0, "max_new_tokens": MAX_NEW_TOKENS}})
        assert r.status_code == 200, r.text
        return r.json()

    with ThreadPoolExecutor(3) as pool:  # batched at TP=2 too
        got = list(pool.map(generate, prompts))
    for g, e in zip(got, expected):
        assert g["output_ids"] == e.token_ids
        meta = g["meta_info"]
        assert meta["spec_verify_ct"] == e.stats.num_steps
        assert meta["spec_num_correct_drafts"] == e.stats.num_accepted_drafts
        hist = meta["spec_correct_drafts_histogram"]
        assert hist == e.stats.accept_length_histogram[:len(hist)]
    steps = sum(e.stats.num_steps for e in expected)
    assert sum(e.stats.num_accepted_drafts for e in expected) > 0, "the test needs accepted drafts"

    deadline = time.monotonic() + 15  # written by the scheduler just after the answers
    while (seen := metric(scrape(tp2_server.url), "orthrus:verify_steps_total")
           - metric(before, "orthrus:verify_steps_total")) != steps and time.monotonic() < deadline:
        time.sleep(0.2)
    assert seen == steps
    print(f"\n[tp2] {len(prompts)} requests, {steps} verify steps, tokens == reference")
