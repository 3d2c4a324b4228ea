"""GPU: the sampled acceptance replayed from a CUDA graph (ORTHRUS_ACCEPT_GRAPHS=1, sgl/accept_graphs.py)
gives the eager step.accept's tokens bit for bit, step after step, with new contents in the same
buffers, at a Qwen3-sized vocabulary; with greedy drafts and with drafts from q; with the PyTorch race
and with the fused Triton race.

    bash scripts/gpu_tests.sh -k accept_graphs
"""

import pytest
import torch

from orthrus_sglang import step
from orthrus_sglang.accept import DraftDist, RowSampling
from orthrus_sglang.sampling import candidate_bound
from orthrus_sglang.sgl.accept_graphs import AcceptGraphs

pytestmark = pytest.mark.gpu
VOCAB = 151_936


def _rows(bs: int, gen) -> RowSampling:
    """Mixed rows: greedy, plain temperature, top-k, top-p with top-k, min-p."""
    kinds = torch.arange(bs, device="cuda") % 5
    top_k = torch.where(kinds == 2, 20, torch.where(kinds == 3, 50, 0)).to(torch.int64)
    top_p = torch.where(kinds == 3, 0.9, 1.0).float()
    min_p = torch.where(kinds == 4, 0.1, 0.0).float()
    return RowSampling(greedy=kinds == 0, temperature=0.5 + torch.rand(bs, device="cuda", generator=gen),
                       top_k=top_k, top_p=top_p, min_p=min_p,
                       seeds=torch.randint(0, 2**62, (bs,), device="cuda", generator=gen),
                       bound=candidate_bound(top_k.tolist(), top_p.tolist(), VOCAB))


@pytest.mark.parametrize("fused_race", [False, True], ids=["torch-race", "fused-race"])
@pytest.mark.parametrize("q_drafts", [False, True], ids=["greedy-drafts", "q-drafts"])
def test_accept_graph_replays_equal_eager(monkeypatch, q_drafts, fused_race):
    monkeypatch.setenv("ORTHRUS_FUSED_RACE", "1" if fused_race else "0")
    gen = torch.Generator(device="cuda").manual_seed(7)
    bs, B, C = 24, 8, 64
    # Fixed buffers, as the step's graph output and the worker's step buffers are.
    logits = torch.empty(bs, B, VOCAB, device="cuda")
    drafts = torch.empty(bs, B - 1, dtype=torch.int64, device="cuda")
    q = DraftDist(torch.empty(bs, B - 1, C, device="cuda"), torch.empty(bs, B - 1, C, dtype=torch.int64, device="cuda"))
    graphs = AcceptGraphs("cuda", enabled=True)
    for trial in range(4):
        logits.copy_(torch.randn(bs, B, VOCAB, device="cuda", generator=gen) * 4.0)
        # q's candidates: distinct ids, the first one the target argmax; drafts mostly that one, so
        # that acceptances run deep (greedy drafts: the same tokens, q unused)
        top1 = logits[:, :-1].argmax(-1)
        shift = torch.randint(1, 1000, (bs, B - 1, 1), device="cuda", generator=gen)
        offsets = torch.arange(C, device="cuda") * 1009 + shift
        offsets[..., 0] = 0
        cand = (top1.unsqueeze(-1) + offsets) % VOCAB
        pick = torch.where(torch.rand(top1.shape, device="cuda", generator=gen) < 0.8, 0,
                           torch.randint(1, C, top1.shape, device="cuda", generator=gen))
        drafts.copy_(cand.gather(-1, pick.unsqueeze(-1)).squeeze(-1))
        if q_drafts:
            q.tokens.copy_(cand)
            q.probs.copy_(torch.rand(bs, B - 1, C, device="cuda", generator=gen).softmax(-1))
        rows = _rows(bs, gen)
        start = torch.randint(0, 4000, (bs,), device="cuda", generator=gen)
        dist = q if q_drafts else None
        eager = step.accept(drafts, logits, rows, start, dist)
        replayed = graphs.accept(drafts, logits, rows, start, dist, inputs_fixed=True)
        torch.cuda.synchronize()
        print(f"\n[accept graphs, GPU, {'q' if q_drafts else 'greedy'} drafts, fused race {fused_race}] trial "
              f"{trial}: accepted {int(eager[0].sum())} of {bs * (B - 1)}, replays {graphs.replays}")
        assert torch.equal(eager[0], replayed[0]) and torch.equal(eager[1], replayed[1])
    assert graphs.replays == 4 and len(graphs._graphs) == 1  # one capture, then replays with new contents


def test_accept_graphs_stay_eager_where_inputs_move():
    gen = torch.Generator(device="cuda").manual_seed(3)
    bs, B = 4, 4
    logits = torch.randn(bs, B, 1000, device="cuda", generator=gen)
    drafts = logits[:, :-1].argmax(-1)
    rows = RowSampling(greedy=torch.zeros(bs, dtype=torch.bool, device="cuda"), temperature=torch.ones(bs, device="cuda"),
                       top_k=torch.zeros(bs, dtype=torch.int64, device="cuda"), top_p=torch.ones(bs, device="cuda"),
                       min_p=torch.zeros(bs, device="cuda"), seeds=torch.arange(bs, device="cuda"), bound=0)
    graphs = AcceptGraphs("cuda", enabled=True)
    got = graphs.accept(drafts, logits, rows, torch.zeros(bs, dtype=torch.int64, device="cuda"), None, inputs_fixed=False)
    want = step.accept(drafts, logits, rows, torch.zeros(bs, dtype=torch.int64, device="cuda"), None)
    assert graphs.replays == 0 and not graphs._graphs
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    # inputs that move every step although the forward says fixed: two captures, then eager
    alive = []  # distinct addresses
    for _ in range(4):
        moved = logits.clone()
        alive.append(moved)
        got = graphs.accept(drafts, moved, rows, torch.zeros(bs, dtype=torch.int64, device="cuda"), None, inputs_fixed=True)
        assert torch.equal(got[1], want[1])
    assert len(graphs._graphs) == 2
