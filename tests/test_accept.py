"""The acceptance rules as pure functions, on hand-made tensors."""

import pytest
import torch
from scipy.stats import chisquare

from orthrus_sglang import accept as accept_module
from orthrus_sglang import sampling as sampling_module
from acceptance_rules import rejection_accept, rejection_bonus_dist, target_only_accept, target_only_bonus_dist
from orthrus_sglang.accept import RowSampling, accept_block, greedy_accept, sample_drafts
from orthrus_sglang.sampling import (STREAM_ACCEPT, STREAM_DRAFT, STREAM_TOKEN, candidate_bound, filtered_probs,
                                     row_keys, sample_keyed, uniforms)


def test_greedy_accept_counts_the_matching_prefix():
    target = torch.tensor([[1, 2, 3, 4], [1, 9, 3, 4], [7, 2, 3, 4], [1, 2, 3, 5]])
    drafts = torch.tensor([[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3]])
    n, bonus = greedy_accept(drafts, target)
    assert n.tolist() == [3, 1, 0, 3]
    assert bonus.tolist() == [4, 9, 7, 5]


def test_greedy_accept_block_of_one():
    n, bonus = greedy_accept(torch.empty(2, 0, dtype=torch.long), torch.tensor([[4], [6]]))
    assert n.tolist() == [0, 0] and bonus.tolist() == [4, 6]


