"""Two servers sharing a real PostgreSQL (voices) and a real Redis (limits, usage, transcripts).

PostgreSQL and Redis are started by the test on loopback in temp dirs (tests/services.py).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess, env_json, free_port
from tests.services import PostgresServer, RedisServer

PROMPT_TEXT = "The quick brown fox jumps over the lazy dog."
KEYS = ["k-reg", "k-rate", "k-race", "k-usage", "k-kill", "k-quota"]
RPM = 20
QUOTA_SECONDS = 5.0


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PostgresServer, RedisServer]]:
    tmp = Path(tmp_path_factory.mktemp("shared"))
    pg = PostgresServer(tmp / "pg")
    redis = RedisServer(tmp / "redis")
    try:
        yield pg, redis
    finally:
        redis.stop()
        pg.stop()


def _env(reference_dir: Path, pg: PostgresServer, redis: RedisServer) -> dict[str, str]:
    return {
        "VOICE_STORE_URL": pg.url,
        "REDIS_URL": redis.url,
        "API_KEYS": ",".join(KEYS),
        "RATE_LIMIT_RPM": str(RPM),
        "QUOTA_AUDIO_SECONDS_PER_DAY": str(QUOTA_SECONDS),
        "ZIPVOICE_MODEL_DIR": str(reference_dir / "models"),
        "VOCOS_MODEL_DIR": str(reference_dir / "vocos-mel-24khz-tiny"),
        "WHISPER_MODEL": "tiny.en",
        "PRELOAD_MODELS": env_json(["kokoro"]),
        "MAX_CONCURRENCY": "2",
        "NUM_THREADS": "1",
    }


@pytest.fixture(scope="module")
def pair(
    stores: tuple[PostgresServer, RedisServer], reference_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    pg, redis = stores
    a = ServerProcess(_env(reference_dir, pg, redis), Path(tmp_path_factory.mktemp("a")))
    b = ServerProcess(_env(reference_dir, pg, redis), Path(tmp_path_factory.mktemp("b")))
    try:
        a.wait_ready(timeout=240)
        b.wait_ready(timeout=240)
        yield a, b
    finally:
        a.stop()
        b.stop()


def _register(server: ServerProcess, key: str, name: str, reference_dir: Path, **data: str) -> httpx.Response:
    with (reference_dir / "audio" / "prompt.wav").open("rb") as f:
        return httpx.post(
            server.base_url + "/v1/audio/voices",
            data={"name": name, **data},
            files={"file": ("prompt.wav", f, "audio/wav")},
            headers=auth(key),
            timeout=300,
        )


def _names(server: ServerProcess, key: str) -> list[str]:
    r = httpx.get(server.base_url + "/v1/audio/voices", headers=auth(key), timeout=60)
    assert r.status_code == 200, r.text
    return [v["name"] for v in r.json()["data"] if v.get("type") == "registered"]


def test_register_on_a_use_and_delete_on_b(
    pair: tuple[ServerProcess, ServerProcess], reference_dir: Path
) -> None:
    a, b = pair
    r = _register(a, "k-reg", "fox", reference_dir, transcript=PROMPT_TEXT)
    assert r.status_code == 201, r.text
    voice_id = r.json()["id"]
    assert "fox" in _names(b, "k-reg")
    assert (
        httpx.get(b.base_url + f"/v1/audio/voices/{voice_id}", headers=auth("k-reg"), timeout=30).status_code
        == 200
    )
    speech = httpx.post(
        b.base_url + "/v1/audio/speech",
        json={
            "model": "zipvoice",
            "voice": "fox",
            "input": "Hi there.",
            "response_format": "wav",
            "num_steps": 2,
        },
        headers=auth("k-reg"),
        timeout=300,
    )
    assert speech.status_code == 200, speech.text
    assert len(speech.content) > 1000
    assert (
        httpx.delete(
            b.base_url + f"/v1/audio/voices/{voice_id}", headers=auth("k-reg"), timeout=30
        ).status_code
        == 200
    )
    assert "fox" not in _names(a, "k-reg")
    assert (
        httpx.get(a.base_url + f"/v1/audio/voices/{voice_id}", headers=auth("k-reg"), timeout=30).status_code
        == 404
    )


def test_same_name_on_both_exactly_one_201(
    pair: tuple[ServerProcess, ServerProcess], reference_dir: Path
) -> None:
    a, b = pair
    results: list[int] = []
    barrier = threading.Barrier(4)

    def go(server: ServerProcess) -> None:
        barrier.wait()
        results.append(_register(server, "k-race", "twin", reference_dir, transcript=PROMPT_TEXT).status_code)

    threads = [threading.Thread(target=go, args=(s,)) for s in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201, 409, 409, 409], results
    assert _names(a, "k-race") == ["twin"] == _names(b, "k-race")


def test_rate_limit_is_shared(pair: tuple[ServerProcess, ServerProcess]) -> None:
    """2 × RPM requests at once, half on each server: RPM of them pass (plus what refilled while
    they ran), the rest get 429 with Retry-After on either server."""
    a, b = pair
    results: list[tuple[str, int, str | None]] = []
    lock = threading.Lock()

    def one(server: ServerProcess, label: str) -> None:
        r = httpx.get(server.base_url + "/v1/models", headers=auth("k-rate"), timeout=60)
        with lock:
            results.append((label, r.status_code, r.headers.get("Retry-After")))

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=((a, "a") if i % 2 else (b, "b"))) for i in range(2 * RPM)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # both servers must refuse once the shared bucket is empty (whichever drained it)
    for _ in range(10):
        if {label for label, code, _ in results if code == 429} == {"a", "b"}:
            break
        one(a, "a")
        one(b, "b")
    elapsed = time.monotonic() - started
    ok = sum(1 for _, code, _ in results if code == 200)
    refilled = int(elapsed * RPM / 60) + 1
    assert RPM <= ok <= RPM + refilled, (ok, len(results), elapsed)  # one bucket, not one per server
    assert {label for label, code, _ in results if code == 429} == {"a", "b"}
    limited = [retry for _, code, retry in results if code == 429]
    assert all(retry is not None and 1 <= int(retry) <= 60 // RPM + 1 for retry in limited)
    assert all(code in (200, 429) for _, code, _ in results)
    # other keys are not affected; public routes are never limited
    assert httpx.get(a.base_url + "/v1/models", headers=auth("k-reg"), timeout=30).status_code == 200
    assert httpx.get(a.base_url + "/health", timeout=30).status_code == 200


def test_usage_adds_up_across_both(pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    text = "Counting characters."
    for server in (a, b, a):
        r = httpx.post(
            server.base_url + "/v1/audio/speech",
            json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"},
            headers=auth("k-usage"),
            timeout=120,
        )
        assert r.status_code == 200, r.text
    seconds = 0.0
    usage = httpx.get(b.base_url + "/v1/usage", headers=auth("k-usage"), timeout=30).json()["data"]
    assert len(usage) == 1
    mine = usage[0]
    assert mine["requests"] == 3
    assert mine["input_characters"] == 3 * len(text)
    assert mine["by_model"]["kokoro"]["requests"] == 3
    seconds = mine["audio_seconds"]
    assert seconds > 0.5
    # another key sees only itself
    other = httpx.get(a.base_url + "/v1/usage", headers=auth("k-reg"), timeout=30).json()["data"]
    assert all(u["key"] != mine["key"] for u in other)


def test_daily_audio_quota_is_shared(pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    text = "This sentence is long enough to use up a good part of a five second quota."
    produced = 0.0
    for i in range(8):
        server = a if i % 2 else b
        r = httpx.post(
            server.base_url + "/v1/audio/speech",
            json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"},
            headers=auth("k-quota"),
            timeout=120,
        )
        if r.status_code == 429:
            break
        assert r.status_code == 200, r.text
        produced += len(r.content) / 2 / 24000
    else:
        pytest.fail("the quota never applied")
    assert produced >= QUOTA_SECONDS  # refused only once the quota was used up, across both servers
    assert r.json()["error"]["code"] == "quota_exceeded"
    assert 1 <= int(r.headers["Retry-After"]) <= 86400
    other = a if server is b else b
    again = httpx.post(
        other.base_url + "/v1/audio/speech",
        json={"model": "tts-1", "voice": "alloy", "input": "Hi.", "response_format": "pcm"},
        headers=auth("k-quota"),
        timeout=120,
    )
    assert again.status_code == 429


def test_kill_during_registration_leaves_no_half_voice(
    stores: tuple[PostgresServer, RedisServer],
    pair: tuple[ServerProcess, ServerProcess],
    reference_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    pg, redis = stores
    _, b = pair
    c = ServerProcess(_env(reference_dir, pg, redis), Path(tmp_path_factory.mktemp("c")))
    try:
        c.wait_ready(timeout=240)
        outcome: list[object] = []

        def register() -> None:
            try:
                outcome.append(_register(c, "k-kill", "victim", reference_dir).status_code)  # Whisper runs
            except httpx.HTTPError as exc:
                outcome.append(exc)

        t = threading.Thread(target=register)
        t.start()
        time.sleep(1.0)
        c.proc.send_signal(signal.SIGKILL)
        t.join(60)
    finally:
        c.stop()
    names = _names(b, "k-kill")
    if names:  # it finished before the kill: then it is whole
        assert names == ["victim"]
        r = httpx.get(b.base_url + "/v1/audio/voices/victim", headers=auth("k-kill"), timeout=30)
        assert r.status_code == 200 and r.json()["duration"] > 0
    # and the name is free or taken, never stuck half-way: registering again gives 201 or 409
    again = _register(b, "k-kill", "victim", reference_dir, transcript=PROMPT_TEXT).status_code
    assert again == (409 if names else 201)


def test_unreachable_stores_are_503(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    env = {
        "VOICE_STORE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=1",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "RATE_LIMIT_RPM": "100",
        "PRELOAD_MODELS": env_json(["kokoro"]),
    }
    d = ServerProcess(env, Path(tmp_path_factory.mktemp("d")))
    try:
        d.wait_ready(timeout=240, path="/health")
        ready = httpx.get(d.base_url + "/ready", timeout=30)
        assert ready.status_code == 503
        r = httpx.get(d.base_url + "/v1/audio/voices", timeout=30)
        assert r.status_code == 503 and r.json()["error"]["message"]
        r = httpx.post(
            d.base_url + "/v1/audio/speech",
            json={"model": "tts-1", "voice": "alloy", "input": "Hi.", "response_format": "pcm"},
            timeout=60,
        )
        assert r.status_code == 503
        assert "Traceback" not in d.log()
    finally:
        d.stop()
