"""The Orthrus gateway: an OpenAI-compatible FastAPI server in front of the embedded engine or SGLang.

Imports are lazy so that `server.cli` (flags and settings) loads without FastAPI.
"""

__all__ = ["GatewaySettings", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "GatewaySettings":
        from .settings import GatewaySettings

        return GatewaySettings
    raise AttributeError(name)
