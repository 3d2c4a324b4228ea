"""The quickstart's demo model on the CPU, AR vs Orthrus, on held-out prompts of the shipped prompt set.

    python -m bench.demo_cpu --block-sizes 4,8,16 --adaptive --threads 1,2 --batch 1,4 --prompts 8 --max-new-tokens 128
    python -m bench.demo_cpu --prompt-set ood --block-sizes 8 --threads 2     # sources never trained on

The same reference engine `orthrus serve` runs (greedy, fp32; --batch requests decoded together);
prints tau, tokens/s and the ratio to AR for every block size (and the adaptive policy over the
largest: each step picks B from 1, 2, 4, .. by expected tokens per second), every thread count and
batch size, the acceptance rate of the first draft positions (P(draft i accepted | drafts before
it were)) at each B, and checks every output equals AR's.
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--block-sizes", default="4,8,16")
    ap.add_argument("--adaptive", action="store_true", help="add the adaptive policy over the largest block size")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", default="1", help="requests decoded together, comma-separated")
    ap.add_argument("--prompts", type=int, default=8, help="how many held-out prompts")
    ap.add_argument("--prompt-set", default="builtin",
                    help="held-out prompts of: 'builtin', 'broad', 'ood' or a JSONL (as orthrus eval --prompts)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args(argv)
    if args.prompts < 1 or args.max_new_tokens < 1:
        ap.error("--prompts and --max-new-tokens must be >= 1")

    import torch

    from orthrus_sglang import SamplingParams
    from orthrus_sglang.demo import ensure_demo_model
    from orthrus_sglang.ref.engine import Engine
    from orthrus_sglang.train.prompts import encode_prompts, read_prompts

    blocks = [int(b) for b in args.block_sizes.split(",")]
    modes = [("ar", 8)] + [("fixed", b) for b in blocks] + ([("adaptive", max(blocks))] if args.adaptive else [])
    texts = read_prompts(args.prompt_set, args.prompts, split="heldout")
    params = SamplingParams(max_new_tokens=args.max_new_tokens)
    print("| threads | batch | mode | B | tau | tok/s | vs AR | outputs equal AR | accept rate, drafts 1/2/3 | "
          "steps by B |\n|---|---|---|---|---|---|---|---|---|---|")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for batch in [int(b) for b in args.batch.split(",")]:
            results = {}
            for mode, B in modes:
                engine = Engine(ensure_demo_model(block_size=B, progress=False), block_size=B, max_batch_size=batch,
                                adaptive_block=mode == "adaptive")
                prompts = encode_prompts(engine.tokenizer, texts)
                engine.generate(prompts[:1], SamplingParams(max_new_tokens=8), ar_only=mode == "ar")  # warm-up
                start, outs = time.perf_counter(), []
                for i in range(0, len(prompts), batch):
                    outs += engine.generate(prompts[i : i + batch], params, ar_only=mode == "ar")
                seconds = time.perf_counter() - start
                tokens = sum(o.stats.num_tokens for o in outs)
                steps = sum(o.stats.num_steps for o in outs)
                results[mode, B] = (outs, tokens / seconds)
                ar_outs, ar_rate = results["ar", 8]
                tau = (tokens - len(outs)) / steps if mode != "ar" else 1.0  # decode tokens per decode step
                same = sum(o.token_ids == a.token_ids for o, a in zip(outs, ar_outs))
                rates = _position_rates(outs) if mode == "fixed" else []
                policy = engine.block_policy.snapshot()["steps_by_block_size"] if mode == "adaptive" else ""
                print(f"| {threads} | {batch} | {mode} | {B if mode != 'ar' else '-'} | {tau:.2f} | "
                      f"{tokens / seconds:.1f} | {tokens / seconds / ar_rate:.2f}x | {same}/{len(outs)} | "
                      f"{' / '.join(f'{r:.2f}' for r in rates[:3])} | {policy} |", flush=True)
    return 0


def _position_rates(outs) -> list[float]:
    """P(draft i accepted | drafts 1..i-1 accepted), pooled over the requests, i = 1, 2, ..."""
    accepted = [sum(x) for x in zip(*(o.stats.accepted_per_position for o in outs))]
    hist = [sum(x) for x in zip(*(o.stats.accept_length_histogram for o in outs))]
    reached = [sum(hist[i:]) for i in range(len(hist))]  # steps that verified draft i+1: n >= i
    return [a / r if r else 0.0 for a, r in zip(accepted, reached)]


if __name__ == "__main__":
    raise SystemExit(main())
