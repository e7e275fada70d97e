"""Operations: liveness and readiness."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from api.errors import APIError
from api.routes.deps import ServicesDep

router = APIRouter(tags=["ops"])


@router.get("/health", summary="Liveness: the process is up")
async def health(services: ServicesDep) -> dict[str, str | int]:
    # which replica answered (also the X-Replica-Id header) and its process id
    return {"status": "ok", "replica": services.replica_id, "pid": os.getpid()}


@router.get("/ready", summary="Readiness: default backend loaded and warmed")
async def ready(services: ServicesDep) -> Any:
    readiness = services.readiness
    # Warm-up sets `ready` only when every preloaded backend loaded and spoke (api.app._warm).
    if readiness.ready.is_set() and not readiness.draining:
        try:  # the shared stores (PostgreSQL voices, Redis limits) must answer too
            await services.limits.ping()
            ping = getattr(services.voice_store, "ping", None)
            if ping is not None:
                await asyncio.to_thread(ping)
        except APIError as exc:
            return JSONResponse({"status": "not_ready", "detail": exc.message}, status_code=503)
        return {"status": "ready"}
    reason = "draining" if readiness.draining else readiness.detail
    return JSONResponse({"status": "not_ready", "detail": reason}, status_code=503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(services: ServicesDep) -> Response:
    services.metrics.in_flight.set(services.limiter.in_flight)
    services.metrics.queue_depth.set(services.limiter.waiting)
    services.metrics.producers.set(services.speech.producers)
    services.metrics.reference_in_flight.set(services.reference_limiter.in_flight)
    services.metrics.reference_queue_depth.set(services.reference_limiter.waiting)
    body = await asyncio.to_thread(services.metrics.render)  # rendering is O(series): off the event loop
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
