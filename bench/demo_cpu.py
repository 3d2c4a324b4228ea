"""The quickstart's demo model on the CPU, AR vs Orthrus, on held-out prompts of the shipped prompt set.

    python -m bench.demo_cpu --block-sizes 4,8,16 --threads 1,2 --prompts 8 --max-new-tokens 128

The same reference engine `orthrus serve` runs (batch 1, greedy, fp32); prints tau, tokens/s and
the ratio to AR for every block size and thread count, and checks every output equals AR's.
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--block-sizes", default="4,8,16")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args(argv)

    import torch

    from orthrus_sglang import SamplingParams
    from orthrus_sglang.demo import ensure_demo_model
    from orthrus_sglang.prompting import encode_prompt
    from orthrus_sglang.ref.engine import Engine
    from orthrus_sglang.train.prompt_set import prompt_set

    blocks = [int(b) for b in args.block_sizes.split(",")]
    texts = [p["prompt"] if isinstance(p, dict) and "prompt" in p else p
             for p in prompt_set("heldout", args.prompts)]
    params = SamplingParams(max_new_tokens=args.max_new_tokens)
    print("| threads | mode | B | tau | tok/s | vs AR | outputs equal AR |\n|---|---|---|---|---|---|---|")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        results = {}
        for B in [None] + blocks:
            engine = Engine(ensure_demo_model(block_size=B or 8, progress=False), block_size=B or 8, max_batch_size=1)
            prompts = [encode_prompt(engine.tokenizer, t) for t in texts]
            engine.generate(prompts[:1], SamplingParams(max_new_tokens=8), ar_only=B is None)  # warm-up
            start, outs = time.perf_counter(), []
            for p in prompts:
                outs += engine.generate([p], params, ar_only=B is None)
            seconds = time.perf_counter() - start
            tokens = sum(o.stats.num_tokens for o in outs)
            steps = sum(o.stats.num_steps for o in outs)
            results[B] = (outs, tokens / seconds)
            ar_outs, ar_rate = results[None]
            tau = (tokens - len(outs)) / steps if B else 1.0  # decode tokens per decode step
            same = sum(o.token_ids == a.token_ids for o, a in zip(outs, ar_outs))
            print(f"| {threads} | {'orthrus' if B else 'ar'} | {B or '-'} | {tau:.2f} | {tokens / seconds:.1f} | "
                  f"{tokens / seconds / ar_rate:.2f}x | {same}/{len(outs)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
