"""Settings as operators type them, against the real server: ``API_KEYS=k1,k2`` (the docker env-file
form) works; ``/`` stays public with keys set; a bad setting stops start-up with one line."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess

KEY_1 = "sk-e2e-comma-one-3c1d"
KEY_2 = "sk-e2e-comma-two-9f0e"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "API_KEYS": f"{KEY_1},{KEY_2}",
        "PRELOAD_MODELS": "kokoro",
        "CORS_ORIGINS": "http://localhost:3000",
    }
    proc = ServerProcess(env, tmp_path_factory.mktemp("comma"))
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def test_comma_separated_api_keys(server: ServerProcess) -> None:
    url = server.base_url + "/v1/models"
    for key in (KEY_1, KEY_2):
        assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=60).status_code == 200
    for header in ({}, {"Authorization": f"Bearer {KEY_1},{KEY_2}"}, {"Authorization": "Bearer sk-other"}):
        assert httpx.get(url, headers=header, timeout=60).status_code == 401


def test_comma_separated_cors_origins(server: ServerProcess) -> None:
    r = httpx.options(
        server.base_url + "/v1/models",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
        timeout=60,
    )
    assert r.headers.get("access-control-allow-origin") == "http://localhost:3000"


def test_root_is_public_with_keys(server: ServerProcess) -> None:
    r = httpx.get(server.base_url + "/", timeout=60)
    assert r.status_code in (302, 307) and r.headers["location"] == "/web/"


def test_bad_setting_is_one_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    proc = ServerProcess({"API_KEYS": '["unterminated', "MAX_QUEUE": "lots"}, tmp_path)
    try:
        code = proc.proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.stop()
        raise
    proc.stop()
    log = proc.log_path.read_text()
    assert code == 2, log
    assert "Traceback" not in log and "unterminated" not in log
    lines = log.strip().splitlines()
    assert sorted(line.split(":")[1].strip() for line in lines) == ["invalid API_KEYS", "invalid MAX_QUEUE"]
    assert any("comma-separated list" in line for line in lines)
