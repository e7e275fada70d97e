"""Decode bombs (issue 12) against the real server, through every voice source.

The crafted corpus (``tests/audio/corpus``: a 48 kHz FLAC frame followed by frames claiming 1-10 Hz,
and friends) is sent as a multipart upload to ``/v1/audio/analyze`` and ``/v1/audio/voices``, and as
``base64+``, ``data:audio/flac;base64,`` and ``file+`` voices to ``/v1/audio/analyze`` (JSON),
``/v1/audio/voices`` (JSON) and ``/v1/audio/speech`` with ZipVoice (the tiny reference checkpoints,
when the fixtures are present). Each must get a 4xx envelope, the server must keep serving, and the
server's resident peak (``VmHWM`` of its process, reset before each request through
``/proc/<pid>/clear_refs``) may grow by no more than the decode limits allow. The old decoder grew by
~1 GB on the first file and asked for ~12.6 GB on the second.

``url+``: the server runs with ``VOICE_URL_ALLOWED_NETWORKS=127.0.0.1/32`` (an operator's own range),
so it really downloads each bomb from the test's 127.0.0.1 HTTP server and the decoder refuses it. The
in-process test below shows the same with the real ``VoiceResolver`` and ``SafeFetcher``.
"""

from __future__ import annotations

import base64
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.errors import APIError
from api.settings import Settings
from api.voices.safe_fetch import SafeFetcher
from api.voices.sources import DECODED_BYTES_PER_SECOND, VoiceResolver
from tests.audio.test_decode_corpus import EXPECTED
from tests.conftest import reference_path
from tests.e2e.server import ServerProcess

CORPUS = Path(__file__).resolve().parents[1] / "audio" / "corpus"
BOMBS = ["flac_rate_drop_1_10hz.flac", "flac_rate_drop_1hz_65535.flac"]
ALL = sorted(EXPECTED)
MAX_REFERENCE_SECONDS = 20.0
#: the server's decoded-bytes cap per request, and the resident growth one refused request may cause:
#: the kept frames + a concatenation + a resample (3x the cap) plus slack for the request itself
DECODED_CAP = int(MAX_REFERENCE_SECONDS * DECODED_BYTES_PER_SECOND)
MAX_GROWTH = 3 * DECODED_CAP + (96 << 20)


# --------------------------------------------------------------------------- a loopback HTTP server


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        srv: Any = self.server
        srv.hits.append(self.path)
        name = self.path.lstrip("/")
        if name not in EXPECTED:
            self.send_error(404)
            return
        data = (CORPUS / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "audio/flac")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[Any]:
    srv: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.hits = []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


# --------------------------------------------------------------------------- the real server

ZIPVOICE = (reference_path() / "golden").is_dir()


