"""The training loop: teacher pass, draft pass, loss, AdamW on the diffusion view; evals, saves, resume.

One step = ``grad_accum`` micro-batches of ``rows_per_micro`` packed rows. Step s reads stream
rows from (s * grad_accum + micro) * rows_per_micro and draws its anchors from a generator
seeded by (seed, s, micro): nothing depends on earlier steps but the weights and the optimizer,
which the saved state holds, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path

import torch

from ..ref.loader import load_model
from .attention import make_attention
from .blocks import sample_blocks
from .checkpointing import STATE_FILE, load_train_state, save_train_state, write_orthrus_checkpoint
from .config import TrainConfig
from .data import RowStream
from .evaluate import eval_reference
from .forward import draft_pass, teacher_pass
from .objective import DraftStats, draft_loss
from .setup import (compute_dtype, deadline_from, documents_digest, eval_key, eval_prompt_ids, load_tokenizer,
                    resolve_device, starting_checkpoint, training_documents)
from .view import diff_state, make_trainable

# The first steps pay for compilation (flex_attention, forward and backward): their time is kept
# apart from the training-time budget, so short side runs compare fairly.
UNTIMED_STEPS = 2
# With a time budget the LR schedule's length is fixed from the mean time of these steps.
TIMED_STEPS = range(3, 13)


def step_seed(seed: int, step: int, micro: int) -> int:
    return int(hashlib.sha256(f"orthrus-anchors/{seed}/{step}/{micro}".encode()).hexdigest()[:15], 16)


def learning_rate(cfg: TrainConfig, step: int, planned_steps: int | None) -> float:
    """Linear warm-up, then cosine down to min_lr_ratio * lr at planned_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if planned_steps is None:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, planned_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class Trainer:
    def __init__(self, cfg: TrainConfig, model, docs, eval_prompts: dict[str, list[list[int]]], *, init_dir: Path,
                 pad_id: int):
        self.cfg, self.model, self.eval_prompts, self.init_dir = cfg, model, eval_prompts, init_dir
        self.device = model.device
        self.dtype = compute_dtype(cfg.dtype, self.device)
        self.attention = make_attention(cfg.attention, device=self.device, compute_dtype=self.dtype)
        self.trainable = make_trainable(model, cfg.view, lora_rank=cfg.lora_rank, seed=cfg.seed)
        self.optimizer = torch.optim.AdamW([p for _, p in self.trainable], lr=cfg.lr, betas=(0.9, 0.95),
                                           weight_decay=cfg.weight_decay)
        self.stream = RowStream(docs, row_len=cfg.row_len, pad_id=pad_id, seed=cfg.seed)
        self.fingerprint = {**cfg.fingerprint(), "data": documents_digest(docs)}
        self.step, self.planned_steps = 0, (None if cfg.time_budget_min else cfg.max_steps)
        self.train_time_s, self.compile_time_s, self.history, self.timed = 0.0, 0.0, [], []
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.attention_verified = False  # set by the first step run in this process
        self.curve_skipped = False  # no matplotlib: no tau curve (said once)

    # ---- one optimisation step ------------------------------------------------------------
    def train_step(self) -> DraftStats:
        cfg, model = self.cfg, self.model
        model.train()
        self.optimizer.zero_grad(set_to_none=True)
        stats = DraftStats(cfg.block_size)
        for micro in range(cfg.grad_accum):
            first = (self.step * cfg.grad_accum + micro) * cfg.rows_per_micro
            rows = self.stream.rows(first, cfg.rows_per_micro).to(self.device)
            generator = torch.Generator().manual_seed(step_seed(cfg.seed, self.step, micro))
            blocks = sample_blocks(rows, block_size=cfg.block_size, num_blocks=cfg.num_blocks,
                                   mask_token_id=model.config.mask_token_id, generator=generator)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                ar_kv, teacher_hidden = teacher_pass(model, rows, self.attention)
                hidden = draft_pass(model, blocks, ar_kv, self.attention, row_len=cfg.row_len)
                loss, micro_stats = draft_loss(model.lm_head, teacher_hidden, hidden, blocks, loss=cfg.loss,
                                               decay=cfg.decay)
            (loss / cfg.grad_accum).backward()
            stats.add(micro_stats)
        params = [p for _, p in self.trainable]
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(cfg, self.step, self.planned_steps)
        self.optimizer.step()
        self.step += 1
        return stats

    def _plan(self, step_time: float) -> None:
        """With a time budget: fix the schedule's length once, from the measured step time."""
        if self.planned_steps is not None or self.step not in TIMED_STEPS:
            return
        self.timed.append(step_time)
        if self.step == TIMED_STEPS[-1] or self.step >= self.cfg.warmup_steps:
            per_step = sum(self.timed) / len(self.timed)
            left = max(0.0, 60 * self.cfg.time_budget_min - self.train_time_s)
            self.planned_steps = min(self.cfg.max_steps, self.step + int(left / per_step))

    # ---- evaluation, saving ---------------------------------------------------------------
    def evaluate(self) -> dict:
        """Held-out tau of every eval prompt set at every eval block size, appended to the history (and the
        curve redrawn)."""
        cfg = self.cfg
        record = {"step": self.step, "train_time_s": round(self.train_time_s, 1)}
        start = time.perf_counter()
        for i, (name, prompts) in enumerate(self.eval_prompts.items()):
            for b in cfg.eval_block_size_list:
                result = eval_reference(self.model, prompts, block_size=b, max_new_tokens=cfg.eval_max_new_tokens,
                                        batch_size=cfg.eval_batch_size)
                record[eval_key(i, name, b)] = {"tau": result.tau, "acceptance_per_position": result.acceptance_per_position,
                                                "accept_length_histogram": result.accept_length_histogram,
                                                "num_steps": result.num_steps, "num_tokens": result.num_tokens}
        record["eval_s"] = round(time.perf_counter() - start, 1)
        self.history.append(record)
        from .plot import NO_MATPLOTLIB, plot_tau_curve

        title = f"{Path(cfg.model).name}: held-out tau"
        drawn = plot_tau_curve(self.history, self.out / "tau_curve.png", title=title,
                               main_set=next(iter(self.eval_prompts), None))
        if drawn is None and not self.curve_skipped:  # said once per run
            self.curve_skipped = True
            from tqdm import tqdm

            tqdm.write(NO_MATPLOTLIB.format(self.out / "results.json"), file=sys.stderr)
        return record

    def save(self) -> None:
        save_train_state(self.out / STATE_FILE, step=self.step, planned_steps=self.planned_steps, trainable=self.trainable,
                         optimizer=self.optimizer, fingerprint=self.fingerprint,
                         extra={"train_time_s": self.train_time_s, "compile_time_s": self.compile_time_s,
                                "history": self.history, "timed": self.timed})

    def resume(self) -> bool:
        path = self.out / STATE_FILE
        if not path.is_file():
            return False
        state = load_train_state(path, trainable=self.trainable, optimizer=self.optimizer, fingerprint=self.fingerprint)
        self.step, self.planned_steps = state["step"], state["planned_steps"]
        extra = state["extra"]
        self.train_time_s, self.history, self.timed = extra["train_time_s"], extra["history"], extra["timed"]
        self.compile_time_s = extra["compile_time_s"]
        return True

    @property
    def finished(self) -> bool:
        cfg = self.cfg
        if self.step >= (self.planned_steps or cfg.max_steps):
            return True
        return bool(cfg.time_budget_min) and self.train_time_s >= 60 * cfg.time_budget_min

    def eval_due(self, last_eval_time: float) -> bool:
        cfg = self.cfg
        by_steps = cfg.eval_every and self.step % cfg.eval_every == 0
        by_time = cfg.eval_every_min and self.train_time_s - last_eval_time >= 60 * cfg.eval_every_min
        return bool(by_steps or by_time)

    def write_model(self) -> Path:
        return write_orthrus_checkpoint(self.init_dir, self.out / "model", diff_state(self.model),
                                        block_size=self.cfg.block_size)


