"""ORTHRUS in real SGLang on a CUDA GPU (triton attention, CUDA graphs, overlap scheduler).

Run on the GPU host with scripts/gpu_tests.sh (SGLang from the carried wheelhouse).
(b) reference engine == SGLang ORTHRUS on the same tiny checkpoint, in fp16 (SGLang's CUDA RMSNorm
    has no fp32 kernel; fp16 keeps 3 more mantissa bits than bf16);
(c) concurrency 32 with shared prefixes, radix cache on vs off: same outputs;
(d) CUDA graphs on vs off: same drafts (same tokens and same per-request accept histograms);
(a) bf16, --enable-deterministic-inference: ORTHRUS vs the same server without speculation,
    >= 99% of 64 prompts identical, on the tiny model and on a Qwen3-8B-shaped dummy model.
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


def launch(model_path, **overrides):
    import sglang

    args = dict(model_path=str(model_path), attention_backend="triton", sampling_backend="pytorch",
                mem_fraction_static=0.35, skip_tokenizer_init=True, random_seed=0, log_level="error",
                cuda_graph_max_bs_decode=32, custom_sigquit_handler=_raise_on_sigquit)
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
    return [o["output_ids"] for o in outs], [o["meta_info"].get("spec_accept_histogram") for o in outs]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from orthrus_sglang.testing import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("gpu-tiny"), diff_from_ar=True, block_size=BLOCK,
                                 max_position_embeddings=2048)


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


def test_b_reference_engine_equals_sglang(half_results):
    tokens, hists = half_results["graphs_radix"]
    ref_tokens, ref_hists = half_results["reference"]
    same = report("(b) fp16 reference engine vs SGLang ORTHRUS", tokens, ref_tokens)
    dump_dir = os.environ.get("ORTHRUS_GPU_REPORT_DIR")
    if dump_dir:  # same layout as test (a)'s dump: scripts/divergence_gaps.py reads both
        prompts = prompts_for(32, 260, shared_prefix=24)
        Path(dump_dir, "b_tiny_float16.json").write_text(json.dumps({"prompts": prompts, "ar": ref_tokens,
                                                                     "orthrus": tokens}))
    same_drafts = sum(_same_hist(h, r) for h, r in zip(hists, ref_hists))
    print(f"[gpu] (b) {same_drafts}/32 same accept histograms")
    assert same == 32
    assert sum(sum(h[1:]) for h in ref_hists) > 0, "the test needs accepted drafts"


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


@pytest.mark.parametrize("model, dtype", [("tiny", "bfloat16"), ("tiny", "float16"), ("qwen3-8b-shape", "bfloat16")])
def test_a_deterministic_orthrus_equals_ar(model, dtype, tiny, tmp_path_factory):
    if model == "tiny":
        path, vocab, extra = tiny, 260, {}
    else:
        path, vocab, extra = write_8b_shaped_config(tmp_path_factory.mktemp("q8b")), 151936, dict(load_format="dummy")
    prompts = prompts_for(64, vocab, seed=1)
    outputs = {}
    for name, spec in [("ar", {}), ("orthrus", dict(speculative_algorithm="ORTHRUS"))]:
        engine = launch(path, dtype=dtype, enable_deterministic_inference=True, **extra, **spec)
        try:
            outputs[name] = run(engine, prompts, 64)[0]
        finally:
            engine.shutdown()
    same = report(f"(a) {model} {dtype} deterministic, ORTHRUS vs AR", outputs["ar"], outputs["orthrus"])
    dump_dir = os.environ.get("ORTHRUS_GPU_REPORT_DIR")
    if dump_dir:  # the raw sequences, to examine the differing ones off the GPU host
        Path(dump_dir, f"a_{model}_{dtype}.json").write_text(json.dumps({"prompts": prompts, **outputs}))
    assert same >= 0.99 * 64
