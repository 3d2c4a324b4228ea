"""Orthrus sampling draws from the AR distribution: chi-square tests on a 16-token vocabulary.

The exact AR distribution of the first generated tokens is computed by enumerating every
prefix; thousands of seeded Orthrus samples must fit it. The same test with a broken
acceptance rule (always accept the drafts) must fail, which shows the test has power.
"""

import pytest
import torch

from orthrus_sglang import SamplingParams
from orthrus_sglang.ref.engine import Engine
from orthrus_sglang.testing import chi_square_pvalue, exact_ar_distribution, write_tiny_checkpoint

V, PROMPT, N = 16, [3, 1, 4], 4000
SETTINGS = [dict(temperature=1.0), dict(temperature=0.7, top_k=6, top_p=0.9), dict(temperature=1.0, min_p=0.15),
            dict(temperature=0.8, top_p=0.85, min_p=0.05)]
SETTING_IDS = ["t1", "t0.7-k6-p0.9", "t1-minp0.15", "t0.8-p0.85-minp0.05"]


@pytest.fixture(scope="module")
def tiny_vocab_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-vocab")
    return write_tiny_checkpoint(path, with_tokenizer=False, vocab_size=V, mask_token_id=V - 1, eos_token_id=V - 2,
                                 block_size=4, seed=5)


def exact_joint(model, params: SamplingParams) -> torch.Tensor:
    return exact_ar_distribution(model, PROMPT, temperature=params.temperature, top_k=params.top_k, top_p=params.top_p,
                                 min_p=params.min_p)


def orthrus_samples(engine: Engine, params: SamplingParams) -> torch.Tensor:
    plist = [SamplingParams(max_new_tokens=3, ignore_eos=True, seed=i, temperature=params.temperature,
                            top_k=params.top_k, top_p=params.top_p, min_p=params.min_p) for i in range(N)]
    results = engine.generate([PROMPT] * N, plist)
    return torch.tensor([r.token_ids for r in results])  # [N, 3]


goodness_of_fit = chi_square_pvalue


@pytest.mark.parametrize("setting", SETTINGS, ids=SETTING_IDS)
def test_orthrus_sampling_matches_exact_ar_distribution(tiny_vocab_model, setting):
    params = SamplingParams(**setting)
    engine = Engine(tiny_vocab_model, block_size=4, max_batch_size=N)
    joint = exact_joint(engine.model, params)
    samples = orthrus_samples(engine, params)
    print(f"\n[reference sampling {setting}] p-values (t1,t2) {goodness_of_fit(samples[:, :2], joint.sum(2)):.3g}, "
          f"(t2,t3) {goodness_of_fit(samples[:, 1:], joint.sum(0)):.3g}, t3 {goodness_of_fit(samples[:, 2:], joint.sum((0, 1))):.3g}")
    assert goodness_of_fit(samples[:, :2], joint.sum(2)) > 1e-3  # (t1, t2): t2 is a draft or a residual draw
    assert goodness_of_fit(samples[:, 2:], joint.sum((0, 1))) > 1e-3  # t3 marginal
    assert goodness_of_fit(samples[:, 1:], joint.sum(0)) > 1e-3  # (t2, t3): both from one block
    # AR sampling on the same engine fits too (the baseline and the enumeration agree).
    ar = engine.generate([PROMPT] * 2000, [SamplingParams(max_new_tokens=3, ignore_eos=True, seed=10**6 + i, **setting)
                                           for i in range(2000)], ar_only=True)
    assert goodness_of_fit(torch.tensor([r.token_ids for r in ar])[:, :2], joint.sum(2)) > 1e-3


class AlwaysAcceptEngine(Engine):
    """A lossy rule on purpose: every sampled draft is kept, the AR view only adds the bonus."""

    def accept(self, reqs, drafts, draft_dist, target_logits, rows):
        n = torch.full((drafts.shape[0],), drafts.shape[1], dtype=torch.long)
        return n, target_logits[:, -1].argmax(-1)


