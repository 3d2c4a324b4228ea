"""GPU: the fused keyed race (ORTHRUS_FUSED_RACE=1, keyed_race.py) compiled by Triton draws the same tokens
as the PyTorch race at a Qwen3-sized vocabulary, and fits in a captured CUDA graph.

    bash scripts/gpu_tests.sh -k keyed_race
"""

import pytest
import torch

from orthrus_sglang.keyed_race import keyed_race
from orthrus_sglang.sampling import exponentials, filtered_probs, race, row_keys

pytestmark = pytest.mark.gpu
VOCAB = 151_936


@pytest.mark.parametrize("filters", ["none", "k20", "p0.9-minp0.1"])
def test_fused_race_equals_pytorch_on_gpu(filters):
    gen = torch.Generator(device="cuda").manual_seed(1)
    rows = 256
    logits = torch.randn(rows, 1, VOCAB, device="cuda", generator=gen) * 6.0
    top_k = torch.full((rows,), 20 if filters == "k20" else 0, dtype=torch.int64, device="cuda")
    top_p = torch.full((rows,), 0.9 if filters.startswith("p0.9") else 1.0, device="cuda")
    min_p = torch.full((rows,), 0.1 if "minp" in filters else 0.0, device="cuda")
    probs = filtered_probs(logits, torch.full((rows,), 0.8, device="cuda"), top_k, top_p, min_p)[:, 0]
    keys = row_keys(torch.randint(0, 2**62, (rows,), device="cuda", generator=gen),
                    torch.arange(rows, device="cuda").view(rows, 1), 3).view(-1)
    fused = keyed_race(probs, keys)
    reference = race(probs, exponentials(keys, torch.arange(VOCAB, device="cuda")))
    print(f"\n[keyed race, GPU, {filters}] equal {(fused == reference).sum().item()}/{rows}")
    assert torch.equal(fused, reference)
    graph, static_out = torch.cuda.CUDAGraph(), None
    keyed_race(probs, keys)  # compiled before capture
    with torch.cuda.graph(graph):
        static_out = keyed_race(probs, keys)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(static_out, reference)
