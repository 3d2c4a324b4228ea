"""The ``orthrus`` command: generate, convert, serve, train, eval.

torch, transformers and the gateway's dependencies are imported by the command that runs, never
at parse time: `orthrus --help` and usage errors print at once (tests/test_cli.py checks it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .cli_help import D, MODEL_HELP, THREADS_HELP

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def _dtype(name: str):
    import torch

    return getattr(torch, DTYPES[name])




def add_generate_args(p: argparse.ArgumentParser) -> None:
    from .demo import DEMO_MODEL_ID

    p.add_argument("--model", default=DEMO_MODEL_ID, help=MODEL_HELP)
    p.add_argument("--prompt", required=True, help="the user message (required)")
    p.add_argument("--raw", action="store_true", help="do not apply the chat template")
    p.add_argument("--ar", action="store_true", help="plain AR decoding on the same engine (the baseline)")
    p.add_argument("--max-new-tokens", type=int, default=128, help="most tokens to generate" + D)
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature, 0: greedy" + D)
    p.add_argument("--top-k", type=int, default=0, help="keep the k likeliest tokens, 0: off" + D)
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass, 1: off" + D)
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: none, a random one)")
    p.add_argument("--block-size", type=int, default=None, help="draft block size B (default: the checkpoint's)")
    p.add_argument("--block-policy", default="fixed", choices=["fixed", "adaptive"],
                   help="fixed: every step drafts B-1 tokens; adaptive: each step picks B from 1 (AR), 2, 4, .. B "
                        "by expected tokens per second" + D)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ..." + D)
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="weights and compute dtype" + D)
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--json", action="store_true", help="print token ids, text and statistics as one JSON object")


def cmd_generate(args) -> int:
    from tqdm import tqdm

    from .prompting import encode_prompt
    from .ref.engine import Engine
    from .sampling import SamplingParams
    from .threads import apply_threads

    apply_threads(args.threads)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, seed=args.seed)
    engine = Engine(args.model, device=args.device, dtype=_dtype(args.dtype), block_size=args.block_size,
                    max_batch_size=1, max_seq_len=None, adaptive_block=args.block_policy == "adaptive")
    prompt_ids = encode_prompt(engine.tokenizer, args.prompt, raw=args.raw)
    bar = tqdm(total=params.max_new_tokens, unit="tok", desc="generating", file=sys.stderr, leave=False,
               disable=args.json or not sys.stderr.isatty())
    start = time.perf_counter()
    result = engine.generate([prompt_ids], params, ar_only=args.ar, on_step=lambda out: bar.update(len(out.new_token_ids)))[0]
    elapsed = time.perf_counter() - start
    bar.close()
    text = engine.tokenizer.decode(result.token_ids, skip_special_tokens=True)
    stats = result.stats.to_dict()
    if args.json:
        print(json.dumps({"prompt_token_ids": prompt_ids, "token_ids": result.token_ids, "text": text,
                          "finish_reason": result.finish_reason, "mode": "ar" if args.ar else "orthrus",
                          "seconds": elapsed, "stats": stats, "block_policy": engine.block_policy.snapshot()}))
        return 0
    print(text)
    print(f"\n[{'ar' if args.ar else 'orthrus'}] {stats['num_tokens']} tokens (1 from the prefill, the rest in "
          f"{stats['num_steps']} decode steps), tau {stats['tau']:.2f}, block size {stats['block_size']}, "
          f"{stats['num_tokens'] / elapsed:.1f} tok/s, finish: {result.finish_reason}", file=sys.stderr)
    if not args.ar:
        print(f"accepted per draft position: {stats['accepted_per_position']}\n"
              f"accept-length histogram (n drafts accepted -> steps): {stats['accept_length_histogram']}", file=sys.stderr)
        if engine.block_policy.is_adaptive:
            print(f"steps by block size (adaptive): {engine.block_policy.snapshot()['steps_by_block_size']}", file=sys.stderr)
    return 0


def cmd_convert(args) -> int:
    from .convert import convert_to_orthrus

    out = convert_to_orthrus(args.src, args.dst, block_size=args.block_size, mask_token_id=args.mask_token_id)
    print(f"wrote Orthrus checkpoint to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orthrus", description="Orthrus: lossless multi-token decoding")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate text with the reference engine")
    add_generate_args(gen)
    gen.set_defaults(func=cmd_generate)
    conv = sub.add_parser("convert", help="plain Qwen3/Llama checkpoint -> Orthrus (diffusion view from AR weights)")
    conv.add_argument("src", help="plain Qwen3 or Llama checkpoint dir")
    conv.add_argument("dst", help="where to write the Orthrus checkpoint")
    conv.add_argument("--block-size", type=int, default=32, help="draft block size B stored in the config" + D)
    conv.add_argument("--mask-token-id", type=int, default=None,
                      help="the diffusion view's mask token (default: 151669 for Qwen3; Llama needs it)")
    conv.set_defaults(func=cmd_convert)
    from .serve_cli import add_serve_parser
    from .train.cli import add_eval_parser, add_train_parser  # argparse only; torch loads when a command runs

    add_serve_parser(sub)
    add_train_parser(sub)
    add_eval_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:  # bad input: one clear line, no traceback
        print(f"orthrus: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