def run(trainer: Trainer, *, deadline: float | None) -> bool:
    """Train until finished or the deadline; returns whether training is finished."""
    from tqdm import tqdm

    cfg = trainer.cfg
    log = (trainer.out / "train_log.jsonl").open("a", encoding="utf-8")
    bar = tqdm(total=trainer.planned_steps or cfg.max_steps, initial=trainer.step, desc="training", unit="step",
               disable=not cfg.progress, dynamic_ncols=True)
    if not trainer.history and cfg.eval_at_start:
        trainer.evaluate()  # the starting point of the tau curve
    last_eval = trainer.history[-1]["train_time_s"] if trainer.history else 0.0
    ema = None
    try:
        while not trainer.finished and (deadline is None or time.monotonic() < deadline):
            start = time.perf_counter()
            stats = trainer.train_step() if trainer.attention_verified else _verify_attention(trainer, bar)
            elapsed = time.perf_counter() - start
            if trainer.step <= UNTIMED_STEPS:
                trainer.compile_time_s += elapsed
            else:
                trainer.train_time_s += elapsed
            trainer._plan(elapsed)
            if trainer.planned_steps is not None:
                bar.total = trainer.planned_steps
            ema = _ema(ema, stats)
            bar.update(1)
            bar.set_postfix(loss=f"{stats.loss:.3f}", acc=f"{ema[1]:.3f}", tau_est=f"{ema[2]:.2f}",
                            lr=f"{trainer.optimizer.param_groups[0]['lr']:.1e}")
            log.write(json.dumps({"step": trainer.step, "loss": stats.loss, "draft_accuracy": stats.accuracy,
                                  "tau_estimate": stats.tau_estimate, "time_s": round(trainer.train_time_s, 2),
                                  "lr": trainer.optimizer.param_groups[0]["lr"]}) + "\n")
            if trainer.eval_due(last_eval) and not trainer.finished:
                record = trainer.evaluate()
                last_eval = record["train_time_s"]
                bar.write(f"step {trainer.step}: held-out " + ", ".join(
                    f"tau(B={k[1:]}) {v['tau']:.2f}" for k, v in record.items() if k.startswith("B")))
            if trainer.step % cfg.save_every == 0:
                trainer.save()
    finally:
        bar.close()
        log.close()
    trainer.save()
    return trainer.finished


