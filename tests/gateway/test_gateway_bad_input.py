"""Every kind of bad input gets a 4xx with an OpenAI error body that says what is wrong."""

import socket

import httpx
import pytest

CHAT, COMP, GEN = "/v1/chat/completions", "/v1/completions", "/generate"
OK_MESSAGES = [{"role": "user", "content": "hi"}]

# (name, path, raw body or JSON object, status, words the message must contain, param)
CASES = [
    ("malformed JSON", CHAT, b'{"messages": [', 400, "not valid JSON", None),
    ("trailing garbage", CHAT, b'{"messages": []} x', 400, "not valid JSON", None),
    ("empty body", CHAT, b"", 400, "empty", None),
    ("nested too deeply", CHAT, b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nested too deeply",
     None),
    ("JSON array body", CHAT, b"[1, 2]", 400, "must be a JSON object", None),
    ("bad UTF-8", CHAT, b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', 400, "not valid UTF-8", None),
    ("lone surrogate", CHAT, b'{"messages": [{"role": "user", "content": "\\ud800"}]}', 400, "surrogate",
     "messages[0].content"),
    ("lone surrogate in a key", COMP, b'{"prompt": "x", "a\\ud800": 1}', 400, "surrogate", "a\\ud800"),
    ("missing messages", CHAT, {"max_tokens": 3}, 400, "Missing required parameter", "messages"),
    ("empty messages", CHAT, {"messages": []}, 400, "at least 1", "messages"),
    ("messages not a list", CHAT, {"messages": "hi"}, 400, "valid list", "messages"),
    ("bad role", CHAT, {"messages": [{"role": "robot", "content": "x"}]}, 400, "'system'", "messages[0].role"),
    ("content wrong type", CHAT, {"messages": [{"role": "user", "content": 5}]}, 400, "Invalid value",
     "messages[0].content"),
    ("image part", CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     400, "only 'text' parts", "messages[0].content"),
    ("user without content", CHAT, {"messages": [{"role": "user"}]}, 400, "needs `content`", "messages[0]"),
    ("max_tokens string", CHAT, {"messages": OK_MESSAGES, "max_tokens": "5"}, 400, "valid integer", "max_tokens"),
    ("max_tokens float", CHAT, {"messages": OK_MESSAGES, "max_tokens": 5.5}, 400, "valid integer", "max_tokens"),
    ("max_tokens bool", CHAT, {"messages": OK_MESSAGES, "max_tokens": True}, 400, "valid integer", "max_tokens"),
    ("negative max_tokens", CHAT, {"messages": OK_MESSAGES, "max_tokens": -1}, 400, "greater than or equal to 1",
     "max_tokens"),
    ("zero max_tokens", COMP, {"prompt": "x", "max_tokens": 0}, 400, "greater than or equal to 1", "max_tokens"),
    ("huge max_tokens", CHAT, {"messages": OK_MESSAGES, "max_tokens": 10**6}, 400, "maximum context length is 512",
     "max_tokens"),
    ("absurd max_tokens", CHAT, {"messages": OK_MESSAGES, "max_tokens": 10**30}, 400, "less than or equal",
     "max_tokens"),
    ("prompt longer than context", COMP, {"prompt": "x" * 600, "max_tokens": 1}, 400, "maximum context length",
     "prompt"),
    ("messages longer than context", CHAT, {"messages": [{"role": "user", "content": "y" * 600}]}, 400,
     "maximum context length", "messages"),
    ("unknown model", CHAT, {"model": "gpt-9", "messages": OK_MESSAGES}, 404, "does not exist", "model"),
    ("unknown field", CHAT, {"messages": OK_MESSAGES, "frobnicate": 1}, 400, "Unrecognized request argument",
     "frobnicate"),
    ("temperature too high", CHAT, {"messages": OK_MESSAGES, "temperature": 7}, 400, "less than or equal to 2",
     "temperature"),
    ("temperature NaN", CHAT, b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', 400,
     "finite number", "temperature"),
    ("top_p zero", CHAT, {"messages": OK_MESSAGES, "top_p": 0}, 400, "greater than 0", "top_p"),
    ("top_k negative", CHAT, {"messages": OK_MESSAGES, "top_k": -5}, 400, "greater than or equal to -1", "top_k"),
    ("negative seed", CHAT, {"messages": OK_MESSAGES, "seed": -3}, 400, "greater than or equal to 0", "seed"),
    ("n too big", CHAT, {"messages": OK_MESSAGES, "n": 1000}, 400, "less than or equal to 16", "n"),
    ("stop wrong type", CHAT, {"messages": OK_MESSAGES, "stop": [1]}, 400, "list of strings", "stop"),
    ("empty stop", CHAT, {"messages": OK_MESSAGES, "stop": ""}, 400, "must not be empty", "stop"),
    ("stream_options without stream", CHAT, {"messages": OK_MESSAGES, "stream_options": {"include_usage": True}},
     400, "only allowed when `stream` is true", None),
    ("top_logprobs without logprobs", CHAT, {"messages": OK_MESSAGES, "top_logprobs": 2}, 400,
     "`top_logprobs` requires `logprobs` to be true", None),
    ("too many top_logprobs", CHAT, {"messages": OK_MESSAGES, "logprobs": True, "top_logprobs": 21}, 400,
     "less than or equal to 20", "top_logprobs"),
    ("zero max_tokens without echo", COMP, {"prompt": "x", "max_tokens": 0, "logprobs": 1}, 400, "0 only with `echo`",
     "max_tokens"),
    ("tools", CHAT, {"messages": OK_MESSAGES, "tools": [{"type": "function"}]}, 400, "`tools` is not supported",
     None),
    ("penalty", COMP, {"prompt": "x", "presence_penalty": 0.5}, 400, "`presence_penalty` is not supported", None),
    ("empty prompt list", COMP, {"prompt": []}, 400, "non-empty", "prompt"),
    ("prompt wrong type", COMP, {"prompt": {"a": 1}}, 400, "non-empty string", "prompt"),
    ("token id out of vocab", COMP, {"prompt": [1, 99999]}, 400, "outside the vocabulary", "prompt[0]"),
    ("empty prompt text", COMP, {"prompt": ""}, 400, "prompt is empty", "prompt"),
    ("native: both text and ids", GEN, {"text": "a", "input_ids": [1]}, 400, "exactly one", None),
    ("native: unsupported regex", GEN, {"text": "a", "sampling_params": {"regex": "a+"}}, 400,
     "`regex` = 'a+' is not supported", "sampling_params.regex"),
    ("native: unsupported field of one prompt", GEN, {"text": ["a", "b"], "sampling_params": [{}, {"n": 2}]}, 400,
     "`n` = 2 is not supported", "sampling_params[1].n"),
    ("native: sampling params per prompt, too few", GEN, {"text": ["a", "b"], "sampling_params": [{}]}, 400,
     "1 entries for 2 prompts", "sampling_params"),
    ("native: a LoRA adapter", GEN, {"text": "a", "lora_path": "my-lora"}, 400,
     "`lora_path` = 'my-lora' is not supported by this server", "lora_path"),
    ("native: hidden states", GEN, {"text": "a", "return_hidden_states": True}, 400,
     "`return_hidden_states` = True is not supported", "return_hidden_states"),
    ("native: logprob_start_len past the prompt", GEN, {"text": "ab", "return_logprob": True, "logprob_start_len": 9},
     400, "`logprob_start_len` = 9 is higher than the number of input tokens (2)", "logprob_start_len"),
    ("native: logprob token id out of vocab", GEN,
     {"text": "a", "return_logprob": True, "token_ids_logprob": [1, 10**6]}, 400, "outside the vocabulary",
     "token_ids_logprob"),
    ("native: bad sampling type", GEN, {"text": "a", "sampling_params": {"temperature": "hot"}}, 400,
     "valid number", "sampling_params.temperature"),
]


@pytest.mark.parametrize("name,path,body,status,words,param", CASES, ids=[c[0] for c in CASES])
def test_bad_request(gateway, name, path, body, status, words, param):
    content = body if isinstance(body, bytes) else None
    r = httpx.post(gateway.url + path, content=content, json=None if content is not None else body,
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert words in err["message"], err["message"]
    assert err["param"] == param
    assert err["type"] == ("invalid_request_error" if status == 400 else err["type"])


def test_oversized_body_by_content_length(gateway):
    limit = gateway.state.settings.max_body_bytes
    r = httpx.post(gateway.url + CHAT, content=b"x" * (limit + 1), timeout=30)
    assert r.status_code == 413
    assert "larger than the limit" in r.json()["error"]["message"]


def test_oversized_body_chunked(gateway):
    """No Content-Length: the limit is enforced while the body streams in."""
    limit = gateway.state.settings.max_body_bytes

    def chunks():
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    r = httpx.post(gateway.url + CHAT, content=chunks(), timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_bad_content_length_header(gateway):
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n{}")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 4")  # uvicorn refuses it before our app sees it


def test_unknown_route_and_method_are_json_errors(gateway):
    r = httpx.get(gateway.url + "/v1/nothing-here", timeout=10)
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(gateway.url + CHAT, timeout=10)
    assert r.status_code == 405 and r.json()["error"]["message"] == "Method Not Allowed"


def test_server_still_serves_after_bad_input(gateway):
    r = httpx.post(gateway.url + CHAT, json={"messages": OK_MESSAGES, "max_tokens": 2}, timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
