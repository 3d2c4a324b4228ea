"""Logprobs in the gateway: what a sequence asks for and what a backend hands back.

Numbers follow SGLang 0.5.17 (see orthrus_sglang/logprobs.py): an emitted token's logprob is
log_softmax(logits / T) of the AR row that produced it (T = 1 for greedy requests), a prompt
token's is the raw log_softmax of the prefill row before it, and the first scored prompt
position has none. The types are orthrus_sglang.logprobs's (the embedded engine fills them; the
SGLang backend builds them from SGLang's meta_info); this module adds the per-token texts.
"""

from __future__ import annotations

import json
import re
from functools import cached_property

from orthrus_sglang.logprobs import LogprobRequest, Pairs, TokenLogprob

# One type per concept, shared with the embedded engine (which fills them itself).
__all__ = ["LogprobRequest", "Pairs", "TokenLogprob", "TokenTexts"]


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
        missing = list(dict.fromkeys(i for i in ids if i not in self._bytes))
        if missing:
            pieces = self._tokenizer.convert_ids_to_tokens(missing)
            for token_id, piece, text in zip(missing, pieces, self(missing)):
                self._bytes[token_id] = self._token_bytes(token_id, piece, text)
        return [self._bytes[i] for i in ids]

    @cached_property
    def _bytes(self) -> dict[int, list[int]]:
        return {}

    @cached_property
    def _byte_level(self) -> bool:
        """Whether the tokenizer decodes through GPT-2's byte-level alphabet."""
        decoder = getattr(getattr(self._tokenizer, "backend_tokenizer", None), "decoder", None)
        if decoder is None:
            return False
        state = json.loads(decoder.__getstate__())
        return "ByteLevel" in {state.get("type")} | {d.get("type") for d in state.get("decoders", [])}

    @cached_property
    def _added(self) -> set[int]:
        return set(getattr(self._tokenizer, "added_tokens_decoder", None) or ())

    def _token_bytes(self, token_id: int, piece: str | None, text: str) -> list[int]:
        if piece is not None and token_id not in self._added:
            if self._byte_level and all(c in _BYTE_OF for c in piece):
                return [_BYTE_OF[c] for c in piece]
            fallback = _BYTE_FALLBACK.fullmatch(piece)
            if fallback:
                return [int(fallback.group(1), 16)]
        return list(text.encode("utf-8"))


_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _gpt2_byte_alphabet() -> dict[str, int]:
    """char -> byte of GPT-2's byte-level alphabet: printable bytes stand for themselves, the other
    68 map to U+0100 onwards, in byte order."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)}
    others = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + i): b for i, b in enumerate(others)}}


_BYTE_OF = _gpt2_byte_alphabet()
