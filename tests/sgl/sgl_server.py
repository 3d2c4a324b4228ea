"""Servers started the way users start them (`python -m ...` subprocesses), for tests/sgl.

Each server runs in its own session (process group): SGLang forks a scheduler, a detokenizer and a
resource tracker, and stop() kills the whole group, so nothing outlives the test module.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]

# SGLang's CPU path (see tests/sgl/sgl_engine.py), as command-line flags. --disable-cuda-graph is
# deprecated in 0.5.17 in favour of the two --cuda-graph-backend-* flags.
CPU_SERVER_ARGS = ["--device", "cpu", "--attention-backend", "torch_native",
                   "--cuda-graph-backend-decode", "disabled", "--cuda-graph-backend-prefill", "disabled",
                   "--dtype", "float32", "--mem-fraction-static", "0.05", "--max-total-tokens", "8192",
                   "--context-length", "512", "--random-seed", "0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python ARGS` in a new session, its output in `log_path`; up once `health_path` answers 200."""

    def __init__(self, name: str, args: list[str], port: int, log_path: Path, env: dict[str, str] | None = None,
                 health_path: str = "/health"):
        self.name, self.args, self.port, self.log_path = name, args, port, Path(log_path)
        self.url = f"http://127.0.0.1:{port}"
        self.health_path = health_path
        # The developer's own ORTHRUS_* settings must not leak into the servers under test.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ORTHRUS_")}
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), self.env.get("PYTHONPATH", "")] if p)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.startup_s = 0.0

    @property
    def command(self) -> str:
        return " ".join(["python", *self.args])

    def start(self, timeout: float = 120) -> ServerProcess:
        start = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, *self.args], cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_healthy(start + timeout)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n$ {self.command}\n----- {self.name} log tail ({self.log_path}) -----\n"
                               f"{self.log_tail()}\n-----") from exc
        except BaseException:  # KeyboardInterrupt: still leave nothing running
            self.stop()
            raise
        self.startup_s = time.monotonic() - start
        print(f"\n[{self.name}] up in {self.startup_s:.1f} s: {self.command}")
        return self

    def _wait_healthy(self, deadline: float) -> None:
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode} before it was healthy")
            try:
                if httpx.get(self.url + self.health_path, timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not answer {self.health_path} with 200 in time")
            time.sleep(0.25)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 15) -> None:
        """SIGTERM the server (SGLang drains and kills its own tree), then SIGKILL whatever is left of its group.

        Only the leader gets the SIGTERM: a SIGTERM'd scheduler looks like a crash to SGLang's launcher
        (crash diagnostics, a 5 s sleep)."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the leader's pid is the group id
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 5
        while _group_alive(pgid) and time.monotonic() < deadline:  # children finishing their own exit
            time.sleep(0.1)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.1)
        if self.proc.poll() is None:
            self.proc.wait(10)
        self.proc = None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def launch_sglang_server(model_path, port: int, log_path: Path, extra_args: list[str], timeout: float = 120,
                         env: dict[str, str] | None = None):
    args = ["-m", "sglang.launch_server", "--model-path", str(model_path), *extra_args,
            "--host", "127.0.0.1", "--port", str(port), *CPU_SERVER_ARGS]
    return ServerProcess("sglang", args, port, log_path, env={"SGLANG_USE_CPU_ENGINE": "1", **(env or {})}).start(timeout)


def launch_gateway(model_path, backend_url: str, port: int, log_path: Path, timeout: float = 120):
    args = ["-m", "orthrus_server", "--backend", "sglang", "--backend-url", backend_url, "--model", str(model_path),
            "--port", str(port), "--log-level", "warning"]
    return ServerProcess("gateway", args, port, log_path).start(timeout)
