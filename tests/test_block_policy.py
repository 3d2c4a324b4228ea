"""The block size chosen per step (block_policy.py): the choice, and losslessness at every B it can pick.

Greedy output equals AR token for token for every B, for the adaptive policy and for a policy that
switches B every step; sampled output fits the exact AR distribution (chi-square) under switching,
and B = 1 is the AR step itself (same seeds, same tokens). The policy's argmax is checked against
synthetic cost tables and acceptance profiles; engine runs use injected step costs (no timing).
"""

import itertools

import pytest
import torch

from orthrus_sglang import SamplingParams
from orthrus_sglang.block_policy import (REFRESH_STEPS, AcceptanceProfile, BlockPolicy, StepCosts,
                                         choose_block_size, default_candidates)
from orthrus_sglang.ref.engine import Engine
from orthrus_sglang.testing import chi_square_pvalue, exact_ar_distribution, write_tiny_checkpoint
from test_greedy_lossless import PROMPTS, OracleDrafts


def test_default_candidates():
    assert default_candidates(16) == (1, 2, 4, 8, 16)
    assert default_candidates(12) == (1, 2, 4, 8, 12)
    assert default_candidates(1) == (1,)


def test_profile_counts_reached_and_accepted_positions():
    profile = AcceptanceProfile(max_drafts=4, decay=1.0)
    profile.observe(5, [0, 2, 4])  # 4 drafts each: rejected at 1; accepted 1-2, rejected 3; all accepted
    assert profile.reached == [3, 2, 2, 1] and profile.accepted == [2, 2, 1, 1]
    profile.observe(2, [1])  # B = 2 only reaches position 1
    assert profile.reached == [4, 2, 2, 1] and profile.accepted == [3, 2, 1, 1]
    a = [profile.rate(i) for i in range(4)]
    assert profile.expected_tokens(1) == 1.0
    assert profile.expected_tokens(3) == pytest.approx(1 + a[0] + a[0] * a[1])
    decayed = AcceptanceProfile(max_drafts=1, decay=0.5)
    decayed.observe(2, [1])
    decayed.observe(2, [0])
    assert decayed.reached == [1.5] and decayed.accepted == [0.5]


def test_positions_no_step_drafts_keep_their_estimates():
    """AR steps (B = 1) draft nothing: they must not pull a larger B's positions back to the prior. Were they
    to, a policy at B = 1 would see B = 8 at the prior's 0.5 per position and stay at B = 1 (what the demo
    model did through SGLang on a CPU before this rule)."""
    policy = BlockPolicy.adaptive(8)
    for b, seconds in ((1, 1.0), (2, 1.2), (4, 1.5), (8, 2.0)):  # each size once: every draft accepted
        assert policy.choose(1) == b
        policy.observe(1, b, [b - 1], seconds)
    before = [policy.profile.rate(i) for i in range(7)]
    for _ in range(500):
        policy.observe(1, 1, [0], 1.0)
    assert [policy.profile.rate(i) for i in range(7)] == before
    assert policy.choose(1) == 8  # E = 1 + 0.67 + ... for 2.0 s beats 1 token for 1.0 s


@pytest.mark.parametrize("case", range(40))
def test_policy_picks_the_argmax_of_tokens_per_second(case):
    gen = torch.Generator().manual_seed(case)
    candidates = (1, 2, 4, 8, 16)
    profile = AcceptanceProfile(max_drafts=15, decay=1.0)
    rates = torch.rand(15, generator=gen)
    for i, rate in enumerate(rates.tolist()):  # position i: 1000 draws reached, rate * 1000 accepted
        profile.reached[i], profile.accepted[i] = 1000.0, 1000.0 * rate
    costs = StepCosts()
    for bs, b in itertools.product((1, 8), candidates):
        costs.observe(bs, b, 1.0 + b * bs * float(torch.rand(1, generator=gen)) / 8)
    for bs in (1, 8):
        expected = [1 + sum(torch.cumprod(torch.tensor([profile.rate(i) for i in range(b - 1)]), 0).tolist())
                    for b in candidates]
        speed = [e / costs.get(bs, b) for e, b in zip(expected, candidates)]
        assert choose_block_size(candidates, profile, costs, bs) == candidates[max(range(5), key=speed.__getitem__)]


