"""Operations: liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from api.errors import APIError

router = APIRouter(tags=["ops"])
_UNCHECKED: Any = object()


@router.get("/health", summary="Liveness: the process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def _preload_problem(state: Any) -> str | None:
    """Why a backend of PRELOAD_MODELS cannot serve (None: all can). Blocking.

    Warm-up skips an unavailable backend and still sets ``state.ready``; readiness must not
    claim a preloaded backend that was never loaded.
    """
    for name in state.settings.preload_models:
        try:
            backend = state.engines.resolve_model(name)
        except APIError:
            return f"unknown model {name[:40]!r} in PRELOAD_MODELS"
        avail = state.engines.availability(backend)
        if not avail.ok:
            return f"backend {backend} unavailable: {avail.reason}"
    return None


@router.get("/ready", summary="Readiness: default backend loaded and warmed")
async def ready(request: Request) -> Any:
    state = request.app.state
    reason: str | None
    if state.draining:
        reason = "draining"
    elif not state.ready.is_set():
        reason = state.ready_detail
    else:
        reason = getattr(state, "preload_problem", _UNCHECKED)
        if reason is _UNCHECKED:  # checked once, after warm-up
            reason = await asyncio.to_thread(_preload_problem, state)
            state.preload_problem = reason
    if reason is None:
        return {"status": "ready"}
    return JSONResponse({"status": "not_ready", "detail": reason}, status_code=503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    state = request.app.state
    state.metrics.in_flight.set(state.limiter.in_flight)
    state.metrics.queue_depth.set(state.limiter.waiting)
    state.metrics.producers.set(state.speech.producers)
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
