"""The compact trained-view artefact: compress, save, apply to a fresh base -> the trained view, within the compression."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from orthrus_sglang.ref.loader import read_state_dict
from orthrus_sglang.train.delta import ViewMismatch, apply_view, load_view, make_view, save_view, view_diff_state


def diff_only(state):
    return {n: t for n, t in state.items() if "_diff" in n}


@pytest.fixture(scope="module")
def states(trained):
    cfg, results = trained
    init = Path(cfg.out) / "init"
    return init, read_state_dict(init), diff_only(read_state_dict(results["model"]))


def relative_error(a, b):
    return float((a - b).norm() / b.norm())


def test_full_rank_fp16_view_applied_to_a_fresh_base_gives_the_trained_view(states, tmp_path):
    init, base, trained = states
    tensors, info = make_view(base, trained, rank=64, bits=16, meta={"block_size": 8})
    path = save_view(tmp_path / "view.safetensors", tensors, info)
    assert load_view(path)[1] == info and (tmp_path / "view.json").is_file()
    fresh = tmp_path / "fresh"
    shutil.copytree(init, fresh)
    assert apply_view(fresh, path)["block_size"] == 8
    applied = read_state_dict(fresh)
    for name, value in base.items():
        if "_diff" not in name:
            assert torch.equal(applied[name], value), name  # the AR view is untouched
    for name, value in trained.items():
        assert relative_error(applied[name], value) < 2e-3, name  # fp16 factors of the exact delta


def test_truncation_error_is_the_svd_tail(states):
    """Rank r keeps the r largest singular directions of each delta: the error is exactly the rest."""
    _, base, trained = states
    name = next(n for n in trained if n.endswith("q_proj_diff.weight"))
    delta = (trained[name] - base[name.replace("_diff", "")]).double()
    S = torch.linalg.svdvals(delta)
    for rank in (4, 16):
        tensors, _ = make_view(base, {name: trained[name]}, rank=rank, bits=16)
        restored = view_diff_state(tensors, base)[name].double()
        error = (restored - trained[name].double()).norm()
        assert abs(float(error) - float(S[rank:].norm())) < 1e-2 * float(delta.norm())


def test_int8_view_stays_close(states):
    _, base, trained = states
    tensors, _ = make_view(base, trained, rank=64, bits=8)
    assert all(t.dtype == torch.int8 for n, t in tensors.items() if n.endswith((".a", ".b")))
    restored = view_diff_state(tensors, base)
    for name, value in trained.items():
        delta = value - base.get(name.replace("_diff", ""), torch.zeros_like(value))
        assert (restored[name] - value).norm() < 0.02 * delta.norm() + 1e-6, name


def test_a_view_refuses_other_base_weights(states, tmp_path):
    init, base, trained = states
    tensors, info = make_view(base, trained, rank=8, bits=16)
    path = save_view(tmp_path / "view.safetensors", tensors, info)
    other = tmp_path / "other"
    shutil.copytree(init, other)
    state = read_state_dict(other)
    state["model.norm.weight"] = state["model.norm.weight"] + 1e-3
    from orthrus_sglang.ref.loader import save_state_dict

    save_state_dict(state, other)
    with pytest.raises(ViewMismatch, match="other base weights"):
        apply_view(other, path)
    assert torch.equal(read_state_dict(other)["model.norm.weight"], state["model.norm.weight"])  # nothing written
