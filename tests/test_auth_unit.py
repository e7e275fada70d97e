"""APIKeyMiddleware in isolation: which paths are public, how the header is parsed, owners and admins."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from api.auth import APIKeyMiddleware, owner_for_key


async def _whoami(request: Request) -> JSONResponse:
    state: Any = request.state
    return JSONResponse({"owner": getattr(state, "owner", None), "admin": getattr(state, "is_admin", None)})


def _client(keys: list[str], admin: list[str]) -> TestClient:
    paths = [
        "/v1/thing",
        "/health",
        "/ready",
        "/docs",
        "/openapi.json",
        "/web",
        "/web/x.js",
        "/webhook",
        "/health/x",
    ]
    app = Starlette(routes=[Route(p, _whoami, methods=["GET", "POST", "OPTIONS"]) for p in paths])
    app.add_middleware(APIKeyMiddleware, keys=keys, admin_keys=admin)
    return TestClient(app)


def test_no_keys_configured_means_open() -> None:
    r = _client([], []).get("/v1/thing")
    assert r.status_code == 200 and r.json() == {"owner": None, "admin": None}


@pytest.mark.parametrize("path", ["/health", "/ready", "/docs", "/openapi.json", "/web/x.js", "/web"])
def test_public_paths(path: str) -> None:
    assert _client(["k1"], []).get(path).status_code == 200


@pytest.mark.parametrize("path", ["/v1/thing", "/webhook", "/health/x", "/nothing-here"])
def test_everything_else_is_guarded(path: str) -> None:
    r = _client(["k1"], []).get(path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    "header",
    ["k1", "Basic k1", "Bearer", "Bearer k2", "Bearer k1x", "Bearer K1", "Token k1", "Bearer  ", "Bearer k"],
)
def test_bad_headers(header: str) -> None:
    assert _client(["k1"], []).get("/v1/thing", headers={"Authorization": header}).status_code == 401


@pytest.mark.parametrize("header", ["Bearer k1", "bearer k1", "BEARER k1", "Bearer   k1  "])
def test_good_headers(header: str) -> None:
    r = _client(["k1"], []).get("/v1/thing", headers={"Authorization": header})
    assert r.status_code == 200
    assert r.json() == {"owner": owner_for_key("k1"), "admin": False}


def test_admin_keys_are_keys_and_admins() -> None:
    client = _client(["k1"], ["root"])
    assert client.get("/v1/thing", headers={"Authorization": "Bearer root"}).json() == {
        "owner": owner_for_key("root"),
        "admin": True,
    }
    assert client.get("/v1/thing", headers={"Authorization": "Bearer k1"}).json()["admin"] is False


def test_preflight_passes_without_a_key() -> None:
    assert _client(["k1"], []).options("/v1/thing").status_code == 200


def test_owner_is_stable_distinct_and_does_not_reveal_the_key() -> None:
    assert owner_for_key("k1") == owner_for_key("k1")
    assert owner_for_key("k1") != owner_for_key("k2")
    assert "secret" not in owner_for_key("sk-secret-value")
