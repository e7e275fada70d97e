"""The PostgreSQL voice store against a real PostgreSQL server (started by the test, on loopback)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from api.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from api.voices.pg_store import PostgresVoiceStore
from tests.e2e.server import free_port
from tests.services import PostgresServer


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(Path(tmp_path_factory.mktemp("pg")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def store(pg: PostgresServer) -> Iterator[PostgresVoiceStore]:
    s = PostgresVoiceStore(pg.url, max_per_namespace=0)
    try:
        yield s
    finally:
        s.close()


def ns() -> str:
    return "k-" + uuid.uuid4().hex[:16]


def clip(seconds: float = 0.5, channels: int = 1, rate: int = 24000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * 220 * (c + 1) * t) for c in range(channels)]).astype(np.float32)


def test_create_get_load_delete(store: PostgresVoiceStore) -> None:
    owner = ns()
    x = clip(channels=2)
    meta = store.create(
        owner, "alice", x, 24000, transcript="hi", transcript_source="given", quality={"score": 0.9}
    )
    assert meta.owner == owner and meta.channels == 2 and meta.duration == pytest.approx(0.5)
    assert store.get(owner, "alice") == meta
    assert store.get(owner, meta.id) == meta
    audio, rate = store.load_audio(meta)
    assert rate == 24000 and audio.shape == x.shape
    assert np.max(np.abs(audio - x)) < 1e-4  # 16-bit PCM
    assert store.find(ns(), "alice") is None  # other namespaces don't see it
    assert store.find(ns(), meta.id) is None
    assert store.find(ns(), "alice", admin=True) == meta
    assert store.delete(owner, "alice") == meta
    with pytest.raises(NotFoundError):
        store.get(owner, meta.id)
    with pytest.raises(NotFoundError):
        store.delete(owner, meta.id)


def test_duplicate_name_is_409_and_bad_name_400(store: PostgresVoiceStore) -> None:
    owner = ns()
    store.create(owner, "v", clip(), 24000)
    with pytest.raises(ConflictError):
        store.create(owner, "v", clip(), 24000)
    store.create(ns(), "v", clip(), 24000)  # same name in another namespace is fine
    with pytest.raises(InvalidRequestError):
        store.create(owner, "../x", clip(), 24000)


def test_paging_in_creation_order(store: PostgresVoiceStore) -> None:
    owner = ns()
    ids = [store.create(owner, f"v{i}", clip(0.1), 24000).id for i in range(5)]
    seen: list[str] = []
    after = None
    while True:
        page = store.list(owner, limit=2, after=after)
        seen += [m.id for m in page.voices]
        if not page.has_more:
            break
        after = page.voices[-1].id
    assert seen == ids
    assert [m.id for m in store.list(owner).voices] == ids
    assert store.count(owner) == 5
    with pytest.raises(InvalidRequestError):
        store.list(ns(), after=ids[0])  # not a voice of that namespace


def test_quota_holds_under_concurrent_creates(pg: PostgresServer) -> None:
    owner = ns()
    stores = [PostgresVoiceStore(pg.url, max_per_namespace=3) for _ in range(2)]
    results: list[str] = []

    def register(i: int) -> None:
        try:
            stores[i % 2].create(owner, f"v{i}", clip(0.1), 24000)
            results.append("ok")
        except PermissionDeniedError:
            results.append("quota")

    threads = [threading.Thread(target=register, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert results.count("ok") == 3 and results.count("quota") == 5


def test_same_name_concurrently_on_two_stores_exactly_one_wins(pg: PostgresServer) -> None:
    owner = ns()
    stores = [PostgresVoiceStore(pg.url) for _ in range(2)]
    results: list[str] = []
    barrier = threading.Barrier(6)

    def register(i: int) -> None:
        barrier.wait()
        try:
            stores[i % 2].create(owner, "same", clip(0.1), 24000)
            results.append("ok")
        except ConflictError:
            results.append("409")

    threads = [threading.Thread(target=register, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["409"] * 5 + ["ok"]
    assert stores[1].count(owner) == 1
    for s in stores:
        s.close()


def test_migrations_are_idempotent(pg: PostgresServer) -> None:
    stores = [PostgresVoiceStore(pg.url) for _ in range(3)]
    for s in stores:
        s.migrate()
        s.close()


def test_unreachable_database_is_503() -> None:
    store = PostgresVoiceStore(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", timeout=1.0)
    try:
        with pytest.raises(ServiceUnavailableError):
            store.ping()
        with pytest.raises(ServiceUnavailableError):
            store.create(ns(), "v", clip(), 24000)
        with pytest.raises(ServiceUnavailableError):
            store.find(ns(), "v")
    finally:
        store.close()
