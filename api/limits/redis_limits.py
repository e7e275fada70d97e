"""Limits shared by every replica, in Redis (``REDIS_URL``).

The token bucket is one Lua script (read, refill, take, write: atomic on the server) timed by the
Redis server's own clock (``TIME``), so replicas with skewed clocks agree. Quota and usage are
plain atomic increments. Keys (all under ``<prefix>``, default ``zv:``):

* ``rl:<key>``: hash {tokens, at}, expires after a full refill;
* ``quota:<key>:<YYYYMMDD>``: audio seconds today, expires after two days;
* ``usage:<key>``: hash of counters (``requests``, ``input_characters``, ``audio_seconds`` and
  ``<field>|<model>`` per model); ``usage-keys``: the set of keys seen.

Redis unreachable → :class:`~api.errors.ServiceUnavailableError` (503) for the requests that need
it, never a silent pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from api.errors import ServiceUnavailableError
from api.limits.base import KeyUsage, quota_exceeded, rate_limited, utc_day

log = logging.getLogger(__name__)
T = TypeVar("T")

# KEYS[1] bucket; ARGV: capacity, refill per second. Returns {allowed (0/1), retry-after ms}.
_BUCKET = """
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then tokens = cap; at = now end
tokens = math.min(cap, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate * 1000) + 1000)
return {allowed, wait}
"""


class RedisLimits:
    def __init__(
        self,
        url: str,
        rate_per_minute: int = 0,
        quota_seconds_per_day: float = 0.0,
        *,
        prefix: str = "zv:",
        timeout: float = 2.0,
    ) -> None:
        import redis.asyncio as aioredis

        self.rate_per_minute = rate_per_minute
        self.quota_seconds_per_day = quota_seconds_per_day
        self._prefix = prefix
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )
        self._bucket = self._redis.register_script(_BUCKET)

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        from redis.exceptions import RedisError

        try:
            return await fn()
        except (RedisError, OSError) as exc:
            log.warning("redis %s failed: %s", what, type(exc).__name__)
            raise ServiceUnavailableError(
                "The shared limits store (Redis) is unreachable; retry shortly.", code="store_unavailable"
            ) from None

    async def admit(self, key: str) -> None:
        n = self.rate_per_minute
        if n <= 0:
            return
        result: Any = await self._call(
            "rate limit", lambda: self._bucket(keys=[f"{self._prefix}rl:{key}"], args=[n, n / 60.0])
        )
        allowed, wait_ms = int(result[0]), int(result[1])
        if not allowed:
            raise rate_limited(wait_ms / 1000.0)

    async def check_quota(self, key: str) -> None:
        q = self.quota_seconds_per_day
        if q <= 0:
            return
        now = time.time()
        used = await self._call("quota", lambda: self._redis.get(f"{self._prefix}quota:{key}:{utc_day(now)}"))
        if used is not None and float(used) >= q:
            raise quota_exceeded(q, now)

    async def record(self, key: str, model: str, input_characters: int, audio_seconds: float) -> None:
        p = self._prefix
        quota_key = f"{p}quota:{key}:{utc_day()}"
        usage_key = f"{p}usage:{key}"

        async def run() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrbyfloat(quota_key, audio_seconds)
                pipe.expire(quota_key, 2 * 86400)
                pipe.hincrby(usage_key, "requests", 1)
                pipe.hincrby(usage_key, "input_characters", input_characters)
                pipe.hincrbyfloat(usage_key, "audio_seconds", audio_seconds)
                pipe.hincrby(usage_key, f"requests|{model}", 1)
                pipe.hincrby(usage_key, f"input_characters|{model}", input_characters)
                pipe.hincrbyfloat(usage_key, f"audio_seconds|{model}", audio_seconds)
                pipe.sadd(f"{p}usage-keys", key)
                await pipe.execute()

        await self._call("usage", run)

    async def usage(self, key: str | None = None) -> dict[str, KeyUsage]:
        p = self._prefix

        async def run() -> dict[str, KeyUsage]:
            members: Any = await self._redis.smembers(f"{p}usage-keys")
            keys: list[str] = [key] if key is not None else sorted(str(m) for m in members)
            out: dict[str, KeyUsage] = {}
            for k in keys:
                raw: dict[str, str] = {
                    str(a): str(b) for a, b in (await self._redis.hgetall(f"{p}usage:{k}")).items()
                }
                u = KeyUsage(
                    int(raw.get("requests", 0)),
                    int(raw.get("input_characters", 0)),
                    float(raw.get("audio_seconds", 0.0)),
                )
                for field_name, value in raw.items():
                    name, sep, model = field_name.partition("|")
                    if sep:
                        u.by_model.setdefault(model, {})[name] = float(value)
                out[k] = u
            return out

        return await self._call("usage", run)

    async def ping(self) -> None:
        await self._call("ping", self._redis.ping)

    async def close(self) -> None:
        await self._redis.aclose()
