"""The app's limits backend from the settings: Redis when ``REDIS_URL`` is set, else in-process."""

from __future__ import annotations

from api.limits.base import UsageLimits
from api.limits.memory import MemoryLimits
from api.settings import Settings


def build_limits(settings: Settings) -> UsageLimits:
    if settings.redis_url:
        from api.limits.redis_limits import RedisLimits

        return RedisLimits(settings.redis_url, settings.rate_limit_rpm, settings.quota_audio_seconds_per_day)
    return MemoryLimits(settings.rate_limit_rpm, settings.quota_audio_seconds_per_day)
