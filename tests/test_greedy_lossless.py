"""Greedy Orthrus == greedy AR, token for token, in fp32, whatever the drafts are."""

import pytest
import torch

from orthrus_sglang import SamplingParams
from orthrus_sglang.ref.engine import Engine

PROMPTS = [[257, 72, 101, 108, 108, 111, 258], [40, 41], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], [99]]


@pytest.mark.parametrize("block_size", [1, 2, 4, 8, 32])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("backbone", ["qwen3", "llama"])
def test_orthrus_equals_ar(backbone, batch, block_size, tiny_qwen3, tiny_llama):
    path = tiny_qwen3 if backbone == "qwen3" else tiny_llama
    engine = Engine(path, block_size=block_size, max_batch_size=4)
    params = SamplingParams(max_new_tokens=40, ignore_eos=True)
    prompts = PROMPTS[:batch]
    ar = engine.generate(prompts, params, ar_only=True)
    orthrus = engine.generate(prompts, params)
    for a, o in zip(ar, orthrus):
        assert o.token_ids == a.token_ids and len(o.token_ids) == 40
        assert o.finish_reason == "length"
        assert o.stats.num_tokens == 40 and o.stats.block_size == block_size
        assert sum(o.stats.accept_length_histogram) == o.stats.num_steps


def test_ragged_batch_equals_each_prompt_alone(tiny_qwen3):
    engine = Engine(tiny_qwen3, block_size=4, max_batch_size=4)
    params = SamplingParams(max_new_tokens=30, ignore_eos=True)
    together = engine.generate(PROMPTS, params)
    for prompt, result in zip(PROMPTS, together):
        assert engine.generate([prompt], params)[0].token_ids == result.token_ids


def test_more_requests_than_slots_queue_and_finish(tiny_qwen3):
    engine = Engine(tiny_qwen3, block_size=4, max_batch_size=2)
    params = SamplingParams(max_new_tokens=12, ignore_eos=True)
    prompts = [[i + 30, i + 31, i + 32] for i in range(7)]
    results = engine.generate(prompts, params)
    solo = Engine(tiny_qwen3, block_size=4, max_batch_size=1)
    assert [r.token_ids for r in results] == [solo.generate([p], params)[0].token_ids for p in prompts]
    assert engine.free_slots and len(engine.free_slots) == 2 and not engine.has_unfinished()


class OracleDrafts:
    """Drafts = the AR reference continuation, corrupted at one chosen draft index per step.

    schedule[s] = n: at step s drafts 1..n are right and draft n+1 is wrong (n = B-1: all right),
    so that step must accept exactly n drafts.
    """

    def __init__(self, reference: list[int], schedule: list[int], vocab_size: int):
        self.reference, self.schedule, self.vocab_size, self.step = reference, schedule, vocab_size, 0

    def __call__(self, reqs, drafts):
        (req,) = reqs
        k = drafts.shape[1]
        m = len(req.output_ids)  # the next draft predicts reference[m]
        right = self.reference[m : m + k] + [0] * k
        drafts[0] = torch.tensor(right[:k])
        n = self.schedule[self.step % len(self.schedule)]
        if n < k:
            drafts[0, n] = (drafts[0, n] + 1) % self.vocab_size
        self.step += 1
        return drafts


def expected_histogram(schedule, block_size, max_new_tokens):
    """Simulate the commit rule: each step emits n+1 tokens until the budget is reached."""
    hist, per_pos, emitted, step = [0] * block_size, [0] * (block_size - 1), 1, 0
    while emitted < max_new_tokens:
        n = schedule[step % len(schedule)]
        hist[n] += 1
        for i in range(n):
            per_pos[i] += 1
        emitted += n + 1
        step += 1
    return hist, per_pos


