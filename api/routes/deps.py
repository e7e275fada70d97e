"""Typed accessors for routes: ``ServicesDep`` (the app's :class:`~api.services.Services`) and
``CallerDep`` (who is calling, as the API-key middleware decided).

Routes declare ``services: ServicesDep`` / ``caller: CallerDep`` parameters instead of reading
``request.app.state`` or ``request.state``. Both are ``async def`` (attribute reads, nothing blocks):
FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.auth import DEFAULT_NAMESPACE
from api.services import Services


async def services(request: Request) -> Services:
    """The app's services (set once by ``create_app``)."""
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


@dataclass(frozen=True)
class Caller:
    """The caller: ``owner`` is the key's namespace (``default`` without keys); admins span all of them."""

    owner: str
    is_admin: bool


async def caller(request: Request) -> Caller:
    """The caller as set on ``request.state`` by :class:`api.auth.APIKeyMiddleware`."""
    owner = getattr(request.state, "owner", None) or DEFAULT_NAMESPACE
    return Caller(owner=owner, is_admin=bool(getattr(request.state, "is_admin", False)))


CallerDep = Annotated[Caller, Depends(caller)]
