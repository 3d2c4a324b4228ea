"""ORTHRUS in real SGLang on a CUDA GPU (triton attention, CUDA graphs, overlap scheduler).

Run on the GPU host with scripts/gpu_tests.sh (SGLang from the carried wheelhouse).
(b) reference engine == SGLang ORTHRUS on the same tiny checkpoint: in fp32 every token and every
    accept histogram (so every draft) equal; in fp16, outputs differ only at near-ties;
(c) concurrency 32 with shared prefixes, radix cache on vs off: same outputs;
(d) CUDA graphs on vs off: same drafts (same tokens and same per-request accept histograms);
(a) --enable-deterministic-inference: ORTHRUS vs the same server without speculation, 64 prompts:
    >= 99% identical in fp32 (tiny model) and bf16 (Qwen3-8B-shaped dummy model); on the tiny
    random model in bf16/fp16 the count is reported and every difference must be a near-tie;
(e) flashinfer attention: tokens equal the reference engine up to fp16 near-ties, accept histograms too;
(h) a block size per step (ORTHRUS_BLOCK_POLICY cycle / adaptive), each size in its own CUDA graphs.

Near-tie: the fp32 logit gap between the two tokens chosen where the outputs first differ is below
TIE_ULPS units of the dtype's rounding (eps). The verify pass (B tokens, extend kernels) and plain
decode (1 token, decode kernels) sum in different orders, so in bf16 they can only agree where the
top-2 logits are further apart than the rounding; a random-weight tiny model has flat logits (median
top-2 gap ~0.3), so it meets such ties often. A real bug lands at any gap; fp32 shows none.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu
BLOCK = 4


def _raise_on_sigquit(signum, frame):
    raise RuntimeError("an SGLang child process failed (SIGQUIT)")


TIE_ULPS = 16


def launch(model_path, **overrides):
    import sglang

    if overrides.get("dtype") == "float32":  # triton's tl.dot would round fp32 attention to tf32
        os.environ["TRITON_F32_DEFAULT"] = "ieee"

    args = dict(model_path=str(model_path), attention_backend="triton", sampling_backend="pytorch",
                mem_fraction_static=0.35, skip_tokenizer_init=True, random_seed=0, log_level="error",
                cuda_graph_max_bs_decode=32, cuda_graph_backend_prefill="disabled",  # decode graphs only: faster starts
                custom_sigquit_handler=_raise_on_sigquit)
    args.update(overrides)
    start = time.perf_counter()
    engine = sglang.Engine(**args)
    print(f"\n[gpu] engine start {time.perf_counter() - start:.1f} s: {overrides}", flush=True)
    return engine


def prompts_for(n: int, vocab: int, seed: int = 0, shared_prefix: int = 0) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    prefix = torch.randint(0, vocab - 8, (shared_prefix,), generator=gen).tolist()
    return [prefix + torch.randint(0, vocab - 8, (4 + i % 13,), generator=gen).tolist() for i in range(n)]


def run(engine, prompts, max_new_tokens):
    outs = engine.generate(input_ids=prompts, sampling_params={"temperature": 0.0, "max_new_tokens": max_new_tokens,
                                                               "ignore_eos": True})
    return [o["output_ids"] for o in outs], [o["meta_info"].get("spec_correct_drafts_histogram") for o in outs]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from orthrus_sglang.testing import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("gpu-tiny"), diff_from_ar=True, block_size=BLOCK,
                                 max_position_embeddings=2048)


def reference_model(path, dtype=torch.float32):
    from orthrus_sglang.ref.loader import load_model

    return load_model(path, device="cuda", dtype=dtype)


def assert_near_ties(label, path, prompts, a, b, dtype: str):
    """Every differing sequence first differs where the fp32 top-2 logits are within rounding."""
    from orthrus_sglang.testing import near_tie_report

    r = near_tie_report(reference_model(path), prompts, a, b)
    tol = TIE_ULPS * torch.finfo(getattr(torch, dtype)).eps
    print(f"[gpu] {label}: fp32 gap at each first difference {[round(g, 4) for g in r['gaps']]} "
          f"(percentile among all {len(r['top2_gaps'])} top-2 gaps: {[round(p, 1) for p in r['percentile_of_gaps']]}); "
          f"near-tie bound {tol:.4f}; fp32 argmax sides with {r['fp32_sides']}")
    assert all(g < tol for g in r["gaps"]), f"{label}: a difference that is not a near-tie: {r['gaps']}"


@pytest.fixture(scope="module")
def fp32_results(tiny):
    """Tiny model, fp32: SGLang ORTHRUS (graphs, radix) and the reference engine, exact arithmetic paths."""
    prompts = prompts_for(32, 260, shared_prefix=24)
    engine = launch(tiny, dtype="float32", speculative_algorithm="ORTHRUS", enable_deterministic_inference=True)
    try:
        run(engine, prompts[:4], 8)
        sgl = run(engine, prompts, 48)
    finally:
        engine.shutdown()
    from orthrus_sglang import SamplingParams
    from orthrus_sglang.ref.engine import Engine

    refs = Engine(tiny, device="cuda", dtype=torch.float32, block_size=BLOCK, max_batch_size=32).generate(
        prompts, SamplingParams(max_new_tokens=48, ignore_eos=True))
    return {"sglang": sgl, "reference": ([r.token_ids for r in refs], [r.stats.accept_length_histogram for r in refs])}


@pytest.fixture(scope="module")
def half_results(tiny):
    """Tiny model, fp16: ORTHRUS with graphs+radix, ORTHRUS with neither, and the reference engine."""
    prompts = prompts_for(32, 260, shared_prefix=24)  # 32 concurrent requests sharing a 24-token prefix
    results = {}
    for name, extra in [("graphs_radix", {}), ("eager_noradix", dict(disable_cuda_graph=True,
                                                                      disable_radix_cache=True))]:
        engine = launch(tiny, dtype="float16", speculative_algorithm="ORTHRUS", enable_deterministic_inference=True,
                        **extra)
        try:
            run(engine, prompts[:4], 8)  # warm the radix tree with part of the shared prefix
            results[name] = run(engine, prompts, 48)
        finally:
            engine.shutdown()
    from orthrus_sglang import SamplingParams
    from orthrus_sglang.ref.engine import Engine

    ref = Engine(tiny, device="cuda", dtype=torch.float16, block_size=BLOCK, max_batch_size=32)
    refs = ref.generate(prompts, SamplingParams(max_new_tokens=48, ignore_eos=True))
    results["reference"] = ([r.token_ids for r in refs], [r.stats.accept_length_histogram for r in refs])
    return results


def first_divergence(a: list[int], b: list[int]):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


def report(label, xs, ys):
    same = sum(x == y for x, y in zip(xs, ys))
    where = [first_divergence(x, y) for x, y in zip(xs, ys) if x != y]
    print(f"[gpu] {label}: {same}/{len(xs)} identical; first differing token index of the others: {where}")
    return same


def _same_hist(sgl, ref):
    return sgl == ref[: len(sgl)] and not any(ref[len(sgl):])


def test_b_reference_engine_equals_sglang_fp32(fp32_results):
    tokens, hists = fp32_results["sglang"]
    ref_tokens, ref_hists = fp32_results["reference"]
    same = report("(b) fp32 reference engine vs SGLang ORTHRUS", tokens, ref_tokens)
    same_drafts = sum(_same_hist(h, r) for h, r in zip(hists, ref_hists))
    print(f"[gpu] (b) fp32: {same_drafts}/32 same accept histograms")
    assert same == 32 and same_drafts == 32
    assert sum(sum(h[1:]) for h in ref_hists) > 0, "the test needs accepted drafts"


def test_b_reference_engine_vs_sglang_fp16_near_ties_only(half_results, tiny):
    tokens, hists = half_results["graphs_radix"]
    ref_tokens, ref_hists = half_results["reference"]
    same = report("(b) fp16 reference engine vs SGLang ORTHRUS", tokens, ref_tokens)
    dump_dir = os.environ.get("ORTHRUS_GPU_REPORT_DIR")
    if dump_dir:  # same layout as test (a)'s dump: scripts/divergence_gaps.py reads both
        prompts = prompts_for(32, 260, shared_prefix=24)
        Path(dump_dir, "b_tiny_float16.json").write_text(json.dumps({"prompts": prompts, "ar": ref_tokens,
                                                                     "orthrus": tokens}))
    same_drafts = sum(_same_hist(h, r) for h, r in zip(hists, ref_hists))
    print(f"[gpu] (b) fp16: {same_drafts}/32 same accept histograms")
    assert_near_ties("(b) fp16", tiny, prompts_for(32, 260, shared_prefix=24), ref_tokens, tokens, "float16")


def test_c_radix_on_off_same_outputs(half_results):
    on, _ = half_results["graphs_radix"]
    off, _ = half_results["eager_noradix"]
    report("(c) concurrency 32, radix on vs off", on, off)
    assert on == off


def test_d_cuda_graphs_on_off_same_drafts(half_results):
    on_tokens, on_hists = half_results["graphs_radix"]
    off_tokens, off_hists = half_results["eager_noradix"]
    report("(d) graphs on vs off, tokens", on_tokens, off_tokens)
    print(f"[gpu] (d) graphs on vs off: {sum(a == b for a, b in zip(on_hists, off_hists))}/32 same accept histograms")
    assert on_hists == off_hists and on_tokens == off_tokens


QWEN3_8B_SHAPE = dict(architectures=["OrthrusLM"], model_type="orthrus", vocab_size=151936, hidden_size=4096,
                      intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                      head_dim=128, max_position_embeddings=40960, rms_norm_eps=1e-6, tie_word_embeddings=False,
                      rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, hidden_act="silu",
                      attention_bias=False, torch_dtype="bfloat16", block_size=32, mask_token_id=151669,
                      eos_token_id=151645, bos_token_id=151643, backbone="qwen3")


def write_8b_shaped_config(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(QWEN3_8B_SHAPE))
    return path


@pytest.mark.parametrize("model, dtype", [("tiny", "float32"), ("tiny", "bfloat16"), ("tiny", "float16"),
                                          ("qwen3-8b-shape", "bfloat16")])
def test_a_deterministic_orthrus_equals_ar(model, dtype, tiny, tmp_path_factory):
    if model == "tiny":
        path, vocab, extra = tiny, 260, {}
    else:
        path, vocab, extra = write_8b_shaped_config(tmp_path_factory.mktemp("q8b")), 151936, dict(load_format="dummy")
    prompts = prompts_for(64, vocab, seed=1)
    outputs = {}
    runs = [("ar", {}), ("orthrus", dict(speculative_algorithm="ORTHRUS"))]
    if dtype == "bfloat16":  # fp8 (w8a8) and int4 (Marlin) draft weights in bf16: output must not change either
        runs += [("orthrus_fp8", dict(speculative_algorithm="ORTHRUS")), ("orthrus_int4", dict(speculative_algorithm="ORTHRUS"))]
    for name, spec in runs:
        os.environ["ORTHRUS_DRAFT_WEIGHTS"] = name.split("_")[1] if "_" in name else "bf16"
        engine = launch(path, dtype=dtype, enable_deterministic_inference=True, **extra, **spec)
        try:
            outputs[name] = run(engine, prompts, 64)[0]
        finally:
            engine.shutdown()
            os.environ.pop("ORTHRUS_DRAFT_WEIGHTS")
    dump_dir = os.environ.get("ORTHRUS_GPU_REPORT_DIR")
    if dump_dir:  # the raw sequences, to examine the differing ones off the GPU host
        Path(dump_dir, f"a_{model}_{dtype}.json").write_text(json.dumps({"prompts": prompts, **outputs}))
    for name in outputs.keys() - {"ar"}:
        same = report(f"(a) {model} {dtype} deterministic, {name} vs AR", outputs["ar"], outputs[name])
        if model == "tiny" and dtype != "float32":
            assert_near_ties(f"(a) tiny {dtype} {name}", path, prompts, outputs["ar"], outputs[name], dtype)
        else:
            assert same >= 0.99 * 64, name


def test_f_fp8_drafts_cuda_graphs_on_off_same_drafts(tiny):
    """(f) fp8 drafts, bf16: CUDA graphs on and off give the same tokens and the same drafts."""
    prompts = prompts_for(32, 260, shared_prefix=24)
    results = {}
    os.environ["ORTHRUS_FP8_DRAFTS"] = "1"
    try:
        for name, extra in [("graphs", {}), ("eager", dict(disable_cuda_graph=True))]:
            engine = launch(tiny, dtype="bfloat16", speculative_algorithm="ORTHRUS",
                            enable_deterministic_inference=True, **extra)
            try:
                results[name] = run(engine, prompts, 48)
            finally:
                engine.shutdown()
    finally:
        os.environ.pop("ORTHRUS_FP8_DRAFTS")
    (on_tokens, on_hists), (off_tokens, off_hists) = results["graphs"], results["eager"]
    report("(f) fp8 drafts, graphs on vs off, tokens", on_tokens, off_tokens)
    assert on_tokens == off_tokens and on_hists == off_hists
    assert sum(sum(h[1:]) for h in on_hists) > 0, "the test needs accepted drafts"


@pytest.fixture(scope="module")
def tiny128(tmp_path_factory):
    """flashinfer's kernels need head_dim 64/128/256: the tiny model with head_dim 128."""
    from orthrus_sglang.testing import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("gpu-tiny128"), diff_from_ar=True, block_size=BLOCK,
                                 max_position_embeddings=2048, hidden_size=256, intermediate_size=512,
                                 num_attention_heads=4, num_key_value_heads=2, head_dim=128)


