"""``orthrus train`` and ``orthrus eval`` (registered by orthrus_sglang/cli.py; imports stay lazy)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_RESUMABLE = 3  # stopped at --deadline-min; the same command continues the run


def add_train_parser(sub) -> None:
    from .config import add_config_args

    p = sub.add_parser("train", help="train the diffusion view of a Qwen3/Llama or Orthrus checkpoint",
                       description="Self-distil, then train only the *_diff attention weights; base weights stay "
                                   "bit-identical. Rerunning the same command resumes from OUT/train_state.pt.")
    add_config_args(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from .config import config_from_args
    from .loop import train

    cfg = config_from_args(args)
    results = train(cfg)
    if not results["finished"]:
        print(f"stopped at the deadline during {results['stage']} (state in {cfg.out}); rerun the same command "
              f"to continue", file=sys.stderr)
        return EXIT_RESUMABLE
    final = results["final"]
    taus = ", ".join(f"B={k[1:]} {v['tau']:.2f}" for k, v in final.items() if k.startswith("B"))
    curve = Path(cfg.out) / "tau_curve.png"
    print(f"wrote {results['model']} after {results['steps']} steps ({results['train_time_s'] / 60:.1f} min); "
          f"held-out tau {taus}" + (f"; curve: {curve}" if curve.is_file() else ""))
    return 0


def add_eval_parser(sub) -> None:
    from ..cli_help import D, MODEL_HELP, THREADS_HELP
    from ..draft_weights import KINDS as DRAFT_KINDS
    from ..demo import DEMO_MODEL_ID
    from .prompts import SOURCES_HELP

    p = sub.add_parser("eval", help="held-out tau, acceptance per draft position and tokens per step (greedy)")
    p.add_argument("--model", default=DEMO_MODEL_ID, help=MODEL_HELP)
    p.add_argument("--engine", choices=["reference", "sglang", "both"], default="reference",
                   help="reference engine, SGLang (sglang.Engine, ORTHRUS) or both" + D)
    p.add_argument("--block-sizes", default="", help="comma-separated, e.g. 16,8 (default: the checkpoint's)")
    p.add_argument("--prompts", default="broad", help="held-out prompts: " + SOURCES_HELP + D)
    p.add_argument("--num-prompts", type=int, default=64, help="prompts to decode" + D)
    p.add_argument("--max-new-tokens", type=int, default=256, help="tokens decoded per prompt" + D)
    p.add_argument("--batch-size", type=int, default=16, help="reference engine: requests decoded together" + D)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ..." + D)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="reference engine dtype" + D)
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--check-ar", action="store_true", help="also decode plain AR and report the identical fraction")
    p.add_argument("--draft-weights", default="bf16", choices=list(DRAFT_KINDS),
                   help="weights the draft pass reads: the checkpoint's, or fp8 / int4 copies (ORTHRUS_DRAFT_WEIGHTS; "
                        "emulated on a CPU), or auto: fp8 where SGLang's fused fp8 kernels run (Ada/Hopper, "
                        "--engine sglang), else bf16; the verify pass always reads the checkpoint's" + D)
    p.add_argument("--json", metavar="FILE", help="also write the results to FILE (default: none)")
    p.set_defaults(func=cmd_eval)


def resolved_draft_weights(kind: str, model_dir, device: str, dtype) -> str:
    """The kind both engines of an eval run for ``kind``: itself, or for auto what an SGLang server on
    ``device`` would load for this checkpoint (draft_weights.resolve; on a CPU, bf16), so that the
    reference engine emulates that kind and the results name it."""
    import torch

    from ..draft_weights import check_kind, draft_gemm_shapes, resolve
    from ..ref.loader import load_config

    if check_kind(kind) != "auto":
        return kind
    kernels = None
    if torch.device(device).type == "cuda":
        try:
            from ..sgl.compat import fp8_w8a8_kernels

            kernels = fp8_w8a8_kernels(device)
        except ImportError:  # no SGLang: no fused kernels to pick fp8 for
            pass
    shapes = [(n, k) for _, n, k, _ in draft_gemm_shapes(load_config(model_dir).to_dict())]
    return resolve("auto", kernels, dtype, shapes)


def cmd_eval(args) -> int:
    import torch

    from ..model_dir import resolve_model_dir
    from ..ref.loader import load_config, load_model
    from ..threads import apply_threads
    from .evaluate import eval_prompts, eval_reference, eval_sglang
    from .setup import load_tokenizer

    apply_threads(args.threads)
    model_dir = resolve_model_dir(args.model)  # as generate, serve and train resolve it
    config = load_config(model_dir)
    sizes = [int(b) for b in args.block_sizes.split(",") if b.strip()] or [config.block_size]
    if any(b < 2 for b in sizes) or args.num_prompts < 1 or args.max_new_tokens < 1:
        raise ValueError("block sizes must be >= 2, --num-prompts and --max-new-tokens >= 1")
    prompts = eval_prompts(load_tokenizer(model_dir), args.prompts, args.num_prompts)
    engines = ["reference", "sglang"] if args.engine == "both" else [args.engine]
    dtype = getattr(torch, args.dtype)
    model = load_model(model_dir, device=args.device, dtype=dtype) if "reference" in engines else None
    results, ar_outputs = [], None
    if args.check_ar:  # plain AR never runs the draft pass, so the draft weights do not matter here
        ref_model = model or load_model(model_dir, device=args.device, dtype=dtype)
        ar_outputs = eval_reference(ref_model, prompts, block_size=2, max_new_tokens=args.max_new_tokens,
                                    batch_size=args.batch_size, ar_only=True).outputs
    kind = resolved_draft_weights(args.draft_weights, model_dir, args.device, dtype)
    if kind != args.draft_weights:
        print(f"[eval] --draft-weights {args.draft_weights}: {kind} drafts on {args.device} {args.dtype}", file=sys.stderr)
    low = kind != "bf16"
    if low and model is not None:
        model.quantize_drafts(kind)
    for engine in engines:
        for b in sizes:
            if engine == "reference":
                r = eval_reference(model, prompts, block_size=b, max_new_tokens=args.max_new_tokens,
                                   batch_size=args.batch_size, progress=sys.stderr.isatty())
            else:
                r = eval_sglang(str(model_dir), prompts, block_size=b, max_new_tokens=args.max_new_tokens,
                                device="cpu" if args.device == "cpu" else "cuda", draft_weights=kind)
            record = {**r.to_dict(), "draft_weights": kind}
            if kind != args.draft_weights:
                record["draft_weights_requested"] = args.draft_weights
            if ar_outputs is not None:
                record["identical_to_ar"] = sum(a == o for a, o in zip(ar_outputs, r.outputs)) / len(prompts)
            results.append(record)
            rates = " ".join(f"{x:.2f}" for x in r.acceptance_per_position)
            extra = f", identical to AR {record['identical_to_ar']:.0%}" if ar_outputs is not None else ""
            print(f"[{engine}{f', {kind} drafts' if low else ''}] B={b}: tau {r.tau:.3f}, tokens/step {r.tokens_per_step:.3f}, {r.num_prompts} prompts, "
                  f"{r.num_steps} steps{extra}\n  acceptance by draft position: {rates}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "results": results}, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orthrus_sglang.train.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_eval_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"orthrus: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
