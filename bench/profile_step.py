"""Where one decode step's time goes, from a torch-profiler trace of SGLang's scheduler (GPU host).

    python -m bench.profile_step --mode orthrus --pin-tau 9.6 --concurrency 1
    python -m bench.profile_step --mode ar --concurrency 32 --out /tmp/prof

Starts an sgl.Engine (Qwen3-8B shape, dummy weights unless --model), warms up, asks SGLang's own
profiler for --steps decode steps (ProfileReq with profile_by_stage), runs a request batch through
them and summarises the trace: wall time per step, GPU busy time per step (union of kernel
intervals), the idle rest, the top kernels and the top CUDA runtime calls (a synchronising call
there means the CPU waited on the GPU). Modes: ar (OrthrusLM without speculation), ar-qwen3
(SGLang's own Qwen3ForCausalLM, same shape), orthrus.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.record import request_sampling
from orthrus_sglang.draft_weights import KINDS as DRAFT_KINDS
from bench.shapes import write_plain_qwen3_shape, write_shape


def _sampling(args) -> str:
    if not args.temperature:
        return "greedy"
    drafts = "drafts sampled from q" if args.sampled_drafts else "greedy drafts"
    return f"T={args.temperature:g} top_p {args.top_p:g} top_k {args.top_k} ({drafts})"


def _raise(signum, frame):
    raise RuntimeError("an SGLang child process failed")


def _union_ms(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if e > end:
            total += e - max(s, end)
            end = e
    return total / 1e3


def _span_ms(kernels: list[dict]) -> float:
    return (max(k["ts"] + k["dur"] for k in kernels) - min(k["ts"] for k in kernels)) / 1e3 if kernels else 0.0


def step_split(kernels: list[dict], runtime: list[dict]) -> dict | None:
    """Per decode step: the draft pass, the verify pass, and the kernels outside the CUDA graph.

    One step's forward is one cudaGraphLaunch; its kernels carry the launch's correlation id. In an
    ORTHRUS graph the diffusion pass ends with the drafts' argmax: up to it is the draft pass, the
    rest the verify pass (an AR graph has no argmax inside: all of it counts as verify). Kernels
    outside any graph are the step's preparation, acceptance, commit and sampling. None without
    graph launches (eager mode).
    """
    launches = {e["args"]["correlation"] for e in runtime
                if e["name"] == "cudaGraphLaunch" and "correlation" in e.get("args", {})}
    graphs: dict[int, list[dict]] = defaultdict(list)
    outside = []
    for k in kernels:
        corr = k.get("args", {}).get("correlation")
        (graphs[corr] if corr in launches else outside).append(k)
    if not graphs:
        return None
    draft = verify = 0.0
    for ks in graphs.values():
        ks.sort(key=lambda k: k["ts"])
        cut = next((i for i, k in enumerate(ks) if "ArgMax" in k["name"]), None)
        if cut is None or cut == len(ks) - 1:
            verify += _span_ms(ks)
        else:
            draft += _span_ms(ks[: cut + 1])
            verify += _span_ms(ks[cut + 1:])
    n = len(graphs)
    return {"steps": n, "draft_ms": draft / n, "verify_ms": verify / n,
            "outside_graph_ms": sum(k["dur"] for k in outside) / 1e3 / n}


def summarize_trace(path: Path, steps: int, top: int = 18) -> str:
    events = json.load(gzip.open(path) if path.suffix == ".gz" else open(path))["traceEvents"]
    kernels = [e for e in events if e.get("cat") == "kernel" and "dur" in e]
    runtime = [e for e in events if e.get("cat") == "cuda_runtime" and "dur" in e]
    if not kernels:
        return f"{path}: no kernel events"
    start, end = min(e["ts"] for e in kernels), max(e["ts"] + e["dur"] for e in kernels)
    wall = (end - start) / 1e3
    busy = _union_ms([(e["ts"], e["ts"] + e["dur"]) for e in kernels])
    by_kernel: dict[str, list[float]] = defaultdict(list)
    for e in kernels:
        by_kernel[e["name"]].append(e["dur"] / 1e3)
    by_call: dict[str, list[float]] = defaultdict(list)
    for e in runtime:
        by_call[e["name"]].append(e["dur"] / 1e3)
    lines = [f"trace {path.name}: {steps} decode steps; first to last kernel {wall:.1f} ms = {wall / steps:.2f} ms/step; "
             f"GPU busy {busy / steps:.2f} ms/step ({100 * busy / wall:.0f}%), idle {(wall - busy) / steps:.2f} ms/step; "
             f"{len(kernels) / steps:.0f} kernels/step"]
    split = step_split(kernels, runtime)
    if split:
        lines.append(f"split over {split['steps']} graph launches, per step: draft pass {split['draft_ms']:.2f} ms, "
                     f"verify pass {split['verify_ms']:.2f} ms, kernels outside the graph (prepare, accept, commit, "
                     f"sampling) {split['outside_graph_ms']:.2f} ms; the rest of the step is GPU idle (scheduler)")
    lines += ["| kernel | ms/step | calls/step |", "|---|---|---|"]
    for name, durs in sorted(by_kernel.items(), key=lambda kv: -sum(kv[1]))[:top]:
        lines.append(f"| {name[:110]} | {sum(durs) / steps:.3f} | {len(durs) / steps:.1f} |")
    lines += ["| CUDA runtime call | ms/step | calls/step |", "|---|---|---|"]
    for name, durs in sorted(by_call.items(), key=lambda kv: -sum(kv[1]))[:10]:
        lines.append(f"| {name} | {sum(durs) / steps:.3f} | {len(durs) / steps:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["ar", "ar-qwen3", "orthrus"], default="orthrus")
    ap.add_argument("--model", default=None, help="a checkpoint (default: --shape with dummy weights)")
    ap.add_argument("--shape", default="qwen3-8b")
    ap.add_argument("--block-size", type=int, default=32)
    ap.add_argument("--pin-tau", type=float, default=None)
    ap.add_argument("--draft-weights", choices=DRAFT_KINDS, default="bf16",
                    help="orthrus: what the draft pass reads (ORTHRUS_DRAFT_WEIGHTS)")
    ap.add_argument("--fp8-drafts", action="store_true", help="orthrus: --draft-weights fp8 (the older flag)")
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy; else requests sample, seeded")
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=-1, help="-1: off")
    ap.add_argument("--sampled-drafts", action="store_true", help="orthrus: drafts drawn from q "
                    "(--speculative-use-rejection-sampling)")
    ap.add_argument("--accept-graphs", action="store_true", help="orthrus: sampled acceptance replayed from CUDA "
                    "graphs (ORTHRUS_ACCEPT_GRAPHS=1)")
    ap.add_argument("--accept-rate", type=float, default=None, help="orthrus: each draft accepted with this "
                    "probability (ORTHRUS_SIMULATE_ACCEPT_RATE, geometric; NOT lossless)")
    ap.add_argument("--block-policy", choices=["fixed", "adaptive"], default="fixed",
                    help="orthrus: ORTHRUS_BLOCK_POLICY (adaptive: each step picks its size from 1, 2, 4, .. B)")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--attention-backend", default="triton")
    ap.add_argument("--enable-metrics", action=argparse.BooleanOptionalAction, default=True,
                    help="the engine with --enable-metrics, as the README's serve command (its series' host work "
                         "shows in the profile)")
    ap.add_argument("--out", default=None, help="directory for the trace and summary (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.pin_tau and args.accept_rate:
        ap.error("--pin-tau and --accept-rate both pin the acceptance: give one")

    import sglang
    import torch

    if args.fp8_drafts:
        if args.draft_weights not in ("bf16", "fp8"):
            ap.error("--fp8-drafts and --draft-weights disagree")
        args.draft_weights = "fp8"
    low = f"-{args.draft_weights}" if args.draft_weights != "bf16" else ""
    label = args.mode + low + (f"-T{args.temperature:g}" if args.temperature else "")
    label += "-sd" if args.sampled_drafts else ""
    label += "-ag" if args.accept_graphs else ""
    label += "-adaptive" if args.block_policy == "adaptive" else ""
    out = Path(args.out or tempfile.mkdtemp(prefix="orthrus-prof-"))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            path = Path(args.model)
        elif args.mode == "ar-qwen3":
            path = write_plain_qwen3_shape(args.shape, Path(tmp))
        else:
            path = write_shape(args.shape, args.block_size, Path(tmp))
        extra = {} if args.model else dict(load_format="dummy")
        if args.mode == "orthrus":
            extra.update(speculative_algorithm="ORTHRUS", speculative_num_draft_tokens=args.block_size,
                         speculative_use_rejection_sampling=args.sampled_drafts)
            os.environ.pop("ORTHRUS_FP8_DRAFTS", None)
            os.environ["ORTHRUS_DRAFT_WEIGHTS"] = args.draft_weights
            os.environ.update(ORTHRUS_ACCEPT_GRAPHS="1" if args.accept_graphs else "0",
                              ORTHRUS_BLOCK_POLICY=args.block_policy)
            if args.accept_rate:
                os.environ["ORTHRUS_SIMULATE_ACCEPT_RATE"] = str(args.accept_rate)
            if args.pin_tau:
                os.environ.update(SGLANG_SIMULATE_ACC_LEN=str(args.pin_tau), SGLANG_SIMULATE_ACC_METHOD="match-expected",
                                  SGLANG_SIMULATE_ACC_TOKEN_MODE="fixed")
        engine = sglang.Engine(model_path=str(path), attention_backend=args.attention_backend, sampling_backend="pytorch",
                               skip_tokenizer_init=True, mem_fraction_static=0.8,
                               cuda_graph_max_bs_decode=max(args.concurrency, 1),
                               cuda_graph_backend_prefill="disabled",  # decode graphs only: a faster start
                               max_running_requests=max(args.concurrency, 1), log_level="error",
                               enable_metrics=args.enable_metrics, custom_sigquit_handler=_raise, **extra)
        try:
            gen = torch.Generator().manual_seed(0)
            vocab = json.loads((path / "config.json").read_text())["vocab_size"]
            prompts = [torch.randint(100, min(100000, vocab - 1000), (args.prompt_len,), generator=gen).tolist()
                       for _ in range(args.concurrency)]
            params = {**request_sampling(args, 0, args.temperature), "ignore_eos": True}
            engine.generate(input_ids=prompts, sampling_params={**params, "max_new_tokens": 64})  # warm-up
            engine.start_profile(output_dir=str(out), num_steps=args.steps, profile_by_stage=True,
                                 profile_stages=["decode"], activities=["CPU", "GPU"], with_stack=False,
                                 record_shapes=False, profile_id=f"{label}-c{args.concurrency}")
            # enough tokens that every profiled step is a full-batch decode step
            new_tokens = (args.steps + 8) * (args.block_size if args.mode == "orthrus" else 1)
            start = time.perf_counter()
            outs = engine.generate(input_ids=prompts, sampling_params={**params, "max_new_tokens": new_tokens})
            elapsed = time.perf_counter() - start
        finally:
            engine.shutdown()
    traces = sorted(out.glob(f"{label}-c{args.concurrency}-*.trace.json*"), key=lambda p: p.stat().st_mtime)
    meta = [o["meta_info"] for o in outs]
    verify = sum(m.get("spec_verify_ct", 0) for m in meta)
    tau = sum(m["completion_tokens"] for m in meta) / verify if verify else 1.0
    header = (f"# {torch.cuda.get_device_name()}; mode {label}; {args.shape if not args.model else args.model}; "
              f"B={args.block_size if args.mode == 'orthrus' else '-'}; concurrency {args.concurrency}; "
              f"{_sampling(args)}; prompt "
              f"{args.prompt_len}; tau {tau:.2f}; metrics {'on' if args.enable_metrics else 'off'}; "
              f"profiled run (profiler overhead included): "
              f"{sum(m['completion_tokens'] for m in meta) / elapsed:.0f} tok/s")
    body = "\n\n".join(summarize_trace(t, args.steps) for t in traces if "DECODE" in t.name.upper()) or \
        f"no decode trace found in {out}: {[t.name for t in traces]}"
    text = header + "\n" + body
    (out / f"summary-{label}-c{args.concurrency}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