def test_e_flashinfer_matches_reference_draft_for_draft(tiny128):
    """(e) flashinfer (graphs, radix): tokens equal the reference up to fp16 near-ties, and where the
    tokens are equal so are the accept histograms (the non-causal diffusion pass drafts the same)."""
    from orthrus_sglang import SamplingParams
    from orthrus_sglang.ref.engine import Engine

    prompts = prompts_for(32, 260, shared_prefix=24)
    engine = launch(tiny128, dtype="float16", attention_backend="flashinfer", speculative_algorithm="ORTHRUS")
    try:
        run(engine, prompts[:4], 8)
        tokens, hists = run(engine, prompts, 48)
    finally:
        engine.shutdown()
    refs = Engine(tiny128, device="cuda", dtype=torch.float16, block_size=BLOCK, max_batch_size=32).generate(
        prompts, SamplingParams(max_new_tokens=48, ignore_eos=True))
    ref_tokens, ref_hists = [r.token_ids for r in refs], [r.stats.accept_length_histogram for r in refs]
    report("(e) flashinfer fp16 vs reference engine", tokens, ref_tokens)
    equal = [i for i in range(32) if tokens[i] == ref_tokens[i]]
    same_hist = sum(_same_hist(hists[i], ref_hists[i]) for i in equal)
    print(f"[gpu] (e) among {len(equal)} identical sequences, {same_hist} have the same accept histogram; "
          f"accepted drafts: {sum(sum(h[1:]) for h in ref_hists)}")
    dump_dir = os.environ.get("ORTHRUS_GPU_REPORT_DIR")
    if dump_dir:
        Path(dump_dir, "e_tiny128_float16.json").write_text(json.dumps({"prompts": prompts, "ar": ref_tokens,
                                                                         "orthrus": tokens}))
    assert_near_ties("(e) flashinfer fp16", tiny128, prompts, ref_tokens, tokens, "float16")
    assert len(equal) >= 16 and same_hist >= 0.9 * len(equal)
    assert sum(sum(h[1:]) for h in ref_hists) > 0, "the test needs accepted drafts"