def test_policy_measures_unknown_costs_first_then_exploits():
    policy = BlockPolicy.adaptive(8)
    seen = []
    for _ in range(4):  # 1, 2, 4, 8: each unmeasured size once, smallest first
        b = policy.choose(1)
        seen.append(b)
        policy.observe(1, b, [b - 1], seconds=1.0)  # every draft accepted, every B costs the same
    assert seen == [1, 2, 4, 8]
    assert policy.choose(1) == 8
    assert policy.choose(2) == 8  # another batch size: batch size 1's costs until its own are measured
    policy.observe(2, 8, [7, 7], seconds=3.0)
    assert policy.costs.estimate(3, 8) == 3.0 and policy.costs.estimate(3, 4) == 1.0  # the nearest batch size
    assert BlockPolicy.fixed(8).choose(3) == 8 and not BlockPolicy.fixed(8).is_adaptive


def test_a_slow_measurement_does_not_exclude_a_block_size_for_good():
    """B=8 measured once while the machine was busy (10x its cost): the policy settles on AR, then the
    periodic refresh measures B=8 again, the window keeps the fast measurement, and B=8 wins."""
    policy = BlockPolicy.adaptive(8)
    for b, seconds in ((1, 1.0), (2, 1.1), (4, 1.2), (8, 12.0)):
        assert policy.choose(1) == b
        policy.observe(1, b, [b - 1], seconds)  # every draft accepted
    chosen = []
    for _ in range(6 * REFRESH_STEPS):  # B=8 is the stalest after 1 and 2: remeasured at 4 * REFRESH_STEPS
        b = policy.choose(1)
        chosen.append(b)
        policy.observe(1, b, [b - 1], {1: 1.0, 2: 1.1, 4: 1.2, 8: 1.4}[b])
    assert chosen[0] == 4  # 4 tokens for 1.2 beat 8 for 12.0
    assert 8 in chosen and chosen[-REFRESH_STEPS:].count(8) >= REFRESH_STEPS - 1
    assert policy.costs.get(1, 8) == 1.4


class CyclingPolicy(BlockPolicy):
    """Switches B every step (the worst case for the bookkeeping), through every size up to max."""

    def __init__(self, sizes):
        super().__init__(sizes)
        self._cycle = itertools.cycle(sizes)

    def choose(self, batch_size):
        return next(self._cycle)


class FixedCostPolicy(BlockPolicy):
    """The adaptive policy on an injected cost table instead of measured times (no timing in tests)."""

    def __init__(self, block_size, seconds):
        super().__init__(tuple(seconds))
        self.seconds = seconds

    def observe(self, batch_size, block_size, num_accepted, seconds):
        super().observe(batch_size, block_size, num_accepted, None)

    def choose(self, batch_size):
        for b, s in self.seconds.items():
            self.costs.samples.setdefault((batch_size, b), [s])
        return super().choose(batch_size)


@pytest.mark.parametrize("policy", ["adaptive", "cycling", "cycling-with-ar"])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("backbone", ["qwen3", "llama"])
def test_greedy_equals_ar_whatever_the_block_size(backbone, batch, policy, tiny_qwen3, tiny_llama):
    engine = Engine(tiny_qwen3 if backbone == "qwen3" else tiny_llama, block_size=8, max_batch_size=4,
                    adaptive_block=policy == "adaptive")
    if policy != "adaptive":
        engine.block_policy = CyclingPolicy([8, 3, 5, 2] + ([1] if policy == "cycling-with-ar" else []))
    params = SamplingParams(max_new_tokens=40, ignore_eos=True)
    ar = engine.generate(PROMPTS[:batch], params, ar_only=True)
    orthrus = engine.generate(PROMPTS[:batch], params)
    for a, o in zip(ar, orthrus):
        assert o.token_ids == a.token_ids and len(o.token_ids) == 40
        assert sum(o.stats.accept_length_histogram) == o.stats.num_steps
    assert sum(engine.block_policy.steps_by_block.values()) == sum(o.stats.num_steps for o in orthrus)


