"""Cloning through /v1/audio/speech with the tiny reference checkpoints (random weights: noise-like audio,
but real shapes, real code paths)."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from api.audio.decode import decode_audio
from tests.e2e.server import ServerProcess, env_json

PROMPT_TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def zv_server(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("zv")
    env = {
        "ZIPVOICE_MODEL_DIR": str(reference_dir / "models"),
        "VOCOS_MODEL_DIR": str(reference_dir / "vocos-mel-24khz-tiny"),
        "VOICE_FILE_ROOT": str(reference_dir / "audio"),
        "WHISPER_MODEL": "tiny.en",
        "PRELOAD_MODELS": env_json(["zipvoice"]),
        "MAX_CONCURRENCY": "2",
    }
    proc = ServerProcess(env, tmp)
    try:
        proc.wait_ready(timeout=180)
        yield proc
    finally:
        proc.stop()


def _speech(server: ServerProcess, **body: object) -> httpx.Response:
    payload = {"model": "zipvoice", "input": "Hello, this is a tiny test.", "response_format": "wav"} | body
    return httpx.post(server.base_url + "/v1/audio/speech", json=payload, timeout=300)


def _wav(data: bytes) -> tuple[np.ndarray, int]:
    return decode_audio(data, max_seconds=600)


@pytest.fixture(scope="module")
def prompt_b64(reference_dir: Path) -> str:
    return base64.b64encode((reference_dir / "audio" / "prompt.wav").read_bytes()).decode()


@pytest.fixture(scope="module")
def registered(zv_server: ServerProcess, reference_dir: Path) -> dict:
    with (reference_dir / "audio" / "prompt.wav").open("rb") as f:
        r = httpx.post(
            zv_server.base_url + "/v1/audio/voices",
            data={"name": "fox", "transcript": PROMPT_TEXT},
            files={"file": ("prompt.wav", f, "audio/wav")},
            timeout=120,
        )
    assert r.status_code == 201, r.text
    return r.json()


def test_models_list_zipvoice_available(zv_server: ServerProcess) -> None:
    data = httpx.get(zv_server.base_url + "/v1/models").json()["data"]
    by_id = {m["id"]: m for m in data}
    for variant in ("zipvoice", "zipvoice_distill", "zipvoice_dialog", "zipvoice_dialog_stereo"):
        assert by_id[variant]["available"], by_id[variant]


@pytest.mark.parametrize("form", ["registered", "registered_object", "file", "base64", "data"])
def test_clone_from_each_source(
    zv_server: ServerProcess, registered: dict, prompt_b64: str, form: str
) -> None:
    voice: object = {
        "registered": "fox",
        "registered_object": {"id": registered["id"]},
        "file": "file+prompt.wav",
        "base64": "base64+" + prompt_b64,
        "data": "data:audio/wav;base64," + prompt_b64,
    }[form]
    r = _speech(zv_server, voice=voice, prompt_text=PROMPT_TEXT, seed=1, num_steps=2)
    assert r.status_code == 200, r.text
    samples, rate = _wav(r.content)
    assert rate == 24000 and samples.shape[0] == 1 and samples.shape[1] > 2400
    assert 0.0 <= float(r.headers["X-Voice-Quality-Score"]) <= 1.0
    assert r.headers["X-Prompt-Transcript-Source"] == "given"


def test_url_voice_to_loopback_is_refused(zv_server: ServerProcess) -> None:
    r = _speech(zv_server, voice=f"url+{zv_server.base_url}/health", prompt_text=PROMPT_TEXT)
    assert r.status_code in (400, 403)
    assert "error" in r.json()


def test_file_voice_traversal_is_404(zv_server: ServerProcess) -> None:
    r = _speech(zv_server, voice="file+../models/zipvoice/model.json", prompt_text=PROMPT_TEXT)
    assert r.status_code == 404


def test_seed_is_deterministic(zv_server: ServerProcess) -> None:
    a = _speech(zv_server, voice="fox", seed=7, num_steps=2, response_format="pcm").content
    b = _speech(zv_server, voice="fox", seed=7, num_steps=2, response_format="pcm").content
    c = _speech(zv_server, voice="fox", seed=8, num_steps=2, response_format="pcm").content
    assert a == b
    assert a != c


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_all_formats_through_the_sdk(zv_server: ServerProcess, fmt: str) -> None:
    client = openai.OpenAI(base_url=zv_server.base_url + "/v1", api_key="x", max_retries=0, timeout=300)
    data = client.audio.speech.create(
        model="zipvoice_distill",
        voice="fox",
        input="Short one.",
        response_format=fmt,  # type: ignore[arg-type]
        extra_body={"seed": 3, "num_steps": 2},
    ).read()
    if fmt == "pcm":
        assert len(data) > 4800 and len(data) % 2 == 0
        return
    samples, rate = _wav(data)
    assert samples.shape[1] / rate > 0.1


def test_auto_transcription_when_no_transcript(zv_server: ServerProcess, prompt_b64: str) -> None:
    r = _speech(zv_server, voice="base64+" + prompt_b64, seed=1, num_steps=2)
    assert r.status_code == 200, r.text
    assert r.headers["X-Prompt-Transcript-Source"] == "whisper"
    from urllib.parse import unquote

    assert "quick brown fox" in unquote(r.headers["X-Prompt-Transcript"]).lower()


@pytest.mark.parametrize(
    ("model", "prompt", "channels"),
    [("zipvoice_dialog", "prompt_dialog.wav", 1), ("zipvoice_dialog_stereo", "prompt_dialog_stereo.wav", 2)],
)
def test_dialog_streams(
    zv_server: ServerProcess, reference_dir: Path, model: str, prompt: str, channels: int
) -> None:
    """Dialog text gives one stream: mono for zipvoice_dialog, one speaker per channel for stereo."""
    b64 = base64.b64encode((reference_dir / "audio" / prompt).read_bytes()).decode()
    r = _speech(
        zv_server,
        model=model,
        voice="base64+" + b64,
        prompt_text="[S1] The quick brown fox. [S2] The quick brown fox.",
        input="[S1] Hello there. [S2] Hi! How are you?",
        seed=1,
        num_steps=2,
    )
    assert r.status_code == 200, r.text
    samples, _ = _wav(r.content)
    assert samples.shape[0] == channels and samples.shape[1] > 2400
    assert all(np.abs(samples[ch]).max() > 0 for ch in range(channels))


def test_dialog_needs_turns(zv_server: ServerProcess, registered: dict) -> None:
    r = _speech(zv_server, model="zipvoice_dialog", voice="fox", input="No speaker tags here.")
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "input"


def test_preset_voice_on_cloning_model_is_400(zv_server: ServerProcess) -> None:
    r = _speech(zv_server, voice="alloy")
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "voice"


def test_registry_list_get_delete(zv_server: ServerProcess, reference_dir: Path) -> None:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        t = np.arange(24000 * 2) / 24000
        w.writeframes((0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes())
    base = zv_server.base_url + "/v1/audio/voices"
    r = httpx.post(
        base, data={"name": "tone", "transcript": "a tone"}, files={"file": ("t.wav", buf.getvalue())}
    )
    assert r.status_code == 201, r.text
    vid = r.json()["id"]
    dup = httpx.post(base, data={"name": "tone"}, files={"file": ("t.wav", buf.getvalue())})
    assert dup.status_code == 409
    listed = httpx.get(base).json()["data"]
    assert any(v["id"] == vid and v["type"] == "registered" for v in listed)
    assert any(v["type"] == "preset" for v in listed)
    assert httpx.get(f"{base}/{vid}").json()["name"] == "tone"
    assert httpx.delete(f"{base}/{vid}").json() == {"id": vid, "object": "voice", "deleted": True}
    assert httpx.get(f"{base}/{vid}").status_code == 404
    bad = httpx.post(base, data={"name": "../x"}, files={"file": ("t.wav", buf.getvalue())})
    assert bad.status_code == 400
    garbage = httpx.post(base, data={"name": "junk"}, files={"file": ("t.wav", b"not audio at all" * 10)})
    assert garbage.status_code in (400, 415)
    assert set(garbage.json()["error"]) == {"message", "type", "param", "code"}


def test_analyze_upload_and_mismatch(zv_server: ServerProcess, reference_dir: Path) -> None:
    wav = (reference_dir / "audio" / "prompt.wav").read_bytes()
    url = zv_server.base_url + "/v1/audio/analyze"
    good = httpx.post(
        url, files={"file": ("p.wav", wav)}, data={"transcript": PROMPT_TEXT}, timeout=120
    ).json()
    bad = httpx.post(
        url,
        files={"file": ("p.wav", wav)},
        data={"transcript": "She sells sea shells by the sea shore."},
        timeout=120,
    ).json()
    assert 0.0 <= good["score"] <= 1.0
    assert "transcript_mismatch" not in [w["code"] for w in good["warnings"]]
    assert "transcript_mismatch" in [w["code"] for w in bad["warnings"]]
    assert "quick brown fox" in good["whisper_transcript"].lower()
    spec = httpx.post(url, json={"voice": "file+prompt.wav"}, timeout=120)
    assert spec.status_code == 200 and spec.json()["transcript_source"] == "whisper"


def test_registered_voice_quality(zv_server: ServerProcess, registered: dict) -> None:
    r = httpx.get(f"{zv_server.base_url}/v1/audio/voices/{registered['id']}/quality")
    assert r.status_code == 200
    assert 0.0 <= r.json()["score"] <= 1.0
    assert (
        httpx.get(f"{zv_server.base_url}/v1/audio/voices/voice_AAAAAAAAAAAAAAAA/quality").status_code == 404
    )


def test_priority_and_tune_use_measured_rtf(zv_server: ServerProcess, registered: dict) -> None:
    r = _speech(
        zv_server, model="zipvoice", voice="fox", priority="speed", seed=1, input="Hello there, friend."
    )
    assert r.status_code == 200, r.text
    assert r.headers["X-Model-Backend"] == "zipvoice_distill"  # speed → the distilled model
    tune = httpx.post(
        zv_server.base_url + "/v1/audio/tune", json={"priority": "speed", "input": "Hello " * 20}
    )
    body = tune.json()
    assert body["model"] == "zipvoice_distill" and body["num_steps"] == 4
    assert body["rtf_source"] == "measured" and body["rtf"] > 0
    assert body["estimated_seconds"] == pytest.approx(
        body["estimated_audio_seconds"] * body["rtf"], rel=0.05, abs=0.011
    )
    quality = httpx.post(zv_server.base_url + "/v1/audio/tune", json={"priority": "quality"}).json()
    assert quality["model"] == "zipvoice" and quality["num_steps"] == 16
