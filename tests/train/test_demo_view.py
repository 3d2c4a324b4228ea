"""apply_demo_view: what demo.py calls after converting the demo checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from orthrus_sglang.demo_view import VIEW_FILE, apply_demo_view
from orthrus_sglang.ref.loader import read_state_dict
from orthrus_sglang.train.delta import make_view, save_view


def test_no_view_file_leaves_the_checkpoint_alone(trained, tmp_path):
    init = Path(trained[0].out) / "init"
    copy = tmp_path / "ckpt"
    shutil.copytree(init, copy)
    assert apply_demo_view(copy, view_file=tmp_path / "absent.safetensors") is None
    assert read_state_dict(copy).keys() == read_state_dict(init).keys()


def test_a_view_file_is_applied(trained, tmp_path):
    cfg, results = trained
    init = Path(cfg.out) / "init"
    base = read_state_dict(init)
    trained_diff = {n: t for n, t in read_state_dict(results["model"]).items() if "_diff" in n}
    path = save_view(tmp_path / "view.safetensors", *make_view(base, trained_diff, rank=64, bits=16,
                                                                meta={"block_size": 8}))
    copy = tmp_path / "ckpt"
    shutil.copytree(init, copy)
    assert apply_demo_view(copy, view_file=path)["block_size"] == 8
    after = read_state_dict(copy)
    name = next(iter(trained_diff))
    assert torch.allclose(after[name], trained_diff[name], atol=1e-3)
    assert VIEW_FILE.name == "smollm2-135m-instruct-view.safetensors"  # where scripts/gpu_train_demo.sh's artefact goes
