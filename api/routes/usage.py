"""``GET /v1/usage``: usage per API key; each key sees its own, admin keys see every key's."""

from __future__ import annotations

from fastapi import APIRouter, Query

from api.routes.deps import CallerDep, ServicesDep
from api.schemas.usage import KeyUsageObject, UsageList

router = APIRouter(tags=["usage"])


@router.get("/v1/usage", response_model=UsageList, summary="Usage per API key (own; every key for admins)")
async def get_usage(
    services: ServicesDep,
    caller: CallerDep,
    key: str | None = Query(default=None, max_length=64, description="Admins: one key's namespace id."),
) -> UsageList:
    if not caller.is_admin:
        wanted: str | None = caller.owner  # a key sees only itself
    else:
        wanted = key  # None: every key
    usage = await services.limits.usage(wanted)
    return UsageList(data=[KeyUsageObject.model_validate(u.to_dict(k)) for k, u in sorted(usage.items())])
