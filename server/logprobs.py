"""Logprobs in the gateway: what a sequence asks for and what a backend hands back.

Numbers follow SGLang 0.5.17 (see orthrus_sglang/logprobs.py): an emitted token's logprob is
log_softmax(logits / T) of the AR row that produced it (T = 1 for greedy requests), a prompt
token's is the raw log_softmax of the prefill row before it, and the first scored prompt
position has none. The embedded engine's orthrus_sglang.logprobs.TokenLogprob has the same
fields as TokenLogprob here; the SGLang backend builds these from SGLang's meta_info.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import NamedTuple

Pairs = tuple[tuple[int, float], ...]  # (token id, logprob)


@dataclass(frozen=True)
class LogprobSpec:
    top_k: int = 0  # top logprobs per position
    prompt_start: int | None = None  # first prompt position to report; None: none of the prompt
    token_ids: tuple[int, ...] | None = None  # also report these tokens' logprobs at every position


class TokenLogprob(NamedTuple):
    logprob: float | None  # None only for the first scored prompt position
    top: Pairs | None = None  # best first
    by_id: Pairs | None = None  # LogprobSpec.token_ids, in that order


class TokenTexts:
    """Token id -> that token decoded alone (as SGLang's `batch_decode([[id]])`), cached."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, ids) -> list[str]:
        missing = list(dict.fromkeys(i for i in ids if i not in self._cache))
        if missing:
            self._cache.update(zip(missing, self._tokenizer.batch_decode([[i] for i in missing])))
        return [self._cache[i] for i in ids]

    def one(self, token_id: int) -> str:
        return self([token_id])[0]

    def bytes(self, ids) -> list[list[int]]:
        """Each token's own bytes (OpenAI's `bytes`): exact for byte-level BPE (Qwen, SmolLM2, GPT-2)
        and for byte-fallback tokens (<0xE2>), where decoding a lone token would give U+FFFD for
        part of a multi-byte character; otherwise the UTF-8 of the decoded text."""
        if not hasattr(self, "_bytes"):
            self._bytes: dict[int, list[int]] = {}
            self._byte_of = _byte_level_alphabet(self._tokenizer)
            self._added = set(getattr(self._tokenizer, "added_tokens_decoder", None) or ())
        missing = list(dict.fromkeys(i for i in ids if i not in self._bytes))
        if missing:
            pieces = self._tokenizer.convert_ids_to_tokens(missing)
            for token_id, piece, text in zip(missing, pieces, self(missing)):
                self._bytes[token_id] = self._token_bytes(token_id, piece, text)
        return [self._bytes[i] for i in ids]

    def _token_bytes(self, token_id: int, piece: str | None, text: str) -> list[int]:
        if piece is not None and token_id not in self._added:
            if self._byte_of is not None and all(c in self._byte_of for c in piece):
                return [self._byte_of[c] for c in piece]
            fallback = _BYTE_FALLBACK.fullmatch(piece)
            if fallback:
                return [int(fallback.group(1), 16)]
        return list(text.encode("utf-8"))


_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _byte_level_alphabet(tokenizer) -> dict[str, int] | None:
    """char -> byte of the GPT-2 byte-level alphabet when the tokenizer decodes that way, else None."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if decoder is None:
        return None
    state = json.loads(decoder.__getstate__())
    if "ByteLevel" not in {state.get("type")} | {d.get("type") for d in state.get("decoders", [])}:
        return None
    # GPT-2's table: printable bytes stand for themselves, the other 68 map to U+0100 onwards.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars
