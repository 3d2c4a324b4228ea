"""Property-based fuzz: >= 1,000 generated bodies, never a 5xx, always an OpenAI error body on 4xx.

The bodies mix raw bytes, arbitrary JSON, and near-valid requests whose fields hold arbitrary
values (so that many get past JSON parsing and into validation, and some run for real). A
small context (64 tokens) keeps the valid ones quick.
"""

import json
import os

import httpx
import pytest
from gateway_helpers import LiveServer, settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "1000"))

any_text = st.text(st.characters(codec=None), max_size=12)  # lone surrogates included
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), any_text)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(any_text, inner, max_size=4)),
                           max_leaves=12)
small_ints = st.integers(min_value=-3, max_value=8)
messages = st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "developer", "tool", "x"]),
     "content": st.one_of(st.text(max_size=20), json_values)}), max_size=3)
OPTIONAL = {
    "model": st.one_of(st.sampled_from(["tiny", "nope"]), json_values),
    "max_tokens": st.one_of(small_ints, json_values), "temperature": st.one_of(st.floats(-1, 3), json_values),
    "top_p": st.one_of(st.floats(-0.5, 1.5), json_values), "top_k": st.one_of(small_ints, json_values),
    "seed": st.one_of(st.integers(-5, 2**64), json_values), "n": st.one_of(small_ints, json_values),
    "stop": st.one_of(st.text(max_size=3), st.lists(st.text(max_size=3), max_size=5), json_values),
    "stream": st.one_of(st.booleans(), json_values), "stream_options": st.one_of(
        st.fixed_dictionaries({"include_usage": st.booleans()}), json_values),
    "logprobs": json_values, "ignore_eos": st.one_of(st.booleans(), json_values),
}


def with_extra_keys(bodies):
    """Sometimes add a key the schema does not know (any text, surrogates included)."""
    return st.tuples(bodies, st.dictionaries(any_text, json_values, max_size=1)).map(lambda t: {**t[1], **t[0]})


chat_bodies = with_extra_keys(st.fixed_dictionaries({"messages": st.one_of(messages, json_values)},
                                                    optional=OPTIONAL))
completion_bodies = with_extra_keys(st.fixed_dictionaries(
    {"prompt": st.one_of(st.text(max_size=30), st.lists(st.integers(-2, 300), max_size=6),
                         st.lists(st.text(max_size=5), max_size=3), json_values)}, optional=OPTIONAL))
native_bodies = with_extra_keys(st.fixed_dictionaries(
    {}, optional={"text": st.one_of(st.text(max_size=20), json_values),
                  "input_ids": st.one_of(st.lists(st.integers(-2, 300), max_size=5), json_values),
                  "sampling_params": st.one_of(st.fixed_dictionaries({}, optional={
                      "max_new_tokens": st.one_of(small_ints, json_values), "temperature": json_values,
                      "top_k": st.one_of(small_ints, json_values), "stop": json_values, "regex": json_values,
                      "n": json_values}), json_values),
                  "stream": st.one_of(st.booleans(), json_values), "return_logprob": json_values}))


def encode(body) -> bytes:
    return json.dumps(body).encode()  # ensure_ascii: lone surrogates travel as valid \ud800 escapes


requests = st.one_of(
    st.tuples(st.just("/v1/chat/completions"), chat_bodies.map(encode)),
    st.tuples(st.just("/v1/completions"), completion_bodies.map(encode)),
    st.tuples(st.just("/generate"), native_bodies.map(encode)),
    st.tuples(st.sampled_from(["/v1/chat/completions", "/v1/completions", "/generate"]),
              st.one_of(st.binary(max_size=64), json_values.map(encode))),
)


@pytest.fixture(scope="module")
def fuzz_server(tiny_ckpt):
    with LiveServer(settings(tiny_ckpt, max_seq_len=64, max_batch_size=4)) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield server, client


def test_fuzzed_bodies_never_5xx(fuzz_server):
    server, client = fuzz_server
    seen = {"2xx": 0, "4xx": 0}

    @hyp_settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(requests)
    def check(request):
        path, body = request
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code < 500, (path, body, r.status_code, r.text)
        if r.status_code >= 400:
            err = r.json()["error"]
            assert isinstance(err["message"], str) and err["message"] and err["type"]
            seen["4xx"] += 1
        else:
            text = r.text
            if r.headers["content-type"].startswith("text/event-stream"):
                assert text.endswith("data: [DONE]\n\n") and '"error"' not in text
            else:
                json.loads(text)
            seen["2xx"] += 1

    check()
    print(f"fuzz: {seen['2xx']} bodies answered 2xx, {seen['4xx']} answered 4xx")
    assert seen["2xx"] + seen["4xx"] >= EXAMPLES
    assert seen["2xx"] > 0 and seen["4xx"] > 0  # both paths were exercised
    # ... and the server keeps serving.
    assert client.get("/health").status_code == 200
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
    assert r.status_code == 200
    assert server.state.admission.active == 0 and not server.state.admission.waiting
    assert server.worker.running == 0 and server.worker.waiting == 0
