"""SSML through the real server, with httpx and the openai SDK (``extra_body``), on Kokoro and on
ZipVoice (tiny checkpoints): break durations measured on the decoded audio (the run of exact
zeros, ±20 ms), prosody rate changing the duration the right way, every element accepted, invalid
SSML and the XML attack corpus refused fast with OpenAI's 400 envelope, streaming with SSML."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.e2e.server import ServerProcess, env_json

ATTACKS = Path(__file__).parents[1] / "text" / "ssml_attacks"
RATE = 24000
PROMPT_TEXT = "The quick brown fox jumps over the lazy dog."
ALL_ELEMENTS = (
    '<speak><p><s>Call <say-as interpret-as="telephone">555-0100</say-as> on '
    '<say-as interpret-as="date" format="mdy">12/25/2024</say-as>.</s>'
    '<s>Spell <say-as interpret-as="characters">TTS</say-as>, the <say-as interpret-as="ordinal">3</say-as> time, '
    'at <say-as interpret-as="time">10:30</say-as>, <say-as interpret-as="cardinal">42</say-as> '
    '<say-as interpret-as="digits">123</say-as> <sub alias="World Wide Web">WWW</sub>.</s></p>'
    '<p><emphasis level="strong">Important</emphasis> <break strength="weak"/>'
    '<prosody rate="80%">a bit slower</prosody> <voice name="{voice}">another voice.</voice></p></speak>'
)


def longest_zero_run(pcm: bytes) -> int:
    x = np.frombuffer(pcm, "<i2")
    nz = np.flatnonzero(x != 0)
    edges = np.concatenate([[-1], nz, [x.size]])
    return int(np.diff(edges).max() - 1)


def post(server: ServerProcess, body: dict[str, object]) -> httpx.Response:
    return httpx.post(server.base_url + "/v1/audio/speech", json=body, timeout=300)


class Backend:
    def __init__(self, server: ServerProcess, base: dict[str, object], other_voice: str) -> None:
        self.server, self.base, self.other_voice = server, base, other_voice

    def pcm(self, ssml: str, **kw: object) -> bytes:
        r = post(self.server, self.base | {"input": ssml, "response_format": "pcm"} | kw)
        assert r.status_code == 200, r.text
        return r.content

    def sdk(self, ssml: str) -> tuple[bytes, httpx.Headers]:
        """PCM through the SDK (``extra_body``), with the response headers."""
        client = openai.OpenAI(base_url=self.server.base_url + "/v1", api_key="x", max_retries=0, timeout=300)
        extra = {k: v for k, v in self.base.items() if k not in ("model", "voice")} | {"input_format": "ssml"}
        raw = client.audio.speech.with_raw_response.create(
            model=str(self.base["model"]),
            voice=str(self.base["voice"]),
            input=ssml,
            response_format="pcm",
            extra_body=extra,
        )
        return raw.content, httpx.Headers(dict(raw.headers))


@pytest.fixture(scope="module")
def zv_server(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "ZIPVOICE_MODEL_DIR": str(reference_dir / "models"),
        "VOCOS_MODEL_DIR": str(reference_dir / "vocos-mel-24khz-tiny"),
        "VOICE_FILE_ROOT": str(reference_dir / "audio"),
        "WHISPER_MODEL": "tiny.en",
        "PRELOAD_MODELS": env_json(["zipvoice"]),
        "MAX_CONCURRENCY": "2",
    }
    proc = ServerProcess(env, tmp_path_factory.mktemp("zv-ssml"))
    try:
        proc.wait_ready(timeout=180)
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module", params=["kokoro", "zipvoice"])
def backend(request: pytest.FixtureRequest, server: ServerProcess) -> Backend:
    if request.param == "kokoro":
        return Backend(server, {"model": "tts-1", "voice": "alloy"}, "jm_kumo")
    zv = request.getfixturevalue("zv_server")
    base = {
        "model": "zipvoice",
        "voice": "file+prompt.wav",
        "prompt_text": PROMPT_TEXT,
        "num_steps": 2,
        "seed": 1,
    }
    return Backend(zv, base, "file+prompt.wav")


def test_break_is_exact_silence(backend: Backend) -> None:
    for seconds, markup in ((1.0, "1s"), (0.5, "500ms")):
        pcm = backend.pcm(f'<speak>One two three.<break time="{markup}"/>Four five six.</speak>')
        run = longest_zero_run(pcm)
        assert abs(run / RATE - seconds) <= 0.020, (markup, run / RATE)


def test_prosody_rate_changes_the_duration(backend: Backend) -> None:
    text = "This sentence is spoken at a different rate each time."
    slow = len(backend.pcm(f'<speak><prosody rate="x-slow">{text}</prosody></speak>'))
    fast = len(backend.pcm(f'<speak><prosody rate="x-fast">{text}</prosody></speak>'))
    assert slow > 1.5 * fast


def test_every_element_through_the_sdk(backend: Backend) -> None:
    ssml = ALL_ELEMENTS.replace("{voice}", backend.other_voice)
    pcm, headers = backend.sdk(ssml)
    seconds = len(pcm) / 2 / RATE
    assert seconds > 2.0
    # the paragraph pause (0.5 s) and the weak break are exact silences in the output
    assert longest_zero_run(pcm) >= round(0.5 * RATE) - round(0.02 * RATE)
    assert "X-SSML-Warnings" not in headers


def test_unknown_elements_are_read_with_a_warning_and_sse_streams(backend: Backend) -> None:
    body = backend.base | {"input": "<speak>Hello <foo>there</foo>.</speak>", "stream_format": "sse"}
    with httpx.stream("POST", backend.server.base_url + "/v1/audio/speech", json=body, timeout=300) as r:
        assert r.status_code == 200 and "foo" in r.headers["X-SSML-Warnings"]
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done" and events[0]["type"] == "speech.audio.delta"


def test_invalid_ssml_and_attacks_are_400_fast(server: ServerProcess) -> None:
    base: dict[str, object] = {"model": "tts-1", "voice": "alloy"}
    r = post(server, base | {"input": "<speak>Hello <prosody rate='slow'>there</speak>"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_ssml" and err["param"] == "input" and "line 1, column" in err["message"]
    for path in sorted(ATTACKS.glob("*.xml")):
        started = time.perf_counter()
        r = post(server, base | {"input": path.read_text(), "input_format": "ssml"})
        assert r.status_code == 400, (path.name, r.text)
        assert r.json()["error"]["code"] in ("invalid_ssml", "string_above_max_length"), path.name
        assert time.perf_counter() - started < 2.0, path.name


def test_the_spoken_text_is_limited_not_the_markup(server: ServerProcess) -> None:
    r = post(server, {"model": "tts-1", "voice": "alloy", "input": "<speak>" + "word " * 1000 + "</speak>"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "string_above_max_length"


def test_zipvoice_captioned_ssml_words_cover_the_input(zv_server: ServerProcess) -> None:
    ssml = '<speak>One two.<break time="1s"/>Three <sub alias="four">4</sub>.</speak>'
    body = {
        "model": "zipvoice",
        "voice": "file+prompt.wav",
        "prompt_text": PROMPT_TEXT,
        "num_steps": 2,
        "input": ssml,
        "response_format": "wav",
        "captions": "vtt",
    }
    r = httpx.post(zv_server.base_url + "/v1/audio/speech/captioned", json=body, timeout=300)
    assert r.status_code == 200, r.text
    out = r.json()
    words = out["words"]
    assert [w["word"] for w in words] == ["One", "two.", "Three", "four."]
    assert all(0 <= w["start"] <= w["end"] <= out["duration"] + 1e-6 for w in words)
    assert words[2]["start"] - words[1]["end"] >= 1.0 - 0.02
    assert out["captions"].startswith("WEBVTT")
