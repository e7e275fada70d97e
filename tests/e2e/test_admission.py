"""Admission control against the real server: reference preparation (url+ fetch, decode, Whisper)
has its own slots and queue, taken before the synthesis slot.

With ``MAX_CONCURRENCY=1, MAX_QUEUE=0``, cloning requests whose ``url+`` voice trickles in from a
local server hold every reference slot; a Kokoro request still gets its audio at once (before the
split, the first of them held the only synthesis slot and every other caller got 429). With the
reference queue full too, analyze, register and clone requests get 429 with ``Retry-After`` while
Kokoro keeps answering.

The server is the real one, with ``VOICE_URL_ALLOWED_NETWORKS=127.0.0.1/32`` so that ``url+`` may
reach the trickling source on loopback.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess, env_json
from tests.e2e.test_concurrency import _metrics, _wait_metric

PROMPT_TEXT = "The quick brown fox jumps over the lazy dog."


class Trickle:
    """A local HTTP source that sends headers, then one byte every 50 ms until released (then it
    hangs up: the fetch fails with a 400 and the holder's slot comes back)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.connections = 0
        trickle = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                trickle.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                try:
                    while not trickle.release.wait(0.05):
                        self.wfile.write(b"\0")
                        self.wfile.flush()
                except OSError:
                    pass
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/slow.wav"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def trickle() -> Iterator[Trickle]:
    t = Trickle()
    yield t
    t.close()


@pytest.fixture(scope="module")
def server(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("admission")
    env = {
        "VOICE_URL_ALLOWED_NETWORKS": "127.0.0.1/32",  # the trickling source runs on loopback
        "ZIPVOICE_MODEL_DIR": str(reference_dir / "models"),
        "VOCOS_MODEL_DIR": str(reference_dir / "vocos-mel-24khz-tiny"),
        "PRELOAD_MODELS": env_json(["kokoro", "zipvoice"]),
        "MAX_CONCURRENCY": "1",
        "MAX_QUEUE": "0",
        "REFERENCE_CONCURRENCY": "2",
        "REFERENCE_QUEUE": "1",
        "VOICE_URL_TIMEOUT": "120",
    }
    proc = ServerProcess(env, tmp)
    try:
        proc.wait_ready(timeout=180)
        yield proc
    finally:
        proc.stop()


def _kokoro(server: ServerProcess) -> httpx.Response:
    body = {"model": "tts-1", "voice": "alloy", "input": "Still here.", "response_format": "wav"}
    return httpx.post(server.base_url + "/v1/audio/speech", json=body, timeout=120)


def _clone_body(voice: str) -> dict[str, str]:
    return {"model": "zipvoice", "voice": voice, "input": "Hello.", "prompt_text": PROMPT_TEXT}


def test_reference_work_never_blocks_kokoro(server: ServerProcess, trickle: Trickle) -> None:
    base, slow = server.base_url, "url+" + trickle.url
    results: dict[str, int] = {}

    def call(name: str, path: str, body: dict[str, str]) -> None:
        results[name] = httpx.post(base + path, json=body, timeout=180).status_code

    holders = [
        threading.Thread(target=call, args=(f"clone{i}", "/v1/audio/speech", _clone_body(slow)))
        for i in range(2)
    ]
    for t in holders:
        t.start()
    try:
        _wait_metric(server, "zvs_reference_in_flight", 2.0, timeout=60)
        # Both reference slots are held by slow fetches; the only synthesis slot is free.
        assert _metrics(server)["zvs_synthesis_in_flight"] == 0
        r = _kokoro(server)
        assert r.status_code == 200, r.text
        assert len(r.content) > 10_000
        m = _metrics(server)
        assert m["zvs_reference_in_flight"] == 2 and not results, (m, results)  # still holding

        # Fill the reference queue (one place), then every further reference request gets 429.
        queued = threading.Thread(
            target=call,
            args=("analyze-queued", "/v1/audio/analyze", {"voice": slow, "transcript": PROMPT_TEXT}),
        )
        queued.start()
        holders.append(queued)
        _wait_metric(server, "zvs_reference_queue_depth", 1.0, timeout=30)
        refused = {
            "clone": ("/v1/audio/speech", _clone_body(slow)),
            "analyze": ("/v1/audio/analyze", {"voice": slow}),
            "register": (
                "/v1/audio/voices",
                {"name": "late-voice", "audio": slow, "transcript": PROMPT_TEXT},
            ),
        }
        for name, (path, body) in refused.items():
            started = time.perf_counter()
            r = httpx.post(base + path, json=body, timeout=30)
            assert r.status_code == 429, (name, r.status_code, r.text)
            assert time.perf_counter() - started < 5.0, name
            assert int(r.headers["retry-after"]) >= 1, name
            err = r.json()["error"]
            assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded", err
        upload = httpx.post(
            base + "/v1/audio/analyze", files={"file": ("a.wav", b"RIFF0000WAVE", "audio/wav")}, timeout=30
        )
        assert upload.status_code == 429, upload.text

        r = _kokoro(server)  # Kokoro is untouched by the full reference queue
        assert r.status_code == 200, r.text
        assert trickle.connections == 2  # only the slot holders fetch: queued and refused ones did not
    finally:
        trickle.release.set()
        for t in holders:
            t.join(60)
    # Released, the truncated downloads end as 400s (never 5xx), and the slots come back.
    assert set(results) == {"clone0", "clone1", "analyze-queued"}, results
    assert all(400 <= s < 500 for s in results.values()), results
    _wait_metric(server, "zvs_reference_in_flight", 0.0, timeout=30)
    assert _metrics(server)["zvs_reference_queue_depth"] == 0
