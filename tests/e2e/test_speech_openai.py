"""The OpenAI speech contract against the real server, through the real ``openai`` client and httpx."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import openai
import pytest

from api.audio.decode import decode_audio
from tests.e2e.server import ServerProcess

FORMATS = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
TEXT = "Hello from the speech server. This sentence checks every audio format."


def _client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=120)


def _duration(data: bytes, fmt: str) -> tuple[float, int, int]:
    if fmt == "pcm":
        assert len(data) % 2 == 0
        return len(data) / 2 / 24000, 24000, 1
    samples, rate = decode_audio(data, max_seconds=600)
    return samples.shape[-1] / rate, rate, samples.shape[0]


@pytest.fixture(scope="module")
def reference_duration(server: ServerProcess) -> float:
    data = (
        _client(server)
        .audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="pcm")
        .read()
    )
    seconds = len(data) / 2 / 24000
    assert 2.0 < seconds < 15.0
    return seconds


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_decodes_to_the_right_duration(
    server: ServerProcess, fmt: str, reference_duration: float
) -> None:
    response = _client(server).audio.speech.with_raw_response.create(
        model="tts-1",
        voice="alloy",
        input=TEXT,
        response_format=fmt,  # type: ignore[arg-type]
    )
    assert response.headers["content-type"].startswith(FORMATS[fmt])
    seconds, rate, channels = _duration(response.http_response.content, fmt)
    assert channels == 1
    assert rate in (24000, 48000) if fmt == "opus" else rate == 24000
    assert abs(seconds - reference_duration) < 0.12, (fmt, seconds, reference_duration)


def test_streaming_response_iter_bytes(server: ServerProcess, reference_duration: float) -> None:
    with _client(server).audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="pcm"
    ) as response:
        parts = list(response.iter_bytes(4096))
    data = b"".join(parts)
    assert abs(len(data) / 48000 - reference_duration) < 0.01
    pcm = np.frombuffer(data, dtype="<i2")
    assert np.abs(pcm).max() > 1000  # real speech, not silence


def test_voice_object_form_and_backend_name(server: ServerProcess) -> None:
    r = httpx.post(
        server.base_url + "/v1/audio/speech",
        json={
            "model": "kokoro",
            "voice": {"id": "jm_kumo"},
            "input": "Object voice.",
            "response_format": "wav",
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text
    seconds, rate, _ = _duration(r.content, "wav")
    assert rate == 24000 and seconds > 0.3


def test_voice_mix(server: ServerProcess) -> None:
    r = httpx.post(
        server.base_url + "/v1/audio/speech",
        json={
            "model": "kokoro",
            "voice": "jm_kumo+jf_alpha(0.5)",
            "input": "Mixed voice.",
            "response_format": "pcm",
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert len(r.content) > 24000


def test_speed_changes_duration(server: ServerProcess) -> None:
    client = _client(server)
    slow = client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="pcm", speed=0.8
    )
    fast = client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="pcm", speed=1.6
    )
    assert len(slow.read()) > 1.4 * len(fast.read())


def test_sse_events(server: ServerProcess) -> None:
    import httpx_sse

    payload = {
        "model": "tts-1",
        "voice": "alloy",
        "input": "One. Two.",
        "response_format": "pcm",
        "stream_format": "sse",
    }
    with (
        httpx.Client(timeout=120) as client,
        httpx_sse.connect_sse(client, "POST", server.base_url + "/v1/audio/speech", json=payload) as source,
    ):
        assert source.response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(e.data) for e in source.iter_sse()]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert deltas and events[-1]["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert len(audio) > 24000
    usage = events[-1]["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_sse_through_the_sdk(server: ServerProcess) -> None:
    with _client(server).audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello.", response_format="pcm", stream_format="sse"
    ) as response:
        text = response.read().decode()
    assert '"speech.audio.delta"' in text and '"speech.audio.done"' in text


@pytest.mark.parametrize(
    ("kwargs", "exc", "param"),
    [
        ({"input": ""}, openai.BadRequestError, "input"),
        ({"input": "x" * 4097}, openai.BadRequestError, "input"),
        ({"speed": 5.0}, openai.BadRequestError, "speed"),
        ({"response_format": "ogg"}, openai.BadRequestError, "response_format"),
        ({"model": "no-such-model"}, openai.NotFoundError, "model"),
        ({"voice": "no_such_voice"}, openai.BadRequestError, "voice"),
    ],
)
def test_errors_map_to_sdk_exceptions(server: ServerProcess, kwargs: dict, exc: type, param: str) -> None:
    args = {"model": "tts-1", "voice": "alloy", "input": "Hello."} | kwargs
    with pytest.raises(exc) as info:
        _client(server).audio.speech.create(**args)
    body = info.value.body
    assert isinstance(body, dict) and body.get("param") == param, body
    assert "Traceback" not in json.dumps(body)


def test_malformed_json_gets_envelope(server: ServerProcess) -> None:
    r = httpx.post(
        server.base_url + "/v1/audio/speech",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error"


def test_body_limit_413(server: ServerProcess) -> None:
    r = httpx.post(
        server.base_url + "/v1/audio/speech",
        content=b"x" * (26 * 1024 * 1024),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_models_and_health(server: ServerProcess) -> None:
    models = _client(server).models.list()
    ids = {m.id for m in models.data}
    assert {"kokoro", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= ids
    assert httpx.get(server.base_url + "/health").json()["status"] == "ok"
    assert httpx.get(server.base_url + "/ready").status_code == 200
    r = httpx.get(server.base_url + "/v1/models/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_unknown_route_is_enveloped_404(server: ServerProcess) -> None:
    r = httpx.get(server.base_url + "/v1/nothing-here")
    assert r.status_code == 404
    assert "error" in r.json()
