"""The OpenAPI document tells the truth: schemathesis (every check, every phase) against the real server.

The ``st`` CLI runs in a subprocess against a live ``ServerProcess`` with a bounded number of
examples per operation and deterministic generation, and must report zero failures. The run is
configured by a ``schemathesis.toml`` written here; this module is also its hooks module
(``SCHEMATHESIS_HOOKS``):

* ``input`` of ``POST /v1/audio/speech`` (and ``/captioned``) is capped at :data:`MAX_INPUT` characters in generated cases
  (the server's own limit stays ``MAX_INPUT_CHARS``) so that schema-valid cases do not run long
  syntheses. ``input`` has no ``maxLength`` in the document, so the cap never turns a negative
  case into a valid one;
* in positive cases with ``input_format: "ssml"``, ``input`` is wrapped (escaped) in ``<speak>``:
  a schema cannot say "well-formed SSML", and the server rightly refuses malformed markup (400);
* in positive cases, the uploaded ``file`` (declared ``format: binary``, ``audio/*``) is a real WAV
  clip and the JSON ``audio``/``voice`` sources are a ``data:audio/wav`` URL of it: a schema cannot
  say "bytes that decode as audio", random bytes are not audio, and the server rightly refuses them
  (415, documented).

One check is configured, not disabled: ``not_a_server_error`` also accepts 503, the documented
envelope this offline server returns for ZipVoice (no weights, no downloads). Any other 5xx fails.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
import struct
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import pytest
import schemathesis

from tests.e2e.server import REPO_ROOT, ServerProcess

MAX_INPUT = 200
SEED_MAX = 2**63 - 1
MAX_EXAMPLES = 10
FUZZ_TIMEOUT_S = 600  # about 90 s on an idle 2-core machine
RESPONSE_LIMIT_S = 120  # a hang detector: CI's 2 busy cores make a tighter limit machine-dependent


def _wav(seconds: float = 1.5, rate: int = 24_000) -> bytes:
    """A short voiced-like clip (a few harmonics with a slow amplitude envelope), 16-bit mono."""
    frames = bytearray()
    for i in range(int(seconds * rate)):
        t = i / rate
        env = 0.5 - 0.5 * math.cos(2 * math.pi * t / seconds)
        value = sum(math.sin(2 * math.pi * f * t) / k for k, f in enumerate((140, 280, 420, 700), 1))
        frames += struct.pack("<h", int(8000 * env * value / 2))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


WAV = _wav()
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
DATA_URL = "data:audio/wav;base64," + base64.b64encode(WAV).decode()
_UPLOADS = {"/v1/audio/voices", "/v1/audio/analyze"}


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    if positive and case.path == "/v1/audio/voices" and case.method.upper() == "GET" and case.query:
        # a page cursor must be an id the server handed out; a generated one is rightly a 400
        case.query.pop("after", None)
    body = case.body
    if not isinstance(body, dict):
        return case
    if case.path in ("/v1/audio/speech", "/v1/audio/speech/captioned"):
        if isinstance(body.get("input"), str):
            body["input"] = body["input"][:MAX_INPUT]
            if positive and body.get("input_format") == "ssml":
                # a schema cannot say "well-formed SSML": the generated text becomes the content of
                # a <speak> document (escaped), so the SSML path still runs on it
                text = _NOT_XML.sub("", str(body["input"]))
                text = text if re.search(r"\w", text) else "0"  # nothing to speak is a 400 too
                body["input"] = "<speak>" + xml_escape(text) + "</speak>"
        seed = body.get("seed")
        if positive and isinstance(seed, int) and seed > SEED_MAX:
            # the generator reads ``maximum: 2**63-1`` through a float and overshoots it by a few
            # hundred; such a seed is not schema-valid, so it is clamped back into the schema
            body["seed"] = SEED_MAX
    if positive and case.method.upper() == "POST" and case.path in _UPLOADS:
        if "file" in body:
            body["file"] = WAV
        for key in ("audio", "voice"):
            if isinstance(body.get(key), str):
                body[key] = DATA_URL
    return case


CONFIG = f"""
generation.deterministic = true
generation.max-examples = {MAX_EXAMPLES}
generation.database = "none"
workers = 1
request-timeout = 60
continue-on-failure = true

[checks]
max_response_time = {RESPONSE_LIMIT_S}

[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    proc = ServerProcess({"MAX_CONCURRENCY": "2", "MAX_QUEUE": "32"}, tmp)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def _run(server: ServerProcess, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp / "schemathesis.toml"
    config.write_text(CONFIG)
    env: dict[str, Any] = {**os.environ, "SCHEMATHESIS_HOOKS": __name__, "PYTHONPATH": str(REPO_ROOT)}
    st = [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()"]
    return subprocess.run(
        [*st, "--config-file", str(config), "run", server.base_url + "/openapi.json", *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=FUZZ_TIMEOUT_S,
    )


def test_schemathesis_finds_nothing(server: ServerProcess, tmp_path: Path) -> None:
    result = _run(server, tmp_path, "--checks", "all", "--no-color")
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-20000:]
    selected = re.search(r"Operations:\s+(\d+) selected / (\d+) total", report)
    assert selected and selected[1] == selected[2] and int(selected[1]) >= 13, report[-5000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", report)
    assert counts and counts[1] == counts[2] and int(counts[1]) >= 13 * MAX_EXAMPLES, report[-5000:]
