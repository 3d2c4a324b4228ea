"""A native /generate request spread over its prompts, with SGLang's batch rules.

A scalar field applies to every prompt; a list gives one value per prompt and must have one
entry per prompt. Each prompt gets its sampling parameters, its rid and what logprobs it wants.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import bad_request
from .logprobs import LogprobRequest
from .native_schemas import NativeGenerateRequest, NativeSamplingParams


@dataclass
class PromptJob:
    prompt_ids: list[int]
    rid: str
    params: NativeSamplingParams
    logprobs: LogprobRequest | None  # None: return_logprob is off for this prompt


def _per_prompt(body: NativeGenerateRequest, name: str, n: int, *, nested: bool = False) -> list:
    """The field's value for each of n prompts. nested: the field is itself a list (token_ids_logprob)."""
    value = getattr(body, name)
    per_prompt = isinstance(value, list) and (not nested or (value and isinstance(value[0], list)))
    if not per_prompt:
        return [value] * n
    if len(value) != n:
        raise bad_request(f"`{name}` has {len(value)} entries for {n} prompts; pass one per prompt or a single "
                          "value.", param=name)
    return list(value)


def spread(body: NativeGenerateRequest, prompts: list[list[int]], vocab_size: int, default_rid: str) -> list[PromptJob]:
    n = len(prompts)
    params = _per_prompt(body, "sampling_params", n)
    want = _per_prompt(body, "return_logprob", n)
    starts = _per_prompt(body, "logprob_start_len", n)
    tops = _per_prompt(body, "top_logprobs_num", n)
    ids = _per_prompt(body, "token_ids_logprob", n, nested=True)
    if isinstance(body.rid, list):
        rids = _per_prompt(body, "rid", n)
    else:
        rid = body.rid or default_rid
        rids = [rid if i == 0 else f"{rid}-{i}" for i in range(n)]
    jobs = []
    for i, prompt in enumerate(prompts):
        spec = None
        if want[i]:
            spec = LogprobRequest(top_k=_top(tops[i]), prompt_start=_start(starts[i], len(prompt)),
                               token_ids=_token_ids(ids[i], vocab_size))
        jobs.append(PromptJob(prompt, rids[i], params[i] or NativeSamplingParams(), spec))
    return jobs


def _start(start: int | None, prompt_len: int) -> int | None:
    """SGLang's logprob_start_len: -1 (the default) reports no prompt logprobs."""
    if start is None or start == -1:
        return None
    if start < -1:
        raise bad_request(f"`logprob_start_len` = {start} is invalid: use -1 (no prompt logprobs) or a prompt "
                          "position >= 0.", param="logprob_start_len")
    if start > prompt_len:
        raise bad_request(f"`logprob_start_len` = {start} is higher than the number of input tokens ({prompt_len}).",
                          param="logprob_start_len")
    return start


def _top(top: int | None) -> int:
    if top is not None and top < 0:
        raise bad_request(f"`top_logprobs_num` = {top} is invalid: it must be >= 0.", param="top_logprobs_num")
    return top or 0


def _token_ids(ids: list[int] | None, vocab_size: int) -> tuple[int, ...] | None:
    if not ids:
        return None  # SGLang reads [] as None
    bad = next((t for t in ids if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise bad_request(f"`token_ids_logprob` holds token id {bad}, outside the vocabulary [0, {vocab_size}).",
                          param="token_ids_logprob")
    return tuple(ids)
