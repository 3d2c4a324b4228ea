"""The OpenAI API on the embedded backend, through the real `openai` client and raw httpx."""

import httpx
import openai
import pytest
from gateway_helpers import sse_events

from orthrus_sglang import SamplingParams

MESSAGES = [{"role": "user", "content": "What is 7 * 6?"}]


@pytest.fixture(scope="module")
def client(gateway):
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)


def test_models(client, gateway):
    models = client.models.list().data
    assert [m.id for m in models] == [gateway.state.settings.model_id]
    assert client.models.retrieve(models[0].id).id == models[0].id
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_chat_completion_has_usage_and_orthrus_stats(client, gateway):
    r = client.chat.completions.create(model=gateway.state.settings.model_id, messages=MESSAGES, max_tokens=12,
                                       extra_body={"ignore_eos": True})
    assert r.object == "chat.completion" and r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 12 and r.usage.prompt_tokens > 0
    stats = r.model_extra["orthrus"]
    assert stats["tokens"] == 12 and stats["block_size"] == 4
    assert sum(stats["accept_length_histogram"]) == stats["steps"] == 11  # the prefill token is no step
    assert len(stats["accepted_per_position"]) == 3
    assert stats["tau"] == pytest.approx((sum(stats["accepted_per_position"]) + stats["steps"]) / stats["steps"])
    assert "ar_equivalent_speedup" not in stats  # an estimate, not a measurement: not reported


def test_max_completion_tokens_and_n_in_a_chat_stream(client, gateway):
    stream = client.chat.completions.create(model=gateway.state.settings.model_id, messages=MESSAGES, n=2,
                                            max_completion_tokens=3, stream=True, extra_body={"ignore_eos": True})
    finish = {c.choices[0].index: c.choices[0].finish_reason for c in stream if c.choices[0].finish_reason}
    assert finish == {0: "length", 1: "length"}


def test_chat_stream_equals_non_stream(client, gateway):
    kwargs = dict(model=gateway.state.settings.model_id, messages=MESSAGES, max_tokens=20)
    full = client.chat.completions.create(**kwargs)
    stream = client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason == full.choices[0].finish_reason
    assert finish[0].model_extra["orthrus"] == full.model_extra["orthrus"]
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == full.usage.completion_tokens
    assert last.model_extra["orthrus"]["steps"] == full.model_extra["orthrus"]["steps"]


def test_raw_sse_framing_ends_with_done(gateway):
    body = {"messages": MESSAGES, "max_tokens": 5, "stream": True}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    assert raw.endswith("data: [DONE]\n\n") and raw.count("data: [DONE]") == 1
    assert all(block.startswith("data: ") for block in raw.strip().split("\n\n"))


def test_completions_batch_and_n(client, gateway):
    r = client.completions.create(model=gateway.state.settings.model_id, prompt=["Hello", [72, 105]], n=2,
                                  max_tokens=6, extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert r.choices[0].text == r.choices[1].text  # greedy: the n copies agree
    assert r.usage.completion_tokens == 24
    assert r.model_extra["orthrus"]["tokens"] == 24


def test_completion_tokens_equal_the_engine_run_alone(gateway, tiny_ckpt):
    from orthrus_sglang.ref.engine import Engine

    prompt = [72, 101, 108, 108, 111]
    r = httpx.post(gateway.url + "/v1/completions", timeout=30, json={
        "prompt": prompt, "max_tokens": 30, "ignore_eos": True, "return_token_ids": True}).json()
    solo = Engine(tiny_ckpt, max_batch_size=1).generate([prompt], SamplingParams(max_new_tokens=30, ignore_eos=True))
    assert r["choices"][0]["token_ids"] == solo[0].token_ids
    assert r["orthrus"]["accept_length_histogram"] == solo[0].stats.accept_length_histogram


def test_ar_only_gives_the_same_greedy_tokens(gateway):
    body = {"prompt": [40, 41, 42], "max_tokens": 25, "ignore_eos": True, "return_token_ids": True}
    orthrus = httpx.post(gateway.url + "/v1/completions", json=body, timeout=30).json()
    ar = httpx.post(gateway.url + "/v1/completions", json={**body, "ar_only": True}, timeout=30).json()
    assert orthrus["choices"][0]["token_ids"] == ar["choices"][0]["token_ids"]
    assert ar["orthrus"]["tau"] == 1.0


def test_stop_strings_cut_text_and_stream_the_same(gateway):
    base = {"prompt": [72, 105], "max_tokens": 30, "ignore_eos": True}
    full = httpx.post(gateway.url + "/v1/completions", json=base, timeout=30).json()["choices"][0]["text"]
    assert len(full) >= 6
    stop = full[3:5]
    cut = full[: full.index(stop)]
    r = httpx.post(gateway.url + "/v1/completions", json={**base, "stop": [stop]}, timeout=30).json()
    assert r["choices"][0]["text"] == cut and r["choices"][0]["finish_reason"] == "stop"
    with httpx.stream("POST", gateway.url + "/v1/completions", json={**base, "stop": stop, "stream": True},
                      timeout=30) as s:
        events = sse_events(s.iter_lines())
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == cut
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_default_max_tokens_fills_the_context(gateway):
    r = httpx.post(gateway.url + "/v1/completions", timeout=60,
                   json={"prompt": [1] * 500, "ignore_eos": True}).json()
    assert r["usage"] == {"prompt_tokens": 500, "completion_tokens": 12, "total_tokens": 512}
    assert r["choices"][0]["finish_reason"] == "length"


def test_seeded_sampling_is_reproducible(gateway):
    body = {"prompt": "Once", "max_tokens": 16, "temperature": 1.0, "top_p": 0.9, "top_k": 50, "seed": 1234,
            "ignore_eos": True, "return_token_ids": True}
    a = httpx.post(gateway.url + "/v1/completions", json=body, timeout=30).json()
    b = httpx.post(gateway.url + "/v1/completions", json=body, timeout=30).json()
    c = httpx.post(gateway.url + "/v1/completions", json={**body, "seed": 99}, timeout=30).json()
    assert a["choices"][0]["token_ids"] == b["choices"][0]["token_ids"]
    assert a["choices"][0]["token_ids"] != c["choices"][0]["token_ids"]


def test_min_p_reaches_the_engine(gateway):
    """min_p = 1 keeps only the most probable token: sampling at T=1 then is greedy decoding; without
    it the same seeded request samples something else (so min_p was applied, not dropped)."""
    body = {"prompt": "Once", "max_tokens": 12, "temperature": 1.0, "seed": 7, "ignore_eos": True,
            "return_token_ids": True}
    greedy = httpx.post(gateway.url + "/v1/completions", json={**body, "temperature": 0}, timeout=30).json()
    only_top = httpx.post(gateway.url + "/v1/completions", json={**body, "min_p": 1.0}, timeout=30).json()
    free = httpx.post(gateway.url + "/v1/completions", json=body, timeout=30).json()
    assert only_top["choices"][0]["token_ids"] == greedy["choices"][0]["token_ids"]
    assert free["choices"][0]["token_ids"] != greedy["choices"][0]["token_ids"]
    native = httpx.post(gateway.url + "/generate", timeout=30, json={
        "text": "Once", "sampling_params": {"max_new_tokens": 12, "temperature": 1.0, "min_p": 1.0, "sampling_seed": 7,
                                            "ignore_eos": True}}).json()
    assert native["output_ids"] == greedy["choices"][0]["token_ids"]
    bad = httpx.post(gateway.url + "/v1/completions", json={**body, "min_p": 1.5}, timeout=30)
    assert bad.status_code == 400 and "min_p" in bad.text
