from __future__ import annotations

import threading
import time

import pytest

from api.loading import LoadOnce


def test_builds_once_under_concurrency() -> None:
    calls = []

    def build() -> object:
        calls.append(1)
        time.sleep(0.05)
        return object()

    once = LoadOnce(build)
    assert not once.loaded
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(once.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert once.loaded
    assert len({id(r) for r in results}) == 1


def test_a_failed_build_is_retried() -> None:
    attempts = []

    def build() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first load fails")
        return 42

    once = LoadOnce(build)
    with pytest.raises(RuntimeError):
        once.get()
    assert not once.loaded
    assert once.get() == 42
    assert once.get() == 42
    assert len(attempts) == 2
