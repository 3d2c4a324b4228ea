"""Peak GPU memory of one ORTHRUS step's sampling work (draft sampling + acceptance), at a batch size.

    python -m bench.sampling_memory --batch 64 --block-size 16 --vocab 151936 [--old DIR]

The inputs are what an SGLang step hands over: the verify logits [bs, B, V] float32 (SGLang's
logits processor) and the diffusion logits of rows 0..B-2 (model dtype). Every request samples
(temperature 0.7, top_p 0.95, top_k 20: Qwen3's defaults). Two paths: greedy drafts verified
target-only (the default server) and drafts sampled from q (--speculative-use-rejection-sampling).
Reported: the peak allocated above the verify logits (the draft logits count in it). --old DIR loads another accept.py/sampling.py pair
(a package directory) to measure the code before a change in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path


def load_package(path: Path, name: str = "orthrus_old"):
    spec = importlib.util.spec_from_file_location(name, path / "__init__.py", submodule_search_locations=[str(path)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"{name}.accept")


def measure(accept, bs: int, B: int, vocab: int, sampled_drafts: bool, dtype, device="cuda") -> dict:
    import torch

    torch.manual_seed(0)
    target = torch.randn(bs, B, vocab, device=device, dtype=torch.float32) * 3
    old_api = not hasattr(accept, "DraftDist")
    rows = accept.RowSampling(greedy=torch.zeros(bs, dtype=torch.bool, device=device),
                              temperature=torch.full((bs,), 0.7, device=device), top_k=torch.full((bs,), 20, device=device),
                              top_p=torch.full((bs,), 0.95, device=device), min_p=torch.zeros(bs, device=device),
                              seeds=torch.arange(bs, device=device), bound=20)
    start = torch.full((bs,), 1000, dtype=torch.int64, device=device)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    # The draft logits count: before this change sampled drafts took fp32 logits of every block row
    # from the logits processor; now the model dtype, rows 0..B-2 only.
    # Draft logits: the next block row's verify logits (so drafts are sometimes rejected).
    if old_api and sampled_drafts:
        diffusion = torch.cat([target[:, 1:], target[:, -1:]], dim=1)
    else:
        diffusion = torch.empty(bs, B - 1, vocab, device=device, dtype=dtype).copy_(target[:, 1:])
    if sampled_drafts:
        drafts, q = accept.sample_drafts(diffusion[:, : B - 1], rows, start)
    else:
        drafts, q = diffusion.argmax(-1), None
    n, bonus = accept.accept_block(drafts, target, rows, start, q)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    return {"sampled_drafts": sampled_drafts, "peak_above_inputs_gb": peak / 1e9,
            "verify_logits_gb": base / 1e9, "mean_accepted": float(n.float().mean())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--old", default=None, help="a package dir holding the accept.py/sampling.py to compare")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    import torch

    from orthrus_sglang import accept as current

    impls = {"current": current}
    if args.old:
        impls["old"] = load_package(Path(args.old))
    results = []
    for name, module in impls.items():
        for sampled in (False, True):
            r = measure(module, args.batch, args.block_size, args.vocab, sampled, getattr(torch, args.dtype))
            r.update(code=name, batch=args.batch, block_size=args.block_size, vocab=args.vocab,
                     device=torch.cuda.get_device_name())
            results.append(r)
            print(f"{name:8s} {'sampled drafts' if sampled else 'greedy drafts '} bs={args.batch} B={args.block_size} "
                  f"V={args.vocab}: peak {r['peak_above_inputs_gb']:.2f} GB above {r['verify_logits_gb']:.2f} GB of verify logits",
                  flush=True)
            torch.cuda.empty_cache()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
