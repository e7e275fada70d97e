"""Streaming against the real server: SSE (httpx-sse and the openai SDK), chunked audio in every
format, time to first audio on a long text, and /health latency while the CPU synthesizes."""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import httpx
import httpx_sse
import openai
import pytest

from api.audio.decode import decode_audio
from tests.e2e.server import ServerProcess

SHORT = "Streaming starts here. Then a second sentence follows, a little longer than the first one."
# First sentence alone (the server's streaming split), the rest packed into further chunks.
LONG = "Hello there. " + " ".join(
    f"Paragraph {i} goes on about the weather, the sea, the harbour and the small boats that sail at dawn."
    for i in range(1, 7)
)
PCM_BYTES_PER_SECOND = 24000 * 2


def _client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=180)


def _speech_body(text: str, fmt: str, **extra: str) -> dict[str, str]:
    return {"model": "tts-1", "voice": "alloy", "input": text, "response_format": fmt, **extra}


def _check_events(events: list[dict], text: str) -> bytes:
    """Deltas with base64 audio, then one done event whose usage matches the audio."""
    assert len(events) >= 3, events  # two text chunks → at least two deltas, then done
    *deltas, done = events
    assert all(e["type"] == "speech.audio.delta" for e in deltas), [e["type"] for e in deltas]
    assert done["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"], validate=True) for e in deltas)
    usage = done["usage"]
    assert set(usage) == {"input_tokens", "output_tokens", "total_tokens"}
    assert usage["input_tokens"] == len(text)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    return audio


def test_sse_with_httpx_sse(server: ServerProcess) -> None:
    payload = _speech_body(SHORT, "pcm", stream_format="sse")
    with (
        httpx.Client(timeout=180) as client,
        httpx_sse.connect_sse(client, "POST", server.base_url + "/v1/audio/speech", json=payload) as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in source.response.headers
        events = [json.loads(e.data) for e in source.iter_sse()]
    audio = _check_events(events, SHORT)
    seconds = len(audio) / PCM_BYTES_PER_SECOND
    assert len(audio) % 2 == 0 and seconds > 2.0
    # output_tokens are 20 ms frames of the audio actually sent
    assert events[-1]["usage"]["output_tokens"] == round(seconds * 50)


def test_sse_through_the_openai_sdk_mp3(server: ServerProcess) -> None:
    with _client(server).audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=SHORT, response_format="mp3", stream_format="sse"
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    audio = _check_events(events, SHORT)
    samples, rate = decode_audio(audio, max_seconds=600)  # the deltas concatenate to one valid mp3
    seconds = samples.shape[-1] / rate
    assert seconds > 2.0
    assert abs(events[-1]["usage"]["output_tokens"] - seconds * 50) <= 5  # mp3 padding: a few frames


@dataclass
class Timed:
    status: int
    headers: httpx.Headers
    started: float
    reads: list[tuple[float, bytes]] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(data for _, data in self.reads)

    @property
    def first(self) -> float:
        return next(t for t, data in self.reads if data) - self.started

    @property
    def total(self) -> float:
        return self.reads[-1][0] - self.started


def _timed_stream(server: ServerProcess, text: str, fmt: str) -> Timed:
    started = time.perf_counter()
    with httpx.stream(
        "POST", server.base_url + "/v1/audio/speech", json=_speech_body(text, fmt), timeout=180
    ) as r:
        out = Timed(r.status_code, r.headers, started)
        for data in r.iter_raw():
            out.reads.append((time.perf_counter(), data))
    return out


@pytest.mark.parametrize("fmt", ["pcm", "mp3", "opus", "aac", "wav", "flac"])
def test_chunked_audio_streaming(server: ServerProcess, fmt: str) -> None:
    r = _timed_stream(server, SHORT, fmt)
    assert r.status == 200
    assert r.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.headers
    data = r.body
    # Audio went out before the synthesis of the second chunk ended, not in one piece at the end.
    assert r.first < 0.8 * r.total, (r.first, r.total)
    if fmt == "pcm":
        seconds = len(data) / PCM_BYTES_PER_SECOND
    else:
        if fmt == "wav":
            riff_size, data_size = struct.unpack_from("<I", data, 4)[0], struct.unpack_from("<I", data, 40)[0]
            assert data[:4] == b"RIFF" and data[36:40] == b"data"
            assert riff_size == data_size == 0xFFFFFFFF  # length unknown when the header was sent
        samples, rate = decode_audio(data, max_seconds=600)
        seconds = samples.shape[-1] / rate
    assert seconds > 2.0, seconds


def _raw_get(port: int, path: str) -> int:
    """GET on a fresh connection with a bare socket (an httpx client costs ~100 ms of client CPU to
    build, which would be measured instead of the server); returns the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return int(data.split(b" ", 2)[1])


@dataclass
class LongRun:
    timed: Timed
    health_ms: list[float]
    health_during_synthesis: int


@pytest.fixture(scope="module")
def long_run(server: ServerProcess) -> LongRun:
    """One long request (many sentences) while another thread probes /health on fresh connections."""
    stop = threading.Event()
    probes: list[tuple[float, float, int]] = []  # (start, seconds, status)

    def probe() -> None:
        for _ in range(400):  # bounded
            if stop.is_set():
                return
            t0 = time.perf_counter()
            status = _raw_get(server.port, "/health")
            probes.append((t0, time.perf_counter() - t0, status))
            stop.wait(0.2)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        timed = _timed_stream(server, LONG, "pcm")
    finally:
        stop.set()
        prober.join(10)
    assert all(status == 200 for _, _, status in probes)
    end = timed.reads[-1][0]
    during = [seconds * 1000 for t0, seconds, _ in probes if timed.started + timed.first < t0 < end]
    return LongRun(timed, [s * 1000 for _, s, _ in probes], len(during))


def test_first_audio_long_before_the_end(long_run: LongRun) -> None:
    t = long_run.timed
    assert t.status == 200
    seconds = len(t.body) / PCM_BYTES_PER_SECOND
    assert seconds > 25.0, seconds  # really a long text
    assert t.first < t.total / 4, (t.first, t.total)


def test_health_answers_fast_while_synthesizing(long_run: LongRun) -> None:
    assert long_run.health_during_synthesis >= 5, long_run.health_ms
    assert max(long_run.health_ms) < 100.0, sorted(long_run.health_ms)[-5:]
