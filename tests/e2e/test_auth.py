"""API keys against the real server: every route but the public ones needs a bearer key; 401 is
OpenAI's; voices are private to the key that registered them (admins see all); keys never reach
the log."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.e2e.server import ServerProcess, env_json

KEY_1 = "sk-e2e-user-one-7f3a9c"
KEY_2 = "sk-e2e-user-two-91bc4e"
ADMIN = "sk-e2e-admin-55d0b2"
WRONG = "sk-e2e-wrong-0a1b2c"
PUBLIC = ["/health", "/ready", "/docs", "/openapi.json", "/web/", "/web/index.html"]
TRANSCRIPT = "The quick brown fox jumps over the lazy dog."


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"API_KEYS": env_json([KEY_1, KEY_2]), "ADMIN_API_KEYS": env_json([ADMIN]), "MAX_CONCURRENCY": "2"}
    proc = ServerProcess(env, tmp_path_factory.mktemp("auth"))
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def _routes(server: ServerProcess) -> list[tuple[str, str]]:
    """(method, concrete path) for every operation in the OpenAPI schema, plus routes outside it."""
    spec = httpx.get(server.base_url + "/openapi.json", timeout=10).json()
    out = [
        (method.upper(), re.sub(r"\{[^}]+\}", "some-id", path))
        for path, ops in spec["paths"].items()
        for method in ops
        if path not in PUBLIC
    ]
    # "/" is public: it only redirects to the player (tests/e2e/test_settings_env.py)
    return [*out, ("GET", "/no/such/route"), ("POST", "/v1/audio/transcriptions")]


def _assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, (r.request.method, r.request.url, r.status_code, r.text)
    assert r.headers["www-authenticate"] == "Bearer"
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "authentication_error" and err["code"] == "invalid_api_key"


def test_public_paths_need_no_key(server: ServerProcess) -> None:
    for path in PUBLIC:
        r = httpx.get(server.base_url + path, timeout=10)
        assert r.status_code == 200, (path, r.status_code)


def test_every_other_route_needs_a_key(server: ServerProcess) -> None:
    routes = _routes(server)
    paths = {p for _, p in routes}
    assert {"/v1/audio/speech", "/v1/models", "/v1/audio/voices", "/metrics"} <= paths, paths
    bad_headers: list[dict[str, str]] = [
        {},
        _auth(WRONG),
        {"Authorization": KEY_1},  # no scheme
        {"Authorization": f"Basic {KEY_1}"},
        {"Authorization": "Bearer"},
        _auth(KEY_1 + "x"),
        _auth(KEY_1[:-1]),
    ]
    # A fresh connection per request: a route's own 500 must not break the next check's connection.
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=server.base_url, timeout=10, limits=fresh) as client:
        for method, path in routes:
            for headers in bad_headers:
                _assert_401(client.request(method, path, headers=headers, json={}))
        # the same routes with a good key get past the check (whatever the route then says)
        for method, path in routes:
            assert client.request(method, path, headers=_auth(KEY_1), json={}).status_code != 401, path
        assert client.get("/metrics", headers=_auth(KEY_2)).status_code == 200
        assert client.get("/v1/models", headers={"Authorization": f"bearer  {ADMIN}"}).status_code == 200


def test_openai_sdk_with_the_wrong_key(server: ServerProcess) -> None:
    wrong = openai.OpenAI(base_url=server.base_url + "/v1", api_key=WRONG, max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        wrong.audio.speech.create(model="tts-1", voice="alloy", input="Hello.")
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    right = openai.OpenAI(base_url=server.base_url + "/v1", api_key=KEY_1, max_retries=0, timeout=120)
    assert (
        len(
            right.audio.speech.create(
                model="tts-1", voice="alloy", input="Hello.", response_format="pcm"
            ).read()
        )
        > 0
    )


def test_voices_are_private_to_their_key_and_visible_to_admins(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        wav = client.post(
            "/v1/audio/speech",
            headers=_auth(KEY_1),
            json={"model": "tts-1", "voice": "alloy", "input": TRANSCRIPT, "response_format": "wav"},
        )
        assert wav.status_code == 200
        r = client.post(
            "/v1/audio/voices",
            headers=_auth(KEY_1),
            data={"name": "fox", "transcript": TRANSCRIPT},
            files={"file": ("fox.wav", wav.content, "audio/wav")},
        )
        assert r.status_code == 201, r.text
        voice_id = r.json()["id"]

        def registered(key: str) -> set[str]:
            listing = client.get("/v1/audio/voices", headers=_auth(key))
            assert listing.status_code == 200
            return {v["id"] for v in listing.json()["data"] if v["type"] == "registered"}

        assert voice_id in registered(KEY_1)
        assert voice_id not in registered(KEY_2)
        assert voice_id in registered(ADMIN)
        assert client.get(f"/v1/audio/voices/{voice_id}", headers=_auth(KEY_1)).status_code == 200
        assert client.get(f"/v1/audio/voices/{voice_id}", headers=_auth(KEY_2)).status_code == 404
        assert client.get(f"/v1/audio/voices/{voice_id}", headers=_auth(ADMIN)).status_code == 200
        # another key can neither delete it nor reach it by name
        assert client.delete(f"/v1/audio/voices/{voice_id}", headers=_auth(KEY_2)).status_code == 404
        assert client.get("/v1/audio/voices/fox", headers=_auth(KEY_2)).status_code == 404
        assert voice_id in registered(KEY_1)


def test_keys_never_appear_in_the_log(server: ServerProcess) -> None:
    # Runs last in this module: every key above, good and bad, has been sent by now.
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for key in (KEY_1, KEY_2, ADMIN, WRONG):
            client.get("/v1/models", headers=_auth(key))
            client.post("/v1/audio/speech", headers=_auth(key), json={"input": ""})  # errors are logged too
    log = server.log_path.read_text(errors="replace")
    assert "/v1/models" in log  # the access log is on: requests are logged, keys are not
    for key in (KEY_1, KEY_2, ADMIN, WRONG):
        assert key.split("-")[-1] not in log, key
