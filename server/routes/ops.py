"""Operations: /health, /metrics (Prometheus), the live page at / and its data at /orthrus/stats.

These carry no user data and stay open when an API key is set, as /metrics usually is.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ..backends.base import BackendError
from ..deps import gateway
from ..page import PAGE_HTML

router = APIRouter()


@router.get("/health")
async def health(request: Request):
    state = gateway(request)
    h = await state.backend.health()
    body = {"status": "ok" if h.ok and not state.draining else "unavailable", "backend": state.backend.kind,
            "detail": "shutting down" if state.draining else h.detail, "model": state.settings.model_id,
            "model_loaded": False, "running": h.running, "waiting": h.waiting,
            "active_requests": state.admission.active, "queued_requests": len(state.admission.waiting)}
    if h.ok:
        try:
            await state.backend.model_info()
            body["model_loaded"] = True
        except BackendError as e:
            body.update(status="unavailable", detail=e.message)
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)


@router.get("/metrics")
async def metrics(request: Request):
    state = gateway(request)
    state.metrics.queue_depth.set(len(state.admission.waiting))
    state.metrics.active.set(state.admission.active)
    return Response(state.metrics.render(state.backend.load(), state.backend.block_policy()),
                    media_type=CONTENT_TYPE_LATEST)


@router.get("/orthrus/stats")
async def live_stats(request: Request):
    state = gateway(request)
    running, waiting = state.backend.load()
    try:
        block_size = (await state.backend.model_info()).block_size
    except BackendError:
        block_size = None
    return {"model": state.settings.model_id, "backend": state.backend.kind, "block_size": block_size,
            "uptime_s": round(time.time() - state.started_at, 1), "running": running, "waiting": waiting,
            "active_requests": state.admission.active, "queued_requests": len(state.admission.waiting),
            "block_policy": state.backend.block_policy(), **state.live.snapshot()}


@router.get("/", response_class=HTMLResponse)
async def page():
    return HTMLResponse(PAGE_HTML)
