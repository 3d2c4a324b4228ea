"""Token ids -> text, incrementally, with OpenAI stop strings.

Text is released only when it is final: a trailing U+FFFD may be half of a multi-byte
character, and a trailing piece of a stop string may complete into one. So the streamed
deltas always concatenate to the non-streamed text.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


class TextAssembler:
    def __init__(self, tokenizer, stop: list[str] | None = None, skip_special_tokens: bool = True):
        self._tokenizer, self._skip_special = tokenizer, skip_special_tokens
        self._stop = [s for s in (stop or []) if s]
        self._longest_stop = max((len(s) for s in self._stop), default=0)
        self.token_ids: list[int] = []
        self.text = ""  # released so far
        self.stopped = False  # a stop string was found

    def push(self, token_ids: list[int], finished: bool) -> str:
        """Add committed tokens; return the newly released text."""
        if self.stopped:
            return ""
        self.token_ids += token_ids
        full = self._tokenizer.decode(self.token_ids, skip_special_tokens=self._skip_special)
        cut = self._find_stop(full)
        if cut is not None:
            self.stopped = True
            end = cut
        elif finished:
            end = len(full)
        else:
            end = self._safe_end(full)
        end = max(end, len(self.text))
        delta = full[len(self.text):end]
        self.text += delta
        return delta

    def _find_stop(self, full: str) -> int | None:
        if not self._stop:
            return None
        start = max(0, len(self.text) - self._longest_stop)
        hits = [i for i in (full.find(s, start) for s in self._stop) if i >= 0]
        return min(hits) if hits else None

    def _safe_end(self, full: str) -> int:
        end = len(full)
        while end > len(self.text) and full[end - 1] == REPLACEMENT:
            end -= 1
        hold = 0
        for s in self._stop:
            for k in range(min(len(s) - 1, end), 0, -1):
                if full.endswith(s[:k], 0, end):
                    hold = max(hold, k)
                    break
        return end - hold
