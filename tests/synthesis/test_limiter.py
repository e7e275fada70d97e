import asyncio

import pytest

from api.errors import RateLimitError
from api.synthesis.limiter import SynthesisLimiter


def test_queue_bound_gives_429_and_slots_are_released() -> None:
    async def scenario() -> None:
        limiter = SynthesisLimiter(max_concurrency=1, max_queue=1)
        release = asyncio.Event()
        entered: list[int] = []

        async def hold(i: int) -> None:
            async with limiter.slot():
                entered.append(i)
                await release.wait()

        first = asyncio.create_task(hold(1))
        await asyncio.sleep(0)
        second = asyncio.create_task(hold(2))  # queued
        await asyncio.sleep(0)
        assert limiter.in_flight == 1 and limiter.waiting == 1
        with pytest.raises(RateLimitError) as info:
            async with limiter.slot():
                pass
        assert info.value.status_code == 429
        assert "Retry-After" in info.value.headers
        release.set()
        await asyncio.gather(first, second)
        assert entered == [1, 2]
        assert limiter.in_flight == 0 and limiter.waiting == 0
        async with limiter.slot():  # free again
            pass

    asyncio.run(scenario())
