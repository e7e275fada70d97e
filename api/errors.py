"""Error types and the one handler that writes OpenAI's error envelope.

Every error a client can see is an :class:`APIError` subclass. The app installs
:func:`install_error_handlers`, which renders them (and FastAPI's validation
errors, HTTP errors and any unexpected exception) as::

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

Messages never contain stack traces, filesystem paths or object addresses.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

log = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)


class APIError(Exception):
    """Base class: an error with an HTTP status and an OpenAI error type."""

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(APIError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(APIError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"

    def __init__(self, message: str = "Invalid or missing API key.", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kw)


class PermissionDeniedError(APIError):
    status_code = 403
    error_type = "permission_error"


class NotFoundError(APIError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class MethodNotAllowedError(APIError):
    """A path that exists, asked with a method it does not serve; ``Allow`` lists the ones it does."""

    status_code = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"


class ConflictError(APIError):
    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class PayloadTooLargeError(APIError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "payload_too_large"


class UnsupportedMediaError(APIError):
    status_code = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_media"


class RateLimitError(APIError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(max(1, round(retry_after)))})
        super().__init__(message, **kw)


class ServiceUnavailableError(APIError):
    status_code = 503
    error_type = "server_error"
    default_code = "unavailable"


class InternalError(APIError):
    status_code = 500
    error_type = "server_error"
    default_code = "internal_error"


_STATUS_TYPES = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def parse_json_body(schema: type[ModelT], raw: bytes) -> ModelT:
    """Validate a JSON body against ``schema``; any problem becomes a 400 naming the field."""
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            raise InvalidRequestError("The request body is not valid JSON.") from None
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        raise InvalidRequestError(f"Invalid value for '{param}': {first.get('msg')}", param=param) from None


def error_response(err: APIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status_code, headers=err.headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "Invalid request.", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    param = ".".join(loc) or None
    msg = str(first.get("msg", "invalid value"))
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON.", None
    if param:
        return f"Invalid value for '{param}': {msg}", param
    return msg, None


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path (Starlette's own ``Allow`` names only the
    first partially matching route's, so ``PUT /v1/audio/voices/x`` would claim GET alone)."""
    methods: list[str] = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        for route in request.app.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL and (not isinstance(route, Mount) or method in ("GET", "HEAD")):
                methods.append(method)  # a mount (the static player) is read-only
                break
    return methods


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception to OpenAI's envelope; the only place that does so."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(InvalidRequestError(message, param=param, code="invalid_value"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cls = _STATUS_TYPES.get(exc.status_code, APIError)
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allow = allowed_methods(request) or [m.strip() for m in headers.get("Allow", "").split(",") if m]
            headers["Allow"] = ", ".join(allow)
            detail = (
                f"Method {request.method[:16]} is not allowed on this path (allowed: {', '.join(allow)})."
            )
        err = cls(detail, **({"headers": headers} if headers else {}))
        if cls is APIError:
            err.status_code = exc.status_code
        return error_response(err)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(InternalError("The server had an error while processing your request."))
