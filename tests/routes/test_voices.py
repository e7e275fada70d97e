"""Voice routes in-process: one transcript validator for JSON and multipart, the per-key quota,
and the paged voice list."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import owner_for_key
from api.schemas.common import clean_transcript
from api.settings import Settings

KEYS = ["sk-route-one", "sk-route-two"]


def _wav(seconds: float = 1.0) -> bytes:
    rate = 24000
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp: Path = tmp_path_factory.mktemp("voices-app")
    settings = Settings(
        voices_dir=tmp / "voices",
        cache_dir=tmp / "cache",
        preload_models=[],
        api_keys=KEYS,
        max_voices_per_key=3,
        max_transcript_chars=40,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def _register(client: TestClient, name: str, key: str = KEYS[0], transcript: str = "a test tone") -> Any:
    return client.post(
        "/v1/audio/voices",
        headers=_auth(key),
        data={"name": name, "transcript": transcript},
        files={"file": ("a.wav", _wav(), "audio/wav")},
    )


def _error(r: Any, status: int, param: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param, err
    return err


def test_clean_transcript() -> None:
    assert clean_transcript(None, max_chars=5) is None
    assert clean_transcript("   ", max_chars=5) is None
    assert clean_transcript("  hello \n", max_chars=5) == "hello"
    assert clean_transcript("a\tb\nc", max_chars=10) == "a\tb\nc"
    for bad in ("123456", "a\x00b", "a\x1bb", "a\ud800b", 42):
        with pytest.raises(Exception) as exc:
            clean_transcript(bad, max_chars=5, param="prompt_text")
        assert getattr(exc.value, "status_code", None) == 400 and exc.value.param == "prompt_text"  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/v1/audio/voices", "/v1/audio/analyze"])
@pytest.mark.parametrize("text", ["x" * 1_000_000, "y" * 41, "tab ok but \x00 is not"])
def test_multipart_transcripts_follow_the_setting(client: TestClient, path: str, text: str) -> None:
    r = client.post(
        path,
        headers=_auth(KEYS[1]),
        data={"name": "multipart", "transcript": text},
        files={"file": ("a.wav", _wav(), "audio/wav")},
    )
    _error(r, 400, "transcript")


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/audio/voices", {"name": "j", "audio": "base64+AAAA", "transcript": "z" * 41}, "transcript"),
        ("/v1/audio/analyze", {"voice": "base64+AAAA", "transcript": "z" * 41}, "transcript"),
        (
            "/v1/audio/speech",
            {"model": "tts-1", "voice": "alloy", "input": "hi", "prompt_text": "z" * 41},
            "prompt_text",
        ),
        (
            "/v1/audio/speech",
            {"model": "tts-1", "voice": "alloy", "input": "hi", "prompt_text": "a\x07"},
            "prompt_text",
        ),
    ],
)
def test_json_transcripts_follow_the_same_setting(
    client: TestClient, path: str, body: dict, param: str
) -> None:
    """MAX_TRANSCRIPT_CHARS=40 here: JSON bodies use it too (not a fixed 2000)."""
    _error(client.post(path, headers=_auth(KEYS[1]), json=body), 400, param)


def test_quota_and_paging(client: TestClient) -> None:
    made = []
    for i in range(3):
        r = _register(client, f"v{i}", transcript=f"  tone number {i}  ")
        assert r.status_code == 201, r.text
        assert r.json()["transcript"] == f"tone number {i}"  # stripped
        made.append(r.json()["id"])
    err = _error(_register(client, "v3"), 403, "name")
    assert err["code"] == "voice_quota_exceeded" and "MAX_VOICES_PER_KEY" in err["message"]
    _error(_register(client, "v0"), 409, "name")  # a taken name is still a 409
    assert _register(client, "v0", key=KEYS[1]).status_code == 201  # another key has its own room
    assert client.app.state.services.voice_store.count(owner_for_key(KEYS[0])) == 3  # type: ignore[attr-defined]

    first = client.get("/v1/audio/voices", headers=_auth(KEYS[0]), params={"limit": 2, "type": "registered"})
    body = first.json()
    assert [v["id"] for v in body["data"]] == made[:2] and body["has_more"]
    assert (body["object"], body["first_id"], body["last_id"]) == ("list", made[0], made[1])
    second = client.get(
        "/v1/audio/voices",
        headers=_auth(KEYS[0]),
        params={"limit": 2, "after": body["last_id"], "type": "registered"},
    ).json()
    assert [v["id"] for v in second["data"]] == made[2:] and not second["has_more"]
    _error(client.get("/v1/audio/voices", headers=_auth(KEYS[0]), params={"limit": 101}), 400, "limit")
    # another key's voice id is not a cursor here
    other = client.get("/v1/audio/voices", headers=_auth(KEYS[1]), params={"type": "registered"}).json()
    _error(
        client.get("/v1/audio/voices", headers=_auth(KEYS[0]), params={"after": other["data"][0]["id"]}),
        400,
        "after",
    )