@pytest.mark.parametrize("block_size", [2, 4, 8])
def test_every_acceptance_count_with_injected_drafts(tiny_qwen3, block_size):
    engine = Engine(tiny_qwen3, block_size=block_size, max_batch_size=1)
    params = SamplingParams(max_new_tokens=60, ignore_eos=True)
    prompt = PROMPTS[0]
    # The reference runs a block past the budget so that the last step's drafts are all known.
    longer = SamplingParams(max_new_tokens=60 + block_size, ignore_eos=True)
    reference = engine.generate([prompt], longer, ar_only=True)[0].token_ids
    schedule = list(range(block_size)) + [block_size - 1, 0, 1]
    engine.draft_hook = OracleDrafts(reference, schedule, engine.config.vocab_size)
    result = engine.generate([prompt], params)[0]
    assert result.token_ids == reference[:60]
    hist, per_pos = expected_histogram(schedule, block_size, 60)
    assert result.stats.accept_length_histogram == hist
    assert result.stats.accepted_per_position == per_pos
    assert all(count > 0 for count in hist)  # every n in 0..B-1 happened
    assert result.stats.tau == pytest.approx(sum((n + 1) * c for n, c in enumerate(hist)) / sum(hist))


@pytest.mark.parametrize("max_new_tokens", [2, 7, 13, 16])
def test_max_new_tokens_ends_mid_block(tiny_qwen3, max_new_tokens):
    engine = Engine(tiny_qwen3, block_size=8, max_batch_size=1)
    params = SamplingParams(max_new_tokens=max_new_tokens, ignore_eos=True)
    reference = engine.generate([PROMPTS[2]], SamplingParams(max_new_tokens=40, ignore_eos=True), ar_only=True)[0].token_ids
    engine.draft_hook = OracleDrafts(reference, [7], engine.config.vocab_size)  # every step accepts all 7 drafts
    result = engine.generate([PROMPTS[2]], params)[0]
    assert result.token_ids == reference[:max_new_tokens]
    assert result.finish_reason == "length"


@pytest.mark.parametrize("stop_via", ["eos", "stop_token_ids"])
@pytest.mark.parametrize("eos_index", [1, 3, 5, 6])
def test_stop_token_inside_an_accepted_block(tiny_qwen3, stop_via, eos_index):
    """The stop token lands at draft position eos_index of a fully accepted block: nothing after it is emitted."""
    engine = Engine(tiny_qwen3, block_size=8, max_batch_size=1)
    reference = engine.generate([PROMPTS[0]], SamplingParams(max_new_tokens=40, ignore_eos=True), ar_only=True)[0].token_ids
    # Step 1 starts after the prefill token: its drafts are reference[1..7].
    stop_token = reference[1 + eos_index - 1]
    first = reference.index(stop_token)
    if stop_via == "eos":
        engine.eos_token_ids = frozenset({stop_token})
        params = SamplingParams(max_new_tokens=40)
    else:
        params = SamplingParams(max_new_tokens=40, stop_token_ids=(stop_token,), ignore_eos=True)
    ar = engine.generate([PROMPTS[0]], params, ar_only=True)[0]
    engine.draft_hook = OracleDrafts(reference, [7], engine.config.vocab_size)
    result = engine.generate([PROMPTS[0]], params)[0]
    assert result.token_ids == ar.token_ids == reference[: first + 1]
    assert result.finish_reason == ar.finish_reason == "stop"


def test_ignore_eos_false_stops_on_checkpoint_eos(tiny_qwen3):
    engine = Engine(tiny_qwen3, block_size=4, max_batch_size=1)
    reference = engine.generate([PROMPTS[1]], SamplingParams(max_new_tokens=40, ignore_eos=True), ar_only=True)[0].token_ids
    engine.eos_token_ids = frozenset({reference[0]})  # the prefill's first token is already EOS
    result = engine.generate([PROMPTS[1]], SamplingParams(max_new_tokens=40))[0]
    assert result.token_ids == reference[:1] and result.finish_reason == "stop" and result.stats.num_steps == 0
