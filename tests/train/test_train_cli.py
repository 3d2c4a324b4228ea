"""`orthrus train` / `orthrus eval` and the loss comparison, from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orthrus_sglang.cli import main
from orthrus_sglang.train import compare


@pytest.mark.parametrize("argv, message", [
    (["train", "--out", "x"], "missing required setting(s): --model"),
    (["train", "--model", "m", "--out", "x", "--loss", "mse"], "loss must be one of ('kl', 'ce')"),
    (["train", "--model", "m", "--out", "x", "--block-size", "1"], "block_size must be >= 2"),
    (["train", "--model", "/no/such/dir", "--out", "x"], "is not a directory nor a hub id"),
    (["train", "--config", "/no/such.json", "--out", "x"], "no such config file"),
])
def test_bad_training_input_is_one_clear_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("orthrus: error:") and message in err and "\n" not in err


def test_config_file_and_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.json").write_text(json.dumps({"model": "/no/such/dir", "out": "x", "lossy": 1}))
    assert main(["train", "--config", "c.json"]) == 2
    assert "unknown setting(s) lossy" in capsys.readouterr().err


def test_eval_prints_and_writes_tau(trained, tmp_path, capsys):
    _, results = trained
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", results["model"], "--num-prompts", "3", "--max-new-tokens", "12",
                 "--block-sizes", "8,4", "--check-ar", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[reference] B=8: tau" in printed and "acceptance by draft position" in printed
    records = json.loads(out.read_text())["results"]
    assert [r["block_size"] for r in records] == [8, 4]
    assert all(r["identical_to_ar"] == 1.0 and r["tau"] >= 1 and len(r["acceptance_per_position"]) == r["block_size"] - 1
               for r in records)


def test_eval_with_low_precision_draft_weights(trained, tmp_path, capsys):
    """--draft-weights int4: the draft pass reads int4 copies (emulated on the CPU); output still AR's."""
    _, results = trained
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", results["model"], "--num-prompts", "3", "--max-new-tokens", "12",
                 "--block-sizes", "8", "--check-ar", "--draft-weights", "int4", "--json", str(out)]) == 0
    assert "[reference, int4 drafts] B=8: tau" in capsys.readouterr().out
    (record,) = json.loads(out.read_text())["results"]
    assert record["draft_weights"] == "int4" and record["identical_to_ar"] == 1.0


def test_eval_names_the_kind_auto_resolves_to(trained, tmp_path, capsys):
    """--draft-weights auto: both engines run the kind a server on this device would load (on a CPU
    bf16: no fused fp8 kernels), and the results name it, with what was asked."""
    _, results = trained
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", results["model"], "--num-prompts", "2", "--max-new-tokens", "8",
                 "--block-sizes", "4", "--draft-weights", "auto", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "--draft-weights auto: bf16 drafts on cpu float32" in captured.err
    assert "[reference] B=4: tau" in captured.out  # bf16 drafts: no kind in the tag
    (record,) = json.loads(out.read_text())["results"]
    assert record["draft_weights"] == "bf16" and record["draft_weights_requested"] == "auto"


def test_loss_comparison_script(trained, tmp_path, capsys):
    cfg, _ = trained
    init, data = Path(cfg.out) / "init", Path(cfg.out) / "data" / "train.jsonl"
    assert compare.main(["--model", str(init), "--data", str(data), "--out", str(tmp_path), "--block-size", "8",
                         "--row-len", "256", "--rows-per-micro", "2", "--max-steps", "6", "--warmup-steps", "2",
                         "--num-eval-prompts", "2", "--eval-max-new-tokens", "8", "--no-progress",
                         "--variants", "kl,ce:decay=4"]) == 0
    table = capsys.readouterr().out
    assert "| variant | steps | tau B=8 |" in table
    rows = json.loads((tmp_path / "comparison.json").read_text())
    assert sorted(r["variant"] for r in rows) == ["ce:decay=4", "kl"] and all(r["steps"] == 6 for r in rows)
    assert rows[0]["B8"]["tau"] >= rows[1]["B8"]["tau"]  # best first
