"""A real (tiny) training run: lossless, only the diffusion view moves, and the drafts get better.

The run starts from a plain random Llama checkpoint (train converts it and distils its greedy
answers to the shipped prompts), trains 250 CPU steps and writes an Orthrus checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from orthrus_sglang.prompting import encode_prompt
from orthrus_sglang.ref.engine import Engine
from orthrus_sglang.ref.loader import load_model, read_state_dict
from orthrus_sglang.sampling import SamplingParams
from orthrus_sglang.train.data import Document
from orthrus_sglang.train.distill import distill
from orthrus_sglang.train.measure import draft_stats
from orthrus_sglang.train.prompts import read_prompts
from orthrus_sglang.train.setup import load_tokenizer

from conftest import BLOCK


@pytest.fixture(scope="module")
def heldout_docs(trained, tmp_path_factory):
    """The base model's greedy answers to 48 held-out prompts (never trained on)."""
    cfg, _ = trained
    init = Path(cfg.out) / "init"
    tok = load_tokenizer(init)
    prompts = [encode_prompt(tok, t) for t in read_prompts("builtin", 48, split="heldout")]
    path = tmp_path_factory.mktemp("heldout") / "heldout.jsonl"
    distill(load_model(init), prompts, path, max_new_tokens=64, batch_size=48, progress=False)
    return [Document(r["prompt_ids"], r["answer_ids"]) for r in map(json.loads, path.read_text().splitlines())]


def test_greedy_output_equals_the_base_models(trained, plain_llama):
    """Orthrus decoding with the trained view = transformers' own greedy decoding of the plain checkpoint."""
    cfg, results = trained
    tok = load_tokenizer(Path(results["model"]))
    prompts = [encode_prompt(tok, t) for t in read_prompts("builtin", 6, split="heldout")]
    engine = Engine(results["model"], max_batch_size=len(prompts))
    ours = engine.generate(prompts, SamplingParams(max_new_tokens=40, ignore_eos=True))
    base = LlamaForCausalLM.from_pretrained(plain_llama, dtype=torch.float32).eval()
    for prompt, result in zip(prompts, ours):
        expected = base.generate(torch.tensor([prompt]), max_new_tokens=40, do_sample=False, eos_token_id=None,
                                 pad_token_id=0)[0, len(prompt):].tolist()
        assert result.token_ids == expected
    assert sum(r.stats.num_accepted_drafts for r in ours) > 0  # the drafts did take part


def test_only_the_diffusion_view_changed(trained):
    cfg, results = trained
    before, after = read_state_dict(Path(cfg.out) / "init"), read_state_dict(results["model"])
    assert set(before) == set(after)
    base_names = [n for n in before if "_diff" not in n]
    diff_names = [n for n in before if "_diff" in n]
    assert base_names and diff_names
    for name in base_names:
        assert after[name].dtype == before[name].dtype and torch.equal(after[name], before[name]), name
    assert all(not torch.equal(after[n], before[n]) for n in diff_names if n.endswith("proj_diff.weight"))


def test_training_raises_held_out_draft_accuracy(trained, heldout_docs):
    """Teacher-forced draft accuracy on held-out answers, before vs after 250 steps (fixed seed)."""
    cfg, results = trained
    measure = dict(block_size=BLOCK, row_len=256, pad_id=256, seed=0)
    before = draft_stats(load_model(Path(cfg.out) / "init"), heldout_docs, **measure)
    after = draft_stats(load_model(results["model"]), heldout_docs, **measure)
    print(f"held-out draft accuracy {before.accuracy:.3f} -> {after.accuracy:.3f}; per position "
          f"{[round(x, 2) for x in before.accuracy_per_position]} -> {[round(x, 2) for x in after.accuracy_per_position]}")
    assert after.accuracy > 2 * before.accuracy
    later = lambda s: sum(s.correct[1:]) / sum(s.valid[1:])  # noqa: E731  drafts 2..B-1, where the view starts near 0
    assert later(after) > 4 * later(before)


def test_run_writes_the_curve_and_results(trained):
    cfg, results = trained
    out = Path(cfg.out)
    assert (out / "tau_curve.png").stat().st_size > 0
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["steps"] == cfg.max_steps == results["steps"]
    assert [h["step"] for h in on_disk["history"]] == [0, cfg.max_steps]
    assert json.loads((Path(results["model"]) / "config.json").read_text())["block_size"] == BLOCK
