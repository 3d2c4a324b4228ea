"""The quickstart's demo model (trained view) through real SGLang on a GPU: real, unpinned acceptance.

    python -m bench.demo_sglang --gguf PATH [--prompts 64] [--max-new-tokens 256] [--block-size 16] \\
        [--concurrency 1,32] [--temperature 0.7] [--no-identity] [--attention-backend flashinfer] \\
        [--draft-weights bf16,fp8] [--modes ar,orthrus,orthrus-sd,orthrus-adaptive-ag,...] --out-dir DIR

PATH: SmolLM2-135M-Instruct.Q4_1.gguf, or its prefix when split into PATH.part-* (GPU transfers).
The checkpoint is the one `orthrus serve` builds (demo.py, trained view applied). Held-out prompts
of the shipped prompt set, chat template, greedy unless said, EOS honoured (real lengths):
1. speed: AR vs ORTHRUS B at each concurrency: total tokens/s, tau, acceptance per position;
2. identity: AR vs ORTHRUS, both with --enable-deterministic-inference (bf16): the fraction of
   outputs identical to AR (--no-identity skips it);
3. sampling at --temperature, at each concurrency: AR vs ORTHRUS with greedy drafts (target-only
   verification) vs ORTHRUS with drafts sampled from q (--speculative-use-rejection-sampling):
   tau and tokens/s;
4. each --draft-weights kind besides bf16 (ORTHRUS_DRAFT_WEIGHTS): ORTHRUS with those draft
   weights, greedy, at each concurrency: the real acceptance they cost, and their speed;
5. --modes (bench.throughput's names): orthrus-adaptive (ORTHRUS_BLOCK_POLICY=adaptive: each step
   picks its block size, 1 = an AR step), -ag (ORTHRUS_ACCEPT_GRAPHS=1), -sd (drafts from q); a mode
   whose greedy twin also runs (orthrus-ag: orthrus) measures sampling only; orthrus-ar-steps (every step
   B=1 through the ORTHRUS worker, no draft pass: the floor adaptive falls back to, against AR's step).
   --adaptive adds orthrus-adaptive, --accept-graphs orthrus-ag and orthrus-sd-ag.
Writes results.json and results.md to --out-dir.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from .engine_metrics import EngineMetrics, block_mix, steps_between
from .record import ORTHRUS_MODES, SAMPLING_ONLY


def _raise(signum, frame):
    raise RuntimeError("an SGLang child process failed")


def launch(model: Path, max_concurrency: int, attention_backend: str, draft_weights: str = "bf16",
           block_policy: str = "fixed", accept_graphs: bool = False, block_sizes: str | None = None,
           metrics: EngineMetrics | None = None, **flags):
    """An engine; ``draft_weights``, ``block_policy``, ``accept_graphs``, ``block_sizes``: ORTHRUS_DRAFT_WEIGHTS,
    ORTHRUS_BLOCK_POLICY, ORTHRUS_ACCEPT_GRAPHS, ORTHRUS_BLOCK_SIZES, read by the scheduler process it spawns;
    ``metrics``: --enable-metrics into its files."""
    import sglang

    from orthrus_sglang.sgl.options import scheduler_env

    env = {"ORTHRUS_DRAFT_WEIGHTS": draft_weights, "ORTHRUS_BLOCK_POLICY": block_policy,
           "ORTHRUS_ACCEPT_GRAPHS": "1" if accept_graphs else None, "ORTHRUS_BLOCK_SIZES": block_sizes,
           "PROMETHEUS_MULTIPROC_DIR": None}
    if metrics is not None:
        env.update(metrics.env)
        flags.update(metrics.engine_flags)
    with scheduler_env(env):
        return sglang.Engine(model_path=str(model), dtype="bfloat16", attention_backend=attention_backend,
                             sampling_backend="pytorch", skip_tokenizer_init=True, mem_fraction_static=0.5,
                             max_running_requests=max_concurrency, cuda_graph_max_bs_decode=max_concurrency,
                             cuda_graph_backend_prefill="disabled", random_seed=0, log_level="error",
                             custom_sigquit_handler=_raise, **flags)


def run(engine, prompts: list[list[int]], concurrency: int, sampling: dict, metrics: EngineMetrics | None = None) -> dict:
    """Closed loop at ``concurrency``; request i is seeded i. Returns outputs, wall time and acceptance (and with
    ``metrics``, the request-steps per block size the run took)."""
    import asyncio

    async def all_requests():
        gate = asyncio.Semaphore(concurrency)

        async def one(i, ids):
            async with gate:
                return await engine.async_generate(input_ids=ids, sampling_params={**sampling, "sampling_seed": i})

        return await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))

    blocks = metrics.block_sizes() if metrics is not None else None
    start = time.perf_counter()
    outs = engine.loop.run_until_complete(all_requests())
    wall = time.perf_counter() - start
    steps_by_block_size = steps_between(blocks, metrics.block_sizes()) if metrics is not None else {}
    hist = [0] * 64
    for o in outs:
        for n, c in enumerate(o["meta_info"].get("spec_correct_drafts_histogram") or []):
            hist[n] += c
    hist = hist[: max((n + 1 for n, c in enumerate(hist) if c), default=0)]
    steps = sum(hist)
    tokens = sum(len(o["output_ids"]) for o in outs)
    return {"outputs": [o["output_ids"] for o in outs], "tokens": tokens, "wall_s": wall, "tok_s": tokens / wall,
            "tau": sum((n + 1) * c for n, c in enumerate(hist)) / steps if steps else 1.0, "verify_steps": steps,
            "accept_histogram": hist, "steps_by_block_size": steps_by_block_size,
            "acceptance_per_position": [sum(hist[n + 1:]) / steps for n in range(len(hist) - 1)] if steps else []}


# --modes names (bench.throughput's, record.ORTHRUS_MODES): the engines' labels in results.json
LABELS = {"ar": "AR", "orthrus": "ORTHRUS", "orthrus-sd": "ORTHRUS sampled drafts",
          "orthrus-adaptive": "ORTHRUS adaptive", "orthrus-ag": "ORTHRUS accept graphs",
          "orthrus-sd-ag": "ORTHRUS sampled drafts accept graphs", "orthrus-adaptive-ag": "ORTHRUS adaptive accept graphs",
          "orthrus-ar-steps": "ORTHRUS AR steps"}


def engine_configs(modes: list[str], orthrus: dict) -> list[tuple[str, dict, str | None]]:
    """(label, engine flags, label of the greedy twin in this run or None) per mode, AR first. A mode whose
    greedy twin runs too measures sampling only: its greedy step is the twin's."""
    unknown = [m for m in modes if m not in LABELS]
    if unknown:
        raise ValueError(f"--modes: unknown {', '.join(unknown)} (known: {', '.join(LABELS)})")
    if "ar" not in modes:
        raise ValueError("--modes must include ar: every speed is against it")
    out = [("AR", {}, None)]
    for m in dict.fromkeys(modes):
        if m == "ar":
            continue
        fields = ORTHRUS_MODES[m]
        flags = {**orthrus, **{k: v for k, v in fields.items() if k != "sampled_drafts"}}
        if fields.get("sampled_drafts"):
            flags["speculative_use_rejection_sampling"] = True
        greedy = {k: v for k, v in fields.items() if k not in SAMPLING_ONLY}
        twin = next(name for name, f in ORTHRUS_MODES.items() if f == greedy)
        out.append((LABELS[m], flags, LABELS[twin] if twin != m and twin in modes else None))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--work-dir", default="/tmp/orthrus-demo")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--c1-prompts", type=int, default=None, help="prompts of the concurrency-1 runs (default all)")
    ap.add_argument("--deterministic-only", action="store_true", help="one AR and one ORTHRUS engine, both with "
                    "--enable-deterministic-inference: speed (so labelled) and identity from the same runs; no sampling")
    ap.add_argument("--no-identity", action="store_true", help="skip step 2 (two engine starts): speed and "
                    "sampling only")
    ap.add_argument("--attention-backend", default="flashinfer", help="every engine's (flashinfer: the faster one "
                    "for AR and ORTHRUS on an H100; triton: the runs before 2026-12-07)")
    ap.add_argument("--draft-weights", default="bf16", help="comma list of ORTHRUS_DRAFT_WEIGHTS kinds; each besides "
                    "bf16 adds an ORTHRUS engine with those draft weights (greedy speed and tau)")
    ap.add_argument("--modes", default="ar,orthrus,orthrus-sd", help=f"comma list of {', '.join(LABELS)} "
                    "(bench.throughput's names; -sd: drafts from q, -ag: ORTHRUS_ACCEPT_GRAPHS=1, adaptive: "
                    "ORTHRUS_BLOCK_POLICY=adaptive)")
    ap.add_argument("--adaptive", action="store_true", help="add ORTHRUS_BLOCK_POLICY=adaptive (each step picks its "
                    "block size from 1, 2, 4, .. --block-size): greedy and sampled speed, like ORTHRUS")
    ap.add_argument("--accept-graphs", action="store_true", help="add ORTHRUS with ORTHRUS_ACCEPT_GRAPHS=1 (sampled "
                    "acceptance replayed from CUDA graphs), greedy and sampled drafts")
    ap.add_argument("--enable-metrics", action=argparse.BooleanOptionalAction, default=True,
                    help="time engines with --enable-metrics, as the README's serve command (the series' host work "
                         "is part of a step); the block sizes an adaptive ORTHRUS ran are read from them")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args(argv)
    from orthrus_sglang.draft_weights import check_kind

    try:
        low = [check_kind(k.strip()) for k in args.draft_weights.split(",") if k.strip() not in ("", "bf16")]
    except ValueError as exc:
        ap.error(str(exc))
    if args.deterministic_only and args.no_identity:
        ap.error("--deterministic-only measures identity: it cannot take --no-identity")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    modes += ["orthrus-adaptive"] * args.adaptive + ["orthrus-ag", "orthrus-sd-ag"] * args.accept_graphs
    try:
        engine_configs(modes, {})
    except ValueError as exc:
        ap.error(str(exc))
    if args.deterministic_only and "orthrus" not in modes:
        ap.error("--deterministic-only compares AR with ORTHRUS: --modes must include orthrus")
    levels = [int(c) for c in args.concurrency.split(",")]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    import torch
    from transformers import AutoTokenizer

    from orthrus_sglang.demo import ensure_demo_model_from
    from orthrus_sglang.prompting import encode_prompt
    from orthrus_sglang.train.prompt_set import prompt_set

    model = ensure_demo_model_from(args.gguf, args.work_dir, block_size=args.block_size)
    tokenizer = AutoTokenizer.from_pretrained(model)
    prompts = [encode_prompt(tokenizer, p["prompt"]) for p in prompt_set("heldout", args.prompts)]
    greedy = {"temperature": 0.0, "max_new_tokens": args.max_new_tokens}
    sampled = {"temperature": args.temperature, "top_p": args.top_p, "max_new_tokens": args.max_new_tokens}
    orthrus = dict(speculative_algorithm="ORTHRUS", speculative_num_draft_tokens=args.block_size)
    top = max(levels)
    results = {"hardware": torch.cuda.get_device_name(), "model": str(model), "block_size": args.block_size,
               "prompts": len(prompts), "max_new_tokens": args.max_new_tokens, "dtype": "bfloat16",
               "attention_backend": args.attention_backend, "runs": []}

    def record(label, mode, concurrency, sampling, r):
        row = {"label": label, "mode": mode, "concurrency": concurrency, "temperature": sampling["temperature"],
               **{k: v for k, v in r.items() if k != "outputs"}}
        results["runs"].append(row)
        (out_dir / "results.json").write_text(json.dumps(results, indent=1))  # kept if a later engine fails
        print(f"[demo_sglang] {label}: c{concurrency} T={sampling['temperature']} {r['tokens']} tokens "
              f"{r['tok_s']:.0f} tok/s tau {r['tau']:.2f}", flush=True)
        return r

    configs = engine_configs(modes, orthrus)
    results["deterministic_speed_runs"] = args.deterministic_only
    outputs, identity = {}, {}

    def warm_up(engine, samplings):
        """Every concurrency once, untimed: first uses at a batch size compile kernels and capture graphs."""
        for sampling in samplings:
            for c in levels:
                run(engine, prompts[: max(c, 4)], c, {**sampling, "max_new_tokens": 16})

    def subset(c):
        return prompts[: args.c1_prompts] if c == 1 and args.c1_prompts else prompts

    def speed(engine, name, metrics):
        for c in levels:
            outputs[(name, c)] = record(name, name, c, greedy, run(engine, subset(c), c, greedy, metrics))["outputs"]

    metrics_root = tempfile.TemporaryDirectory(prefix="orthrus-demo-metrics-")

    def start_timed(**flags):
        """An engine whose runs are timed: with --enable-metrics (the default) like the README's serve command."""
        metrics = EngineMetrics(metrics_root.name) if args.enable_metrics else None
        return launch(model, top, args.attention_backend, metrics=metrics, **flags), metrics

    pair = [(name, flags) for name, flags, _ in configs if name in ("AR", "ORTHRUS")]  # identity compares these
    for name, flags, twin in configs if not args.deterministic_only else [(*c, None) for c in pair]:  # 1 and 3
        if args.deterministic_only:
            flags = {**flags, "enable_deterministic_inference": True}
        engine, metrics = start_timed(**flags)
        try:
            warm_up(engine, [greedy] if args.deterministic_only else [greedy, sampled])
            if twin is None:  # the others' greedy step is a twin's in this run
                speed(engine, name, metrics)
            if args.deterministic_only:
                identity[name] = outputs[(name, top)]
            else:
                for c in levels:
                    record(f"{name} T={args.temperature}", name, c, sampled,
                           run(engine, subset(c), c, sampled, metrics))
        finally:
            engine.shutdown()
    for name, flags in [] if args.deterministic_only or args.no_identity else pair:  # 2: bf16, deterministic
        engine = launch(model, top, args.attention_backend, enable_deterministic_inference=True, **flags)
        try:
            identity[name] = run(engine, prompts, top, greedy)["outputs"]
        finally:
            engine.shutdown()
    for kind in low:  # 4: low-precision draft weights, greedy
        engine, metrics = start_timed(draft_weights=kind, **orthrus)
        try:
            warm_up(engine, [greedy])
            for c in levels:
                r = record(f"ORTHRUS {kind} drafts", f"ORTHRUS {kind}", c, greedy,
                           run(engine, subset(c), c, greedy, metrics))
                results.setdefault("draft_weights_identical", {})[f"{kind} c{c}"] = sum(
                    a == b for a, b in zip(outputs[("AR", c)], r["outputs"]))
        finally:
            engine.shutdown()
    metrics_root.cleanup()
    if "AR" in identity and "ORTHRUS" in identity:
        same = sum(a == b for a, b in zip(identity["AR"], identity["ORTHRUS"]))
        results["deterministic_identical"] = {"identical": same, "of": len(prompts)}
        print(f"[demo_sglang] deterministic inference, bf16: {same}/{len(prompts)} ORTHRUS outputs identical to AR",
              flush=True)
    results["speed_runs_identical"] = {str(c): sum(a == b for a, b in zip(outputs[("AR", c)], outputs[("ORTHRUS", c)]))
                                       for c in levels if ("ORTHRUS", c) in outputs}
    for label in ("ORTHRUS adaptive", "ORTHRUS adaptive accept graphs"):  # bf16, not deterministic: near-ties
        if (label, top) in outputs:                                        # may round apart
            results["adaptive_identical"] = {str(c): sum(a == b for a, b in zip(outputs[("AR", c)], outputs[(label, c)]))
                                             for c in levels}
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    (out_dir / "results.md").write_text(render(results))
    print(render(results))
    return 0


