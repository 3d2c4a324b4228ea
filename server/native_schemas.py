"""Request schema of SGLang 0.5.17's native `POST /generate` (its GenerateReqInput and SamplingParams).

Every field SGLang accepts is accepted here at its default ("off") value, so that clients which
send them all (`sgl.RuntimeEndpoint`, `python -m sglang.bench_serving --backend sglang`) work
unchanged. A non-default value is honoured, or refused with a 400 that names the field.
Honoured: text / input_ids (single or batch), sampling_params (one, or one per prompt), stream,
rid, return_logprob, logprob_start_len, top_logprobs_num, token_ids_logprob,
return_text_in_logprobs, return_prompt_token_ids; log_metrics, no_logs, extra_key, routing_key,
conversation_id, external_trace_header and received_time change nothing here (no prefix cache,
one engine) and take any value.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from .schemas import MAX_SEED, MAX_STOP_STRINGS, Strict, _is_token

# Sampling fields we cannot honour -> the values that mean "off" (SGLang reads null as the default).
_SAMPLING_OFF: dict[str, tuple] = {
    "frequency_penalty": (0, None), "presence_penalty": (0, None),
    "repetition_penalty": (1, None), "min_new_tokens": (0, None), "n": (1, None), "regex": (None,),
    "json_schema": (None,), "ebnf": (None,), "structural_tag": (None,), "stop_regex": (None, [], ""),
    "no_stop_trim": (False, None), "stream_interval": (None,), "custom_params": (None, {}), "logit_bias": (None, {}),
}

# GenerateReqInput fields we cannot honour -> their "off" values (a batch may send a list of them).
_REQUEST_OFF: dict[str, tuple] = {
    **dict.fromkeys(["session_id", "input_embeds", "image_data", "video_data", "audio_data", "mm_hashes",
                     "modalities", "session_params", "lora_path", "lora_id", "custom_logit_processor",
                     "positional_embed_overrides", "bootstrap_host", "bootstrap_port", "bootstrap_room",
                     "bootstrap_pair_key", "decode_tp_size", "routed_dp_rank", "disagg_prefill_dp_rank",
                     "http_worker_ipc", "max_thinking_tokens", "priority", "custom_labels",
                     "need_wait_for_mm_inputs", "num_items_assigned", "mm_data_mooncake", "encoder_urls",
                     "max_dynamic_patch", "min_dynamic_patch", "image_max_dynamic_patch", "video_max_dynamic_patch",
                     "images_config", "multi_item_delimiter_indices"], (None, "", [], {})),
    **dict.fromkeys(["use_audio_in_video", "return_sampling_mask", "return_flat_raw_top_logprobs",
                     "return_flat_raw_top_logprobs_b64", "return_hidden_states", "return_routed_experts",
                     "return_indexer_topk", "background", "require_reasoning", "return_bytes", "return_entropy"],
                    (False, None)),
    "routed_experts_start_len": (0, None),
}


def _same(a, b) -> bool:
    """Equal, without letting True pass for 1 (JSON's booleans are not numbers)."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _is_off(value, off: tuple) -> bool:
    if any(_same(value, x) for x in off):
        return True
    return isinstance(value, list) and all(any(_same(v, x) for x in off) for v in value)  # batch form


def _refuse(name: str, value) -> ValueError:
    shown = repr(value)
    return ValueError(f"`{name}` = {shown if len(shown) <= 60 else shown[:57] + '...'} is not supported "
                      "by this server")


class NativeSamplingParams(Strict):
    max_new_tokens: int | None = Field(128, ge=0, le=2**31 - 1)  # None: the rest of the context
    temperature: float | None = Field(None, ge=0.0, le=100.0)  # None: 1.0, as in SGLang
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1)  # -1 (or 0): off
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool | None = None
    skip_special_tokens: bool | None = None
    spaces_between_special_tokens: bool | None = None
    sampling_seed: int | None = Field(None, ge=0, le=MAX_SEED)
    ar_only: bool = False  # gateway extension: plain AR decoding on the embedded engine
    min_p: float | None = Field(None, ge=0.0, le=1.0)  # None or 0: off
    frequency_penalty: Any = None
    presence_penalty: Any = None
    repetition_penalty: Any = None
    min_new_tokens: Any = None
    n: Any = None
    regex: Any = None
    json_schema: Any = None
    ebnf: Any = None
    structural_tag: Any = None
    stop_regex: Any = None
    no_stop_trim: Any = None
    stream_interval: Any = None
    custom_params: Any = None
    logit_bias: Any = None

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

    @field_validator(*_SAMPLING_OFF)
    @classmethod
    def _off(cls, v, info):
        if not _is_off(v, _SAMPLING_OFF[info.field_name]):
            raise _refuse(info.field_name, v)
        return v

    @property
    def temperature_or_default(self) -> float:
        return 1.0 if self.temperature is None else self.temperature

    @property
    def top_p_or_default(self) -> float:
        return 1.0 if self.top_p is None else self.top_p

    @property
    def min_p_or_off(self) -> float:
        return self.min_p or 0.0

    @property
    def top_k_or_off(self) -> int:
        return max(self.top_k or 0, 0)

    @property
    def skip_special(self) -> bool:
        return self.skip_special_tokens is not False


