"""AR vs ORTHRUS inside SGLang, side by side in one run (GPU host).

    python bench/bench_sglang.py --shape qwen3-8b --pin-tau 9.6        # dummy weights, tau pinned
    python bench/bench_sglang.py --model /path/to/orthrus-ckpt         # real weights, real tau

Each mode gets its own engine (same arguments otherwise): a warm-up, then concurrency 1
(requests one after another) and concurrency N (all at once), PROMPT_LEN random prompt tokens
in, OUT_LEN tokens out, greedy, ignore_eos. --pin-tau uses SGLang's own benchmark switch
(SGLANG_SIMULATE_ACC_LEN, method match-expected, token mode fixed), read by the ORTHRUS worker
exactly as by DFLASH's, so numbers compare with PEERS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

SHAPES = {
    "qwen3-8b": dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                     tie_word_embeddings=False),
}


def write_shape(shape: str, block_size: int, root: Path) -> Path:
    config = dict(architectures=["OrthrusLM"], model_type="orthrus", backbone="qwen3", rms_norm_eps=1e-6,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, hidden_act="silu",
                  attention_bias=False, torch_dtype="bfloat16", block_size=block_size, mask_token_id=151669,
                  eos_token_id=151645, **SHAPES[shape])
    path = root / shape
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    return path


def _raise(signum, frame):
    raise RuntimeError("an SGLang child process failed")


def measure(args, model_path: Path, orthrus: bool) -> dict:
    import sglang
    import torch

    os.environ.pop("SGLANG_SIMULATE_ACC_LEN", None)
    if orthrus and args.pin_tau:
        os.environ.update(SGLANG_SIMULATE_ACC_LEN=str(args.pin_tau), SGLANG_SIMULATE_ACC_METHOD="match-expected",
                          SGLANG_SIMULATE_ACC_TOKEN_MODE="fixed")
    extra = dict(speculative_algorithm="ORTHRUS", speculative_num_draft_tokens=args.block_size) if orthrus else {}
    if args.model is None:
        extra["load_format"] = "dummy"
    engine = sglang.Engine(model_path=str(model_path), attention_backend=args.attention_backend,
                           sampling_backend="pytorch", skip_tokenizer_init=True, mem_fraction_static=0.8,
                           cuda_graph_max_bs_decode=max(args.concurrency, 1), max_running_requests=args.concurrency,
                           log_level=args.log_level, custom_sigquit_handler=_raise, **extra)
    try:
        gen = torch.Generator().manual_seed(0)
        prompts = [torch.randint(100, 100000, (args.prompt_len,), generator=gen).tolist()
                   for _ in range(args.concurrency)]
        params = {"temperature": 0.0, "max_new_tokens": args.out_len, "ignore_eos": True}
        engine.generate(input_ids=prompts[:2], sampling_params={**params, "max_new_tokens": 16})  # warm-up
        result = {}
        start = time.perf_counter()
        outs = [engine.generate(input_ids=[p], sampling_params=params)[0] for p in prompts[: args.single_runs]]
        result["c1_tok_s"] = sum(len(o["output_ids"]) for o in outs) / (time.perf_counter() - start)
        start = time.perf_counter()
        outs_n = engine.generate(input_ids=prompts, sampling_params=params)
        result[f"c{args.concurrency}_tok_s"] = sum(len(o["output_ids"]) for o in outs_n) / (time.perf_counter() - start)
        meta = [o["meta_info"] for o in outs + outs_n]
        verify = sum(m.get("spec_verify_ct", 0) for m in meta)
        result["tau"] = sum(m["completion_tokens"] for m in meta) / verify if verify else 1.0
        return result
    finally:
        engine.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="an Orthrus checkpoint (default: --shape with dummy weights)")
    ap.add_argument("--shape", default="qwen3-8b", choices=sorted(SHAPES))
    ap.add_argument("--block-size", type=int, default=32)
    ap.add_argument("--pin-tau", type=float, default=None, help="SGLANG_SIMULATE_ACC_LEN for the ORTHRUS run")
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--out-len", type=int, default=512)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--single-runs", type=int, default=2, help="requests timed one after another at concurrency 1")
    ap.add_argument("--attention-backend", default="triton")
    ap.add_argument("--log-level", default="error", help="SGLang's; 'info' shows per-batch 'cuda graph: True/False'")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else write_shape(args.shape, args.block_size, Path(tmp))
        ar = measure(args, path, orthrus=False)
        orthrus = measure(args, path, orthrus=True)
    import torch

    n = args.concurrency
    print(f"# {torch.cuda.get_device_name()}, SGLang 0.5.17, {args.attention_backend} attention, CUDA graphs, bf16; "
          f"model: {args.model or args.shape + ' shape, dummy weights'}; block size {args.block_size}; "
          f"{args.prompt_len} in / {args.out_len} out, greedy"
          + (f"; ORTHRUS tau pinned at {args.pin_tau} (SGLANG_SIMULATE_ACC_LEN)" if args.pin_tau else ""))
    print(f"| mode | tau | conc 1 tok/s | vs AR | conc {n} total tok/s | vs AR |")
    print("|---|---|---|---|---|---|")
    for name, r in (("AR", ar), ("ORTHRUS", orthrus)):
        print(f"| {name} | {r['tau']:.2f} | {r['c1_tok_s']:.0f} | {r['c1_tok_s'] / ar['c1_tok_s']:.2f}x | "
              f"{r[f'c{n}_tok_s']:.0f} | {r[f'c{n}_tok_s'] / ar[f'c{n}_tok_s']:.2f}x |")


if __name__ == "__main__":
    main()
