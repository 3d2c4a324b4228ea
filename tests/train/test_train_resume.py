"""A run split in two (save, new process state, resume) ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from orthrus_sglang.ref.loader import read_state_dict
from orthrus_sglang.train.delta import make_view, view_diff_state
from orthrus_sglang.train.loop import build_trainer, run
from orthrus_sglang.train.view import diff_state

from conftest import tiny_train_config

STEPS, SPLIT = 10, 4


def final_state(trainer) -> dict[str, torch.Tensor]:
    state = {f"param/{n}": p.detach().clone() for n, p in trainer.trainable}
    for i, s in enumerate(trainer.optimizer.state_dict()["state"].values()):
        state.update({f"adam/{i}/{k}": v.clone() for k, v in s.items() if torch.is_tensor(v)})
    return state


@pytest.mark.parametrize("view", ["full", "lora"])
def test_resume_equals_uninterrupted(trained, tmp_path, view):
    data = Path(trained[0].out) / "data" / "train.jsonl"  # the shared run's distilled answers
    cfg = tiny_train_config(Path(trained[0].out) / "init", tmp_path / "whole", data=str(data), max_steps=STEPS,
                            warmup_steps=3, grad_accum=2, rows_per_micro=2, view=view, lora_rank=4,
                            num_eval_prompts=2, eval_max_new_tokens=4)
    whole = build_trainer(cfg)
    assert run(whole, deadline=None)

    split_cfg = replace(cfg, out=str(tmp_path / "split"))
    first = build_trainer(split_cfg)
    for _ in range(SPLIT):
        first.train_step()
    first.save()
    del first  # nothing survives but the files
    second = build_trainer(split_cfg)
    assert second.resume() and second.step == SPLIT
    assert run(second, deadline=None) and second.step == STEPS

    expected, got = final_state(whole), final_state(second)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert all(torch.equal(a, b) for a, b in zip(diff_state(whole.model).values(), diff_state(second.model).values()))
    if view == "lora":  # a rank-4 view is stored losslessly (up to fp16) by a rank-4 artefact
        base = read_state_dict(Path(trained[0].out) / "init")
        restored = view_diff_state(make_view(base, diff_state(whole.model), rank=4, bits=16)[0], base)
        for name, value in diff_state(whole.model).items():
            assert float((restored[name] - value).norm()) <= 2e-3 * float(value.norm()), name


def test_resume_refuses_changed_settings(trained, tmp_path):
    data = Path(trained[0].out) / "data" / "train.jsonl"
    cfg = tiny_train_config(Path(trained[0].out) / "init", tmp_path, data=str(data), max_steps=2, warmup_steps=1,
                            rows_per_micro=1)
    first = build_trainer(cfg)
    first.train_step()
    first.save()
    changed = build_trainer(replace(cfg, lr=cfg.lr * 2))
    with pytest.raises(ValueError, match="lr"):
        changed.resume()


def test_a_failing_flex_attention_falls_back_to_sdpa(trained, tmp_path):
    """CPU flex_attention has no backward: the first step falls back, and the run equals an SDPA run."""
    data = Path(trained[0].out) / "data" / "train.jsonl"
    cfg = tiny_train_config(Path(trained[0].out) / "init", tmp_path / "flex", data=str(data), max_steps=3,
                            warmup_steps=1, rows_per_micro=1, attention="flex", eval_at_start=False,
                            num_eval_prompts=1, eval_max_new_tokens=2)
    flex = build_trainer(cfg)
    assert flex.attention.name == "flex" and run(flex, deadline=None)
    sdpa = build_trainer(replace(cfg, out=str(tmp_path / "sdpa"), attention="sdpa"))
    assert run(sdpa, deadline=None)
    assert flex.attention.name == "sdpa"
    for (name, a), (_, b) in zip(flex.trainable, sdpa.trainable):
        assert torch.equal(a, b), name
