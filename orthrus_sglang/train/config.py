"""TrainConfig: every knob of ``orthrus train``, validated once; flags and JSON config files map onto it."""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

# The valid choices live here, free of torch, so building the CLI parser imports nothing heavy.
DTYPES = ("auto", "float32", "bfloat16")
BACKENDS = ("auto", "sdpa", "flex")  # attention: attention.py
LOSSES = ("kl", "ce")  # objective.py
VIEWS = ("full", "lora")  # view.py


@dataclass
class TrainConfig:
    model: str  # plain Qwen3/Llama or Orthrus checkpoint dir, or the demo model id
    out: str  # output dir: init/ (converted start), data/, train_state.pt, model/, plots, results.json
    # data: a distilled JSONL ({"prompt_ids", "answer_ids"}), or distil --prompts first
    data: str | None = None
    prompts: str = "broad"  # a shipped set's train split (prompts.SHIPPED) or a JSONL of prompts
    num_prompts: int = 2000
    gen_max_new_tokens: int = 256
    gen_batch_size: int = 64
    # held-out evaluation (reference engine, greedy)
    # a shipped set's held-out split (prompts.SHIPPED) or a JSONL of prompts; comma-separated for
    # several sets (e.g. "broad,ood"): each is evaluated, the first is the primary curve
    eval_prompts: str = "broad"
    num_eval_prompts: int = 32
    eval_max_new_tokens: int = 128
    eval_block_sizes: str = ""  # comma-separated; default: the training block size
    eval_every: int = 0  # steps between evaluations (0: at the end only)
    eval_every_min: float = 0.0  # or minutes of training time between evaluations
    eval_batch_size: int = 32
    eval_at_start: bool = True  # the curve's first point (the untrained view)
    # the objective
    block_size: int = 16
    mask_token_id: int | None = None  # needed to convert a plain checkpoint without a known mask token
    loss: str = "kl"
    decay: float = 0.0  # > 0: weight draft k by exp(-(k-1)/decay)
    view: str = "full"  # "full" or "lora" (a low-rank delta on the diff projections)
    lora_rank: int = 0
    # the optimisation
    row_len: int = 2048
    blocks_per_row: int = 0  # 0: row_len // block_size (as many draft tokens as row tokens)
    rows_per_micro: int = 4
    grad_accum: int = 1
    lr: float = 2e-4
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_steps: int = 1000
    time_budget_min: float = 0.0  # > 0: plan the LR schedule to end after this much training time
    seed: int = 0
    # the machine
    device: str = "auto"
    dtype: str = "auto"  # compute dtype: bf16 autocast on CUDA, fp32 on CPU; master weights fp32
    attention: str = "auto"  # flex on CUDA, sdpa on CPU
    save_every: int = 200
    deadline_min: float = 0.0  # > 0: stop this invocation after this many minutes (state saved; rerun resumes)
    progress: bool = True

    def __post_init__(self):
        problems = []
        for name in ("num_prompts", "gen_max_new_tokens", "gen_batch_size", "num_eval_prompts", "eval_max_new_tokens",
                     "rows_per_micro", "grad_accum", "max_steps", "eval_batch_size", "save_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.block_size < 2:
            problems.append("block_size must be >= 2 (the last token + at least one draft)")
        if self.row_len < 2 * self.block_size:
            problems.append(f"row_len must be >= 2 * block_size ({2 * self.block_size})")
        if self.blocks_per_row < 0:
            problems.append("blocks_per_row must be >= 0")
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {LOSSES}")
        if self.view not in VIEWS:
            problems.append(f"view must be one of {VIEWS}")
        if self.view == "lora" and self.lora_rank < 1:
            problems.append("view 'lora' needs lora_rank >= 1")
        if self.attention not in BACKENDS:
            problems.append(f"attention must be one of {BACKENDS}")
        if self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {DTYPES}")
        if not self.lr > 0 or self.decay < 0 or self.time_budget_min < 0 or self.deadline_min < 0:
            problems.append("lr must be > 0 and decay, time_budget_min, deadline_min >= 0")
        if not self.eval_prompt_sets:
            problems.append("eval_prompts must name at least one prompt set")
        try:
            self.eval_block_size_list
        except ValueError:
            problems.append(f"eval_block_sizes must be comma-separated integers >= 2, got {self.eval_block_sizes!r}")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    @property
    def num_blocks(self) -> int:
        return self.blocks_per_row or self.row_len // self.block_size

    @property
    def eval_block_size_list(self) -> list[int]:
        sizes = [int(s) for s in self.eval_block_sizes.split(",") if s.strip()] or [self.block_size]
        if any(s < 2 for s in sizes):
            raise ValueError(self.eval_block_sizes)
        return sizes

    @property
    def eval_prompt_sets(self) -> list[str]:
        return [s.strip() for s in self.eval_prompts.split(",") if s.strip()]

    def fingerprint(self) -> dict:
        """The settings a resumed run must share with the run that saved the state."""
        keys = ("block_size", "loss", "decay", "view", "lora_rank", "row_len", "blocks_per_row", "rows_per_micro",
                "grad_accum", "lr", "warmup_steps", "min_lr_ratio", "weight_decay", "grad_clip", "seed")
        return {k: getattr(self, k) for k in keys}

    def to_dict(self) -> dict:
        return asdict(self)


# One help text per field; add_config_args appends the field's default (or says "(required)").
HELP = {
    "model": "plain Qwen3/Llama or Orthrus checkpoint dir, hub id, or 'smollm2-135m-instruct' (the demo model)",
    "out": "output dir: init/, data/train.jsonl, train_state.pt, model/, tau_curve.png, results.json",
    "data": "distilled JSONL of {prompt_ids, answer_ids} (default: distil --prompts into OUT/data/train.jsonl)",
    "prompts": "prompts to distil (train split): 'builtin' (template prompts), 'broad' (templates + real chats, code, passages) or a JSONL",
    "num_prompts": "how many prompts to distil",
    "gen_max_new_tokens": "distillation: longest answer in tokens",
    "gen_batch_size": "distillation: prompts decoded together",
    "eval_prompts": "held-out prompts: 'builtin', 'broad', 'ood' (sources never trained on) or a JSONL; comma-separated for several (the first is the main curve)",
    "num_eval_prompts": "held-out prompts per evaluation",
    "eval_max_new_tokens": "held-out evaluation: tokens decoded per prompt",
    "eval_block_sizes": "comma-separated block sizes to evaluate, e.g. 16,8 (default: --block-size)",
    "eval_every": "steps between held-out evaluations (0: at the start and the end only)",
    "eval_every_min": "or minutes of training between held-out evaluations (0: off)",
    "eval_batch_size": "held-out evaluation: prompts decoded together",
    "eval_at_start": "evaluate the untrained view first (the curve's first point)",
    "block_size": "draft block size B trained for",
    "mask_token_id": "mask token for converting a plain checkpoint (default: 151669 for Qwen3; Llama needs it)",
    "loss": "kl: forward KL to the AR distribution; ce: cross-entropy on the AR argmax",
    "decay": "> 0: weight draft k by exp(-(k-1)/decay); 0: all drafts alike",
    "view": "full: train the *_diff tensors; lora: a low-rank delta on the diff projections",
    "lora_rank": "rank of the delta for --view lora",
    "row_len": "tokens per packed training row",
    "blocks_per_row": "draft blocks per packed row (0: row_len // block_size)",
    "rows_per_micro": "rows per micro-batch",
    "grad_accum": "micro-batches per optimizer step",
    "lr": "peak learning rate (AdamW)",
    "warmup_steps": "linear warm-up steps",
    "min_lr_ratio": "the cosine schedule ends at lr * this",
    "weight_decay": "AdamW weight decay",
    "grad_clip": "gradient-norm clip (0: off)",
    "max_steps": "optimizer steps",
    "time_budget_min": "training-time budget in minutes, first 2 (compiling) steps apart; the schedule ends there "
                       "(0: off)",
    "seed": "seed of the prompt order, rows and anchors",
    "device": "auto (cuda if available, else cpu), cpu, cuda, cuda:1 ...",
    "dtype": "compute dtype: auto (bf16 autocast on CUDA, fp32 on CPU), float32 or bfloat16; master weights fp32",
    "attention": "auto (compiled flex_attention on CUDA, masked SDPA on CPU), flex or sdpa",
    "save_every": "steps between saves of OUT/train_state.pt",
    "deadline_min": "stop this invocation after N minutes, state saved (exit 3); rerun to resume (0: off)",
    "progress": "progress bars",
}


def _shown_default(f) -> str:
    if f.default is MISSING:
        return " (required)"
    if "(default:" in HELP[f.name]:
        return ""
    if isinstance(f.default, bool):
        return f" (default: {'on' if f.default else 'off'})"
    return f" (default: {f.default})"


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """One --flag per field (``--time-budget-min``), plus --config FILE.json whose keys are the field names.

    Flags default to None so that a config file's values stand unless a flag is given.
    """
    parser.add_argument("--config", help="JSON file of settings (field names as keys); flags override it "
                                         "(default: none)")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).split(" ")[0]  # "int", "int | None", "float", "str", "bool" (postponed annotations)
        help_text = HELP[f.name] + _shown_default(f)
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        parser.add_argument(flag, type={"int": int, "float": float}.get(kind, str), default=None, help=help_text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such config file")
        values = json.loads(path.read_text())
        known = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
    missing = [f.name for f in fields(TrainConfig) if f.default is MISSING and f.name not in values]
    if missing:
        raise ValueError("missing required setting(s): " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return TrainConfig(**values)
