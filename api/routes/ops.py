"""Operations: liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["ops"])


@router.get("/health", summary="Liveness: the process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: default backend loaded and warmed")
async def ready(request: Request) -> Any:
    state = request.app.state
    if state.ready.is_set() and not state.draining:
        return {"status": "ready"}
    reason = "draining" if state.draining else state.ready_detail
    return JSONResponse({"status": "not_ready", "detail": reason}, status_code=503)
