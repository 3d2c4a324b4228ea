"""Request schema of SGLang's native `POST /generate`, the subset a token-level backend can honour.

SGLang frontend scripts (`sgl.RuntimeEndpoint`) send every sampling field with its default
value; those are accepted, and any non-default value of a feature we lack is refused by name.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from .schemas import MAX_SEED, MAX_STOP_STRINGS, Strict, _is_token

# field -> the value(s) that mean "off"
_NOOP_FIELDS: dict[str, tuple] = {
    "min_p": (0, 0.0, None), "frequency_penalty": (0, 0.0, None), "presence_penalty": (0, 0.0, None),
    "repetition_penalty": (1, 1.0, None), "min_new_tokens": (0, None), "regex": (None,), "json_schema": (None,),
    "ebnf": (None,), "structural_tag": (None,), "stop_regex": (None, []), "no_stop_trim": (False, None),
    "custom_params": (None,), "logit_bias": (None, {}), "n": (1, None),
}


class NativeSamplingParams(Strict):
    max_new_tokens: int = Field(128, ge=0, le=2**31 - 1)
    temperature: float = Field(1.0, ge=0.0, le=100.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(-1, ge=-1)
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    sampling_seed: int | None = Field(None, ge=0, le=MAX_SEED)
    ar_only: bool = False
    min_p: Any = None
    frequency_penalty: Any = None
    presence_penalty: Any = None
    repetition_penalty: Any = None
    min_new_tokens: Any = None
    regex: Any = None
    json_schema: Any = None
    ebnf: Any = None
    structural_tag: Any = None
    stop_regex: Any = None
    no_stop_trim: Any = None
    custom_params: Any = None
    logit_bias: Any = None
    n: Any = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop(cls, v):
        stops = [] if v is None else [v] if isinstance(v, str) else v
        if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) and s for s in stops):
            raise ValueError("must be a non-empty string or a list of them")
        if len(stops) > MAX_STOP_STRINGS * 4:
            raise ValueError(f"at most {MAX_STOP_STRINGS * 4} stop strings are allowed")
        return list(stops)

    @field_validator("stop_token_ids", mode="before")
    @classmethod
    def _stop_ids(cls, v):
        if v is not None and (not isinstance(v, (list, tuple)) or not all(_is_token(t) and t >= 0 for t in v)):
            raise ValueError("must be a list of non-negative token ids")
        return None if v is None else list(v)

    @model_validator(mode="after")
    def _noops(self):
        for name, noop in _NOOP_FIELDS.items():
            value = getattr(self, name)
            if not any(_same(value, x) for x in noop):
                raise ValueError(f"`{name}` = {value!r} is not supported by this server")
        return self


def _same(a, b) -> bool:
    """Equal, without letting True pass for 1 (JSON's booleans are not numbers)."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


class NativeGenerateRequest(Strict):
    text: str | list[str] | None = None
    input_ids: list[int] | list[list[int]] | None = None
    sampling_params: NativeSamplingParams = Field(default_factory=NativeSamplingParams)
    stream: bool = False
    rid: str | list[str] | None = None
    return_logprob: bool | list[bool] = False
    logprob_start_len: int | list[int] | None = None
    top_logprobs_num: int | list[int] | None = None
    return_text_in_logprobs: bool = False
    image_data: Any = None
    log_metrics: bool = True

    @field_validator("text", mode="before")
    @classmethod
    def _text(cls, v):
        if v is not None and not isinstance(v, str) and not (isinstance(v, list) and all(isinstance(t, str) for t in v)):
            raise ValueError("must be a string or a list of strings")
        return v

    @field_validator("input_ids", mode="before")
    @classmethod
    def _ids(cls, v):
        flat = isinstance(v, list) and all(_is_token(t) for t in v)
        nested = isinstance(v, list) and all(isinstance(p, list) and p and all(_is_token(t) for t in p) for p in v)
        if v is not None and not (flat or nested):
            raise ValueError("must be a list of token ids or a list of such lists")
        return v

    @field_validator("rid", "return_logprob", "logprob_start_len", "top_logprobs_num", mode="before")
    @classmethod
    def _scalar_or_list(cls, v, info):
        kinds = {"rid": str, "return_logprob": bool, "logprob_start_len": int, "top_logprobs_num": int}
        kind = kinds[info.field_name]
        ok = lambda x: isinstance(x, kind) and (kind is bool or not isinstance(x, bool))
        if v is not None and not (ok(v) or (isinstance(v, list) and all(ok(x) for x in v))):
            raise ValueError(f"must be a {kind.__name__} or a list of them")
        return v

    @model_validator(mode="after")
    def _inputs(self):
        if (self.text is None) == (self.input_ids is None):
            raise ValueError("pass exactly one of `text` or `input_ids`")
        if self.return_logprob not in (False, []) and not (isinstance(self.return_logprob, list)
                                                          and not any(self.return_logprob)):
            raise ValueError("`return_logprob` is not supported by this server")
        if self.image_data not in (None, [], ""):
            raise ValueError("`image_data` is not supported by this server")
        if isinstance(self.text, list) and not self.text:
            raise ValueError("`text` must not be an empty list")
        if isinstance(self.input_ids, list) and not self.input_ids:
            raise ValueError("`input_ids` must not be empty")
        return self

    @property
    def is_batch(self) -> bool:
        return isinstance(self.text, list) or (bool(self.input_ids) and isinstance(self.input_ids[0], list))
