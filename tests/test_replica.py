"""X-Replica-Id on every response (errors, 401s, streams) and the same id in /health."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.replica import replica_id
from api.settings import Settings


def _client(tmp: Path, **kw: Any) -> TestClient:
    return TestClient(
        create_app(Settings(voices_dir=tmp / "voices", cache_dir=tmp / "cache", preload_models=[], **kw))
    )


@pytest.mark.parametrize("path", ["/health", "/ready", "/nothing-here", "/v1/models", "/openapi.json"])
def test_every_response_names_the_configured_replica(tmp_path: Path, path: str) -> None:
    client = _client(tmp_path, replica_id="replica-7")
    r = client.get(path)
    assert r.headers.get_list("x-replica-id") == ["replica-7"], (path, r.status_code)


def test_auth_refusals_carry_it_too(tmp_path: Path) -> None:
    client = _client(tmp_path, replica_id="r-auth", api_keys=["k1"])
    r = client.get("/v1/models")
    assert r.status_code == 401
    assert r.headers["x-replica-id"] == "r-auth"


def test_health_shows_id_and_pid(tmp_path: Path) -> None:
    client = _client(tmp_path, replica_id="r-h")
    body = client.get("/health").json()
    assert body == {"status": "ok", "replica": "r-h", "pid": os.getpid()}


def test_default_is_hostname_pid(tmp_path: Path) -> None:
    assert replica_id(None) == f"{socket.gethostname()}-{os.getpid()}"
    client = _client(tmp_path)
    r = client.get("/health")
    assert r.headers["x-replica-id"] == r.json()["replica"] == f"{socket.gethostname()}-{os.getpid()}"


def test_default_server_never_imports_ray() -> None:
    code = "import sys, api.app, api.replica; api.replica.replica_id(); assert 'ray' not in sys.modules, 'ray imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
