"""ORTHRUS_BLOCK_POLICY in real SGLang (CPU engine): each step's block size is chosen per step, losslessly.

``cycle`` runs every size in turn (1 = a plain AR step, no draft pass), so consecutive steps always
differ; ``adaptive`` is the reference engine's policy (orthrus_sglang/block_policy.py) on measured step
times. Greedy tokens equal AR's at every size and across switches; sampled tokens fit the exact AR law
under switching (chi-square), with greedy drafts and with drafts from q; /metrics counts the steps of
each block size, and they add up to the verify steps the requests report.
"""

from __future__ import annotations

import httpx
import pytest
from sgl_engine import require_sglang
from sgl_server import free_port, launch_sglang_server

from orthrus_sglang import SamplingParams
from orthrus_sglang.ref.engine import Engine as ReferenceEngine
from orthrus_sglang.ref.loader import load_model
from orthrus_sglang.sgl.options import scheduler_env
from orthrus_sglang.testing import sglang_sampling_check, write_tiny_checkpoint

V, BLOCK = 16, 8
PROMPTS = [[3, 1, 4], [1, 5, 9, 2, 6], [5, 3], [8, 9, 7, 9, 3, 2, 3, 8, 4]]
CYCLE = "1,3,5,8"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("sgl-block-policy"), with_tokenizer=False, vocab_size=V,
                                 mask_token_id=V - 1, eos_token_id=V - 2, block_size=BLOCK, seed=5,
                                 diff_from_ar=True)


def cycling_engine(engine_factory, checkpoint, rejection: bool):
    with scheduler_env({"ORTHRUS_BLOCK_POLICY": "cycle", "ORTHRUS_BLOCK_SIZES": CYCLE}):
        return engine_factory(checkpoint, speculative_algorithm="ORTHRUS", speculative_num_draft_tokens=BLOCK,
                              skip_tokenizer_init=True, max_running_requests=32,
                              speculative_use_rejection_sampling=rejection)


@pytest.fixture(scope="module")
def cycling(checkpoint, engine_factory):
    return cycling_engine(engine_factory, checkpoint, rejection=False)


@pytest.fixture(scope="module")
def cycling_q(checkpoint, engine_factory):
    return cycling_engine(engine_factory, checkpoint, rejection=True)


def ar_tokens(checkpoint, prompts, max_new_tokens):
    engine = ReferenceEngine(checkpoint, block_size=BLOCK, max_batch_size=len(prompts))
    params = SamplingParams(max_new_tokens=max_new_tokens, ignore_eos=True)
    return [r.token_ids for r in engine.generate(prompts, params, ar_only=True)]


def test_greedy_equals_ar_when_the_block_size_changes_every_step(cycling, checkpoint):
    got = cycling.generate(input_ids=PROMPTS, sampling_params={"temperature": 0, "max_new_tokens": 40,
                                                               "ignore_eos": True})
    assert [g["output_ids"] for g in got] == ar_tokens(checkpoint, PROMPTS, 40)
    assert all(g["meta_info"]["spec_num_correct_drafts"] > 0 for g in got), "the test needs accepted drafts"
    alone = cycling.generate(input_ids=PROMPTS[0], sampling_params={"temperature": 0, "max_new_tokens": 40,
                                                                    "ignore_eos": True})
    # One request alone cycles 1, 3, 5, 8: at most 17 tokens per 4 steps (a fixed B=8 could take 8 per step).
    assert alone["meta_info"]["spec_verify_ct"] >= 4 * 39 // 17


@pytest.mark.parametrize("drafts", ["greedy-drafts", "drafts-from-q"])
def test_sampling_fits_the_exact_ar_law_when_the_block_size_changes_every_step(drafts, cycling, cycling_q,
                                                                               checkpoint):
    engine = cycling_q if drafts == "drafts-from-q" else cycling
    setting = dict(temperature=1.0, top_k=8)
    r = sglang_sampling_check(engine, load_model(checkpoint), PROMPTS[0], setting, n=1000)
    p = r["pvalues"]
    print(f"\n[sglang cycle {CYCLE} {drafts} {setting}] {r['verify_steps']} verify steps, {r['accepted']} accepted; "
          f"p-values (t1,t2) {p[0]:.3g}, (t2,t3) {p[1]:.3g}, t3 {p[2]:.3g}")
    assert r["accepted"] > 0 and r["rejected_steps"] > 0
    assert min(p) > 1e-3


@pytest.fixture(scope="module")
def adaptive_server(checkpoint, tmp_path_factory):
    require_sglang()
    logs = tmp_path_factory.mktemp("sgl-adaptive-logs")
    srv = launch_sglang_server(checkpoint, free_port(), logs / "sglang.log", timeout=120, env={
        "ORTHRUS_BLOCK_POLICY": "adaptive"}, extra_args=[
        "--speculative-algorithm", "ORTHRUS", "--speculative-num-draft-tokens", str(BLOCK), "--enable-metrics",
        "--skip-tokenizer-init"])
    try:
        yield srv
    finally:
        srv.stop()


def steps_by_block_size(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=60).text
    return {s.labels["block_size"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "orthrus:steps_by_block_size_total"}


def test_adaptive_is_greedy_lossless_and_counts_each_block_size(adaptive_server, checkpoint):
    before = steps_by_block_size(adaptive_server.url)
    outs = []
    for _ in range(3):  # enough steps that every size was measured and the policy chose among them
        r = httpx.post(adaptive_server.url + "/generate", timeout=300, json={
            "input_ids": PROMPTS, "sampling_params": {"temperature": 0, "max_new_tokens": 48, "ignore_eos": True}})
        assert r.status_code == 200, r.text
        outs += r.json()
    expected = ar_tokens(checkpoint, PROMPTS, 48)
    assert [o["output_ids"] for o in outs] == expected * 3
    after = steps_by_block_size(adaptive_server.url)
    ran = {b: after[b] - before.get(b, 0.0) for b in after if after[b] > before.get(b, 0.0)}
    print(f"\n[sglang adaptive, sizes 1,2,4,8] request-steps by block size {ran}")
    # Every size is measured before the policy compares them (block_policy.choose_block_size); SGLang's
    # warmup request may have run the first ones, so this counts since the server started.
    assert {"1", "2", "4", "8"} <= {b for b, steps in after.items() if steps > 0}
    assert sum(ran.values()) == sum(o["meta_info"]["spec_verify_ct"] for o in outs)
