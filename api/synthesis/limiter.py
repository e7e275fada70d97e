"""Admission control: N jobs in flight, a bounded queue, 429 (with ``Retry-After``) beyond it.

Two instances per app (``api.app.create_app``): synthesis slots (``MAX_CONCURRENCY``/``MAX_QUEUE``)
and reference-preparation slots (``REFERENCE_CONCURRENCY``/``REFERENCE_QUEUE``: url+ fetch, decode,
clean-up, Whisper, quality). A request takes a reference slot first, releases it, and only then
waits for a synthesis slot, so slow reference work never holds a synthesis slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from api.errors import RateLimitError


class Limiter:
    def __init__(self, max_concurrency: int, max_queue: int, *, what: str = "speech requests") -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.max_queue = max(0, max_queue)
        self.what = what
        self._sem = asyncio.Semaphore(self.max_concurrency)
        self.in_flight = 0
        self.waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot; raise 429 at once if every slot is taken and the queue is full."""
        if self.in_flight >= self.max_concurrency and self.waiting >= self.max_queue:
            raise RateLimitError(
                f"The server is busy: too many {self.what} in flight. Retry shortly.", retry_after=1
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


class SynthesisLimiter(Limiter):
    """Synthesis slots (the engines)."""


class ReferenceLimiter(Limiter):
    """Reference-preparation slots (fetch, decode, clean-up, Whisper, quality)."""

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        super().__init__(max_concurrency, max_queue, what="reference clips being prepared")
