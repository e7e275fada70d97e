"""Bad input on JSON/multipart endpoints gets the OpenAI envelope with 4xx, never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    tmp: Path = tmp_path_factory.mktemp("app")
    return TestClient(
        create_app(Settings(voices_dir=tmp / "voices", cache_dir=tmp / "cache", preload_models=[]))
    )


@pytest.mark.parametrize(
    ("path", "kwargs", "status"),
    [
        ("/v1/audio/analyze", {"json": {}}, 400),
        ("/v1/audio/analyze", {"content": b"{x", "headers": {"content-type": "application/json"}}, 400),
        ("/v1/audio/analyze", {"content": b"x", "headers": {"content-type": "text/plain"}}, 415),
        ("/v1/audio/voices", {"json": {"name": "a"}}, 400),
        ("/v1/audio/voices", {"json": {"name": "a", "audio": "base64+!!!"}}, 400),
        ("/v1/audio/voices", {"data": {"name": "a"}, "files": {"file": ("a.wav", b"junk" * 20)}}, 415),
        ("/v1/audio/tune", {"json": {"priority": "fastest"}}, 400),
        ("/v1/audio/speech", {"json": {"model": "tts-1", "voice": "alloy"}}, 400),
        ("/v1/audio/voices/voice_AAAAAAAAAAAAAAAA", {"method": "DELETE"}, 404),
    ],
)
def test_envelope(client: TestClient, path: str, kwargs: dict, status: int) -> None:
    method = kwargs.pop("method", "POST")
    r = client.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in r.text
