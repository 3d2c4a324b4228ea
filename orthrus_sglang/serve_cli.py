"""`orthrus serve`: the OpenAI-compatible gateway (server/), on the embedded engine or SGLang."""

from __future__ import annotations

from orthrus_server.cli import add_arguments  # flags only: no FastAPI, pydantic or torch at parse time

SERVER_EXTRA = "pip install 'orthrus-sglang[server]'"


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible gateway (embedded engine or SGLang)")
    add_arguments(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    try:
        from orthrus_server.cli import settings_from_args
        from orthrus_server.main import run
    except ModuleNotFoundError as e:  # without the [server] extra
        raise ValueError(f"`orthrus serve` needs the server extra ({e.name} is not installed): {SERVER_EXTRA}") from e

    from .demo import DEMO_MODEL_ID

    run(settings_from_args(args, default_model=DEMO_MODEL_ID))
    return 0
