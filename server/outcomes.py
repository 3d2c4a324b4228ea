"""Count every API request once, by route and outcome status: orthrus_requests_total{route, status}.

One scheme for everything the gateway answers: 200s, refusals (400/401/404/413/429/503), failures
(5xx) and 499 for a client that left before the end. The middleware is the outermost layer, so it
also sees the 413s that the body-size limit answers itself. A stream's status line is always 200:
one that later ends with an error event counts under that error's status (set_outcome).
"""

from __future__ import annotations

from .metrics import Metrics

_ROUTES = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/generate": "generate"}
_NOT_COUNTED = {"/health", "/metrics", "/", "/orthrus/stats"}  # operations, scraped and polled
_KEY = "orthrus.outcome"


def route_label(path: str) -> str | None:
    if path in _NOT_COUNTED:
        return None
    if path == "/v1/models" or path.startswith("/v1/models/"):
        return "models"
    return _ROUTES.get(path, "other")


def set_outcome(scope: dict, status: int) -> None:
    """The request's outcome when its status line cannot say it (a stream that failed after it started)."""
    outcome = scope.get(_KEY)
    if outcome is not None:
        outcome["status"] = status


class RequestCounter:
    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        route = route_label(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None:
            return await self.app(scope, receive, send)
        seen = {"status": None, "started": None, "complete": False, "gone": False}
        scope[_KEY] = seen

        async def watched_receive():
            message = await receive()
            seen["gone"] |= message["type"] == "http.disconnect"
            return message

        async def watched_send(message):
            if message["type"] == "http.response.start":
                seen["started"] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                seen["complete"] = True
            await send(message)

        try:
            await self.app(scope, watched_receive, watched_send)
        finally:
            status = seen["status"] or (499 if seen["gone"] and not seen["complete"] else seen["started"] or 500)
            self.metrics.requests.labels(route=route, status=str(status)).inc()
