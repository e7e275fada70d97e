"""Both limits backends, same semantics: the in-process one and Redis (a real redis-server)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from api.errors import RateLimitError, ServiceUnavailableError
from api.limits.base import UsageLimits, seconds_to_utc_midnight
from api.limits.memory import MemoryLimits
from api.limits.redis_limits import RedisLimits
from tests.e2e.server import free_port
from tests.services import RedisServer

Factory = Callable[[int, float], UsageLimits]
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", "redis"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    made: list[UsageLimits] = []
    prefix = f"t{uuid.uuid4().hex[:8]}:"

    def factory(rpm: int, quota: float) -> UsageLimits:
        if request.param == "memory":
            limits: UsageLimits = MemoryLimits(rpm, quota)
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            limits = RedisLimits(server.url, rpm, quota, prefix=prefix)
        made.append(limits)
        return limits

    yield factory
    for limits in made:
        await limits.close()


async def test_rate_limit_takes_n_then_429_with_retry_after(make: Factory) -> None:
    limits = make(3, 0)
    for _ in range(3):
        await limits.admit("k1")
    with pytest.raises(RateLimitError) as caught:
        await limits.admit("k1")
    retry = int(caught.value.headers["Retry-After"])
    assert 1 <= retry <= 20  # one token per 20 s at 3 per minute
    await limits.admit("k2")  # another key has its own bucket


async def test_tokens_refill_over_time(make: Factory) -> None:
    limits = make(60, 0)  # one token per second
    for _ in range(60):
        await limits.admit("k")
    with pytest.raises(RateLimitError) as caught:
        await limits.admit("k")
    assert caught.value.headers["Retry-After"] == "1"
    await asyncio.sleep(1.2)
    await limits.admit("k")


async def test_off_when_unset(make: Factory) -> None:
    limits = make(0, 0)
    for _ in range(200):
        await limits.admit("k")
    await limits.record("k", "kokoro", 10, 1e9)
    await limits.check_quota("k")


async def test_quota_counts_audio_seconds_per_day(make: Factory) -> None:
    limits = make(0, 2.0)
    await limits.check_quota("k")
    await limits.record("k", "kokoro", 5, 1.5)
    await limits.check_quota("k")  # under the quota
    await limits.record("k", "kokoro", 5, 1.0)  # crosses it: that request was allowed to finish
    with pytest.raises(RateLimitError) as caught:
        await limits.check_quota("k")
    assert caught.value.code == "quota_exceeded"
    retry = int(caught.value.headers["Retry-After"])
    assert abs(retry - seconds_to_utc_midnight()) <= 5
    await limits.check_quota("other")


async def test_usage_adds_up_by_model(make: Factory) -> None:
    limits = make(0, 0)
    await limits.record("a", "kokoro", 10, 1.25)
    await limits.record("a", "zipvoice", 4, 2.0)
    await limits.record("a", "kokoro", 6, 0.75)
    await limits.record("b", "kokoro", 1, 0.5)
    usage = await limits.usage("a")
    a = usage["a"]
    assert (a.requests, a.input_characters) == (3, 20)
    assert a.audio_seconds == pytest.approx(4.0)
    assert a.by_model["kokoro"]["requests"] == 2
    assert a.by_model["kokoro"]["audio_seconds"] == pytest.approx(2.0)
    assert a.by_model["zipvoice"]["input_characters"] == 4
    everyone = await limits.usage()
    assert set(everyone) == {"a", "b"}
    assert everyone["b"].to_dict("b")["requests"] == 1
    assert (await limits.usage("nobody"))["nobody"].requests == 0


async def test_two_replicas_share_one_bucket_atomically(redis_server: RedisServer) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    a = RedisLimits(redis_server.url, 10, 0, prefix=prefix)
    b = RedisLimits(redis_server.url, 10, 0, prefix=prefix)

    async def one(limits: RedisLimits) -> bool:
        try:
            await limits.admit("shared")
            return True
        except RateLimitError:
            return False

    try:
        results = await asyncio.gather(*(one(a if i % 2 else b) for i in range(30)))
        assert sum(results) == 10
    finally:
        await a.close()
        await b.close()


async def test_unreachable_redis_is_503_and_fast() -> None:
    limits = RedisLimits(f"redis://127.0.0.1:{free_port()}/0", 5, 10, timeout=0.5)
    try:
        t0 = time.perf_counter()
        for call in (
            limits.ping(),
            limits.admit("k"),
            limits.check_quota("k"),
            limits.record("k", "m", 1, 1.0),
        ):
            with pytest.raises(ServiceUnavailableError):
                await call
        assert time.perf_counter() - t0 < 5
    finally:
        await limits.close()