# ---- (g) sampling through the real server, CUDA graphs on --------------------------------------
SAMPLING_SETTINGS = [dict(temperature=1.0), dict(temperature=0.7, top_k=6, top_p=0.9), dict(temperature=1.0, min_p=0.15)]
V16_PROMPT = [3, 1, 4]


@pytest.fixture(scope="module")
def tiny_vocab16(tmp_path_factory):
    """A 16-token vocabulary: the exact AR joint of 3 tokens can be enumerated (4,096 cells)."""
    from orthrus_sglang.testing import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("gpu-v16"), with_tokenizer=False, vocab_size=16,
                                 mask_token_id=15, eos_token_id=14, block_size=BLOCK, seed=5, diff_from_ar=True)


@pytest.mark.parametrize("sampled_drafts,accept_graphs", [(False, False), (True, False), (True, True)],
                         ids=["target-only", "q-sampled-in-graph", "q-sampled-accept-graphs"])
def test_g_sampling_matches_exact_ar_distribution(tiny_vocab16, sampled_drafts, accept_graphs, capfd):
    """(g) fp32, CUDA graphs, overlap scheduler: 4,000 seeded requests per setting fit the exact AR
    joint (chi-square), with greedy drafts verified target-only and with drafts sampled from q
    inside the captured graph (--speculative-use-rejection-sampling), and with the acceptance
    replayed from its own CUDA graphs too (ORTHRUS_ACCEPT_GRAPHS=1). For the sampled drafts, graphs
    off (every step eager, the acceptance too) must give the very same tokens."""
    from orthrus_sglang.ref.loader import load_model
    from orthrus_sglang.testing import sglang_sampling_check

    model = load_model(tiny_vocab16)  # fp32 on the CPU: the enumeration's model
    # deterministic: block_attention's key splits do not depend on the batch, so graphs on and off
    # see bit-equal logits
    flags = dict(dtype="float32", speculative_algorithm="ORTHRUS", max_running_requests=32,
                 speculative_use_rejection_sampling=sampled_drafts, enable_deterministic_inference=True)
    from orthrus_sglang.sgl.options import scheduler_env

    name = "accept graphs" if accept_graphs else ("q-sampled" if sampled_drafts else "target-only")
    with scheduler_env({"ORTHRUS_ACCEPT_GRAPHS": "1" if accept_graphs else None}):
        engine = launch(tiny_vocab16, **flags, **(dict(log_level="info") if accept_graphs else {}))
    results = {}
    try:
        for setting in SAMPLING_SETTINGS:
            r = results[str(setting)] = sglang_sampling_check(engine, model, V16_PROMPT, setting, n=4000)
            p = r["pvalues"]
            print(f"[gpu] (g) {name} {setting}: {r['verify_steps']} verify "
                  f"steps, {r['accepted']} accepted drafts; p-values (t1,t2) {p[0]:.3g}, (t2,t3) {p[1]:.3g}, "
                  f"t3 {p[2]:.3g}" + (f"; min_p dropped {r['power_pvalue']:.3g}" if "power_pvalue" in r else ""))
            assert r["accepted"] > 0 and r["rejected_steps"] > 0
            assert min(p) > 1e-3
            if "power_pvalue" in r:
                assert r["power_pvalue"] < 1e-3
    finally:
        engine.shutdown()
    if accept_graphs:  # the scheduler's log says the acceptance ran from graphs
        out = capfd.readouterr()
        print(out.out, end="")  # this test's own lines, read along with the scheduler's log
        captured = [line for line in out.err.splitlines() if "ORTHRUS accept graph" in line]
        print(f"[gpu] (g) accept graphs captured: {len(captured)}; last: {captured[-1] if captured else None}")
        assert captured
    if sampled_drafts:
        engine = launch(tiny_vocab16, disable_cuda_graph=True, **flags)
        try:
            setting = SAMPLING_SETTINGS[1]
            eager = sglang_sampling_check(engine, model, V16_PROMPT, setting, n=512)
        finally:
            engine.shutdown()
        graphs = results[str(setting)]["outputs"][:512]
        report(f"(g) {name}, graphs on vs off, tokens", graphs, eager["outputs"])
        assert graphs == eager["outputs"]


