"""Optional bearer API key: 401 with one message whatever is wrong; constant-time comparison."""

import httpx
import openai
import pytest
from gateway_helpers import LiveServer, settings

import orthrus_server.deps

KEY = "sk-test-0123456789"
BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def keyed(tiny_ckpt):
    with LiveServer(settings(tiny_ckpt, api_key=KEY)) as server:
        yield server


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}, {"Authorization": KEY},
    {"Authorization": f"Bearer {KEY}x"}, {"Authorization": f"Bearer {KEY[:-1]}"}, {"Authorization": "Bearer"},
    {"X-API-Key": KEY},
], ids=["none", "wrong", "basic-scheme", "no-scheme", "longer", "prefix", "empty", "other-header"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/generate", "/v1/models",
                                  "/get_model_info"])
def test_401_says_nothing_about_why(keyed, headers, path):
    method = "GET" if path in ("/v1/models", "/get_model_info") else "POST"
    r = httpx.request(method, keyed.url + path, headers=headers, json=None if method == "GET" else BODY, timeout=30)
    assert r.status_code == 401
    assert r.json() == {"error": {"message": "Invalid authentication.", "type": "authentication_error",
                                  "param": None, "code": "invalid_api_key"}}
    assert r.headers["www-authenticate"] == "Bearer"


def test_right_key_works_with_the_openai_client(keyed):
    client = openai.OpenAI(base_url=keyed.url + "/v1", api_key=KEY, max_retries=0)
    r = client.chat.completions.create(model=keyed.state.settings.model_id, **BODY)
    assert r.choices[0].message.content is not None
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed.url + "/v1", api_key="nope", max_retries=0).models.list()


def test_auth_is_checked_before_the_body_is_parsed(keyed):
    r = httpx.post(keyed.url + "/v1/chat/completions", content=b"{not json", timeout=30)
    assert r.status_code == 401


def test_ops_endpoints_stay_open(keyed):
    for path in ("/health", "/metrics", "/", "/orthrus/stats"):
        assert httpx.get(keyed.url + path, timeout=30).status_code == 200, path


def test_key_comparison_is_constant_time(keyed, monkeypatch):
    calls = []
    real = orthrus_server.deps.secrets.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(orthrus_server.deps.secrets, "compare_digest", spy)
    httpx.get(keyed.url + "/v1/models", headers={"Authorization": "Bearer short"}, timeout=30)
    httpx.get(keyed.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    # Digests of equal length are compared, so neither the key's length nor its prefix leaks.
    assert calls == [(32, 32), (32, 32)]
