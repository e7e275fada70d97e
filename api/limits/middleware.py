"""Per-key request rate limit on every authenticated route (pure ASGI, inside the API-key check).

Runs after :class:`api.auth.APIKeyMiddleware` has set ``scope["state"]["owner"]`` (the caller's
namespace; ``default`` on a server without keys, which then has one shared bucket). Public paths
(health, readiness, docs, the player's files) and CORS preflights are not counted.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import DEFAULT_NAMESPACE, is_public
from api.errors import APIError, error_response
from api.limits.base import UsageLimits


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: UsageLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or self.limits.rate_per_minute <= 0
            or scope.get("method") == "OPTIONS"
            or is_public(scope.get("path", ""))
        ):
            await self.app(scope, receive, send)
            return
        owner = scope.get("state", {}).get("owner") or DEFAULT_NAMESPACE
        try:
            await self.limits.admit(owner)
        except APIError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)