# One dict for every prompt, or a list with one per prompt. The tags are body.py's type tags,
# left out of error locations: a bad field reads "sampling_params[1].regex".
OneOrPerPrompt = Annotated[
    Annotated[NativeSamplingParams, Tag("dict")] | Annotated[list[NativeSamplingParams], Tag("list")],
    Discriminator(lambda v: "list" if isinstance(v, list) else "dict")]


def _ints(v) -> bool:
    return isinstance(v, list) and all(_is_token(t) for t in v)


class NativeGenerateRequest(Strict):
    text: str | list[str] | None = None
    input_ids: list[int] | list[list[int]] | None = None
    sampling_params: OneOrPerPrompt | None = None
    stream: bool = False
    rid: str | list[str] | None = None
    return_logprob: bool | list[bool] | None = None
    logprob_start_len: int | list[int] | None = None  # -1 (default): no prompt logprobs
    top_logprobs_num: int | list[int] | None = None
    token_ids_logprob: list[int] | list[list[int]] | None = None
    return_text_in_logprobs: bool = False
    return_prompt_token_ids: bool = False
    log_metrics: bool = True
    no_logs: bool = False
    extra_key: Any = None
    routing_key: Any = None
    conversation_id: Any = None
    external_trace_header: Any = None
    received_time: Any = None
    # Accepted only "off": see _REQUEST_OFF.
    session_id: Any = None
    input_embeds: Any = None
    image_data: Any = None
    video_data: Any = None
    audio_data: Any = None
    mm_hashes: Any = None
    use_audio_in_video: Any = None
    return_sampling_mask: Any = None
    return_flat_raw_top_logprobs: Any = None
    return_flat_raw_top_logprobs_b64: Any = None
    return_hidden_states: Any = None
    return_routed_experts: Any = None
    routed_experts_start_len: Any = None
    return_indexer_topk: Any = None
    modalities: Any = None
    session_params: Any = None
    lora_path: Any = None
    lora_id: Any = None
    custom_logit_processor: Any = None
    positional_embed_overrides: Any = None
    bootstrap_host: Any = None
    bootstrap_port: Any = None
    bootstrap_room: Any = None
    bootstrap_pair_key: Any = None
    decode_tp_size: Any = None
    routed_dp_rank: Any = None
    disagg_prefill_dp_rank: Any = None
    http_worker_ipc: Any = None
    background: Any = None
    require_reasoning: Any = None
    max_thinking_tokens: Any = None
    priority: Any = None
    custom_labels: Any = None
    return_bytes: Any = None
    return_entropy: Any = None
    need_wait_for_mm_inputs: Any = None
    num_items_assigned: Any = None
    mm_data_mooncake: Any = None
    encoder_urls: Any = None
    max_dynamic_patch: Any = None
    min_dynamic_patch: Any = None
    image_max_dynamic_patch: Any = None
    video_max_dynamic_patch: Any = None
    images_config: Any = None
    multi_item_delimiter_indices: Any = None

    @field_validator("text", mode="before")
    @classmethod
    def _text(cls, v):
        if v is not None and not isinstance(v, str) and not (isinstance(v, list) and all(isinstance(t, str) for t in v)):
            raise ValueError("must be a string or a list of strings")
        return v

    @field_validator("input_ids", mode="before")
    @classmethod
    def _ids(cls, v):
        nested = isinstance(v, list) and all(isinstance(p, list) and p and _ints(p) for p in v)
        if v is not None and not (_ints(v) or nested):
            raise ValueError("must be a list of token ids or a list of such lists")
        return v

    @field_validator("token_ids_logprob", mode="before")
    @classmethod
    def _logprob_ids(cls, v):
        nested = isinstance(v, list) and all(_ints(p) for p in v)
        if v is not None and not (_ints(v) or nested):
            raise ValueError("must be a list of token ids, or one such list per prompt")
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

    @field_validator(*_REQUEST_OFF)
    @classmethod
    def _off(cls, v, info):
        if not _is_off(v, _REQUEST_OFF[info.field_name]):
            raise _refuse(info.field_name, v)
        return v

    @model_validator(mode="after")
    def _inputs(self):
        if (self.text is None) == (self.input_ids is None):
            raise ValueError("pass exactly one of `text` or `input_ids`")
        if isinstance(self.text, list) and not self.text:
            raise ValueError("`text` must not be an empty list")
        if isinstance(self.input_ids, list) and not self.input_ids:
            raise ValueError("`input_ids` must not be empty")
        return self

    @property
    def is_batch(self) -> bool:
        return isinstance(self.text, list) or (bool(self.input_ids) and isinstance(self.input_ids[0], list))