# ---- (h) a block size chosen per step (ORTHRUS_BLOCK_POLICY), each size in its own CUDA graphs ------
@pytest.mark.parametrize("policy", ["cycle", "adaptive"])
@pytest.mark.parametrize("backend", ["triton", "flashinfer"])
def test_h_block_size_per_step_in_cuda_graphs(backend, policy, tiny, tiny128):
    """(h) every size 1..4 in turn (cycle: consecutive steps always differ; 1 = an AR step) or the adaptive
    policy, with CUDA graphs and the overlap scheduler: triton fp32 equals AR token for token; flashinfer
    fp16 differs from the reference only at near-ties; graphs off gives the same tokens (so the graphs
    of every size replay what the eager step computes)."""
    from orthrus_sglang import SamplingParams
    from orthrus_sglang.ref.engine import Engine
    from orthrus_sglang.sgl.options import scheduler_env

    path, dtype = (tiny, "float32") if backend == "triton" else (tiny128, "float16")
    prompts = prompts_for(32, 260, shared_prefix=24)
    results = {}
    with scheduler_env({"ORTHRUS_BLOCK_POLICY": policy, "ORTHRUS_BLOCK_SIZES": "1,2,3,4"}):
        for name, extra in [("graphs", {}), ("eager", dict(disable_cuda_graph=True))]:
            engine = launch(path, dtype=dtype, attention_backend=backend, speculative_algorithm="ORTHRUS",
                            enable_deterministic_inference=True, **extra)
            try:
                run(engine, prompts[:4], 8)
                results[name] = run(engine, prompts, 48)
            finally:
                engine.shutdown()
    torch_dtype = getattr(torch, dtype)
    refs = Engine(path, device="cuda", dtype=torch_dtype, block_size=BLOCK, max_batch_size=32).generate(
        prompts, SamplingParams(max_new_tokens=48, ignore_eos=True), ar_only=True)
    ar = [r.token_ids for r in refs]
    tokens, hists = results["graphs"]
    same = report(f"(h) {backend} {dtype} {policy} 1,2,3,4 graphs vs AR", ar, tokens)
    print(f"[gpu] (h) accepted drafts {sum(sum(h[1:]) for h in hists)}, verify steps {sum(sum(h) for h in hists)}")
    report(f"(h) {backend} {policy} graphs on vs off", tokens, results["eager"][0])
    if dtype == "float32":
        assert same == 32
    else:
        assert_near_ties(f"(h) {backend} {policy}", path, prompts, ar, tokens, dtype)
    if backend == "triton":  # deterministic block_attention: graphs on and off see bit-equal logits
        assert tokens == results["eager"][0]
