"""Keyed sampling on a realistic vocabulary: no uniform equal to 0 or 1, no filtered-out token ever drawn.

The bug these tests pin (issue 20): uniforms were ((h >> 8) + 0.5) / 2^24 in float32, so the top
bucket rounded to exactly 1.0, -log(U) was -0.0, and the exponential race picked a uniformly random
token, filtered or not, in about V / 2^24 of draws (5e-6 at V = 110, 0.8% at V = 2^17, 0.9% at
Qwen3's 151,936). The chi-square tests on a 16-token vocabulary could never see it.
"""

from __future__ import annotations

import pytest
import torch

from orthrus_sglang import SamplingParams
from orthrus_sglang import sampling as sampling_module
from orthrus_sglang.ref.engine import Engine
from orthrus_sglang.ref.loader import load_model
from orthrus_sglang.sampling import exponentials, filtered_probs, race, row_keys, sample_keyed, uniforms
from orthrus_sglang.testing import large_vocab_sampling_check, write_large_vocab_checkpoint

V = 1 << 17
SETTINGS = [dict(temperature=0.7, top_k=20), dict(temperature=0.7, top_p=0.9), dict(temperature=0.7, min_p=0.1)]
SETTING_IDS = ["k20", "p0.9", "minp0.1"]


def test_every_hash_bucket_gives_a_uniform_strictly_inside_0_1():
    """Exhaustive: all 2^24 values of the hash's top 24 bits (uniforms keep fewer), in float32 as used."""
    h = torch.arange(1 << 24, dtype=torch.int64) << 8
    for low in (0, 0xFF):  # the discarded low bits all clear, all set
        u = uniforms(h | low)
        assert u.dtype == torch.float32
        assert bool((u > 0).all()) and bool((u < 1).all())
        e = exponentials(h | low)
        assert bool(torch.isfinite(e).all()) and bool((e > 0).all())
    assert int(torch.unique(uniforms(h)).numel()) == 1 << sampling_module._UNIFORM_BITS  # no two buckets merge


def test_the_old_24_bit_uniforms_reached_1(monkeypatch):
    """The exhaustive test above has power: with 24 bits the top bucket is exactly 1.0."""
    monkeypatch.setattr(sampling_module, "_UNIFORM_BITS", 24)
    u = uniforms(torch.arange(1 << 24, dtype=torch.int64) << 8)
    assert float(u.max()) == 1.0 and float(exponentials(torch.tensor([0xFFFFFFFF]))) == 0.0


def test_the_race_never_picks_a_zero_probability_token():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5], [0.0, 0.0, 1e-30, 0.0]])
    # The worst exponentials a zero-probability token could meet: 0 (-0.0 too), a denormal, inf.
    for bad in (0.0, -0.0, 1e-45, float("inf")):
        exps = torch.tensor([[bad, 1e30, bad, 1e30], [bad, bad, 1e30, bad]])
        assert race(probs, exps).tolist() == [1, 2] or race(probs, exps).tolist() == [3, 2]


