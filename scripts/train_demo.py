"""Train the demo model's diffusion view end to end; resumable in stages (see gpu_train_demo.sh).

Stages, each recorded in OUT/stages.json once done, so a rerun skips it:
  base      the demo Orthrus checkpoint (from the GGUF, exactly as demo.py builds it; or from a
            plain HF checkpoint directory, for the CPU rehearsal with a tiny random Llama)
  data      the base model's greedy answers to --prompts' train split (resumable by chunks)
  compare   short side runs, one per loss variant (kl, ce, ...), same data and budget: the
            measured loss choice; the main run uses the winner
  main      the training run (time budget, periodic held-out eval at each eval block size)
  compress  low-rank / 8-bit candidates of the trained view, held-out tau of each; keeps the
            smallest one whose tau is within --keep of the best candidate and <= --max-mb
  final     applies the chosen artefact to a fresh base checkpoint (apply_view, as demo.py
            will) and measures held-out tau, per-position acceptance and AR identity on every
            --final-eval-sets set; the same for the view shipped in the checkout, same prompts
--deadline-min bounds this invocation: stages stop cleanly before it, and exit code 3 says "run me again".
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

EXIT_RESUMABLE = 3
VIEW_NAME = "smollm2-135m-instruct-view"


def log(msg: str) -> None:
    print(f"[train_demo {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Stages:
    def __init__(self, out: Path):
        self.path = out / "stages.json"
        self.done = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def mark(self, name: str, value) -> None:
        self.done[name] = value
        self.path.write_text(json.dumps(self.done, indent=2) + "\n")


def build_base(args, out: Path) -> Path:
    """The Orthrus starting checkpoint at --block-size: from the GGUF through demo.py, or from --plain."""
    from orthrus_sglang.convert import convert_to_orthrus

    if args.plain:
        from transformers import AutoTokenizer

        from orthrus_sglang import demo

        tok = AutoTokenizer.from_pretrained(args.plain)
        mask = args.mask_token_id
        if mask is None:
            try:
                mask = demo.mask_token_id(tok)
            except ValueError:
                raise ValueError("--plain checkpoint: pass --mask-token-id (its tokenizer has no "
                                 f"{demo.MASK_TOKEN!r})") from None
        return convert_to_orthrus(args.plain, out / "base", block_size=args.block_size, mask_token_id=mask)
    from orthrus_sglang import demo

    return demo.ensure_demo_model_from(Path(args.gguf), out, block_size=args.block_size)


def train_config(args, base: Path, out: Path, **overrides):
    from orthrus_sglang.train.config import TrainConfig

    values = dict(model=str(base), out=str(out), prompts=args.prompts, eval_prompts=args.eval_prompts,
                  num_prompts=args.num_prompts, gen_max_new_tokens=args.gen_max_new_tokens,
                  gen_batch_size=args.gen_batch_size, num_eval_prompts=args.num_eval_prompts,
                  eval_max_new_tokens=args.eval_max_new_tokens, eval_block_sizes=args.eval_block_sizes,
                  eval_batch_size=args.eval_batch_size, block_size=args.block_size, row_len=args.row_len,
                  rows_per_micro=args.rows_per_micro, lr=args.lr, warmup_steps=args.warmup_steps,
                  max_steps=args.max_steps, time_budget_min=args.time_budget_min, eval_every_min=args.eval_every_min,
                  device=args.device, attention=args.attention, seed=args.seed, progress=not args.no_progress)
    values.update(overrides)
    return TrainConfig(**values)


def remaining_min(deadline: float) -> float:
    return max(0.001, (deadline - time.monotonic()) / 60)


def candidates(args) -> list[tuple[int, int]]:
    return [(int(r), int(b)) for r, b in (c.split("x") for c in args.candidates.split(","))]


def compress(args, base: Path, main_model: Path, out: Path) -> dict:
    """Held-out tau of the full trained view and of each compressed candidate; pick one."""
    import torch

    from orthrus_sglang.ref.loader import load_model, read_state_dict
    from orthrus_sglang.train.delta import decompose, make_view, save_view, view_diff_state, view_nbytes
    from orthrus_sglang.train.evaluate import eval_reference
    from orthrus_sglang.train.setup import eval_prompt_ids, load_tokenizer, resolve_device

    device = resolve_device(args.device)
    cfg = train_config(args, base, out)
    prompts = next(iter(eval_prompt_ids(cfg, load_tokenizer(base)).values()))  # the first set decides
    base_state, trained_state = read_state_dict(base), read_state_dict(main_model)
    trained_diff = {n: t for n, t in trained_state.items() if "_diff" in n}
    model = load_model(main_model, device=device, dtype=torch.float32)

    def tau_of(diff: dict) -> float:
        with torch.no_grad():
            params = dict(model.named_parameters())
            for n, t in diff.items():
                params[n].copy_(t.to(device))
        return eval_reference(model, prompts, block_size=args.block_size, max_new_tokens=args.eval_max_new_tokens,
                              batch_size=args.eval_batch_size).tau

    svd = decompose(base_state, trained_diff)
    full_tau = tau_of(trained_diff)
    log(f"full trained view: held-out tau {full_tau:.3f} (B={args.block_size})")
    rows = []
    for rank, bits in candidates(args):
        tensors, info = make_view(base_state, trained_diff, rank=rank, bits=bits, svd=svd)
        mb = view_nbytes(tensors) / 1e6
        tau = tau_of(view_diff_state(tensors, base_state))
        rows.append({"rank": rank, "bits": bits, "mb": round(mb, 2), "tau": tau})
        log(f"candidate rank {rank} {'int8' if bits == 8 else 'fp16'}: {mb:.1f} MB, tau {tau:.3f}")
    fitting = [r for r in rows if r["mb"] <= args.max_mb] or rows
    best = max(r["tau"] for r in fitting)
    chosen = min((r for r in fitting if r["tau"] >= (1 - args.keep) * best), key=lambda r: r["mb"])
    tensors, info = make_view(base_state, trained_diff, rank=chosen["rank"], bits=chosen["bits"], svd=svd,
                              meta={"base_model": "smollm2-135m-instruct", "block_size": args.block_size,
                                    "heldout_split": cfg.eval_prompt_sets[0],
                                    "heldout_tau_full_view": full_tau, "heldout_tau_this_view": chosen["tau"]})
    path = save_view(out / f"{VIEW_NAME}.safetensors", tensors, info)
    return {"full_view_tau": full_tau, "candidates": rows, "chosen": chosen, "path": str(path),
            "within_10pct_of_full": chosen["tau"] >= 0.9 * full_tau}


def final_eval(args, base: Path, view_path: Path, out: Path) -> dict:
    """The chosen artefact applied to a fresh copy of the base, as the demo build will do it; and, on
    the same prompts, the view shipped in the checkout (the one it would replace). Every
    --final-eval-sets set at every --final-eval-block-sizes block size, with AR identity."""
    from orthrus_sglang.demo_view import VIEW_FILE
    from orthrus_sglang.train.setup import eval_prompt_ids, load_tokenizer

    views = {"new_view": (view_path, out / "final-model")}
    if VIEW_FILE.is_file() and not args.plain:  # the shipped view fits the demo model only
        views["shipped_view"] = (VIEW_FILE, out / "shipped-model")
    cfg = train_config(args, base, out, num_eval_prompts=args.final_eval_prompts, eval_prompts=args.final_eval_sets,
                       eval_block_sizes=args.final_eval_block_sizes)
    prompt_sets = eval_prompt_ids(cfg, load_tokenizer(base))
    ar_outputs: dict[str, list] = {}  # per set: a view leaves the base weights alone, so AR is the same for both
    return {name: view_results(args, cfg, base, path, applied, prompt_sets, ar_outputs)
            for name, (path, applied) in views.items()}


def view_results(args, cfg, base: Path, view_path: Path, applied: Path, prompt_sets: dict, ar_outputs: dict) -> dict:
    """Held-out tau per position of every final eval set at every final block size, and AR identity, of one view."""
    import torch

    from orthrus_sglang.ref.loader import load_model
    from orthrus_sglang.train.delta import apply_view
    from orthrus_sglang.train.evaluate import eval_reference
    from orthrus_sglang.train.setup import eval_key, resolve_device

    shutil.rmtree(applied, ignore_errors=True)
    shutil.copytree(base, applied)
    apply_view(applied, view_path)
    model = load_model(applied, device=resolve_device(args.device), dtype=torch.float32)
    results = {}
    for i, (name, prompts) in enumerate(prompt_sets.items()):
        if name not in ar_outputs:
            ar_outputs[name] = eval_reference(model, prompts, block_size=2, max_new_tokens=args.eval_max_new_tokens,
                                              batch_size=args.eval_batch_size, ar_only=True).outputs
        for b in cfg.eval_block_size_list:
            r = eval_reference(model, prompts, block_size=b, max_new_tokens=args.eval_max_new_tokens,
                               batch_size=args.eval_batch_size, progress=not args.no_progress)
            identical = sum(a == o for a, o in zip(ar_outputs[name], r.outputs)) / len(prompts)
            results[eval_key(i, name, b)] = {**r.to_dict(), "identical_to_ar": identical}
            log(f"{view_path.name} on {name}, B={b}: tau {r.tau:.3f}, identical to AR {identical:.0%}")
    return results


def export(out: Path, results_dir: Path | None) -> None:
    """The deliverables (7 files: the device tool brings back at most 8 from $OUT) into --results."""
    if results_dir is None:
        return
    results_dir.mkdir(parents=True, exist_ok=True)
    for src in [out / "results.json", out / "stages.json", out / "main" / "tau_curve.png", out / f"{VIEW_NAME}.safetensors",
                out / f"{VIEW_NAME}.json", out / "main" / "train_log.jsonl", out / "compare" / "comparison.json"]:
        if src.is_file():
            shutil.copy2(src, results_dir / src.name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf", help="SmolLM2-135M-Instruct.Q4_1.gguf, or its path prefix when split into .part-* files")
    src.add_argument("--plain", help="a plain HF Llama/Qwen3 checkpoint dir instead (CPU rehearsal)")
    p.add_argument("--out", required=True, help="work dir, kept between invocations (resume)")
    p.add_argument("--results", help="copy the deliverables here when done")
    p.add_argument("--mask-token-id", type=int)
    p.add_argument("--deadline-min", type=float, default=9.0, help="stop this invocation cleanly after this long")
    p.add_argument("--time-budget-min", type=float, default=8.0, help="training time of the main run")
    p.add_argument("--side-budget-min", type=float, default=0.75, help="training time of each loss side run")
    p.add_argument("--variants", default="kl,ce,kl:decay=7",
                   help="loss variants to compare ('' to skip: the main run uses kl)")
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--eval-block-sizes", default="16", help="block sizes of the periodic held-out evals")
    p.add_argument("--prompts", default="broad", help="prompts to distil: builtin, broad or a JSONL")
    p.add_argument("--eval-prompts", default="broad,ood",
                   help="held-out sets of the periodic evals, comma-separated; the first decides compression")
    p.add_argument("--final-eval-sets", default="broad,ood,builtin", help="held-out sets of the final eval")
    p.add_argument("--final-eval-block-sizes", default="16,8,4", help="block sizes of the final eval")
    p.add_argument("--num-prompts", type=int, default=12000)
    p.add_argument("--gen-max-new-tokens", type=int, default=256)
    p.add_argument("--gen-batch-size", type=int, default=256)
    p.add_argument("--num-eval-prompts", type=int, default=48, help="held-out prompts of the periodic evals")
    p.add_argument("--final-eval-prompts", type=int, default=200)
    p.add_argument("--eval-max-new-tokens", type=int, default=256)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--eval-every-min", type=float, default=1.0)
    p.add_argument("--row-len", type=int, default=2048)
    p.add_argument("--rows-per-micro", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup-steps", type=int, default=30)
    p.add_argument("--max-steps", type=int, default=100000)
    p.add_argument("--candidates", default="32x8,64x8,128x8,64x16", help="RANKxBITS of the compressed views to try")
    p.add_argument("--max-mb", type=float, default=20.0)
    p.add_argument("--keep", type=float, default=0.03, help="smallest candidate within this fraction of the best tau")
    p.add_argument("--stage-reserve-min", type=float, default=2.0,
                   help="start compress / final only with this much time left before the deadline")
    p.add_argument("--device", default="auto")
    p.add_argument("--attention", default="auto", choices=["auto", "flex", "sdpa"],
                   help="training attention (auto: compiled flex_attention on CUDA; it falls back to SDPA if it fails)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rc = run_stages(args, out, deadline=time.monotonic() + 60 * args.deadline_min)
    export(out, Path(args.results) if args.results else None)  # also after a deadline: progress so far
    return rc


def run_stages(args, out: Path, *, deadline: float) -> int:
    stages = Stages(out)
    started = time.monotonic()

    if "base" not in stages.done:
        log("stage base: building the Orthrus starting checkpoint")
        stages.mark("base", str(build_base(args, out)))
    base = Path(stages.done["base"])

    from orthrus_sglang.train.compare import compare, format_table
    from orthrus_sglang.train.loop import distil_data, train

    if "data" not in stages.done:
        log(f"stage data: greedy answers of the base model to {args.num_prompts} prompts")
        data = distil_data(train_config(args, base, out / "main"), deadline=deadline)
        if data is None:
            return EXIT_RESUMABLE
        stages.mark("data", str(data))
    data = stages.done["data"]

    variants = [v for v in args.variants.split(",") if v]
    if variants and "compare" not in stages.done:
        log(f"stage compare: {', '.join(variants)} for {args.side_budget_min} min each")
        side = train_config(args, base, out / "compare", data=data, time_budget_min=args.side_budget_min,
                            eval_every_min=0, eval_block_sizes=str(args.block_size))
        try:
            rows = compare(side, variants, out=out / "compare", deadline=deadline)
        except RuntimeError as exc:
            log(str(exc))
            return EXIT_RESUMABLE
        log("loss comparison:\n" + format_table(rows))
        stages.mark("compare", rows)
    winner = stages.done.get("compare", [{"variant": "kl"}])[0]["variant"]

    if "main" not in stages.done:
        from orthrus_sglang.train.compare import parse_variant

        log(f"stage main: {winner}, {args.time_budget_min} min of training")
        result = train(train_config(args, base, out / "main", data=data, deadline_min=remaining_min(deadline),
                                    **parse_variant(winner)))
        if not result["finished"]:
            return EXIT_RESUMABLE
        stages.mark("main", {k: result[k] for k in ("model", "steps", "train_time_s", "final")})

    # compress and final cannot stop half-way: start them only with enough time left.
    if {"compress", "final"} - set(stages.done) and remaining_min(deadline) < args.stage_reserve_min:
        log(f"less than {args.stage_reserve_min} min left before the deadline: stopping before compress/final")
        return EXIT_RESUMABLE
    if "compress" not in stages.done:
        log("stage compress")
        stages.mark("compress", compress(args, base, Path(stages.done["main"]["model"]), out))

    if "final" not in stages.done and remaining_min(deadline) < args.stage_reserve_min:
        return EXIT_RESUMABLE
    if "final" not in stages.done:
        log("stage final")
        stages.mark("final", final_eval(args, base, Path(stages.done["compress"]["path"]), out))

    results = {"loss_choice": winner, **stages.done, "this_invocation_s": round(time.monotonic() - started, 1)}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log(f"done: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
