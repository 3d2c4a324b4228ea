"""The gateway as users start it (`python -m orthrus_server ...` in its own process): the startup banner's
curl and Python examples work as printed, and SIGTERM shuts down gracefully (in-flight streams
finish or end with an error event, non-streaming requests get 503, the process exits, nothing hangs)."""

import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from gateway_helpers import free_port, python_process, sse_events, wait_http, wait_until

from orthrus_sglang.testing import write_tiny_checkpoint


class ServerProcess:
    def __init__(self, args: list[str], env: dict | None = None):
        self.port = free_port()
        self.proc = python_process(["-m", "orthrus_server", *args, "--port", str(self.port)], env=env or {})
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.reader.join(10)


@pytest.fixture(scope="module")
def long_ckpt(tmp_path_factory):
    """Same tiny model with a 4096-token context, so that one stream can run for seconds."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("gateway-long"), block_size=4, max_position_embeddings=4096)


def test_banner_examples_work_as_printed(tiny_ckpt):
    server = ServerProcess(["--model", str(tiny_ckpt)], env={"ORTHRUS_API_KEY": "sk-banner"})
    try:
        assert wait_until(lambda: "\nPY\n" in server.output, timeout=120), server.output
        out = server.output
        curl = re.search(r"^curl .*?'\n", out, re.DOTALL | re.MULTILINE).group(0)
        python = re.search(r"^python - <<'PY'\n(.*?)^PY$", out, re.DOTALL | re.MULTILINE).group(1)
        assert "sk-banner" not in out  # the key itself is never printed
        env = {"ORTHRUS_API_KEY": "sk-banner", "PATH": "/usr/bin:/bin"}
        r = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60, env=env)
        assert '"object":"chat.completion"' in r.stdout and '"orthrus"' in r.stdout, r.stdout + r.stderr
        r = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=60,
                           env={**env, "PATH": "/usr/bin:/bin"})
        assert r.returncode == 0, r.stderr
        assert "tau (tokens per decode step):" in r.stdout and "acceptance rate per draft position:" in r.stdout
    finally:
        server.stop()


def test_sigterm_drains_streams_and_exits(long_ckpt):
    server = ServerProcess(["--model", str(long_ckpt), "--shutdown-grace-s", "1", "--max-batch-size", "4"])
    try:
        wait_http(server.url + "/health", timeout=120)
        results: dict[str, list] = {}

        def stream(name: str, max_tokens: int):
            body = {"prompt": [1, 2, 3], "max_tokens": max_tokens, "ignore_eos": True, "stream": True}
            with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as r:
                results[name] = []
                for line in r.iter_lines():
                    results[name].append(line)

        def blocking():
            body = {"prompt": [4, 5, 6], "max_tokens": 4000, "ignore_eos": True}
            results["blocking"] = httpx.post(server.url + "/v1/completions", json=body, timeout=60)

        threads = [threading.Thread(target=stream, args=(f"long{i}", 4000)) for i in range(2)]
        threads.append(threading.Thread(target=blocking))
        for t in threads:
            t.start()
        assert wait_until(lambda: all(len(results.get(f"long{i}", [])) > 4 for i in range(2)), timeout=60)
        short = threading.Thread(target=stream, args=("short", 30))
        short.start()
        assert wait_until(lambda: len(results.get("short", [])) > 0, timeout=30)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        for t in [*threads, short]:
            t.join(30)
            assert not t.is_alive(), "a stream hung after SIGTERM"
        # uvicorn re-raises the captured SIGTERM once its graceful shutdown is done.
        assert server.proc.wait(30) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 15
    finally:
        server.stop()
    # The short stream finished normally inside the grace period.
    short_events = sse_events(results["short"])
    assert short_events[-1] == "[DONE]" and short_events[-2]["choices"][0]["finish_reason"] == "length"
    # The long ones were told why they stopped, then got [DONE].
    for i in range(2):
        events = sse_events(results[f"long{i}"])
        assert events[-1] == "[DONE]", events[-3:]
        err = events[-2]["error"]
        assert err["type"] == "service_unavailable" and "shutting down" in err["message"]
        assert len(events) < 4000
    # An in-flight non-streaming request gets a 503 that says why.
    r = results["blocking"]
    assert r.status_code == 503 and "shutting down" in r.json()["error"]["message"]
    assert "Application shutdown complete" in server.output  # the lifespan ran: the engine thread stopped
    assert "Traceback" not in server.output, server.output
