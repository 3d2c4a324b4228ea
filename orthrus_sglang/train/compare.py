"""Which loss? Train the same view from the same start on the same data under each loss, then measure.

Each variant ("kl", "ce", "kl:decay=7", ...) is one short run with identical settings but the
loss and the position decay; all share the distilled data and the held-out prompts. The
measure is what decoding gets: held-out tau through the reference engine (and its per-position
acceptance), with the teacher-forced held-out draft accuracy beside it.

    python -m orthrus_sglang.train.compare --model CKPT --data OUT/data/train.jsonl --out cmp/ \\
        --variants kl,ce,kl:decay=7 --max-steps 300
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from .config import TrainConfig


def parse_variant(spec: str) -> dict:
    """``kl`` / ``ce`` / ``kl:decay=7`` -> TrainConfig overrides."""
    loss, _, rest = spec.partition(":")
    overrides: dict = {"loss": loss, "decay": 0.0}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key != "decay" or not value:
            raise ValueError(f"variant {spec!r}: only 'decay=N' may follow the loss")
        overrides["decay"] = float(value)
    return overrides


def shared_start(base: TrainConfig, out: Path) -> TrainConfig:
    """Convert and distil once (into OUT/init, OUT/data) for every variant to share."""
    import torch

    from ..ref.loader import load_model
    from .setup import load_tokenizer, resolve_device, starting_checkpoint, training_documents

    shared = replace(base, out=str(out))
    init = starting_checkpoint(shared)
    shared = replace(shared, model=str(init))
    if base.data is None:
        model = load_model(init, device=resolve_device(base.device), dtype=torch.float32)
        training_documents(shared, model, load_tokenizer(init), deadline=None)
        shared = replace(shared, data=str(out / "data" / "train.jsonl"))
    return shared


def compare(base: TrainConfig, variants: list[str], *, out: str | Path, deadline: float | None = None) -> list[dict]:
    """One run per variant under OUT/<variant>; returns their results, best held-out tau first.

    ``deadline`` (time.monotonic()): a variant cut short raises RuntimeError; calling again resumes.
    """
    import time

    from .loop import train

    out = Path(out)
    base = shared_start(base, out)
    rows = []
    for spec in variants:
        # No eval of the shared start per variant: the same untrained view every time.
        cfg = replace(base, out=str(out / spec.replace(":", "_").replace("=", "")), eval_at_start=False,
                      **parse_variant(spec))
        if deadline is not None:
            cfg = replace(cfg, deadline_min=max(0.001, (deadline - time.monotonic()) / 60))
        result = train(cfg)
        if not result["finished"]:
            raise RuntimeError(f"variant {spec} stopped before the end (deadline); rerun to finish it")
        final = result["final"]
        rows.append({"variant": spec, "steps": result["steps"], "train_time_s": round(result["train_time_s"], 1),
                     **{k: {"tau": v["tau"], "acceptance_per_position": v["acceptance_per_position"]}
                        for k, v in final.items() if k.startswith("B")}})
    key = f"B{base.eval_block_size_list[0]}"
    rows.sort(key=lambda r: -r[key]["tau"])
    (out / "comparison.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def format_table(rows: list[dict]) -> str:
    sizes = [k for k in rows[0] if k.startswith("B")]
    lines = ["| variant | steps | " + " | ".join(f"tau {k[0]}={k[1:]}" for k in sizes) + " |",
             "|---|---|" + "---|" * len(sizes)]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['steps']} | " + " | ".join(f"{r[k]['tau']:.3f}" for k in sizes) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .config import add_config_args, config_from_args

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(p)
    p.add_argument("--variants", default="kl,ce", help="comma-separated: kl, ce, kl:decay=7, ...")
    args = p.parse_args(argv)
    try:
        base = config_from_args(args)
        rows = compare(base, [v for v in args.variants.split(",") if v], out=base.out)
    except (ValueError, FileNotFoundError) as exc:
        print(f"compare: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