def test_switching_block_sizes_with_every_acceptance_count(tiny_qwen3):
    """Injected drafts: every step accepts exactly its scheduled count, whatever its B."""
    engine = Engine(tiny_qwen3, block_size=8, max_batch_size=1)
    engine.block_policy = CyclingPolicy([8, 4, 1, 6])
    reference = engine.generate([PROMPTS[0]], SamplingParams(max_new_tokens=80, ignore_eos=True), ar_only=True)[0]
    engine.draft_hook = OracleDrafts(reference.token_ids, [7, 3, 0, 5, 2, 0, 0, 1], engine.config.vocab_size)
    result = engine.generate([PROMPTS[0]], SamplingParams(max_new_tokens=60, ignore_eos=True))[0]
    assert result.token_ids == reference.token_ids[:60]


def test_adaptive_settles_on_ar_when_drafts_are_always_wrong_and_on_b_when_always_right(tiny_qwen3):
    costs = {1: 1.0, 2: 1.1, 4: 1.2, 8: 1.4}  # a step of B costs this many AR steps
    reference = Engine(tiny_qwen3, max_batch_size=1).generate(
        [PROMPTS[2]], SamplingParams(max_new_tokens=400, ignore_eos=True), ar_only=True)[0].token_ids
    chosen = {}
    for name, correct in (("wrong", 0), ("right", 7)):
        engine = Engine(tiny_qwen3, block_size=8, max_batch_size=1)
        engine.block_policy = FixedCostPolicy(8, costs)
        engine.draft_hook = OracleDrafts(reference, [correct], engine.config.vocab_size)
        result = engine.generate([PROMPTS[2]], SamplingParams(max_new_tokens=300, ignore_eos=True))[0]
        assert result.token_ids == reference[:300]
        chosen[name] = engine.block_policy.steps_by_block
    assert chosen["wrong"][1] > 0.9 * sum(chosen["wrong"].values())
    assert chosen["right"][8] > 0.9 * sum(chosen["right"].values())


V, PROMPT, N = 16, [3, 1, 4], 4000


@pytest.fixture(scope="module")
def tiny_vocab_model(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-vocab-policy"), with_tokenizer=False, vocab_size=V,
                                 mask_token_id=V - 1, eos_token_id=V - 2, block_size=4, seed=5)


def test_block_size_one_is_the_ar_step_for_sampled_requests(tiny_vocab_model):
    engine = Engine(tiny_vocab_model, block_size=4, max_batch_size=8)
    engine.block_policy = BlockPolicy.fixed(1)
    params = [SamplingParams(max_new_tokens=12, ignore_eos=True, seed=i, temperature=0.9, top_k=8, top_p=0.95)
              for i in range(8)]
    orthrus = engine.generate([PROMPT] * 8, params)
    ar = engine.generate([PROMPT] * 8, params, ar_only=True)
    assert [o.token_ids for o in orthrus] == [a.token_ids for a in ar]


@pytest.mark.parametrize("drafts_from_q", [False, True], ids=["greedy-drafts", "drafts-from-q"])
def test_sampling_under_switching_block_sizes_matches_exact_ar(tiny_vocab_model, drafts_from_q):
    setting = dict(temperature=0.8, top_k=6, top_p=0.9)
    engine = Engine(tiny_vocab_model, block_size=4, max_batch_size=N)
    engine.block_policy = CyclingPolicy([4, 2, 1, 3])
    if not drafts_from_q:  # deterministic drafts: the diffusion argmax, target-only verification
        engine.draft = lambda reqs, block, batch, rows: _argmax_drafts(engine, block, batch)
    joint = exact_ar_distribution(engine.model, PROMPT, **setting)
    results = engine.generate([PROMPT] * N, [SamplingParams(max_new_tokens=3, ignore_eos=True, seed=i, **setting)
                                             for i in range(N)])
    samples = torch.tensor([r.token_ids for r in results])
    p12, p23, p3 = (chi_square_pvalue(samples[:, :2], joint.sum(2)), chi_square_pvalue(samples[:, 1:], joint.sum(0)),
                    chi_square_pvalue(samples[:, 2:], joint.sum((0, 1))))
    print(f"\n[switching B, {'q' if drafts_from_q else 'argmax'} drafts] p (t1,t2) {p12:.3g} (t2,t3) {p23:.3g} t3 {p3:.3g}")
    assert min(p12, p23, p3) > 1e-3


def _argmax_drafts(engine, block, batch):
    if block.shape[1] == 1:
        return block[:, 1:], None
    return engine.model(block, engine.cache, batch, "diff")[:, :-1].argmax(-1), None
