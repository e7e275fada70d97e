"""Operations: liveness and readiness."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from api.errors import APIError

router = APIRouter(tags=["ops"])


@router.get("/health", summary="Liveness: the process is up")
async def health(request: Request) -> dict[str, str | int]:
    # which replica answered (also the X-Replica-Id header) and its process id
    return {"status": "ok", "replica": request.app.state.replica_id, "pid": os.getpid()}


@router.get("/ready", summary="Readiness: default backend loaded and warmed")
async def ready(request: Request) -> Any:
    state = request.app.state
    # Warm-up sets `ready` only when every preloaded backend loaded and spoke (api.app._warm).
    if state.ready.is_set() and not state.draining:
        try:  # the shared stores (PostgreSQL voices, Redis limits) must answer too
            await state.limits.ping()
            ping = getattr(state.voice_store, "ping", None)
            if ping is not None:
                await asyncio.to_thread(ping)
        except APIError as exc:
            return JSONResponse({"status": "not_ready", "detail": exc.message}, status_code=503)
        return {"status": "ready"}
    reason = "draining" if state.draining else state.ready_detail
    return JSONResponse({"status": "not_ready", "detail": reason}, status_code=503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    state = request.app.state
    state.metrics.in_flight.set(state.limiter.in_flight)
    state.metrics.queue_depth.set(state.limiter.waiting)
    state.metrics.producers.set(state.speech.producers)
    state.metrics.reference_in_flight.set(state.reference_limiter.in_flight)
    state.metrics.reference_queue_depth.set(state.reference_limiter.waiting)
    body = await asyncio.to_thread(state.metrics.render)  # rendering is O(series): off the event loop
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
