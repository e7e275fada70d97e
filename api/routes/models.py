"""``GET /v1/models``: backends and OpenAI aliases, with each backend's availability."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.engines.registry import EngineRegistry
from api.errors import NotFoundError
from api.routes.deps import ServicesDep

router = APIRouter(tags=["models"])
_CREATED = 1_735_689_600  # 2025-01-01, a fixed 'created' for stable listings


def _model(registry: EngineRegistry, model_id: str) -> dict[str, Any]:
    backend = registry.resolve_model(model_id)
    avail = registry.availability(backend)
    return {
        "id": model_id,
        "object": "model",
        "created": _CREATED,
        "owned_by": "zipvoice-server",
        "backend": backend,
        "description": registry.spec(backend).description,
        "available": avail.ok,
        "unavailable_reason": avail.reason,
        "runtime": getattr(registry.get(backend), "runtime", None),
    }


@router.get("/v1/models", summary="List models")
async def list_models(services: ServicesDep) -> dict[str, Any]:
    registry = services.engines
    return {"object": "list", "data": [_model(registry, m) for m in registry.model_ids()]}


@router.get("/v1/models/{model_id}", summary="Retrieve a model")
async def get_model(model_id: str, services: ServicesDep) -> dict[str, Any]:
    registry = services.engines
    if model_id not in registry.model_ids():
        raise NotFoundError(
            f"The model '{model_id[:100]}' does not exist.", param="model", code="model_not_found"
        )
    return _model(registry, model_id)
