"""Operations against the real server: body limits, readiness, metrics, graceful drain on SIGTERM,
adversarial input sizes (and the splitter on them, at the unit level)."""

from __future__ import annotations

import base64
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx_sse
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.text.split import split_text
from tests.e2e.server import ServerProcess, env_json

BODY_LIMIT = 1_000_000  # above a 100,000-character input even \u-escaped: the length check answers
DRAIN_TEXT = (
    "This request is in flight when the server is told to stop. "
    "It must still be delivered whole, every sentence of it, before the process exits. "
    "Only then may the server finish its shutdown and report success."
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    """main: small body limit; drain: stopped by its test; broken: its preloaded backend is unavailable."""
    tmp: Path = tmp_path_factory.mktemp("ops")
    procs = {
        "main": ServerProcess({"MAX_BODY_BYTES": str(BODY_LIMIT), "MAX_CONCURRENCY": "2"}, tmp),
        "drain": ServerProcess({"SHUTDOWN_TIMEOUT": "120"}, tmp),
        "broken": ServerProcess(
            {"PRELOAD_MODELS": env_json(["kokoro"]), "KOKORO_MODEL_PATH": str(tmp / "missing.onnx")}, tmp
        ),
    }
    try:
        procs["broken"].wait_ready(path="/health")
        procs["main"].wait_ready()
        procs["drain"].wait_ready()
        yield procs
    finally:
        for p in procs.values():
            p.stop()


def _raw(port: int, head: bytes, body: bytes = b"", timeout: float = 10) -> tuple[int, bytes]:
    """Send ``head`` (+ ``body``) on a bare socket, half-open: read the answer without sending more."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    return 0


def _speech_head(port: int, extra: str) -> bytes:
    return (
        f"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


# ------------------------------------------------------------------------------ body limits
def test_content_length_over_the_limit_is_413_before_the_body(servers: dict[str, ServerProcess]) -> None:
    port = servers["main"].port
    # Only the headers are sent: an answer proves the server did not wait for (or read) the body.
    started = time.perf_counter()
    status, body = _raw(port, _speech_head(port, f"Content-Length: {10 * BODY_LIMIT}\r\n"))
    assert status == 413
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert time.perf_counter() - started < 2.0


def test_chunked_body_over_the_limit_is_413(servers: dict[str, ServerProcess]) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "tts-1", "voice": "alloy", "input": "'
        for _ in range(2 * BODY_LIMIT // 10_000):
            yield b"word " * 2000
        yield b'"}'

    r = httpx.post(
        servers["main"].base_url + "/v1/audio/speech",
        content=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "payload_too_large"


def test_chunked_body_under_the_limit_is_served(servers: dict[str, ServerProcess]) -> None:
    body = json.dumps(
        {"model": "tts-1", "voice": "alloy", "input": "Fine.", "response_format": "pcm"}
    ).encode()
    r = httpx.post(
        servers["main"].base_url + "/v1/audio/speech",
        content=iter([body[:20], body[20:]]),
        headers={"Content-Type": "application/json"},
        timeout=120,
    )
    assert r.status_code == 200 and len(r.content) > 0


# ------------------------------------------------------------------------------ input size
@pytest.mark.parametrize(
    "text",
    ["a" * 100_000, "." * 100_000, "!" * 99_999 + "a", ",;:!?" * 20_000, "。" * 100_000],
    ids=["no-spaces", "dots", "bang-run", "punctuation-mix", "cjk-stops"],
)
def test_huge_adversarial_input_is_400_at_once(servers: dict[str, ServerProcess], text: str) -> None:
    started = time.perf_counter()
    r = httpx.post(
        servers["main"].base_url + "/v1/audio/speech",
        json={"model": "tts-1", "voice": "alloy", "input": text},
        timeout=30,
    )
    elapsed = time.perf_counter() - started
    assert r.status_code == 400, r.text[:300]
    err = r.json()["error"]
    assert err["param"] == "input" and err["code"] == "string_above_max_length"
    assert elapsed < 0.5, elapsed


@pytest.mark.parametrize(
    "text",
    ["a" * 200_000, "." * 200_000, "!" * 199_999 + "a", ",;:!?" * 40_000, "。" * 200_000, "a." * 100_000],
    ids=["no-spaces", "dots", "bang-run", "punctuation-mix", "cjk-stops", "dotted"],
)
def test_splitter_handles_200k_adversarial_input_in_linear_time(text: str) -> None:
    # MAX_INPUT_CHARS=200000 would hand such inputs to the splitter; synthesizing them through the
    # server would take far too long, so the splitter is checked directly (streaming split, Kokoro's size).
    started = time.perf_counter()
    chunks = split_text(text, 400, first_alone=True)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, elapsed  # the quadratic regex took minutes on "!" * 200_000 + "a"
    assert all(0 < len(c) <= 400 for c in chunks)
    assert "".join(chunks).replace(" ", "") == text  # nothing lost, nothing invented


# ------------------------------------------------------------------------------ readiness
def test_ready_stays_503_while_the_preloaded_backend_is_unavailable(
    servers: dict[str, ServerProcess],
) -> None:
    server = servers["broken"]
    deadline = time.monotonic() + 60
    while True:  # until the warm-up has run (the detail leaves "loading")
        r = httpx.get(server.base_url + "/ready", timeout=5)
        if r.json()["detail"] != "loading" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for _ in range(3):
        r = httpx.get(server.base_url + "/ready", timeout=5)
        assert r.status_code == 503, r.text
        body = r.json()
        assert (
            body["status"] == "not_ready" and "kokoro" in body["detail"] and "unavailable" in body["detail"]
        )
    assert httpx.get(server.base_url + "/health", timeout=5).status_code == 200
    assert "Traceback" not in server.log()


def test_ready_is_200_once_warm(servers: dict[str, ServerProcess]) -> None:
    r = httpx.get(servers["main"].base_url + "/ready", timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ready"}


# ------------------------------------------------------------------------------ metrics
def test_metrics_exposes_requests_latency_ttfa_rtf_queue_and_in_flight(
    servers: dict[str, ServerProcess],
) -> None:
    base = servers["main"].base_url
    ok = httpx.post(
        base + "/v1/audio/speech",
        json={"model": "tts-1", "voice": "alloy", "input": "Metrics, please.", "response_format": "pcm"},
        timeout=120,
    )
    assert ok.status_code == 200
    assert httpx.get(base + "/v1/audio/voices/no-such-voice", timeout=10).status_code == 404
    text = httpx.get(base + "/metrics", timeout=10).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    route = "/v1/audio/speech"
    assert value("zvs_requests_total", method="POST", route=route, status="200") >= 1
    assert value("zvs_requests_total", method="GET", route="/v1/audio/voices/{voice_id}", status="404") >= 1
    assert value("zvs_request_seconds_count", route=route) >= 1
    assert value("zvs_request_seconds_bucket", route=route, le="+Inf") >= 1
    assert value("zvs_time_to_first_audio_seconds_count", model="kokoro") >= 1
    assert value("zvs_real_time_factor_count", model="kokoro") >= 1
    assert value("zvs_real_time_factor_sum", model="kokoro") > 0
    assert value("zvs_speech_total", model="kokoro", status="200") >= 1
    assert value("zvs_audio_seconds_total", model="kokoro") > 0.3
    for gauge in ("zvs_synthesis_queue_depth", "zvs_synthesis_in_flight", "zvs_synthesis_threads"):
        assert (gauge, ()) in samples, gauge
    assert not any("no-such-voice" in str(key) for key in samples)  # route templates, not raw paths


# ------------------------------------------------------------------------------ drain
def test_sigterm_drains_the_request_in_flight_and_exits_0(servers: dict[str, ServerProcess]) -> None:
    server = servers["drain"]
    first_audio = threading.Event()
    events: list[dict] = []
    failure: list[BaseException] = []

    def listen() -> None:
        payload = {
            "model": "tts-1",
            "voice": "alloy",
            "input": DRAIN_TEXT,
            "response_format": "pcm",
            "stream_format": "sse",
        }
        try:
            with (
                httpx.Client(timeout=180) as client,
                httpx_sse.connect_sse(
                    client, "POST", server.base_url + "/v1/audio/speech", json=payload
                ) as src,
            ):
                for event in src.iter_sse():
                    events.append(json.loads(event.data))
                    first_audio.set()
        except BaseException as exc:  # reported by the test thread
            failure.append(exc)
        finally:
            first_audio.set()

    listener = threading.Thread(target=listen)
    listener.start()
    assert first_audio.wait(120) and not failure, failure
    assert events and events[-1]["type"] == "speech.audio.delta"  # mid-stream: more to come

    server.proc.send_signal(signal.SIGTERM)
    # Readiness goes at once: /ready answers 503, or the listener is already closed.
    deadline = time.monotonic() + 10
    while True:
        try:
            status = httpx.get(server.base_url + "/ready", timeout=2).status_code
        except httpx.TransportError:
            break
        if status == 503:
            break
        assert time.monotonic() < deadline, "/ready still 200 after SIGTERM"
        time.sleep(0.05)

    listener.join(180)
    assert not listener.is_alive() and not failure, failure
    assert events[-1]["type"] == "speech.audio.done", [e["type"] for e in events[-3:]]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    seconds = len(audio) / 48000
    assert seconds > 8.0, seconds  # three long sentences: the whole text, not the first chunk
    assert events[-1]["usage"]["output_tokens"] == round(seconds * 50)
    assert server.proc.wait(60) == 0, server.log()


# ------------------------------------------------------------------------------ methods and /


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/audio/speech", "POST"),
        ("PUT", "/v1/audio/voices/voice_AAAAAAAAAAAAAAAA", "GET, DELETE"),
        ("DELETE", "/v1/models", "GET"),
    ],
)
def test_wrong_method_is_405_with_allow_and_the_envelope(
    servers: dict[str, ServerProcess], method: str, path: str, allow: str
) -> None:
    r = httpx.request(method, servers["main"].base_url + path, timeout=10)
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_root_redirects_to_the_player(servers: dict[str, ServerProcess]) -> None:
    r = httpx.get(servers["main"].base_url + "/", timeout=10)
    assert r.status_code in (302, 307) and r.headers["location"] == "/web/"
    player = httpx.get(servers["main"].base_url + "/", timeout=10, follow_redirects=True)
    assert player.status_code == 200 and "text/html" in player.headers["content-type"]
