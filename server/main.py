"""run(settings): serve the gateway with uvicorn and print ready-to-paste examples once it listens."""

from __future__ import annotations

import json
import socket
import sys

import uvicorn
from fastapi import FastAPI

from .app import create_app
from .preflight import StartupError, bind_socket, load_backend
from .settings import GatewaySettings


class GatewayServer(uvicorn.Server):
    """uvicorn, plus: the drain starts when shutdown does, and a banner once the socket is bound."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, banner: bool = True):
        super().__init__(config)
        self.gateway_app, self.banner = app, banner

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started and self.banner:
            print(banner(self.gateway_app.state.gateway.settings, self.bound_port), flush=True)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        with self.capture_signals():
            await self._serve(sockets)
            # uvicorn re-raises the SIGTERM/SIGINT it caught once it is done, so the process would
            # end "killed by SIGTERM" (143) even after a clean drain. A graceful shutdown exits 0;
            # a forced one (a second Ctrl-C) keeps the signal.
            if self.started and not self.force_exit:
                getattr(self, "_captured_signals", []).clear()

    async def shutdown(self, sockets=None) -> None:
        # Before uvicorn waits for open connections: streams get the grace period, then an error event.
        self.gateway_app.state.gateway.begin_shutdown()
        await super().shutdown(sockets)

    @property
    def bound_port(self) -> int:
        for server in self.servers:
            for sock in server.sockets:
                return sock.getsockname()[1]
        return self.config.port


def build_server(settings: GatewaySettings, app: FastAPI | None = None, banner: bool = True) -> GatewayServer:
    app = app or create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5, lifespan="on")
    return GatewayServer(config, app, banner)


def run(settings: GatewaySettings) -> None:
    """Serve until SIGTERM or Ctrl-C. Exit status: 0 after a graceful shutdown; 2 with one line on
    stderr for a port in use or a model that cannot load (both found before uvicorn starts)."""
    try:
        sock = bind_socket(settings.host, settings.port)
        try:
            backend = load_backend(settings)
        except BaseException:
            sock.close()
            raise
    except StartupError as e:
        print(f"orthrus: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C while the model loads
        sys.exit(130)
    server = build_server(settings, create_app(settings, backend))
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(1)  # startup failed; uvicorn logged why


def banner(settings: GatewaySettings, port: int) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = f"http://{host}:{port}"
    model = settings.model_id
    auth_header = ' \\\n  -H "Authorization: Bearer $ORTHRUS_API_KEY"' if settings.api_key else ""
    imports = "import os\n" if settings.api_key else ""  # only where the key is read from the environment
    key = 'os.environ["ORTHRUS_API_KEY"]' if settings.api_key else '"none"'
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "What is 7 * 6?"}],
                       "max_tokens": 64})
    heredoc = "PY"
    # The Python example prints the answer, then fields of the response's `orthrus` object (server/stats.py).
    return f"""
Orthrus gateway ready at {url}  (model {model}, {settings.backend} backend)
  live page {url}/   health {url}/health   metrics {url}/metrics

Try it with curl:

curl {url}/v1/chat/completions \\
  -H "Content-Type: application/json"{auth_header} \\
  -d '{body}'

or with Python (pip install openai):

python - <<'{heredoc}'
{imports}from openai import OpenAI
client = OpenAI(base_url="{url}/v1", api_key={key})
r = client.chat.completions.create(model="{model}", max_tokens=64,
                                   messages=[{{"role": "user", "content": "What is 7 * 6?"}}])
print(r.choices[0].message.content)
stats = r.model_extra["orthrus"]  # this request's decode statistics (None if no Orthrus step ran)
if stats:
    print("tau (tokens per decode step):", stats["tau"])
    print("acceptance rate per draft position:", stats["acceptance_rate_per_position"])
{heredoc}
"""
