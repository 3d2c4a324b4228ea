"""The backend interface: token ids in, committed token ids out, one stream per sequence.

The gateway owns text (chat template, tokenization, detokenization, stop strings); a backend
only runs sequences. Closing a stream before it finishes aborts the sequence in the backend.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ..logprobs import LogprobRequest, TokenLogprob
from ..stats import OrthrusStats


@dataclass(frozen=True)
class GenRequest:
    prompt_ids: list[int]
    max_new_tokens: int  # 0: prefill only (prompt logprobs), nothing is generated
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    min_p: float = 0.0  # 0 = off
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    ar_only: bool = False
    logprobs: LogprobRequest | None = None  # report logprobs (of every token, and of the prompt when asked)


@dataclass
class GenChunk:
    token_ids: list[int]  # newly committed tokens, in order
    finish_reason: str | None = None  # "stop" | "length" once finished
    stats: OrthrusStats | None = None  # cumulative for the sequence so far, when known
    logprobs: list[TokenLogprob] | None = None  # one per token in token_ids, when asked for
    prompt_logprobs: list[TokenLogprob] | None = None  # once (the first chunk), when asked for


@dataclass
class ModelInfo:
    model_path: str
    tokenizer: Any  # a Hugging Face tokenizer
    max_seq_len: int | None  # prompt + generation; None = unknown (the backend checks)
    block_size: int | None
    vocab_size: int | None
    eos_token_ids: frozenset[int] = frozenset()
    extra: dict = field(default_factory=dict)


@dataclass
class Health:
    ok: bool
    detail: str
    running: int = 0
    waiting: int = 0


class BackendError(Exception):
    """A failure to report to the client; `status` picks the HTTP code."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class BackendUnavailable(BackendError):
    def __init__(self, message: str):
        super().__init__(503, message)


class GenStream(ABC):
    """One running sequence. Use as `async with backend.generate(req) as s: async for chunk in s`."""

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[GenChunk]: ...

    @abstractmethod
    async def aclose(self) -> None:
        """Stop the sequence if it has not finished (idempotent)."""

    async def __aenter__(self) -> GenStream:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


class Backend(ABC):
    kind: str

    @abstractmethod
    async def start(self) -> None:
        """Load or connect. Must not fail just because a remote server is down (health says so)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def health(self) -> Health: ...

    @abstractmethod
    async def model_info(self) -> ModelInfo:
        """Raises BackendUnavailable when the model cannot be described yet."""

    @abstractmethod
    def generate(self, req: GenRequest) -> GenStream: ...

    def load(self) -> tuple[int, int]:
        """(running, waiting) sequences inside the backend, for metrics; cheap, never blocks."""
        return 0, 0

    def block_policy(self) -> dict | None:
        """The engine's block-size choices (orthrus_sglang.block_policy.BlockPolicy.snapshot), or None
        where the backend does not report them; cheap, never blocks."""
        return None


async def wait_shielded(fut: asyncio.Future):
    """Await `fut` to its end even through cancellations (for bounded cleanup such as closing a stream: a
    cancel landing half-way leaks the connection), then re-raise the cancellation if one came."""
    cancelled = False
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            cancelled = cancelled or not fut.cancelled()  # ours, not fut's own
    if cancelled:
        raise asyncio.CancelledError
    return fut.result()
