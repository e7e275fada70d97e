"""``build_services``: one typed ``Services`` per app, the embedded stores by default and the shared
ones (real PostgreSQL and Redis, started here) when ``VOICE_STORE_URL`` / ``REDIS_URL`` are set."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.engines.registry import EngineRegistry
from api.limits.memory import MemoryLimits
from api.services import Services, build_services
from api.settings import Settings
from api.transcribe.cache import SharedTranscriptCache, TranscriptCache
from api.voices.store import FileVoiceStore
from tests.services import PostgresServer, RedisServer


def _settings(tmp: Path, **extra: object) -> Settings:
    base: dict[str, object] = {
        "voices_dir": tmp / "voices",
        "cache_dir": tmp / "cache",
        "preload_models": [],
        "voice_store_url": None,
        "redis_url": None,
    }
    return Settings(**(base | extra))  # type: ignore[arg-type]


def test_defaults_give_the_embedded_stores(tmp_path: Path) -> None:
    settings = _settings(tmp_path, max_voices_per_key=7, max_concurrency=3, reference_concurrency=2)
    services = build_services(settings)
    assert isinstance(services, Services)
    assert services.settings is settings
    assert isinstance(services.engines, EngineRegistry)
    assert isinstance(services.voice_store, FileVoiceStore)
    assert services.voice_store.max_per_namespace == 7
    assert isinstance(services.limits, MemoryLimits)
    assert services.limiter.max_concurrency == 3
    assert services.reference_limiter.max_concurrency == 2
    # the pieces are wired to each other, not built twice
    assert services.voice_resolver.store is services.voice_store
    assert services.speech.engines is services.engines
    if services.transcriber is not None:  # faster-whisper installed: a per-process transcript cache
        assert isinstance(services.transcriber.cache, TranscriptCache)
    assert not services.readiness.ready.is_set()
    assert services.readiness.detail == "loading" and services.readiness.draining is False
    assert services.replica_id


def test_each_build_is_its_own(tmp_path: Path) -> None:
    a, b = build_services(_settings(tmp_path)), build_services(_settings(tmp_path))
    assert (
        a.metrics is not b.metrics
        and a.limiter is not b.limiter
        and a.readiness.ready is not b.readiness.ready
    )


def test_create_app_keeps_only_services_on_state(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path))
    assert set(app.state._state) == {"services"}
    assert isinstance(app.state.services, Services)


def test_lifespan_warms_and_drains_through_readiness(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path))  # nothing to preload: ready once the warm-up ran
    services: Services = app.state.services
    with TestClient(app) as client:
        assert services.readiness.ready.wait(30)
        assert client.get("/ready").json() == {"status": "ready"}
        services.readiness.draining = True  # what the CLI's SIGTERM handler does
        r = client.get("/ready")
        assert r.status_code == 503 and r.json()["detail"] == "draining"
        services.readiness.draining = False
        assert client.get("/ready").status_code == 200
    assert services.readiness.draining  # the lifespan's shutdown


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PostgresServer, RedisServer]]:
    pg = PostgresServer(Path(tmp_path_factory.mktemp("pg")))
    try:
        redis = RedisServer(Path(tmp_path_factory.mktemp("redis")))
        try:
            yield pg, redis
        finally:
            redis.stop()
    finally:
        pg.stop()


def test_urls_give_the_shared_stores(tmp_path: Path, shared: tuple[PostgresServer, RedisServer]) -> None:
    from api.limits.redis_limits import RedisLimits
    from api.voices.pg_store import PostgresVoiceStore

    pg, redis = shared
    services = build_services(_settings(tmp_path, voice_store_url=pg.url, redis_url=redis.url))
    limits = services.limits

    async def ping_then_close() -> None:  # one event loop: the Redis client's connections belong to it
        try:
            await limits.ping()
        finally:
            await limits.close()

    try:
        assert isinstance(services.voice_store, PostgresVoiceStore)
        assert isinstance(limits, RedisLimits)
        assert services.voice_resolver.store is services.voice_store
        if services.transcriber is not None:  # the fleet-wide transcript cache
            assert isinstance(services.transcriber.cache, SharedTranscriptCache)
        services.voice_store.ping()  # both answer: the URLs were used
        asyncio.run(ping_then_close())
        assert not (tmp_path / "voices").exists()  # the file store was not built
    finally:
        services.voice_store.close()
