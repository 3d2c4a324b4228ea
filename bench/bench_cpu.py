"""AR vs Orthrus on the reference engine, side by side in one run, printed as a table.

    python bench/bench_cpu.py                       # a tiny random Qwen3-shaped model, written on the fly
    python bench/bench_cpu.py --model smollm2-135m-instruct --batch-sizes 1 --block-sizes 4 8
    python bench/bench_cpu.py --oracle-drafts       # drafts = the AR continuation: the tau = B ceiling

Both modes run on the same engine, model, cache and prompts; each cell is the best of
--repeats runs after one warm-up. With random weights the diffusion view's drafts are
almost never accepted (tau ~ 1), so Orthrus pays two passes per token: that row is the
floor. --oracle-drafts injects the AR reference continuation as drafts (greedy only, a test
hook), which gives the tau = B ceiling of this hardware's cost model.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orthrus_sglang import SamplingParams  # noqa: E402
from orthrus_sglang.ref.engine import Engine  # noqa: E402
from orthrus_sglang.stats import tau_of  # noqa: E402
from orthrus_sglang.testing import write_tiny_checkpoint  # noqa: E402

TINY_SHAPE = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=4, head_dim=32, max_position_embeddings=2048)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


QUESTIONS = ["Give me three tips for staying healthy.", "What is the capital of France and why is it famous?",
             "Write a haiku about the sea.", "Explain what a binary search does, step by step."]


def prompts_for(engine: Engine, batch: int, prompt_len: int) -> list[list[int]]:
    """Real chat prompts when the model has a chat template (tau means something there), else random ids."""
    if engine.tokenizer is not None and getattr(engine.tokenizer, "chat_template", None):
        from orthrus_sglang.prompting import encode_prompt

        return [encode_prompt(engine.tokenizer, QUESTIONS[i % len(QUESTIONS)]) for i in range(batch)]
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (prompt_len + 3 * i,), generator=gen).tolist() for i in range(batch)]


def oracle_hook(references: dict[tuple[int, ...], list[int]]):
    def hook(reqs, drafts):
        for i, r in enumerate(reqs):
            ref = references[tuple(r.prompt_ids)]
            m, k = len(r.output_ids), drafts.shape[1]
            drafts[i] = torch.tensor((ref[m : m + k] + [0] * k)[:k])
        return drafts
    return hook


def timed(engine: Engine, prompts, params, ar_only: bool, repeats: int):
    engine.generate(prompts, params, ar_only=ar_only)  # warm-up
    best, results = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        results = engine.generate(prompts, params, ar_only=ar_only)
        best = min(best, time.perf_counter() - start)
    tokens = sum(len(r.token_ids) for r in results)
    tau = tau_of([sum(col) for col in zip(*(r.stats.accept_length_histogram for r in results))])
    return tokens / best, tau, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint dir or id (default: a tiny random model)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--block-sizes", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--oracle-drafts", action="store_true", help="drafts = AR reference (the tau = B ceiling)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or write_tiny_checkpoint(Path(tmp) / "tiny", **TINY_SHAPE)
        params = SamplingParams(max_new_tokens=args.max_new_tokens, ignore_eos=True)
        engine = Engine(model, max_batch_size=max(args.batch_sizes))
        c = engine.config
        print(f"# hardware: {cpu_name()}, {args.threads} torch threads, torch {torch.__version__}, fp32")
        print(f"# model: {args.model or 'tiny random Qwen3'} ({c.backbone}, hidden {c.hidden_size}, "
              f"{c.num_hidden_layers} layers, {c.num_attention_heads}/{c.num_key_value_heads} heads, vocab {c.vocab_size})"
              f"; {args.max_new_tokens} new tokens, greedy"
              f"; drafts: {'oracle (AR reference)' if args.oracle_drafts else 'diffusion view'}")
        print("| batch | block B | AR tok/s | Orthrus tok/s | Orthrus / AR | tau | outputs equal |")
        print("|---|---|---|---|---|---|---|")
        for batch in args.batch_sizes:
            prompts = prompts_for(engine, batch, args.prompt_len)
            engine.draft_hook = None
            ar_tps, _, ar_results = timed(engine, prompts, params, True, args.repeats)
            for block in args.block_sizes:
                engine.block_size = block
                engine.cache = engine.model.new_cache(max(args.batch_sizes), engine.max_seq_len + block)
                if args.oracle_drafts:
                    engine.draft_hook = oracle_hook({tuple(p): r.token_ids + [0] * block
                                                     for p, r in zip(prompts, ar_results)})
                tps, tau, results = timed(engine, prompts, params, False, args.repeats)
                same = all(a.token_ids == o.token_ids for a, o in zip(ar_results, results))
                print(f"| {batch} | {block} | {ar_tps:.1f} | {tps:.1f} | {tps / ar_tps:.2f}x | {tau:.2f} | {same} |")


if __name__ == "__main__":
    main()
