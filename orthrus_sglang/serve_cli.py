"""`orthrus serve`: the OpenAI-compatible gateway (server/), on the embedded engine or SGLang."""

from __future__ import annotations

from server.cli import add_arguments  # ImportError without the [server] extra: then no `serve`


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible gateway (embedded engine or SGLang)")
    add_arguments(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from server.cli import settings_from_args
    from server.main import run

    from .demo import DEMO_MODEL_ID

    run(settings_from_args(args, default_model=DEMO_MODEL_ID))
    return 0
