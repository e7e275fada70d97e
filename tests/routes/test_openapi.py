"""The OpenAPI document: every operation lists the errors it can return, with OpenAI's envelope; no 422."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routes.openapi import ENVELOPE, ROUTE_ERRORS, TRANSCRIPT_PATTERN
from api.settings import Settings


def _spec(tmp: Path, **kw: Any) -> dict[str, Any]:
    settings = Settings(voices_dir=tmp / "voices", cache_dir=tmp / "cache", preload_models=[], **kw)
    return TestClient(create_app(settings)).get("/openapi.json").json()


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _spec(tmp_path_factory.mktemp("openapi"))


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, item in spec["paths"].items() for m, op in item.items()]


def test_no_422_anywhere(spec: dict[str, Any]) -> None:
    for method, path, op in _operations(spec):
        assert "422" not in op["responses"], (method, path)
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_envelope_component(spec: dict[str, Any]) -> None:
    envelope = spec["components"]["schemas"][ENVELOPE]
    error = envelope["properties"]["error"]
    assert set(error["required"]) == {"message", "type", "param", "code"}


def test_every_route_is_in_the_table(spec: dict[str, Any]) -> None:
    documented = {(m, p) for m, p, _ in _operations(spec)}
    assert documented - set(ROUTE_ERRORS) == set(), "add new routes to api.routes.openapi.ROUTE_ERRORS"


def test_error_responses_use_the_envelope(spec: dict[str, Any]) -> None:
    for method, path, op in _operations(spec):
        for status, response in op["responses"].items():
            if int(status) < 400 or path == "/ready":
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{ENVELOPE}"}, (method, path, status)


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("POST", "/v1/audio/speech", {400, 403, 404, 413, 415, 429, 503}),
        ("POST", "/v1/audio/voices", {400, 403, 404, 409, 413, 415, 429, 503}),
        ("POST", "/v1/audio/analyze", {400, 403, 404, 413, 415, 429, 503}),
        ("POST", "/v1/audio/tune", {400, 413, 503}),
        ("GET", "/v1/models/{model_id}", {404}),
        ("GET", "/v1/audio/voices/{voice_id}", {404}),
        ("DELETE", "/v1/audio/voices/{voice_id}", {404}),
        ("GET", "/v1/audio/voices/{voice_id}/quality", {404}),
        ("GET", "/health", set()),
        ("GET", "/v1/models", set()),
    ],
)
def test_statuses_per_route(spec: dict[str, Any], method: str, path: str, statuses: set[int]) -> None:
    op = spec["paths"][path][method.lower()]
    errors = {int(s) for s in op["responses"] if int(s) >= 400}
    assert statuses <= errors, (method, path, errors)
    assert 401 not in errors  # no API keys configured
    assert not (errors & {405, 422, 500})


def test_rate_limit_documents_retry_after(spec: dict[str, Any]) -> None:
    response = spec["paths"]["/v1/audio/speech"]["post"]["responses"]["429"]
    assert "Retry-After" in response["headers"]


def test_ready_documents_its_own_503(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/ready"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ReadyStatus"}


@pytest.mark.parametrize("path", ["/v1/audio/voices", "/v1/audio/analyze"])
def test_upload_bodies_are_multipart_audio_or_json(spec: dict[str, Any], path: str) -> None:
    content = spec["paths"][path]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    form = content["multipart/form-data"]
    assert form["schema"]["properties"]["file"]["format"] == "binary"
    assert "file" in form["schema"]["required"]
    assert form["encoding"]["file"]["contentType"].startswith("audio/")
    assert form["schema"]["properties"]["transcript"]["pattern"] == TRANSCRIPT_PATTERN
    ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert ref in spec["components"]["schemas"]
    if path == "/v1/audio/voices":
        assert form["schema"]["required"] == ["name", "file"]


def test_voice_name_pattern_matches_the_store() -> None:
    from api.routes.openapi import _VOICE_NAME
    from api.voices.store import validate_name

    pattern = re.compile(_VOICE_NAME["pattern"])
    for name in ["a", "My voice", "x.y-z_1", "a" * 64]:
        assert pattern.match(name) and validate_name(name) == name
    for name in ["", " a", "a ", "..", "a" * 65, "a/b"]:
        assert not pattern.match(name)


def test_transcript_pattern_matches_the_validator() -> None:
    from api.schemas.common import transcript_problem

    pattern = re.compile(TRANSCRIPT_PATTERN)
    for ch in map(chr, range(0x00, 0xA0)):
        text = f"a{ch}b"
        assert bool(pattern.match(text)) == (transcript_problem(text, 100) is None), hex(ord(ch))


def test_api_keys_add_401_and_security(tmp_path: Path) -> None:
    spec = _spec(tmp_path, api_keys=["k1"])
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for method, path, op in _operations(spec):
        public = path in ("/health", "/ready")
        assert ("401" in op["responses"]) is not public, (method, path)
        assert ("security" in op) is not public
    assert "WWW-Authenticate" in spec["paths"]["/v1/models"]["get"]["responses"]["401"]["headers"]
