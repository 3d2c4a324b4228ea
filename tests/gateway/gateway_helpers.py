"""Shared helpers for the gateway tests: a real uvicorn server in a thread, SSE parsing, subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import torch
from pydantic_settings import SettingsConfigDict

from orthrus_server.app import create_app
from orthrus_server.main import build_server
from orthrus_server.settings import GatewaySettings

REPO = Path(__file__).resolve().parents[2]


class Settings(GatewaySettings):
    """The real settings class, but deaf to the developer's own ORTHRUS_* variables."""

    model_config = SettingsConfigDict(env_prefix="ORTHRUS_GATEWAY_TEST_UNUSED_", extra="forbid", frozen=True)


def settings(model=None, **overrides) -> Settings:
    base = dict(model=str(model) if model else None, port=0, log_level="warning", device="cpu", dtype="float32")
    return Settings(**{**base, **overrides})


class LiveServer:
    """The gateway under real uvicorn on 127.0.0.1 (an ephemeral port), run in a thread of this process."""

    def __init__(self, s: GatewaySettings, backend=None):
        self.app = create_app(s, backend)
        self.server = build_server(s, self.app, banner=False)
        self.thread = threading.Thread(target=self.server.run, name="gateway-under-test", daemon=True)
        self.url = ""

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.server.bound_port}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "the gateway did not stop"

    @property
    def state(self):
        return self.app.state.gateway

    @property
    def engine(self):
        return self.state.backend.engine

    @property
    def worker(self):
        return self.state.backend.worker


def sse_events(lines) -> list:
    """Parse `data:` lines into JSON objects; the literal "[DONE]" is kept as a string."""
    out = []
    for line in lines:
        if line.startswith("data:"):
            data = line[5:].strip()
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60, ok=(200,)) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code in ok:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up")


def wait_until(predicate, timeout: float = 10, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def python_process(args: list[str], **kwargs) -> subprocess.Popen:
    """A child Python with this repo importable and without the developer's ORTHRUS_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTHRUS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(kwargs.pop("env", {}))
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def stop_process(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.stdout.read() if proc.stdout else ""


class OracleDrafts:
    """The engine's draft hook: drafts from the AR greedy reference, right for the first n positions.

    n cycles 0, 1, ..., B-1 over a request's steps: non-trivial acceptance statistics from a
    random tiny model. Only prompts in `references` are touched.
    """

    def __init__(self, references: dict[tuple, list[int]], vocab_size: int):
        self.references, self.vocab_size = references, vocab_size

    def __call__(self, reqs, drafts):
        k = drafts.shape[1]
        for i, req in enumerate(reqs):
            ref = self.references.get(tuple(req.prompt_ids))
            if ref is None:
                continue
            m = len(req.output_ids)  # the first draft predicts ref[m]
            drafts[i] = torch.tensor((ref[m:m + k] + [0] * k)[:k])
            n = req.stats.num_steps % (k + 1)
            if n < k:
                drafts[i, n] = (drafts[i, n] + 1) % self.vocab_size
        return drafts
