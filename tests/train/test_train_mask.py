"""The training block mask reproduces the inference-time diffusion pass, block for block.

Each training block must see what the reference engine's draft step sees: the AR K/V of its
own document's tokens before the anchor (never another packed document's) and its own block,
non-causally. Checked on logits (the whole stack), with the diffusion view different from the
AR view, on a row packing two documents, for the dense SDPA path and flex_attention.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from orthrus_sglang.ref.model import ForwardBatch
from orthrus_sglang.testing import random_model, tiny_config
from orthrus_sglang.train.attention import DenseAttention, FlexAttention
from orthrus_sglang.train.blocks import make_blocks
from orthrus_sglang.train.data import Document, pack
from orthrus_sglang.train.forward import draft_pass, teacher_pass

B = 4
DOCS = [Document(list(range(10, 19)), list(range(40, 51))), Document(list(range(60, 66)), list(range(90, 104)))]


def inference_draft_logits(model, prefix: list[int], block: list[int]) -> torch.Tensor:
    """The reference engine's draft step: AR prefill of the prefix into a cache, then the diffusion view."""
    cache = model.new_cache(1, len(prefix) + B)
    zero = torch.zeros(1, dtype=torch.long)
    model(torch.tensor([prefix]), cache, ForwardBatch(zero, zero, len(prefix)), "ar")
    batch = ForwardBatch(zero, torch.tensor([len(prefix)]), B)
    return model(torch.tensor([block]), cache, batch, "diff")[0]


@pytest.mark.parametrize("backbone", ["qwen3", "llama"])
@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_training_blocks_equal_the_inference_draft_pass(backbone, backend):
    config = tiny_config(backbone=backbone, block_size=B, vocab_size=128)
    model = random_model(config, seed=1)  # diffusion view independent of the AR view
    rows = pack(DOCS, row_len=48, pad_id=0)
    assert rows.ids.shape[0] == 1 and int(rows.doc_start[0, 25]) == 20  # both docs in one row
    anchor_list = [9, 12, 18, 26, 30, 38]  # doc 1's first answer token, ..., doc 2's, up to its end
    anchors = torch.tensor([anchor_list])
    blocks = make_blocks(rows, anchors, torch.ones_like(anchors, dtype=torch.bool), block_size=B,
                         mask_token_id=config.mask_token_id)
    attention = DenseAttention(torch.float32) if backend == "sdpa" else FlexAttention(torch.float32, compile=False)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex_attention uncompiled: fine for a correctness check
        ar_kv, _ = teacher_pass(model, rows, attention)
        hidden = draft_pass(model, blocks, ar_kv, attention, row_len=48)
        train_logits = model.lm_head(hidden)[0].view(len(anchor_list), B, -1)
    ids = rows.ids[0].tolist()
    for j, a in enumerate(anchor_list):
        start = int(rows.doc_start[0, a])
        expected = inference_draft_logits(model, ids[start:a], [ids[a]] + [config.mask_token_id] * (B - 1))
        torch.testing.assert_close(train_logits[j], expected, atol=2e-5, rtol=2e-5)