def _verify_attention(trainer: Trainer, bar) -> DraftStats:
    """This process's first step; if flex_attention fails (compile, backward), say so and go on with masked SDPA."""
    try:
        stats = trainer.train_step()
    except Exception as exc:  # noqa: BLE001  (a Triton/inductor failure must not end a time-boxed run)
        if trainer.attention.name != "flex":
            raise
        bar.write(f"flex_attention failed ({type(exc).__name__}: {str(exc)[:300]}); continuing with masked SDPA")
        trainer.attention = make_attention("sdpa", device=trainer.device, compute_dtype=trainer.dtype)
        trainer.optimizer.zero_grad(set_to_none=True)  # the failed step never reached optimizer.step()
        stats = trainer.train_step()
    trainer.attention_verified = True
    return stats


def _ema(previous: tuple | None, stats: DraftStats, alpha: float = 0.1) -> tuple:
    """(loss, draft accuracy, tau estimate), smoothed for the progress bar."""
    now = (stats.loss, stats.accuracy, stats.tau_estimate)
    if previous is None:
        return now
    return tuple(n if math.isnan(p) else p if math.isnan(n) else (1 - alpha) * p + alpha * n
                 for p, n in zip(previous, now))


def build_trainer(cfg: TrainConfig, *, deadline: float | None = None) -> Trainer | None:
    """Starting checkpoint, data (distilled if needed) and model; None if the deadline cut distillation short."""
    init_dir = starting_checkpoint(cfg)
    device = resolve_device(cfg.device)
    model = load_model(init_dir, device=device, dtype=torch.float32)
    tokenizer = load_tokenizer(init_dir)
    docs = training_documents(cfg, model, tokenizer, deadline=deadline)
    if docs is None:
        return None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.config.eos_token_ids[0]
    return Trainer(cfg, model, docs, eval_prompt_ids(cfg, tokenizer), init_dir=init_dir, pad_id=pad_id)


def distil_data(cfg: TrainConfig, *, deadline: float | None = None) -> Path | None:
    """Only the data stage: OUT/data/train.jsonl complete (None if the deadline came first)."""
    init_dir = starting_checkpoint(cfg)
    model = load_model(init_dir, device=resolve_device(cfg.device), dtype=torch.float32)
    docs = training_documents(cfg, model, load_tokenizer(init_dir), deadline=deadline)
    return None if docs is None else Path(cfg.out) / "data" / "train.jsonl"


def train(cfg: TrainConfig) -> dict:
    """The whole run, resumable: returns the results (also written to OUT/results.json when finished)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    deadline = deadline_from(cfg.deadline_min)
    trainer = build_trainer(cfg, deadline=deadline)
    if trainer is None:
        return {"finished": False, "stage": "distill"}
    trainer.resume()
    if not run(trainer, deadline=deadline):
        return {"finished": False, "stage": "train", "step": trainer.step}
    if not trainer.history or trainer.history[-1]["step"] != trainer.step:
        trainer.evaluate()
        trainer.save()
    model_dir = trainer.write_model()
    results = {"finished": True, "model": str(model_dir), "steps": trainer.step, "train_time_s": trainer.train_time_s,
               "compile_time_s": trainer.compile_time_s, "attention": trainer.attention.name,
               "final": trainer.history[-1], "history": trainer.history, "config": cfg.to_dict()}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
