"""Load once: a value built on first use, exactly once, under a lock.

Models (Kokoro, ZipVoice, Whisper) are heavy and load lazily; concurrent first requests must not
load them twice. :class:`LoadOnce` is the one way this is written: a build that raises leaves
nothing behind (the next call tries again), and once built, reads take no lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class LoadOnce(Generic[T]):
    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._done = False
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._done

    def get(self) -> T:
        """The value, built on the first call (blocking; other callers wait for that build)."""
        if self._done:
            return cast(T, self._value)
        with self._lock:
            if not self._done:
                self._value = self._build()
                self._done = True
        return cast(T, self._value)