@pytest.fixture(scope="module")
def bomb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("bombs")
    root = tmp / "voice-files"
    root.mkdir()
    for name in ALL:
        shutil.copy(CORPUS / name, root / name)
    env = {
        "VOICE_FILE_ROOT": str(root),
        "MAX_REFERENCE_SECONDS": str(MAX_REFERENCE_SECONDS),
        "MAX_CONCURRENCY": "2",
        "VOICE_URL_ALLOWED_NETWORKS": "127.0.0.1/32",  # url+ bombs come from the test's loopback server
    }
    if ZIPVOICE:
        ref = reference_path()
        env |= {
            "ZIPVOICE_MODEL_DIR": str(ref / "models"),
            "VOCOS_MODEL_DIR": str(ref / "vocos-mel-24khz-tiny"),
        }
    proc = ServerProcess(env, tmp)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def _vm(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def _reset_peak(pid: int) -> int:
    """Reset the server's VmHWM to its current RSS; the baseline to measure the next peak from."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:  # not allowed here: compare with the peak so far (weaker, never wrong)
        return _vm(pid, "VmHWM")
    return _vm(pid, "VmRSS")


def _b64(name: str) -> str:
    return base64.b64encode((CORPUS / name).read_bytes()).decode()


def _request(server: ServerProcess, route: str, source: str, name: str, http_base: str) -> httpx.Response:
    """One bomb through one route and source."""
    url = server.base_url + route
    data = (CORPUS / name).read_bytes()
    spec = {
        "base64": "base64+" + _b64(name),
        "data": "data:audio/flac;base64," + _b64(name),
        "file": "file+" + name,
        "url": f"url+{http_base}/{name}",
        "upload": None,
    }[source]
    if route == "/v1/audio/analyze":
        if spec is None:
            return httpx.post(url, files={"file": (name, data, "audio/flac")}, timeout=60)
        return httpx.post(url, json={"voice": spec}, timeout=60)
    if route == "/v1/audio/voices":
        if spec is None:
            form = {"name": "bomb", "transcript": "Hello."}
            return httpx.post(url, data=form, files={"file": (name, data, "audio/flac")}, timeout=60)
        return httpx.post(url, json={"name": "bomb", "audio": spec, "transcript": "Hello."}, timeout=60)
    assert route == "/v1/audio/speech" and spec is not None
    body = {
        "model": "zipvoice",
        "input": "Hello there.",
        "voice": spec,
        "prompt_text": "Hello.",
        "num_steps": 2,
    }
    return httpx.post(url, json=body, timeout=120)


CASES = [
    (route, source)
    for route in ("/v1/audio/analyze", "/v1/audio/voices")
    for source in ("upload", "base64", "data", "file", "url")
] + [("/v1/audio/speech", source) for source in ("base64", "data", "file", "url")]


def _expect(r: httpx.Response, name: str, source: str) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code"}
    status, code = EXPECTED[name]
    assert (r.status_code, err["code"]) == (status, code), err


@pytest.mark.parametrize(("route", "source"), CASES, ids=[f"{r.rsplit('/', 1)[1]}-{s}" for r, s in CASES])
def test_bombs_through_every_source(
    bomb_server: ServerProcess, http_server: Any, route: str, source: str
) -> None:
    if route == "/v1/audio/speech" and not ZIPVOICE:
        pytest.skip("ZipVoice reference fixtures not present (the speech route needs a cloning model)")
    http_base = f"http://127.0.0.1:{http_server.server_address[1]}"
    pid = bomb_server.proc.pid
    _expect(_request(bomb_server, route, source, BOMBS[0], http_base), BOMBS[0], source)  # warm (lazy loads)
    hits = len(http_server.hits)
    for name in BOMBS:
        base = _reset_peak(pid)
        r = _request(bomb_server, route, source, name, http_base)
        growth = _vm(pid, "VmHWM") - base
        assert growth <= MAX_GROWTH, f"{name}: server peak RSS grew {growth / 1e6:.0f} MB ({r.status_code})"
        _expect(r, name, source)
    if source == "url":  # each bomb was really downloaded by the server, then refused
        assert len(http_server.hits) == hits + len(BOMBS)
    assert bomb_server.proc.poll() is None, bomb_server.log()
    assert httpx.get(bomb_server.base_url + "/health", timeout=10).status_code == 200


@pytest.mark.parametrize("name", ALL)
def test_every_corpus_file_as_base64_to_analyze(bomb_server: ServerProcess, name: str) -> None:
    pid = bomb_server.proc.pid
    base = _reset_peak(pid)
    r = httpx.post(
        bomb_server.base_url + "/v1/audio/analyze", json={"voice": "base64+" + _b64(name)}, timeout=60
    )
    growth = _vm(pid, "VmHWM") - base
    assert growth <= MAX_GROWTH, f"{name}: server peak RSS grew {growth / 1e6:.0f} MB ({r.status_code})"
    _expect(r, name, "base64")


def test_server_still_speaks_after_the_bombs(bomb_server: ServerProcess) -> None:
    r = httpx.post(
        bomb_server.base_url + "/v1/audio/speech",
        json={"model": "tts-1", "voice": "alloy", "input": "Still here.", "response_format": "wav"},
        timeout=120,
    )
    assert r.status_code == 200, r.text[:300]
    assert r.content[:4] == b"RIFF"
    assert bomb_server.proc.poll() is None


# --------------------------------------------------------------------------- url+ reaching the decoder


@pytest.mark.parametrize("name", BOMBS)
def test_url_bytes_meet_the_decoder_limits(http_server: Any, name: str) -> None:
    """With loopback allowed (the fetcher's test seam), the downloaded bomb is refused by the decoder."""
    settings = Settings(max_reference_seconds=MAX_REFERENCE_SECONDS)
    fetcher = SafeFetcher(max_bytes=settings.max_voice_bytes, timeout=10, address_policy=lambda ip: True)
    resolver = VoiceResolver(settings, fetcher=fetcher.fetch)
    hits = len(http_server.hits)
    with pytest.raises(APIError) as info:
        resolver.resolve(f"url+http://127.0.0.1:{http_server.server_address[1]}/{name}")
    assert len(http_server.hits) == hits + 1  # it really was downloaded
    assert (info.value.status_code, info.value.code) == EXPECTED[name]
