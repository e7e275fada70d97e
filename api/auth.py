"""API keys: one ASGI middleware guards every route but an explicit public list.

Because the check sits in front of the router, new routes are protected without extra code.
Keys are compared in constant time and never logged; the caller's voice namespace is derived
from a hash of the key (``request.state.owner``), and admin keys see every namespace.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import AuthenticationError, error_response

# "/" only redirects to the player (no data), so a browser pointed at the server finds the key prompt
PUBLIC_PATHS = frozenset(
    {"/", "/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
PUBLIC_PREFIXES = ("/web/",)  # the player's static files; its API calls carry the key


def is_public(path: str) -> bool:
    """True for the paths that need no key (and are not rate-limited per key)."""
    return path in PUBLIC_PATHS or path == "/web" or path.startswith(PUBLIC_PREFIXES)


#: The namespace of requests without an API key (a server with no ``API_KEYS``).
DEFAULT_NAMESPACE = "default"


def owner_for_key(key: str | None) -> str:
    """The voice namespace of an API key: stable and non-reversible (a hash, never the key).

    The one place that derives namespaces (the middleware sets ``request.state.owner`` from it;
    voices on disk live under it); no key → :data:`DEFAULT_NAMESPACE`.
    """
    if not key:
        return DEFAULT_NAMESPACE
    return "k-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: list[str], admin_keys: list[str]) -> None:
        self.app = app
        self._keys = [k.encode() for k in dict.fromkeys([*keys, *admin_keys]) if k]
        self._admin = [k.encode() for k in admin_keys if k]

    def _match(self, candidate: bytes, keys: list[bytes]) -> bool:
        found = False
        for key in keys:  # no early exit: time does not depend on which key matched
            found |= hmac.compare_digest(candidate, key)
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._keys:
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if is_public(path) or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        header = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token or not self._match(token, self._keys):
            await error_response(
                AuthenticationError("Incorrect or missing API key. Send 'Authorization: Bearer <key>'.")
            )(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["owner"] = owner_for_key(token.decode("utf-8", "replace"))
        state["is_admin"] = self._match(token, self._admin)
        await self.app(scope, receive, send)
