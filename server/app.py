"""create_app(settings): the FastAPI app, with the backend opened and closed by its lifespan."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response

from .backends import make_backend
from .backends.base import Backend
from .errors import install_error_handlers
from .limits import Admission, BodySizeLimit
from .metrics import Metrics
from .outcomes import RequestCounter
from .routes import native, openai, ops
from .settings import GatewaySettings
from .sse import ClientDisconnected
from .state import GatewayState


def create_app(settings: GatewaySettings, backend: Backend | None = None) -> FastAPI:
    """`backend` is for tests that bring their own (e.g. an engine already loaded)."""
    backend = backend or make_backend(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await backend.start()
        try:
            yield
        finally:
            await backend.close()

    app = FastAPI(title="Orthrus gateway", version="0.1.0", lifespan=lifespan)
    app.state.gateway = GatewayState(
        settings=settings, backend=backend, metrics=Metrics(),
        admission=Admission(settings.max_concurrent_requests, settings.max_queue, settings.retry_after_s))
    install_error_handlers(app)

    @app.exception_handler(ClientDisconnected)
    async def _gone(_, __):
        return Response(status_code=499)  # nobody reads it; the access log shows why the request ended

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestCounter, metrics=app.state.gateway.metrics)  # outermost: it sees every status
    app.include_router(openai.router)
    app.include_router(native.router)
    app.include_router(ops.router)
    return app
