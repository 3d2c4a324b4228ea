"""OpenAI-style errors: every failure leaves the gateway as {"error": {message, type, param, code}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("orthrus.gateway")


class APIError(Exception):
    """An error with an HTTP status and the OpenAI error body fields."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def model_not_found(model: str) -> APIError:
    return APIError(404, f"The model `{model}` does not exist.", param="model", code="model_not_found")


def unauthorized() -> APIError:
    # One message for a missing, malformed or wrong key: the reply must not say which.
    return APIError(401, "Invalid authentication.", type="authentication_error", code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"})


def overloaded(retry_after_s: int) -> APIError:
    return APIError(429, "The server is at its request limit; retry after a short wait.",
                    type="rate_limit_error", code="rate_limit_exceeded",
                    headers={"Retry-After": str(retry_after_s)})


def unavailable(message: str) -> APIError:
    return APIError(503, message, type="service_unavailable", code="backend_unavailable")


def internal(message: str = "Internal server error.") -> APIError:
    return APIError(500, message, type="server_error", code="internal_error")


_STATUS_TYPES = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error",
                 413: "invalid_request_error", 429: "rate_limit_error"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        # Routes parse bodies themselves (server.body); this covers query/path parameters.
        return bad_request(f"Invalid request: {exc.errors()[0].get('msg', 'bad value')}").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        kind = _STATUS_TYPES.get(exc.status_code, "invalid_request_error" if exc.status_code < 500 else "server_error")
        return APIError(exc.status_code, str(exc.detail), type=kind, headers=exc.headers).response()

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        log.exception("unhandled error", exc_info=exc)
        return internal().response()
