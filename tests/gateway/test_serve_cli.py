"""`orthrus serve` as users start it (a real process, real HTTP): its mistakes cost one line and
exit status 2, found before any model loads; a clean SIGTERM shutdown exits 0."""

import signal
import socket

import httpx
from gateway_helpers import free_port, python_process, stop_process, wait_http


def serve(*args, env=None):
    return python_process(["-m", "orthrus_sglang.cli", "serve", *map(str, args)], env=env or {})


def finish(proc, timeout=120) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def assert_one_line_error(out: str, *needles: str) -> None:
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("orthrus: error: "), out
    assert "Traceback" not in out and all(n in out for n in needles), out


def test_bad_model_path_is_one_line_exit_2(tmp_path):
    rc, out = finish(serve("--model", tmp_path / "no-such-model", "--port", free_port()))
    assert rc == 2
    assert_one_line_error(out, "no-such-model", "is not a directory")

    rc, out = finish(serve("--model", tmp_path, "--port", free_port()))  # a directory, but no checkpoint
    assert rc == 2
    assert_one_line_error(out, "no config.json")


def test_port_in_use_is_found_before_the_model_loads(tmp_path):
    cache = tmp_path / "demo-cache"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # The default model is the demo model: with an empty cache, loading it would start a build.
        rc, out = finish(serve("--port", port, env={"ORTHRUS_CACHE_DIR": str(cache)}))
    assert rc == 2
    assert_one_line_error(out, f"port {port}", "already in use")
    assert not cache.exists()  # the build never started


def test_graceful_sigterm_exits_0(tiny_ckpt):
    port = free_port()
    proc = serve("--model", tiny_ckpt, "--port", port, "--threads", 1, "--shutdown-grace-s", 1)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=120)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60,
                       json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None
        proc.send_signal(signal.SIGTERM)
        rc, out = finish(proc, timeout=60)
    finally:
        if proc.poll() is None:
            print(stop_process(proc))
    assert rc == 0, out
    assert "Application shutdown complete" in out and "Traceback" not in out, out
