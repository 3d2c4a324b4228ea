"""The Triton kernel of keyed_race.py (imported only when ORTHRUS_FUSED_RACE=1: triton is slow to import)."""

import triton
import triton.language as tl


@triton.jit
def _fmix32(x):
    # MurmurHash3's finaliser on uint32 (multiplication wraps mod 2^32, as sampling._mul32 emulates).
    x = x ^ (x >> 16)
    x = x * 0x85EBCA6B
    x = x ^ (x >> 13)
    x = x * 0xC2B2AE35
    return x ^ (x >> 16)


@triton.jit
def keyed_race_kernel(probs_ptr, keys_ptr, out_ptr, vocab, stride_row, UNIFORM_SHIFT: tl.constexpr,
                      BLOCK: tl.constexpr):
    row = tl.program_id(0)
    key = tl.load(keys_ptr + row).to(tl.uint32)  # keys are 32-bit values held in int64
    best_score = tl.full([], -2.0, tl.float32)
    best_index = tl.full([], 0, tl.int64)
    for start in range(0, vocab, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        in_vocab = cols < vocab
        p = tl.load(probs_ptr + row * stride_row + cols, mask=in_vocab, other=0.0)
        h = _fmix32(key ^ _fmix32(cols.to(tl.uint32) + 0x632BE5AB))
        u = ((h >> UNIFORM_SHIFT).to(tl.float32) + 0.5) * (1.0 / (1 << (32 - UNIFORM_SHIFT)))
        score = tl.where(p > 0, p / -tl.log(u), -1.0)
        score = tl.where(in_vocab, score, -3.0)  # past the vocabulary: below every real score
        block_best = tl.max(score, axis=0)
        block_index = tl.argmax(score, axis=0, tie_break_left=True).to(tl.int64) + start
        better = block_best > best_score  # strict: an earlier block keeps a tie (torch.argmax: the first)
        best_index = tl.where(better, block_index, best_index)
        best_score = tl.where(better, block_best, best_score)
    tl.store(out_ptr + row, best_index)