def lm_like_probs(rows: int, setting: dict, seed: int = 0) -> torch.Tensor:
    """Filtered next-token laws [rows, 1, V] from LM-like logits: Gaussian with a wide spread, so that
    top_p 0.9 keeps tens of tokens and a long tail is filtered out."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, 1, V, generator=gen) * 4.0
    full = lambda x: torch.full((rows,), x)  # noqa: E731
    return filtered_probs(logits, full(float(setting["temperature"])), full(setting.get("top_k", 0)),
                          full(float(setting.get("top_p", 1.0))), full(float(setting.get("min_p", 0.0))))


def filtered_out_draws(setting: dict, draws: int) -> tuple[int, float]:
    """(draws of a zero-probability token, mean kept tokens per row) over ``draws`` keyed draws."""
    rows = 8
    probs = lm_like_probs(rows, setting)
    leaked = 0
    per_row = draws // rows
    for r in range(rows):
        keys = row_keys(torch.full((1,), 1000 + r), torch.arange(per_row).view(1, -1), sampling_module.STREAM_TOKEN)
        for i in range(0, per_row, 256):
            k = keys[:, i : i + 256]
            drawn = sample_keyed(probs[r : r + 1].expand(1, k.shape[1], V), k).view(-1)
            leaked += int((probs[r, 0, drawn] == 0).sum())
    return leaked, float((probs > 0).sum(-1).float().mean())


# 10,000 draws over the three settings: a leak of rate 1e-3 shows ~10 times (P(never) = 5e-5); the
# old bug's ~0.8% about 80 times.
DRAWS = 10_000 // len(SETTINGS)


@pytest.mark.parametrize("setting", SETTINGS, ids=SETTING_IDS)
def test_keyed_draws_never_pick_a_filtered_out_token_on_a_large_vocabulary(setting):
    leaked, kept = filtered_out_draws(setting, DRAWS)
    print(f"\n[V=2^17 {setting}] {DRAWS} draws, {kept:.0f} tokens kept per row, {leaked} filtered-out draws")
    assert 1 <= kept < V / 10  # the filter really cuts a long tail
    assert leaked == 0


def test_the_large_vocabulary_test_catches_the_old_sampler(monkeypatch):
    """Power: 24-bit uniforms and the unguarded race (probs / E).argmax, as before the fix."""
    monkeypatch.setattr(sampling_module, "_UNIFORM_BITS", 24)
    monkeypatch.setattr(sampling_module, "race", lambda probs, exps: (probs / exps).argmax(dim=-1))
    leaked, _ = filtered_out_draws(SETTINGS[0], DRAWS)
    print(f"\n[V=2^17, the old sampler] {leaked} of {DRAWS} draws picked a filtered-out token")
    assert leaked >= 8  # expected about DRAWS * (V - 20) / 2^24 = 26


# ---- through the reference engine: first token, drafts from q, residual and bonus draws -----------
# Top-p without top-k sorts the whole vocabulary at every step (minutes on 2 cores): the engines run
# top-k alone and all three filters together; each filter alone is covered above.
PROMPT = [11, 5, 42, 7]
ENGINE_SETTINGS = [dict(temperature=0.7, top_k=20), dict(temperature=0.7, top_k=50, top_p=0.9, min_p=0.1)]
ENGINE_SETTING_IDS = ["k20", "k50-p0.9-minp0.1"]
REQUESTS = 600  # x 8 tokens: about 7 keyed draws each (the first token, then a bonus per step)


@pytest.fixture(scope="module")
def large_vocab_checkpoint(tmp_path_factory):
    return write_large_vocab_checkpoint(tmp_path_factory.mktemp("v131k"), vocab_size=V)


@pytest.fixture(scope="module")
def large_vocab_engine(large_vocab_checkpoint):
    return Engine(large_vocab_checkpoint, block_size=4, max_batch_size=64, max_seq_len=32)


def reference_outputs(engine: Engine, setting: dict, n: int, seed0: int = 0):
    params = [SamplingParams(max_new_tokens=8, ignore_eos=True, seed=seed0 + i, **setting) for i in range(n)]
    return engine.generate([PROMPT] * n, params)


@pytest.mark.parametrize("setting", ENGINE_SETTINGS, ids=ENGINE_SETTING_IDS)
def test_reference_engine_on_a_large_vocabulary(large_vocab_engine, large_vocab_checkpoint, setting):
    results = reference_outputs(large_vocab_engine, setting, REQUESTS)
    draws = sum(1 + r.stats.num_steps for r in results)
    r = large_vocab_sampling_check(load_model(large_vocab_checkpoint), PROMPT, setting, [x.token_ids for x in results])
    print(f"\n[reference V=2^17 {setting}] {r['tokens']} tokens from {draws} keyed draws, {r['filtered_out']} "
          f"filtered out; (t1, t2) chi-square p {r['pvalue']:.3g} over {r['support']} support tokens "
          f"({r['first_token_support']} for t1)")
    assert r["first_token_support"] >= 2 and r["support"] < V / 10  # a real choice, a real filtered tail
    assert r["filtered_out"] == 0
    assert r["pvalue"] > 1e-3


def test_reference_engine_large_vocabulary_seeds_replay(large_vocab_engine):
    """Same seed, same tokens: alone or in a batch of other requests."""
    setting = ENGINE_SETTINGS[1]
    batch = [r.token_ids for r in reference_outputs(large_vocab_engine, setting, 6, seed0=77)]
    alone = [r.token_ids for r in reference_outputs(large_vocab_engine, setting, 1, seed0=77 + 3)]
    assert alone[0] == batch[3] and len({tuple(o) for o in batch}) > 1
