"""Orthrus sampling draws from the AR distribution: chi-square tests on a 16-token vocabulary.

The exact AR distribution of the first generated tokens is computed by enumerating every
prefix; thousands of seeded Orthrus samples must fit it. The same test with a broken
acceptance rule (always accept the drafts) must fail, which shows the test has power.
"""

import itertools

import pytest
import torch
from scipy.stats import chisquare

from orthrus_sglang import SamplingParams
from orthrus_sglang.ref.engine import Engine
from orthrus_sglang.ref.loader import load_model
from orthrus_sglang.ref.model import ForwardBatch
from orthrus_sglang.sampling import filtered_probs
from orthrus_sglang.testing import write_tiny_checkpoint

V, PROMPT, N = 16, [3, 1, 4], 4000
SETTINGS = [dict(temperature=1.0), dict(temperature=0.7, top_k=6, top_p=0.9)]


@pytest.fixture(scope="module")
def tiny_vocab_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-vocab")
    return write_tiny_checkpoint(path, with_tokenizer=False, vocab_size=V, mask_token_id=V - 1, eos_token_id=V - 2,
                                 block_size=4, seed=5)


def ar_next_probs(model, prefixes: list[list[int]], params: SamplingParams) -> torch.Tensor:
    ids = torch.tensor(prefixes)
    cache = model.new_cache(len(prefixes), ids.shape[1])
    batch = ForwardBatch(torch.arange(len(prefixes)), torch.zeros(len(prefixes), dtype=torch.long), ids.shape[1])
    logits = model(ids, cache, batch, "ar")[:, -1:]
    n = len(prefixes)
    return filtered_probs(logits, torch.full((n,), params.temperature), torch.full((n,), params.top_k),
                          torch.full((n,), params.top_p))[:, 0].double()


def exact_joint(model, params: SamplingParams) -> torch.Tensor:
    """P(t1, t2, t3) under AR sampling, [V, V, V], by enumeration."""
    p1 = ar_next_probs(model, [PROMPT], params)[0]
    p2 = ar_next_probs(model, [PROMPT + [a] for a in range(V)], params)  # [V, V]
    pairs = list(itertools.product(range(V), range(V)))
    p3 = ar_next_probs(model, [PROMPT + [a, b] for a, b in pairs], params).view(V, V, V)
    return p1.view(V, 1, 1) * p2.view(V, V, 1) * p3


def orthrus_samples(engine: Engine, params: SamplingParams) -> torch.Tensor:
    plist = [SamplingParams(max_new_tokens=3, ignore_eos=True, seed=i, temperature=params.temperature,
                            top_k=params.top_k, top_p=params.top_p) for i in range(N)]
    results = engine.generate([PROMPT] * N, plist)
    return torch.tensor([r.token_ids for r in results])  # [N, 3]


def goodness_of_fit(observed_tokens: torch.Tensor, probs: torch.Tensor) -> float:
    """Chi-square over the cells of ``probs``; cells expected < 5 times are pooled into one,
    and any draw from a zero-probability cell fails outright."""
    flat_probs = probs.flatten()
    index = torch.zeros(observed_tokens.shape[0], dtype=torch.long)
    for col in range(observed_tokens.shape[1]):
        index = index * V + observed_tokens[:, col]
    observed = torch.bincount(index, minlength=flat_probs.numel()).double()
    expected = flat_probs * observed_tokens.shape[0]
    zero = flat_probs == 0
    if observed[zero].sum() > 0:  # a token outside the filtered support: certainly not lossless
        return 0.0
    big = expected >= 5
    small = ~big & ~zero
    obs, exp = observed[big], expected[big]
    if small.any():
        obs = torch.cat([obs, observed[small].sum().view(1)])
        exp = torch.cat([exp, expected[small].sum().view(1)])
    exp = exp * obs.sum() / exp.sum()  # chisquare wants equal totals; they differ by rounding only
    return chisquare(obs.numpy(), exp.numpy()).pvalue


@pytest.mark.parametrize("setting", SETTINGS, ids=["t1", "t0.7-k6-p0.9"])
def test_orthrus_sampling_matches_exact_ar_distribution(tiny_vocab_model, setting):
    params = SamplingParams(**setting)
    engine = Engine(tiny_vocab_model, block_size=4, max_batch_size=N)
    joint = exact_joint(engine.model, params)
    samples = orthrus_samples(engine, params)
    assert goodness_of_fit(samples[:, :2], joint.sum(2)) > 1e-3  # (t1, t2): t2 is a draft or a residual draw
    assert goodness_of_fit(samples[:, 2:], joint.sum((0, 1))) > 1e-3  # t3 marginal
    assert goodness_of_fit(samples[:, 1:], joint.sum(0)) > 1e-3  # (t2, t3): both from one block
    # AR sampling on the same engine fits too (the baseline and the enumeration agree).
    ar = engine.generate([PROMPT] * 2000, [SamplingParams(max_new_tokens=3, ignore_eos=True, seed=10**6 + i, **setting)
                                           for i in range(2000)], ar_only=True)
    assert goodness_of_fit(torch.tensor([r.token_ids for r in ar])[:, :2], joint.sum(2)) > 1e-3


class AlwaysAcceptEngine(Engine):
    """A lossy rule on purpose: every sampled draft is kept, the AR view only adds the bonus."""

    def accept(self, reqs, drafts, draft_probs, target_logits):
        n = torch.full((drafts.shape[0],), drafts.shape[1], dtype=torch.long)
        return n, target_logits[:, -1].argmax(-1)


def test_the_chi_square_test_catches_a_lossy_acceptance_rule(tiny_vocab_model):
    params = SamplingParams(temperature=1.0)
    engine = AlwaysAcceptEngine(tiny_vocab_model, block_size=4, max_batch_size=N)
    joint = exact_joint(engine.model, params)
    samples = orthrus_samples(engine, params)
    assert goodness_of_fit(samples[:, :2], joint.sum(2)) < 1e-6


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
