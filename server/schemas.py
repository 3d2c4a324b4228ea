"""Request schemas for the OpenAI subset we serve. Pydantic stays here, at the edge.

Strict: unknown fields and wrong types are 400s (as OpenAI does), and features we do not
implement (tools, penalties, suffix, ...) are refused by name rather than silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_N = 16
MAX_SEQUENCES_PER_REQUEST = 64  # n x prompts
MAX_STOP_STRINGS = 4
MAX_SEED = 2**63 - 1
MAX_TOP_LOGPROBS = 20


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class StreamOptions(Strict):
    include_usage: bool = False
    continuous_usage_stats: bool = False


def _unsupported(name: str, value: Any, default: Any = None) -> None:
    if value is not None and value != default and value != {} and value != []:
        raise ValueError(f"`{name}` is not supported by this server")


class SamplingFields(Strict):
    """Fields shared by /v1/completions and /v1/chat/completions."""

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=2**31 - 1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, description="-1 or 0: off")
    min_p: float | None = Field(None, ge=0.0, le=1.0, description="0: off")
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # Extensions (vLLM/SGLang spellings): see docs/gateway.md.
    ignore_eos: bool = False
    return_token_ids: bool = False
    ar_only: bool = Field(False, description="plain AR decoding on the embedded engine (for comparison)")
    # Accepted only at their no-op values.
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop(cls, v):
        if v is None:
            return v
        stops = [v] if isinstance(v, str) else v
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise ValueError("must be a string or a list of strings")
        if len(stops) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop sequences are allowed")
        if any(s == "" for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    @model_validator(mode="after")
    def _common(self):
        _unsupported("presence_penalty", self.presence_penalty, 0.0)
        _unsupported("frequency_penalty", self.frequency_penalty, 0.0)
        _unsupported("logit_bias", self.logit_bias)
        if self.stream_options is not None and not self.stream:
            raise ValueError("`stream_options` is only allowed when `stream` is true")
        return self

    @property
    def stop_list(self) -> list[str]:
        return list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _parts(cls, v):
        if v is not None and not isinstance(v, (str, list)):
            raise ValueError("must be a string or a list of content parts")
        if isinstance(v, list):
            for i, part in enumerate(v):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind != "text":
                    raise ValueError(f"content part {i} has type {kind!r}; only 'text' parts are supported")
        return v

    @model_validator(mode="after")
    def _content(self):
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs `content`")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=2**31 - 1)
    response_format: dict | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _chat(self):
        if self.response_format not in (None, {"type": "text"}):
            raise ValueError("only response_format {'type': 'text'} is supported")
        if self.top_logprobs and not self.logprobs:
            raise ValueError("`top_logprobs` requires `logprobs` to be true")
        _unsupported("tools", self.tools)
        _unsupported("tool_choice", self.tool_choice, "none")
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("pass either `max_tokens` or `max_completion_tokens`, not both")
        return self

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def chat_messages(self) -> list[dict]:
        out = []
        for m in self.messages:
            msg = {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            if m.name is not None:
                msg["name"] = m.name
            out.append(msg)
        return out


# A completions prompt: text, token ids, or a batch of either.
Prompt = str | list[int]


class CompletionRequest(SamplingFields):
    prompt: list[Prompt]
    max_tokens: int | None = Field(None, ge=0, le=2**31 - 1)  # 0 only with echo (scores the prompt)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    best_of: int | None = None
    suffix: str | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, v):
        if isinstance(v, str) or (isinstance(v, list) and v and all(_is_token(t) for t in v)):
            return [v]
        if not isinstance(v, list) or not v:
            raise ValueError("must be a non-empty string, a list of token ids, or a non-empty list of those")
        for i, item in enumerate(v):
            ok = isinstance(item, str) or (isinstance(item, list) and item and all(_is_token(t) for t in item))
            if not ok:
                raise ValueError(f"item {i} must be a string or a non-empty list of token ids")
        return v

    @model_validator(mode="after")
    def _completion(self):
        _unsupported("suffix", self.suffix)
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("`best_of` different from `n` is not supported by this server")
        if self.n * len(self.prompt) > MAX_SEQUENCES_PER_REQUEST:
            raise ValueError(f"n x number of prompts must be at most {MAX_SEQUENCES_PER_REQUEST}")
        return self

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_tokens


def _is_token(t) -> bool:
    return isinstance(t, int) and not isinstance(t, bool)
