"""SGLang's native API on the gateway (embedded backend): /generate, /get_model_info, /get_server_info."""

import httpx
from gateway_helpers import sse_events

GREEDY = {"max_new_tokens": 8, "temperature": 0, "ignore_eos": True}


def test_get_model_info(gateway, tiny_ckpt):
    info = httpx.get(gateway.url + "/get_model_info", timeout=10).json()
    assert info["model_path"] == str(tiny_ckpt) and info["is_generation"] is True
    server = httpx.get(gateway.url + "/get_server_info", timeout=10).json()
    assert server["context_length"] == 512 and server["speculative_num_draft_tokens"] == 4


def test_generate_text_and_ids_agree(gateway):
    tok = gateway.engine.tokenizer
    by_text = httpx.post(gateway.url + "/generate", json={"text": "Hello", "sampling_params": GREEDY}, timeout=30).json()
    ids = tok.encode("Hello")
    by_ids = httpx.post(gateway.url + "/generate", json={"input_ids": ids, "sampling_params": GREEDY},
                        timeout=30).json()
    assert by_text["output_ids"] == by_ids["output_ids"] and len(by_text["output_ids"]) == 8
    assert by_text["text"] == tok.decode(by_text["output_ids"], skip_special_tokens=True)
    meta = by_text["meta_info"]
    assert meta["prompt_tokens"] == len(ids) and meta["completion_tokens"] == 8
    assert meta["finish_reason"] == {"type": "length", "length": 8}
    assert meta["spec_verify_ct"] == 7 and sum(meta["spec_accept_histogram"]) == 7
    assert meta["orthrus"]["steps"] == 7


def test_generate_batch(gateway):
    r = httpx.post(gateway.url + "/generate", json={"text": ["a", "b", "c"], "sampling_params": GREEDY},
                   timeout=30).json()
    assert isinstance(r, list) and len(r) == 3
    single = httpx.post(gateway.url + "/generate", json={"text": "b", "sampling_params": GREEDY}, timeout=30).json()
    assert r[1]["output_ids"] == single["output_ids"]


def test_generate_stream_is_cumulative_like_sglang(gateway):
    with httpx.stream("POST", gateway.url + "/generate", timeout=30,
                      json={"text": "Hello", "sampling_params": GREEDY, "stream": True}) as r:
        events = sse_events(r.iter_lines())
    assert events[-1] == "[DONE]"
    objs = events[:-1]
    for prev, cur in zip(objs, objs[1:]):
        assert cur["text"].startswith(prev["text"])
        assert cur["output_ids"][: len(prev["output_ids"])] == prev["output_ids"]
        assert cur["meta_info"]["completion_tokens"] == len(cur["output_ids"])
    assert objs[-1]["meta_info"]["finish_reason"]["type"] == "length"
    assert [o["meta_info"]["finish_reason"] for o in objs[:-1]] == [None] * (len(objs) - 1)


def test_generate_stop_string_and_stop_token(gateway):
    full = httpx.post(gateway.url + "/generate", json={"text": "Hi", "sampling_params": {**GREEDY, "max_new_tokens": 20}},
                      timeout=30).json()
    stop_char = next(ch for ch in full["text"][5:] if ch != "\ufffd")
    r = httpx.post(gateway.url + "/generate", timeout=30, json={
        "text": "Hi", "sampling_params": {**GREEDY, "max_new_tokens": 20, "stop": stop_char}}).json()
    assert r["text"] == full["text"][: full["text"].index(stop_char)]
    assert r["meta_info"]["finish_reason"]["type"] == "stop"
    third = full["output_ids"][2]
    r = httpx.post(gateway.url + "/generate", timeout=30, json={
        "text": "Hi", "sampling_params": {**GREEDY, "max_new_tokens": 20, "stop_token_ids": [third]}}).json()
    assert r["output_ids"] == full["output_ids"][: full["output_ids"].index(third) + 1]
    assert r["meta_info"]["finish_reason"] == {"type": "stop", "matched": third}


def test_zero_new_tokens_is_a_prefix_cache_call(gateway):
    """The SGLang frontend sends max_new_tokens=0 to warm its prefix cache."""
    r = httpx.post(gateway.url + "/generate", json={"text": "prefix", "sampling_params": {"max_new_tokens": 0}},
                   timeout=30).json()
    assert r["text"] == "" and r["meta_info"]["completion_tokens"] == 0
    assert r["meta_info"]["prompt_tokens"] == len(gateway.engine.tokenizer.encode("prefix"))


def test_frontend_default_sampling_fields_are_accepted(gateway):
    """What sgl.RuntimeEndpoint sends for a plain sgl.gen(): every field at its default."""
    sp = {"skip_special_tokens": True, "spaces_between_special_tokens": True, "max_new_tokens": 4,
          "min_new_tokens": 0, "n": 1, "stop": [], "stop_token_ids": [], "stop_regex": None, "temperature": 0,
          "top_p": 1.0, "top_k": -1, "min_p": 0.0, "frequency_penalty": 0.0, "presence_penalty": 0.0,
          "ignore_eos": False, "regex": None, "json_schema": None}
    r = httpx.post(gateway.url + "/generate", json={"text": "x", "sampling_params": sp}, timeout=30)
    assert r.status_code == 200 and r.json()["meta_info"]["completion_tokens"] >= 1
