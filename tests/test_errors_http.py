"""HTTP-level error mapping: a wrong method is 405 with ``Allow`` and the envelope; ``/`` is public."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    tmp: Path = tmp_path_factory.mktemp("errors")
    settings = Settings(
        voices_dir=tmp / "voices", cache_dir=tmp / "cache", preload_models=[], api_keys=["k1"]
    )
    return TestClient(create_app(settings), headers={"Authorization": "Bearer k1"})


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/audio/speech", {"POST"}),
        ("PUT", "/v1/audio/voices/voice_AAAAAAAAAAAAAAAA", {"GET", "DELETE"}),  # two routes, one path
        ("PATCH", "/v1/audio/voices", {"GET", "POST"}),
        ("DELETE", "/v1/models", {"GET"}),
        ("POST", "/health", {"GET"}),
        ("POST", "/web/index.html", {"GET", "HEAD"}),
    ],
)
def test_wrong_method_is_405_with_allow(client: TestClient, method: str, path: str, allow: set[str]) -> None:
    r = client.request(method, path)
    assert r.status_code == 405, r.text
    assert {m.strip() for m in r.headers["allow"].split(",")} == allow
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["code"] == "method_not_allowed"
    assert method in error["message"]


def test_unknown_path_is_still_404(client: TestClient) -> None:
    r = client.post("/v1/nothing")
    assert r.status_code == 404 and "allow" not in r.headers
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_root_redirects_to_the_player_without_a_key(client: TestClient) -> None:
    r = client.get("/", headers={"Authorization": ""}, follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/web/"
    assert client.get("/web/", headers={"Authorization": ""}).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": ""}).status_code == 401
