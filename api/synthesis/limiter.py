"""Concurrency limit: N syntheses in flight, a bounded queue, 429 beyond it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from api.errors import RateLimitError


class SynthesisLimiter:
    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.max_queue = max(0, max_queue)
        self._sem = asyncio.Semaphore(self.max_concurrency)
        self.in_flight = 0
        self.waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a synthesis slot; raise 429 at once if the queue is full."""
        if self.in_flight >= self.max_concurrency and self.waiting >= self.max_queue:
            raise RateLimitError(
                "The server is busy: too many speech requests in flight. Retry shortly.", retry_after=1
            )
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._sem.release()
