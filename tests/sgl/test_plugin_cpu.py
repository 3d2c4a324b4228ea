"""The plugin's contract with SGLang 0.5.17: registration, refused flags, lossless sampling, pinned tau."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from orthrus_sglang.ref.loader import load_model
from orthrus_sglang.testing import sglang_sampling_check, write_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("plugin"), diff_from_ar=True, block_size=4)


def test_registration_in_a_fresh_process_through_the_entry_point():
    code = """
import os, sys
os.environ["SGLANG_USE_CPU_ENGINE"] = "1"
from sglang.srt.plugins import load_plugins
load_plugins()  # what launch_server, Engine and every scheduler process do
from sglang.srt.speculative.spec_info import SpeculativeAlgorithm
from sglang.srt.models.registry import ModelRegistry
from sglang.srt.speculative.spec_registry import _REGISTRY
from transformers import AutoConfig, CONFIG_MAPPING
algo = SpeculativeAlgorithm.from_string("orthrus")
print(type(algo).__name__, algo.name, algo.supports_overlap, algo.need_topk(), algo.has_draft_kv(),
      algo.carries_draft_hidden_states(), algo.is_dflash_family(), "OrthrusLM" in ModelRegistry.get_supported_archs(),
      "orthrus" in CONFIG_MAPPING, "prometheus_client" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["OrthrusSpecAlgo", "ORTHRUS", "True", "False", "False", "False", "False", "True",
                                  "True", "False"]


def test_every_speculative_predicate_exists():
    """SGLang dispatches on is_*/supports_* without isinstance checks: all must exist on our class."""
    from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

    from orthrus_sglang.sgl.spec import OrthrusSpecAlgo

    wanted = {n for n in vars(SpeculativeAlgorithm) if n.startswith(("is_", "supports_"))}
    wanted |= {"create_future_map", "need_topk", "carries_draft_hidden_states", "has_draft_kv"}
    assert not wanted - set(dir(OrthrusSpecAlgo))


def server_args(checkpoint, **extra):
    from sglang.srt.plugins import load_plugins
    from sglang.srt.server_args import ServerArgs

    from orthrus_sglang.sgl.compat import effective_server_args

    load_plugins()
    args = dict(model_path=str(checkpoint), device="cpu", attention_backend="torch_native",
                speculative_algorithm="ORTHRUS", skip_tokenizer_init=True)
    server_args = ServerArgs(**{**args, **extra})
    if hasattr(server_args, "resolve_once"):  # 0.5.23 resolves on launch, not on construction
        server_args.resolve_once()
    return effective_server_args(server_args)


def test_server_args_defaults(checkpoint):
    args = server_args(checkpoint)
    assert args.speculative_num_draft_tokens == 4  # the checkpoint's block_size
    assert (args.speculative_num_steps, args.speculative_eagle_topk) == (1, 1)
    assert args.max_running_requests == 32 and args.enable_mixed_chunk is False
    assert args.disable_overlap_schedule is True  # CPU: SGLang has no overlap spec path there


@pytest.mark.parametrize("extra, message", [
    (dict(speculative_draft_model_path="SELF"), "there is no draft model to load"),
    (dict(enable_lora=True), "--enable-lora is not supported"),
    (dict(kv_canary="log"), "--kv-canary"),
    (dict(attention_backend="fa3"), r"attention backend \['fa3'\] is not validated"),
    (dict(attention_backend="fa4"), r"attention backend \['fa4'\] is not validated"),
    (dict(pp_size=2), "--pp-size > 1 is not supported"),
    (dict(enable_two_batch_overlap=True), "--enable-two-batch-overlap"),
    (dict(speculative_num_draft_tokens=1), "must be >= 2"),
    (dict(disaggregation_mode="prefill"), "--disaggregation-mode"),
    (dict(speculative_adaptive=True), "--speculative-adaptive is EAGLE's.*ORTHRUS_BLOCK_POLICY=adaptive"),
])
def test_unsupported_flags_are_refused_at_startup(checkpoint, extra, message):
    if extra.get("speculative_draft_model_path") == "SELF":
        extra = dict(speculative_draft_model_path=str(checkpoint))
    with pytest.raises(ValueError, match=f"ORTHRUS cannot run with these settings: .*{message}"):
        server_args(checkpoint, **extra)


@pytest.mark.parametrize("env, extra, message", [
    ({"ORTHRUS_BLOCK_POLICY": "sometimes"}, {}, r"ORTHRUS_BLOCK_POLICY='sometimes': expected one of fixed, adaptive, cycle"),
    ({"ORTHRUS_BLOCK_POLICY": "adaptive"}, dict(tp_size=2), "ORTHRUS_BLOCK_POLICY=adaptive supports --tp 1 only"),
    ({"ORTHRUS_BLOCK_POLICY": "adaptive", "ORTHRUS_BLOCK_SIZES": "1,4,8"}, dict(speculative_num_draft_tokens=4),
     r"ORTHRUS_BLOCK_SIZES='1,4,8': expected comma-separated block sizes in 1..4"),
    ({"ORTHRUS_BLOCK_POLICY": "cycle", "ORTHRUS_BLOCK_SIZES": "two"}, {}, "ORTHRUS_BLOCK_SIZES='two'"),
])
def test_bad_block_policy_settings_are_refused_at_startup(checkpoint, monkeypatch, env, extra, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        server_args(checkpoint, **extra)


def test_block_sizes_default_to_the_powers_of_two_below_b(monkeypatch):
    from orthrus_sglang.sgl.options import block_sizes

    assert block_sizes(16) == (16,)  # fixed, the default
    monkeypatch.setenv("ORTHRUS_BLOCK_POLICY", "adaptive")
    assert block_sizes(16) == (1, 2, 4, 8, 16) and block_sizes(12) == (1, 2, 4, 8, 12)
    monkeypatch.setenv("ORTHRUS_BLOCK_SIZES", "8, 1,4")
    assert block_sizes(16) == (1, 4, 8)


# ---- sampling through the real SGLang worker ---------------------------------------------------
V, PROMPT, N = 16, [3, 1, 4], 1500


@pytest.fixture(scope="module")
def tiny_vocab(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("plugin-v16"), with_tokenizer=False, vocab_size=V,
                                 mask_token_id=V - 1, eos_token_id=V - 2, block_size=4, seed=5, diff_from_ar=True)


@pytest.fixture(scope="module")
def sampling_engine(tiny_vocab, engine_factory):
    return engine_factory(tiny_vocab, speculative_algorithm="ORTHRUS", skip_tokenizer_init=True,
                          max_running_requests=32)


@pytest.fixture(scope="module")
def rejection_engine(tiny_vocab, engine_factory):
    """--speculative-use-rejection-sampling: sampled requests draft from q (models/orthrus.py _draft_sample)."""
    return engine_factory(tiny_vocab, speculative_algorithm="ORTHRUS", skip_tokenizer_init=True,
                          max_running_requests=32, speculative_use_rejection_sampling=True)


def check_sglang_distribution(engine, tiny_vocab, setting, label, n=N):
    r = sglang_sampling_check(engine, load_model(tiny_vocab), PROMPT, setting, n)
    p = r["pvalues"]
    print(f"\n[sglang {label} {setting}] {r['verify_steps']} verify steps, {r['accepted']} accepted drafts; p-values "
          f"(t1,t2) {p[0]:.3g}, (t2,t3) {p[1]:.3g}, t3 {p[2]:.3g}")
    assert r["accepted"] > 0 and r["rejected_steps"] > 0  # both accepted drafts and rejections happened
    assert min(p) > 1e-3
    if "power_pvalue" in r:  # min_p alone: told apart from the min_p-dropped law
        print(f"[sglang {label}] p-value against the min_p-dropped distribution: {r['power_pvalue']:.3g}")
        assert r["power_pvalue"] < 1e-3  # the rule that drops min_p fails the same test the right rule passes


@pytest.mark.parametrize("setting", [dict(temperature=1.0, top_k=-1, top_p=1.0),
                                     dict(temperature=0.7, top_k=6, top_p=0.9),
                                     dict(temperature=1.0, min_p=0.15)], ids=["t1", "t0.7-k6-p0.9", "t1-minp0.15"])
def test_sglang_orthrus_sampling_matches_exact_ar_distribution(tiny_vocab, sampling_engine, setting):
    """Greedy drafts, target-only verification (the default)."""
    check_sglang_distribution(sampling_engine, tiny_vocab, setting, "target-only", n=1000 if "min_p" in setting else N)


@pytest.mark.parametrize("setting", [dict(temperature=1.0), dict(temperature=1.0, top_k=8, min_p=0.15)],
                         ids=["t1", "t1-k8-minp0.15"])
def test_sglang_sampled_drafts_match_exact_ar_distribution(tiny_vocab, rejection_engine, setting):
    """Drafts sampled from q, full rejection sampling (--speculative-use-rejection-sampling)."""
    check_sglang_distribution(rejection_engine, tiny_vocab, setting, "q-sampled", n=1000)


def test_sglang_seeds_mixed_batches_and_refusals(rejection_engine, sampling_engine):
    sampled = {"temperature": 0.8, "top_k": 8, "min_p": 0.05, "max_new_tokens": 12, "ignore_eos": True}
    greedy = {"temperature": 0, "max_new_tokens": 12, "ignore_eos": True}
    for engine in (rejection_engine, sampling_engine):
        a = engine.generate(input_ids=[PROMPT] * 3, sampling_params=[{**sampled, "sampling_seed": 7},
                                                                     {**sampled, "sampling_seed": 7},
                                                                     {**sampled, "sampling_seed": 8}])
        again = engine.generate(input_ids=[PROMPT], sampling_params={**sampled, "sampling_seed": 7})[0]
        # same seed, same output (first token included), in another batch; another seed differs
        assert a[0]["output_ids"] == a[1]["output_ids"] == again["output_ids"] != a[2]["output_ids"]
        mixed = engine.generate(input_ids=[PROMPT, [5, 9], [7, 7]],
                                sampling_params=[greedy, {**sampled, "sampling_seed": 7}, greedy])
        alone = engine.generate(input_ids=[PROMPT, [7, 7]], sampling_params=greedy)
        assert [mixed[0]["output_ids"], mixed[2]["output_ids"]] == [g["output_ids"] for g in alone]
    # (min_new_tokens is refused too, but without a tokenizer SGLang refuses it first)
    for param, value in [("repetition_penalty", 1.2), ("frequency_penalty", 0.5), ("presence_penalty", 0.3)]:
        with pytest.raises(Exception, match=f"ORTHRUS speculative decoding cannot apply {param}"):
            rejection_engine.generate(input_ids=[PROMPT], sampling_params={param: value, "max_new_tokens": 4})
    # logit_bias is exact (the same bias on every verify row, as AR adds it to every step): honoured
    out = rejection_engine.generate(input_ids=[PROMPT], sampling_params={**greedy, "logit_bias": {"3": 100.0}})[0]
    assert out["output_ids"] == [3] * 12


def test_pinned_acceptance_switch_as_dflash_reads_it(checkpoint, engine_factory):
    """SGLANG_SIMULATE_ACC_LEN (SGLang's own benchmark switch) pins tau; it is read at import in the workers."""
    os.environ.update(SGLANG_SIMULATE_ACC_LEN="3", SGLANG_SIMULATE_ACC_METHOD="match-expected",
                      SGLANG_SIMULATE_ACC_TOKEN_MODE="fixed")
    try:
        engine = engine_factory(checkpoint, speculative_algorithm="ORTHRUS", skip_tokenizer_init=True)
    finally:
        for key in ("SGLANG_SIMULATE_ACC_LEN", "SGLANG_SIMULATE_ACC_METHOD", "SGLANG_SIMULATE_ACC_TOKEN_MODE"):
            os.environ.pop(key)
    outs = engine.generate(input_ids=[[40, 41, 42]] * 4, sampling_params={"temperature": 0, "max_new_tokens": 61,
                                                                          "ignore_eos": True})
    for out in outs:
        meta = out["meta_info"]
        # every step commits exactly 3 tokens (accept length pinned at its integer mean): 1 + 20 * 3 = 61
        assert meta["spec_verify_ct"] == 20 and meta["spec_correct_drafts_histogram"] == [0, 0, 20]
        assert out["output_ids"][1:] == [100] * 60  # 'fixed' token mode, as DFLASH does


def test_pinned_acceptance_leaves_steps_without_drafts_alone(checkpoint, engine_factory):
    """A step of block size 1 (the adaptive policy's AR step) has nothing to pin: under SGLang's pinned-tau
    switch it still commits the model's own token, so the AR steps a benchmark times are real ones."""
    from orthrus_sglang import SamplingParams
    from orthrus_sglang.ref.engine import Engine as ReferenceEngine
    from orthrus_sglang.sgl.options import scheduler_env

    os.environ.update(SGLANG_SIMULATE_ACC_LEN="3", SGLANG_SIMULATE_ACC_METHOD="match-expected",
                      SGLANG_SIMULATE_ACC_TOKEN_MODE="fixed")
    try:
        with scheduler_env({"ORTHRUS_BLOCK_POLICY": "adaptive", "ORTHRUS_BLOCK_SIZES": "1"}):
            engine = engine_factory(checkpoint, speculative_algorithm="ORTHRUS", skip_tokenizer_init=True)
    finally:
        for key in ("SGLANG_SIMULATE_ACC_LEN", "SGLANG_SIMULATE_ACC_METHOD", "SGLANG_SIMULATE_ACC_TOKEN_MODE"):
            os.environ.pop(key)
    prompts = [[40, 41, 42], [7, 8]]
    outs = engine.generate(input_ids=prompts, sampling_params={"temperature": 0, "max_new_tokens": 13, "ignore_eos": True})
    reference = ReferenceEngine(checkpoint, block_size=4, max_batch_size=2)
    ar = [r.token_ids for r in reference.generate(prompts, SamplingParams(max_new_tokens=13, ignore_eos=True),
                                                  ar_only=True)]
    assert [out["output_ids"] for out in outs] == ar
    assert [out["meta_info"]["spec_verify_ct"] for out in outs] == [12, 12]  # one token a step after the first
