"""Prompts -> token ids, and the length budget checks that turn into clear 400s."""

from __future__ import annotations

from .backends.base import ModelInfo
from .errors import APIError, bad_request


def chat_prompt_ids(info: ModelInfo, messages: list[dict]) -> list[int]:
    tok = info.tokenizer
    if not getattr(tok, "chat_template", None):
        raise bad_request("This model has no chat template; use /v1/completions instead.", param="messages")
    try:
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception as e:  # templates raise on e.g. a bad role order: a client error
        raise bad_request(f"The messages do not fit the model's chat template: {e}", param="messages")
    # The template already wrote any BOS it wants.
    return tok.encode(text, add_special_tokens=False)


def text_prompt_ids(info: ModelInfo, prompt: str) -> list[int]:
    return info.tokenizer.encode(prompt, add_special_tokens=True)


def checked_token_ids(info: ModelInfo, ids: list[int], param: str) -> list[int]:
    vocab = info.vocab_size or len(info.tokenizer)
    bad = next((t for t in ids if not 0 <= t < vocab), None)
    if bad is not None:
        raise bad_request(f"Token id {bad} is outside the vocabulary [0, {vocab}).", param=param)
    return ids


def budget(info: ModelInfo, prompt_len: int, max_tokens: int | None, *, param: str = "max_tokens",
           prompt_param: str = "prompt") -> int:
    """max_new_tokens for one sequence: the request's, or what is left of the context."""
    if prompt_len == 0:
        raise bad_request("The prompt is empty (it encodes to zero tokens).", param=prompt_param)
    limit = info.max_seq_len
    if limit is None:
        if max_tokens is None:
            raise bad_request(f"`{param}` is required: the backend did not report its context length.", param=param)
        return max_tokens
    if prompt_len >= limit:
        raise APIError(400, f"This model's maximum context length is {limit} tokens, but the prompt has "
                            f"{prompt_len} tokens. Please shorten the prompt.", param=prompt_param,
                       code="context_length_exceeded")
    if max_tokens is None:
        return limit - prompt_len
    if prompt_len + max_tokens > limit:
        raise APIError(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                            f"{prompt_len + max_tokens} tokens ({prompt_len} in the prompt, {max_tokens} for the "
                            f"completion). Please reduce the prompt or `{param}`.", param=param,
                       code="context_length_exceeded")
    return max_tokens