def test_rejection_accept_rules():
    V = 4
    q = torch.tensor([[[0.5, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]])
    p = torch.tensor([[[0.25, 0.75, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])
    drafts = torch.tensor([[0, 1]])
    ones = torch.ones(1, V)
    # draft 0 has p/q = 0.5: accepted iff u < 0.5; draft 1 has p = 0: always rejected.
    n, bonus = rejection_accept(drafts, q, p, uniforms=torch.tensor([[0.49, 0.0]]), exponentials=ones)
    assert n.item() == 1 and bonus.item() == 2  # residual at row 1 is p itself minus nothing: token 2
    n, bonus = rejection_accept(drafts, q, p, uniforms=torch.tensor([[0.51, 0.0]]), exponentials=ones)
    # rejected at row 0: residual max(0, p-q) = [0, .25, 0, 0] -> token 1
    assert n.item() == 0 and bonus.item() == 1


def test_rejection_accept_all_accepted_samples_bonus_from_last_row():
    q = torch.full((1, 2, 3), 1 / 3)
    p = torch.tensor([[[1 / 3] * 3, [1 / 3] * 3, [0.0, 0.0, 1.0]]])
    n, bonus = rejection_accept(torch.tensor([[0, 2]]), q, p, uniforms=torch.zeros(1, 2), exponentials=torch.ones(1, 3))
    assert n.item() == 2 and bonus.item() == 2


def test_first_emitted_token_is_distributed_as_p():
    """Monte Carlo over many rows: token 1 of a step (draft 1 if accepted, else the residual draw) ~ p_0."""
    gen = torch.Generator().manual_seed(0)
    N, V = 40000, 6
    p0 = torch.tensor([0.05, 0.30, 0.10, 0.25, 0.20, 0.10])
    q0 = torch.tensor([0.40, 0.05, 0.20, 0.05, 0.10, 0.20])
    q = q0.expand(N, 1, V)
    p = torch.stack([p0, torch.full((V,), 1 / V)]).expand(N, 2, V)
    drafts = torch.multinomial(q0, N, replacement=True, generator=gen).view(N, 1)
    uniforms = torch.rand(N, 1, generator=gen)
    exponentials = torch.empty(N, V).exponential_(generator=gen)
    n, bonus = rejection_accept(drafts, q, p, uniforms=uniforms, exponentials=exponentials)
    first = torch.where(n == 1, drafts[:, 0], bonus)
    counts = torch.bincount(first, minlength=V).double()
    assert chisquare(counts.numpy(), (p0 * N).double().numpy()).pvalue > 1e-3
    # and the acceptance rate is sum_x min(p, q), as the theory says
    assert abs(n.double().mean().item() - torch.minimum(p0, q0).sum().item()) < 0.01


def test_filtered_probs_top_k_top_p_and_temperature():
    logits = torch.log(torch.tensor([[[0.5, 0.2, 0.15, 0.1, 0.05]]]))
    one = torch.ones(1)
    probs = filtered_probs(logits, one, torch.tensor([2]), one)
    torch.testing.assert_close(probs[0, 0], torch.tensor([0.5, 0.2, 0, 0, 0]) / 0.7)
    probs = filtered_probs(logits, one, torch.tensor([0]), torch.tensor([0.8]))  # 0.5+0.2 < 0.8 -> keep 3
    torch.testing.assert_close(probs[0, 0], torch.tensor([0.5, 0.2, 0.15, 0, 0]) / 0.85)
    probs = filtered_probs(logits, one, torch.tensor([0]), torch.tensor([0.01]))  # the top token always stays
    torch.testing.assert_close(probs[0, 0], torch.tensor([1.0, 0, 0, 0, 0]))
    hot = filtered_probs(logits, torch.tensor([0.5]), torch.tensor([0]), one)
    expected = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05]) ** 2
    torch.testing.assert_close(hot[0, 0], expected / expected.sum())


def test_target_only_accept_rules():
    p = torch.tensor([[[0.1, 0.6, 0.3], [0.5, 0.0, 0.5], [0.0, 0.0, 1.0]]])
    drafts = torch.tensor([[1, 0]])
    ones = torch.ones(1, 3)
    n, bonus = target_only_accept(drafts, p, uniforms=torch.tensor([[0.59, 0.49]]), exponentials=ones)
    assert n.item() == 2 and bonus.item() == 2  # both accepted (u < p(d)), bonus from the last row
    n, bonus = target_only_accept(drafts, p, uniforms=torch.tensor([[0.61, 0.0]]), exponentials=ones)
    assert n.item() == 0 and bonus.item() == 2  # rejected at row 0: p without token 1 -> [.25, 0, .75]


def test_target_only_first_emitted_token_is_distributed_as_p():
    gen = torch.Generator().manual_seed(1)
    N, V = 40000, 6
    p0 = torch.tensor([0.05, 0.30, 0.10, 0.25, 0.20, 0.10])
    p = torch.stack([p0, torch.full((V,), 1 / V)]).expand(N, 2, V)
    drafts = torch.full((N, 1), 3)  # a greedy draft: always the same token
    n, bonus = target_only_accept(drafts, p, uniforms=torch.rand(N, 1, generator=gen),
                                  exponentials=torch.empty(N, V).exponential_(generator=gen))
    first = torch.where(n == 1, drafts[:, 0], bonus)
    counts = torch.bincount(first, minlength=V).double()
    assert chisquare(counts.numpy(), (p0 * N).double().numpy()).pvalue > 1e-3
    assert abs(n.double().mean().item() - 0.25) < 0.01  # accepted with probability p(d) = 0.25


def _sorted_reference(logits, temperature, top_k, top_p, min_p):
    """The previous filter: a full sort of [bs, T, V] (SGLang's torch sampler, per row)."""
    bs, _, vocab = logits.shape
    probs = (logits.float() / temperature.view(bs, 1, 1)).softmax(dim=-1)
    sp, si = probs.sort(dim=-1, descending=True)
    k = torch.where((top_k > 0) & (top_k < vocab), top_k, torch.full_like(top_k, vocab))
    rank = torch.arange(vocab).view(1, 1, vocab)
    remove = (rank >= k.view(bs, 1, 1)) | ((sp.cumsum(-1) - sp) > top_p.view(bs, 1, 1))
    sp = sp.masked_fill(remove, 0.0)
    sp = sp.masked_fill(sp < sp[..., :1] * min_p.view(bs, 1, 1), 0.0)
    out = torch.zeros_like(probs).scatter_(-1, si, sp)
    return out / out.sum(-1, keepdim=True)


def test_top_k_first_filter_equals_the_full_sort():
    """filtered_probs (torch.topk over the candidate bound, then min-p) == the sorted reference, row by row,
    for a batch mixing every parameter on and off."""
    gen = torch.Generator().manual_seed(3)
    V = 50
    logits = torch.randn(6, 3, V, generator=gen) * 2
    temperature = torch.tensor([1.0, 0.7, 1.3, 1.0, 0.5, 1.0])
    top_k = torch.tensor([0, 5, 0, 12, 1, 60])
    top_p = torch.tensor([1.0, 0.9, 1.0, 0.8, 1.0, 1.0])
    min_p = torch.tensor([0.0, 0.0, 0.1, 0.05, 0.0, 0.2])
    expected = _sorted_reference(logits, temperature, top_k, top_p, min_p)
    torch.testing.assert_close(filtered_probs(logits, temperature, top_k, top_p, min_p), expected)
    # without the top-p-only row, the bound is 12: no full sort, same result
    torch.testing.assert_close(filtered_probs(logits[1:], temperature[1:], top_k[1:], top_p[1:], min_p[1:]),
                               expected[1:])


def test_keyed_randomness_is_uniform_and_reproducible():
    from orthrus_sglang.sampling import row_keys, sample_keyed, uniforms

    seeds = torch.tensor([1, 2, 2**40 + 1])
    positions = torch.arange(4000).view(1, -1).expand(3, -1)
    u = uniforms(row_keys(seeds, positions, 2))
    assert torch.equal(u, uniforms(row_keys(seeds, positions, 2)))  # same key, same number
    assert not torch.equal(u[0], u[1]) and not torch.equal(u, uniforms(row_keys(seeds, positions, 3)))
    counts = torch.histc(u.flatten(), bins=20, min=0, max=1)
    assert chisquare(counts.numpy()).pvalue > 1e-3 and 0 < u.min() and u.max() < 1
    p = torch.tensor([0.1, 0.5, 0.05, 0.35])
    draws = sample_keyed(p.expand(1, 8000, 4), row_keys(torch.tensor([9]), torch.arange(8000).view(1, -1), 1))
    assert chisquare(torch.bincount(draws[0], minlength=4).numpy(), (p * 8000).numpy()).pvalue > 1e-3


# ---- accept_block and sample_drafts (the entry points both engines use) -------------------------
def _rows(vocab: int) -> RowSampling:
    top_k, top_p = [0, 7, 0, 12, 1], [1.0, 0.9, 0.8, 1.0, 1.0]
    return RowSampling(greedy=torch.tensor([False, False, False, False, True]),
                       temperature=torch.tensor([1.0, 0.7, 1.3, 0.9, 1e-5]), top_k=torch.tensor(top_k),
                       top_p=torch.tensor(top_p), min_p=torch.tensor([0.0, 0.0, 0.05, 0.1, 0.0]),
                       seeds=torch.tensor([11, 12, 13, 2**40 + 1, 15]), bound=candidate_bound(top_k, top_p, vocab))


def _dense_reference(drafts, logits, rows, start, dist):
    """accept_block's result from the textbook dense rules (rejection_bonus_dist / target_only_bonus_dist
    on the whole p [bs, B, V] and a dense q), with the same keyed random numbers."""
    bs, B, vocab = logits.shape
    k = B - 1
    p = rows.probs(logits)
    u = uniforms(row_keys(rows.seeds, start.view(bs, 1) + torch.arange(k), STREAM_ACCEPT))
    if dist is None:
        n, bonus_dist = target_only_bonus_dist(drafts, p, u)
    else:
        q = torch.zeros(bs, k, vocab).scatter_(-1, dist.tokens, dist.probs)
        n, bonus_dist = rejection_bonus_dist(drafts, q, p, u)
    bonus = sample_keyed(bonus_dist.unsqueeze(1), row_keys(rows.seeds, (start + n).view(bs, 1), STREAM_TOKEN)).view(bs)
    greedy_n, greedy_bonus = greedy_accept(drafts, logits.argmax(-1))
    return torch.where(rows.greedy, greedy_n, n), torch.where(rows.greedy, greedy_bonus, bonus)


@pytest.mark.parametrize("sampled_drafts", [False, True], ids=["greedy-drafts", "sampled-drafts"])
def test_accept_block_equals_the_dense_rules_in_small_chunks(monkeypatch, sampled_drafts):
    """accept_block never holds p for the whole block (memory at concurrency 64); it must still give
    exactly what the textbook rules give on the dense p and q, chunk size whatever."""
    gen = torch.Generator().manual_seed(3)
    bs, B, vocab = 5, 6, 40
    rows, start = _rows(vocab), torch.tensor([7, 100, 3, 0, 9])
    results = []
    for trial in range(30):
        target = torch.randn(bs, B, vocab, generator=gen) * 2
        diffusion = target[:, :-1] + torch.randn(bs, B - 1, vocab, generator=gen)  # q near p: some accepts
        if sampled_drafts:
            drafts, dist = sample_drafts(diffusion, rows, start + trial, candidates=9)
        else:
            drafts, dist = diffusion.argmax(-1), None
        expected = _dense_reference(drafts, target, rows, start + trial, dist)
        for chunk in (1, vocab * bs, 1 << 24):  # one row per chunk, one block row per chunk, everything
            monkeypatch.setattr(accept_module, "_CHUNK_ELEMENTS", chunk)
            got = accept_block(drafts, target, rows, start + trial, dist)
            assert [t.tolist() for t in got] == [t.tolist() for t in expected]
        results.append(expected[0])
    accepted = torch.stack(results)
    assert accepted.max() > 0 and accepted.min() < B - 1  # both accepts and rejections were exercised


def test_sampled_drafts_are_a_draw_from_q_made_dense():
    """sample_drafts races only q's candidates; keyed by token id, that is the same draw as from
    the dense q, and q is the filtered diffusion distribution over its top candidates."""
    gen = torch.Generator().manual_seed(4)
    bs, k, vocab = 5, 4, 30
    rows, start = _rows(vocab), torch.tensor([1, 2, 3, 4, 5])
    logits = torch.randn(bs, k, vocab, generator=gen) * 2
    drafts, dist = sample_drafts(logits, rows, start, candidates=vocab)  # every token a candidate
    dense = torch.zeros(bs, k, vocab).scatter_(-1, dist.tokens, dist.probs)
    assert torch.allclose(dense, rows.probs(logits), atol=1e-6)
    keys = row_keys(rows.seeds, start.view(bs, 1) + torch.arange(k), STREAM_DRAFT)
    expected = torch.where(rows.greedy.view(bs, 1), logits.argmax(-1), sample_keyed(dense, keys))
    assert drafts.tolist() == expected.tolist()
    # With fewer candidates q lives on the top-C diffusion logits only.
    drafts, dist = sample_drafts(logits, rows, start, candidates=3)
    assert dist.probs.shape == (bs, k, 3) and torch.allclose(dist.probs.sum(-1), torch.ones(bs, k))
    assert (dist.tokens == logits.topk(3, dim=-1).indices).all()
    sampled = ~rows.greedy
    assert (drafts[sampled].unsqueeze(-1) == dist.tokens[sampled]).any(-1).all()


def test_sample_keyed_in_chunks_is_the_same_draw(monkeypatch):
    gen = torch.Generator().manual_seed(5)
    probs = torch.rand(3, 7, 50, generator=gen)
    probs /= probs.sum(-1, keepdim=True)
    keys = torch.randint(0, 2**32, (3, 7), generator=gen)
    whole = sample_keyed(probs, keys)
    monkeypatch.setattr(sampling_module, "_RACE_ELEMENTS", {"cpu": 60})  # one row at a time
    assert sample_keyed(probs, keys).tolist() == whole.tolist()