def render(results: dict) -> str:
    runs = results["runs"]
    ar = {(r["concurrency"], r["temperature"]): r["tok_s"] for r in runs if r["mode"] == "AR"}
    lines = [f"Demo model (SmolLM2-135M-Instruct + trained view), {results['hardware']}, SGLang, bf16, "
             f"{results['attention_backend']}, CUDA graphs; {results['prompts']} held-out prompts, up to "
             f"{results['max_new_tokens']} new tokens, EOS honoured; B={results['block_size']}.", "",
             "| mode | concurrency | temperature | tokens | tok/s | x AR | tau | acceptance by position (first 6) "
             "| block sizes (adaptive) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        base = ar.get((r["concurrency"], r["temperature"]))
        speedup = f"{r['tok_s'] / base:.2f}x" if base else "-"
        blocks = block_mix(r.get("steps_by_block_size") or {}) if "adaptive" in r["label"] else ""
        lines.append(f"| {r['label']} | {r['concurrency']} | {r['temperature']:g} | {r['tokens']} | {r['tok_s']:.0f} | "
                     f"{speedup} | {r['tau']:.2f} | {' '.join(f'{a:.2f}' for a in r['acceptance_per_position'][:6])} "
                     f"| {blocks} |")
    d = results.get("deterministic_identical")
    identity = (f"Identical to AR with --enable-deterministic-inference (bf16): {d['identical']}/{d['of']}. " if d
                else "Identity with deterministic inference: not measured in this run (--no-identity). ")
    lines += ["", identity + f"The speed runs{' (deterministic inference on)' if results['deterministic_speed_runs'] else ''}: "
              f"{results['speed_runs_identical']} identical per concurrency (greedy, bf16)."]
    if results.get("draft_weights_identical"):  # not deterministic inference: bf16 near-ties may round apart
        lines += ["", f"Low-precision draft weights, outputs identical to the AR speed run's: "
                  f"{results['draft_weights_identical']} (of {results['prompts']} each)."]
    if results.get("adaptive_identical"):
        lines += ["", f"ORTHRUS adaptive (ORTHRUS_BLOCK_POLICY=adaptive, sizes 1, 2, 4, .. B), outputs identical to "
                  f"the AR speed run's: {results['adaptive_identical']} (of {results['prompts']} each)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
