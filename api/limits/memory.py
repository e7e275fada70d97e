"""In-process limits: the same semantics as Redis, for one server (no ``REDIS_URL``).

Memory is bounded by the number of keys (API-key namespaces, fixed by ``API_KEYS``) × models.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from api.limits.base import KeyUsage, quota_exceeded, rate_limited, utc_day


class MemoryLimits:
    def __init__(
        self,
        rate_per_minute: int = 0,
        quota_seconds_per_day: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rate_per_minute = rate_per_minute
        self.quota_seconds_per_day = quota_seconds_per_day
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, at)
        self._day: dict[str, tuple[str, float]] = {}  # key → (utc day, audio seconds)
        self._usage: dict[str, KeyUsage] = {}

    async def admit(self, key: str) -> None:
        n = self.rate_per_minute
        if n <= 0:
            return
        rate = n / 60.0
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(key, (float(n), now))
            tokens = min(float(n), tokens + max(0.0, now - at) * rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                raise rate_limited((1.0 - tokens) / rate)
            self._buckets[key] = (tokens - 1.0, now)

    async def check_quota(self, key: str) -> None:
        q = self.quota_seconds_per_day
        if q <= 0:
            return
        now = self._clock()
        with self._lock:
            day, used = self._day.get(key, ("", 0.0))
        if day == utc_day(now) and used >= q:
            raise quota_exceeded(q, now)

    async def record(self, key: str, model: str, input_characters: int, audio_seconds: float) -> None:
        today = utc_day(self._clock())
        with self._lock:
            day, used = self._day.get(key, (today, 0.0))
            self._day[key] = (today, (used if day == today else 0.0) + audio_seconds)
            u = self._usage.setdefault(key, KeyUsage())
            u.requests += 1
            u.input_characters += input_characters
            u.audio_seconds += audio_seconds
            m = u.by_model.setdefault(model, {})
            m["requests"] = m.get("requests", 0) + 1
            m["input_characters"] = m.get("input_characters", 0) + input_characters
            m["audio_seconds"] = m.get("audio_seconds", 0.0) + audio_seconds

    async def usage(self, key: str | None = None) -> dict[str, KeyUsage]:
        with self._lock:
            items = self._usage.items() if key is None else [(key, self._usage.get(key, KeyUsage()))]
            return {
                k: KeyUsage(
                    v.requests,
                    v.input_characters,
                    v.audio_seconds,
                    {m: dict(d) for m, d in v.by_model.items()},
                )
                for k, v in items
            }

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
