"""``sgl_kernel.speculative`` stand-in (see the package docstring for why it exists).

sglang 0.5.17's ``srt/speculative/ngram_worker.py`` does
``from sgl_kernel.speculative import reconstruct_indices_from_tree_mask`` at module level, so the
module must exist for the NGRAM worker to import. The function is small enough to do in torch;
note that NGRAM on CPU still reaches ``verify_tree_greedy_cpu``, which this stand-in does not provide.
"""

import torch


def reconstruct_indices_from_tree_mask(tree_mask, verified_seq_len, positions, retrive_index, retrive_next_token,
                                       retrive_next_sibling, batch_size, draft_token_num):
    """Torch version of sgl-kernel's ``reconstruct_indices_from_tree_mask`` (writes its outputs in place).

    ``tree_mask[b, i, j]`` (flattened, ``[bs * n * n]``) is true when draft token j is an ancestor of (or is)
    token i. For token i of request b: ``positions = verified_seq_len[b] + depth(i)`` (number of ancestors
    j < i), ``retrive_index = b * n + i``, ``retrive_next_token`` = first child (smallest k > i with i an
    ancestor of k), ``retrive_next_sibling`` = next k > i whose nearest ancestor below k is i's parent.
    """
    n = int(draft_token_num)
    mask = tree_mask.view(int(batch_size), n, n).to(torch.bool).cpu()
    strictly_before = torch.ones(n, n, dtype=torch.bool).tril(-1)  # [i, j] = j < i
    anc = mask & strictly_before  # ancestors j < i
    depth = anc.sum(-1)  # [bs, n]
    positions.copy_((verified_seq_len.view(-1, 1).cpu() + depth).view(-1).to(positions.dtype))
    retrive_index.copy_(torch.arange(int(batch_size) * n).view(int(batch_size), n).to(retrive_index.dtype))
    next_token = torch.full((int(batch_size), n), -1, dtype=torch.int64)
    next_sibling = torch.full((int(batch_size), n), -1, dtype=torch.int64)
    for b in range(int(batch_size)):
        a = anc[b].tolist()
        parent = [max((j for j in range(i) if a[i][j]), default=-1) for i in range(n)]
        for i in range(n):
            next_token[b, i] = next((k for k in range(i + 1, n) if a[k][i]), -1)
            if parent[i] != -1:
                next_sibling[b, i] = next((k for k in range(i + 1, n) if parent[k] == parent[i]), -1)
    retrive_next_token.copy_(next_token.to(retrive_next_token.dtype))
    retrive_next_sibling.copy_(next_sibling.to(retrive_next_sibling.dtype))


__all__ = ["reconstruct_indices_from_tree_mask"]
