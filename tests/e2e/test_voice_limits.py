"""Voice registry limits against the real server: bounded transcripts on every path, the per-key
quota, OpenAI-style paging of the voice list, and the name index rebuilt after a restart."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.server import ServerProcess, env_json

KEY_1 = "sk-e2e-quota-one-4c1d"
KEY_2 = "sk-e2e-quota-two-8e2f"
HUGE = "word " * 200_000  # 1,000,000 characters


def _wav(seconds: float = 1.5, freq: float = 220.0) -> bytes:
    rate = 24000
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _register(client: httpx.Client, name: str, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(
        "/v1/audio/voices",
        headers=headers,
        data={"name": name, "transcript": "a steady test tone"},
        files={"file": (f"{name}.wav", _wav(), "audio/wav")},
    )


def _assert_envelope(r: httpx.Response, status: int, param: str) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param, error
    return error


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"API_KEYS": env_json([KEY_1, KEY_2]), "MAX_VOICES_PER_KEY": "2", "PRELOAD_MODELS": "[]"}
    proc = ServerProcess(env, tmp_path_factory.mktemp("quota"))
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def test_huge_multipart_transcripts_are_400(quota_server: ServerProcess) -> None:
    auth = {"Authorization": f"Bearer {KEY_1}"}
    with httpx.Client(base_url=quota_server.base_url, timeout=120) as client:
        r = client.post(
            "/v1/audio/voices",
            headers=auth,
            data={"name": "huge", "transcript": HUGE},
            files={"file": ("a.wav", _wav(), "audio/wav")},
        )
        assert "2000" in _assert_envelope(r, 400, "transcript")["message"]
        r = client.post(
            "/v1/audio/analyze",
            headers=auth,
            data={"transcript": HUGE},
            files={"file": ("a.wav", _wav(), "audio/wav")},
        )
        _assert_envelope(r, 400, "transcript")
        # JSON says the same through the same validator
        r = client.post(
            "/v1/audio/voices",
            headers=auth,
            json={"name": "j", "audio": "base64+AAAA", "transcript": "x" * 2001},
        )
        _assert_envelope(r, 400, "transcript")
        r = client.post(
            "/v1/audio/analyze",
            headers=auth,
            data={"transcript": "bell \x07 character"},
            files={"file": ("a.wav", _wav(), "audio/wav")},
        )
        _assert_envelope(r, 400, "transcript")
        assert (
            client.get("/v1/audio/voices", headers=auth, params={"type": "registered"}).json()["data"] == []
        )


def test_quota_per_key(quota_server: ServerProcess) -> None:
    with httpx.Client(base_url=quota_server.base_url, timeout=120) as client:
        assert _register(client, "q1", KEY_1).status_code == 201
        assert _register(client, "q2", KEY_1).status_code == 201
        error = _assert_envelope(_register(client, "q3", KEY_1), 403, "name")
        assert "MAX_VOICES_PER_KEY" in error["message"] and error["code"] == "voice_quota_exceeded"
        assert _register(client, "q3", KEY_2).status_code == 201  # the other key is unaffected
        listed = client.get(
            "/v1/audio/voices", headers={"Authorization": f"Bearer {KEY_1}"}, params={"type": "registered"}
        ).json()
        assert [v["name"] for v in listed["data"]] == ["q1", "q2"]
        gone = listed["data"][0]["id"]
        assert client.delete(
            f"/v1/audio/voices/{gone}", headers={"Authorization": f"Bearer {KEY_1}"}
        ).is_success
        assert _register(client, "q3", KEY_1).status_code == 201  # room again


def test_paging_and_index_rebuilt_after_restart(tmp_path: Path) -> None:
    env = {"PRELOAD_MODELS": "[]", "VOICES_DIR": str(tmp_path / "voices")}
    server = ServerProcess(env, tmp_path)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            made = []
            for i in range(5):
                r = _register(client, f"page {i}", None)
                assert r.status_code == 201, r.text
                made.append(r.json()["id"])
            seen: list[str] = []
            after: str | None = None
            pages = 0
            while True:
                params: dict[str, str | int] = {"limit": 2, "type": "registered"}
                if after:
                    params["after"] = after
                body = client.get("/v1/audio/voices", params=params).json()
                pages += 1
                assert body["object"] == "list" and len(body["data"]) <= 2
                assert body["first_id"] == body["data"][0]["id"] and body["last_id"] == body["data"][-1]["id"]
                seen += [v["id"] for v in body["data"]]
                if not body["has_more"]:
                    break
                after = body["last_id"]
            assert seen == made and pages == 3
            # without a type filter, the presets follow the registered voices in the same sequence
            everything: list[dict] = []
            after = None
            for _ in range(100):
                params = {"limit": 3, **({"after": after} if after else {})}
                body = client.get("/v1/audio/voices", params=params).json()
                everything += body["data"]
                if not body["has_more"]:
                    break
                after = body["last_id"]
            assert [v["id"] for v in everything[:5]] == made
            assert all(v["type"] == "preset" for v in everything[5:])
            ids = [(v["id"], v.get("backend")) for v in everything]
            assert len(ids) == len(set(ids))
            _assert_envelope(
                client.get("/v1/audio/voices", params={"after": "voice_AAAAAAAAAAAAAAAA"}), 400, "after"
            )
            _assert_envelope(client.get("/v1/audio/voices", params={"limit": 0}), 400, "limit")
    finally:
        server.stop()

    restarted = ServerProcess(env, tmp_path)
    try:
        restarted.wait_ready()
        with httpx.Client(base_url=restarted.base_url, timeout=120) as client:
            r = client.get("/v1/audio/voices/page 3")
            assert r.status_code == 200 and r.json()["id"] == made[3]
            assert _register(client, "page 3", None).status_code == 409  # the rebuilt index knows it
            assert client.get("/v1/audio/voices", params={"type": "registered", "limit": 100}).json()[
                "data"
            ] == [client.get(f"/v1/audio/voices/{i}").json() for i in made]
    finally:
        restarted.stop()