def test_the_chi_square_test_catches_a_lossy_acceptance_rule(tiny_vocab_model):
    params = SamplingParams(temperature=1.0)
    engine = AlwaysAcceptEngine(tiny_vocab_model, block_size=4, max_batch_size=N)
    joint = exact_joint(engine.model, params)
    samples = orthrus_samples(engine, params)
    assert goodness_of_fit(samples[:, :2], joint.sum(2)) < 1e-6


class DropsMinPEngine(Engine):
    """The bug this branch fixed, on purpose: min_p silently ignored."""

    def _rows(self, reqs, vocab):
        rows = super()._rows(reqs, vocab)
        rows.min_p = torch.zeros_like(rows.min_p)
        return rows


def test_the_chi_square_test_catches_a_dropped_min_p(tiny_vocab_model):
    params = SamplingParams(temperature=1.0, min_p=0.15)
    engine = DropsMinPEngine(tiny_vocab_model, block_size=4, max_batch_size=N)
    samples = orthrus_samples(engine, params)
    pvalue = goodness_of_fit(samples[:, :2], exact_joint(engine.model, params).sum(2))
    print(f"\n[power: min_p dropped] p-value (t1,t2) {pvalue:.3g}")
    assert pvalue < 1e-6


def test_mixed_batch_greedy_rows_equal_ar_greedy(tiny_vocab_model):
    """Greedy and sampled requests in one batch: the greedy ones are token-identical to AR greedy."""
    engine = Engine(tiny_vocab_model, block_size=4, max_batch_size=8)
    greedy = SamplingParams(max_new_tokens=24, ignore_eos=True)
    sampled = [SamplingParams(max_new_tokens=24, ignore_eos=True, temperature=0.9, top_k=8, min_p=0.02, seed=s)
               for s in range(3)]
    prompts = [PROMPT, [5, 9], PROMPT, [7, 7, 7], [2]]
    params = [greedy, sampled[0], greedy, sampled[1], sampled[2]]
    mixed = engine.generate(prompts, params)
    ar = engine.generate([prompts[0], prompts[2]], greedy, ar_only=True)
    assert mixed[0].token_ids == ar[0].token_ids and mixed[2].token_ids == ar[1].token_ids
    # and the sampled rows are those of the same requests run alone (seeded, batch-independent)
    alone = engine.generate([prompts[1]], [sampled[0]])
    assert alone[0].token_ids == mixed[1].token_ids


def test_seeded_sampling_is_reproducible(tiny_vocab_model):
    engine = Engine(tiny_vocab_model, block_size=4, max_batch_size=4)
    params = [SamplingParams(max_new_tokens=20, temperature=1.0, seed=s, ignore_eos=True) for s in (1, 1, 2)]
    a, b, c = engine.generate([PROMPT] * 3, params)
    assert a.token_ids == b.token_ids != c.token_ids


def test_diffusion_view_disagrees_with_ar_here(tiny_vocab_model):
    """Guard: the test model's q differs from p, so rejections and residual draws really happen."""
    engine = Engine(tiny_vocab_model, block_size=4, max_batch_size=N)
    results = engine.generate([PROMPT] * 200, [SamplingParams(max_new_tokens=10, temperature=1.0, seed=i)
                                               for i in range(200)])
    hist = [sum(r.stats.accept_length_histogram[n] for r in results) for n in range(4)]
    assert hist[0] > 0 and sum(hist[1:]) > 0


def test_drafts_from_a_truncated_q_stay_lossless(tiny_vocab_model, monkeypatch):
    """q keeps only DRAFT_CANDIDATES tokens (a fixed shape for the CUDA graph). Any q the drafts
    really come from is lossless: with 3 candidates of 16 tokens the output still fits AR's."""
    from orthrus_sglang import accept

    monkeypatch.setattr(accept, "DRAFT_CANDIDATES", 3)
    params = SamplingParams(temperature=1.0)
    engine = Engine(tiny_vocab_model, block_size=4, max_batch_size=N)
    samples = orthrus_samples(engine, params)
    joint = exact_joint(engine.model, params)
    assert goodness_of_fit(samples[:, :2], joint.sum(2)) > 1e-3
    assert goodness_of_fit(samples[:, 1:], joint.sum(0)) > 1e-3
