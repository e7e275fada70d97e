"""Concurrency limits against the real server: a dropped client frees its slot and stops synthesis
within a chunk; a full queue answers 429 at once; a bad input is refused without waiting for a slot."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.server import ServerProcess

# A short first sentence (streamed alone: first audio soon), then sentences just over 200
# characters, so that each later text chunk (at most 400 characters) holds exactly one.
SENTENCE = (
    "Sentence {i} of this long story describes the harbour at dawn, the grey water, the gulls over the "
    "masts, the fishermen who mend their nets in silence, and the bell that rings when the first boat "
    "comes home again."
)
LONG = "Hello there. " + " ".join(SENTENCE.format(i=i) for i in range(1, 12))
LONG_CHUNKS = 12
SHORT = "A short one."


def _metrics(server: ServerProcess) -> dict[str, float]:
    """Unlabelled or summed samples by name, plus ``name{label=value,...}`` keys."""
    text = httpx.get(server.base_url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
            if sample.labels:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def _wait_metric(server: ServerProcess, name: str, value: float, timeout: float = 60.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        m = _metrics(server)
        if m.get(name) == value:
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} stayed {m.get(name)} (wanted {value}) for {timeout}s")
        time.sleep(0.05)


def _wait_idle(server: ServerProcess) -> None:
    for name in ("zvs_synthesis_in_flight", "zvs_synthesis_queue_depth", "zvs_synthesis_threads"):
        _wait_metric(server, name, 0.0)


def _speech(text: str, fmt: str = "pcm") -> dict[str, str]:
    return {"model": "tts-1", "voice": "alloy", "input": text, "response_format": fmt}


def _raw_post(port: int, body: dict[str, str]) -> socket.socket:
    """Send a speech request on a bare socket without reading the answer (the caller closes it)."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    return sock


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """(no queue: MAX_CONCURRENCY=1, MAX_QUEUE=0; one-place queue: MAX_CONCURRENCY=1, MAX_QUEUE=1),
    started side by side."""
    tmp: Path = tmp_path_factory.mktemp("concurrency")
    procs = [
        ServerProcess({"MAX_CONCURRENCY": "1", "MAX_QUEUE": "0"}, tmp),
        ServerProcess({"MAX_CONCURRENCY": "1", "MAX_QUEUE": "1"}, tmp),
    ]
    try:
        for p in procs:
            p.wait_ready()
        yield procs[0], procs[1]
    finally:
        for p in procs:
            p.stop(signal.SIGKILL)  # graceful stops are tested in test_ops; this skips abandoned chunks


@pytest.fixture
def no_queue(servers: tuple[ServerProcess, ServerProcess]) -> Iterator[ServerProcess]:
    yield servers[0]
    _wait_idle(servers[0])


@pytest.fixture
def one_queued(servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    # One test uses it and it is killed after: a test added here must first wait for _wait_idle.
    return servers[1]


def test_dropped_client_frees_the_slot_and_stops_synthesis(no_queue: ServerProcess) -> None:
    server = no_queue
    before = _metrics(server)
    url = server.base_url + "/v1/audio/speech"
    with httpx.Client(timeout=120) as client, client.stream("POST", url, json=_speech(LONG)) as r:
        assert r.status_code == 200
        body = r.iter_raw()  # keep the iterator: dropping it closes the connection at once
        assert next(body)
        busy = _metrics(server)
        assert busy["zvs_synthesis_in_flight"] == 1 and busy["zvs_synthesis_threads"] == 1, busy
        # While it streams, the single slot is taken and there is no queue: 429.
        assert client.post(url, json=_speech(SHORT)).status_code == 429
    # leaving the block closes the connection after a few kilobytes of a long text

    # The slot comes back as soon as the server sees the disconnect, not when the text is done.
    _wait_metric(server, "zvs_synthesis_in_flight", 0.0, timeout=10)
    started = time.perf_counter()
    r2 = httpx.post(server.base_url + "/v1/audio/speech", json=_speech(SHORT), timeout=120)
    assert r2.status_code == 200, r2.text
    assert len(r2.content) > 24000
    assert time.perf_counter() - started < 20

    # The dropped stream's synthesis thread ends after the chunk it was on: of the long text's
    # chunks, only the first (sent) and at most two more (in progress, prefetched) were synthesized.
    after = _wait_metric(server, "zvs_synthesis_threads", 0.0)
    synthesized = after["zvs_synthesis_chunks_total"] - before.get("zvs_synthesis_chunks_total", 0.0)
    dropped_stream_chunks = synthesized - 1  # the short request is one chunk
    assert 1 <= dropped_stream_chunks <= 3 < LONG_CHUNKS, synthesized


def test_full_queue_gets_429_at_once(one_queued: ServerProcess) -> None:
    server = one_queued
    url = server.base_url + "/v1/audio/speech"
    with httpx.Client(timeout=120) as client, client.stream("POST", url, json=_speech(LONG)) as running:
        assert running.status_code == 200  # headers sent: it holds the only slot
        waiting = _raw_post(server.port, _speech(LONG))
        try:
            _wait_metric(server, "zvs_synthesis_queue_depth", 1.0, timeout=10)
            started = time.perf_counter()
            r = client.post(url, json=_speech(SHORT))
            elapsed = time.perf_counter() - started
            assert r.status_code == 429, r.text
            assert elapsed < 1.0, elapsed
            assert int(r.headers["retry-after"]) >= 1
            err = r.json()["error"]
            assert set(err) == {"message", "type", "param", "code"}
            assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"

            sdk = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=30)
            with pytest.raises(openai.RateLimitError):
                sdk.audio.speech.create(model="tts-1", voice="alloy", input=SHORT)

            # A bad input is refused for what it is, at once, not with 429 or after a wait.
            started = time.perf_counter()
            bad = client.post(url, json=_speech("!" * 99_999 + "a"))
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "input", bad.text
            assert time.perf_counter() - started < 1.0
        finally:
            waiting.close()
