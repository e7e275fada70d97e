"""Which replica answered: ``X-Replica-Id`` on every response (pure ASGI, streaming-safe).

The id is ``REPLICA_ID`` when set; else the Ray Serve replica tag when running under Ray Serve
(looked up only if ``ray`` is already imported, so the default server never imports it); else
``<hostname>-<pid>``. ``/health`` reports the same id (``"replica"``) and the process id.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-replica-id"


def _ray_replica_tag() -> str | None:
    if "ray.serve" not in sys.modules:  # never import ray from the default server
        return None
    try:
        from ray import serve

        ctx = serve.get_replica_context()
    except Exception:  # not inside a replica
        return None
    return f"{ctx.deployment}#{ctx.replica_tag}"


def replica_id(configured: str | None = None) -> str:
    """This process's replica id (see the module docstring)."""
    if configured:
        return configured
    return _ray_replica_tag() or f"{socket.gethostname()}-{os.getpid()}"


class ReplicaIdMiddleware:
    """Adds ``X-Replica-Id: <id>`` to every HTTP response's start message (bodies pass untouched)."""

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.value = replica.encode("latin-1", "replace")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = [h for h in message.get("headers", []) if h[0].lower() != HEADER]
                headers.append((HEADER, self.value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)
