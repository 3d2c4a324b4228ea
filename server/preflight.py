"""What `orthrus serve` checks and loads before uvicorn starts, so that a mistake costs one line.

The port is bound first (a port in use is found before a model loads for a minute), then the
embedded engine is loaded here rather than in the app's lifespan: a bad model path, a missing
package or a bad checkpoint ends the process with one line and exit status 2, not a traceback
followed by "Application startup failed". The socket is handed to uvicorn, so nobody can take
the port in between; until uvicorn listens on it, connections are refused as before.
"""

from __future__ import annotations

import errno
import socket

from .backends import make_backend
from .backends.base import Backend
from .settings import GatewaySettings


class StartupError(Exception):
    """A problem with the command line or the machine, told in one line."""


def bind_socket(host: str, port: int) -> socket.socket:
    """Bound like uvicorn binds (SO_REUSEADDR, IPv6 for a host with ':'), not yet listening."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} on {host} is already in use (another server? choose one with --port)")
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror or e}")
    sock.set_inheritable(True)
    return sock


def load_backend(settings: GatewaySettings) -> Backend:
    """The backend, with the embedded engine already loaded (torch threads set first)."""
    backend = make_backend(settings)
    if settings.backend != "embedded":
        return backend
    from orthrus_sglang.demo import DemoModelUnavailable
    from orthrus_sglang.threads import apply_threads

    try:
        apply_threads(settings.threads)
        backend.engine = backend._load_engine()  # what EmbeddedBackend.start() would load
    except (ValueError, OSError, DemoModelUnavailable) as e:
        raise StartupError(str(e)) from e
    return backend
