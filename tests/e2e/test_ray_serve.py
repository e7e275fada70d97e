"""The app under Ray Serve: a local Ray cluster, ``serve run`` on deploy/ray/serve.yaml with 2 replicas.

Ray starts with ``ray start --head --block`` in its own process group and a temp dir; ``serve run``
deploys the checked-in config (only the port, the replica count and the env vars changed). State is
shared the production way: voices in a real PostgreSQL, limits in a real Redis (tests/services.py).
Checks: every response carries ``X-Replica-Id`` and both replicas answer (also in /health); SSE
through Serve's proxy (httpx-sse and the openai SDK); a client that drops a stream frees its
replica's slot; a replica SIGKILLed under load is replaced and the requests after recovery
succeed with the registered voice intact. Everything is torn down even on failure.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import httpx_sse
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.server import REPO_ROOT, free_port
from tests.services import PostgresServer, RedisServer

pytest.importorskip("ray.serve", reason="the `ray` extra is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

KEY = "k-ray"
PROMPT_TEXT = "The quick brown fox jumps over the lazy dog."
SHORT = "Hello from a replica."
SENTENCE = (
    "Paragraph {i} goes on about the weather, the sea, the harbour and the small boats that sail at dawn."
)
LONG = "Hello there. " + " ".join(SENTENCE.format(i=i) for i in range(1, 25))  # minutes of audio


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def _speech(text: str, **extra: str) -> dict[str, str]:
    return {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm", **extra}


@dataclass
class RayServe:
    base_url: str
    log_dir: Path

    def logs(self) -> str:
        out = []
        for path in sorted(self.log_dir.glob("ray-tmp/*/session_latest/logs/serve/replica_*.log"))[-2:]:
            out.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:])
        for name in ("ray-start.log", "serve-run.log"):
            path = self.log_dir / name
            if path.exists():
                out.append(f"--- {name}\n" + path.read_text(errors="replace")[-4000:])
        return "\n".join(out)


def _config(tmp: Path, port: int, env: dict[str, str]) -> Path:
    """The checked-in config with this test's port, 2 replicas of 1 CPU and the test's settings."""
    cfg = yaml.safe_load((REPO_ROOT / "deploy/ray/serve.yaml").read_text())
    cfg["http_options"].update(host="127.0.0.1", port=port)
    (app,) = cfg["applications"]
    assert app["import_path"] == "api.serve_ray:build_app"
    app["runtime_env"]["env_vars"].update(env)
    (dep,) = app["deployments"]
    dep.update(num_replicas=2, max_ongoing_requests=4, health_check_period_s=2)
    dep["ray_actor_options"] = {"num_cpus": 1, "num_gpus": 0}
    path = tmp / "serve.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _stop_group(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Signal the process group this test started (by its id), then SIGKILL what is left of it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _ready_replicas(base: str, want: int, timeout: float, serve_run: subprocess.Popen[bytes]) -> set[str]:
    """Poll /ready through the proxy until `want` distinct replicas answered 200."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serve_run.poll() is not None:
            raise RuntimeError("serve run exited")
        try:
            r = httpx.get(base + "/ready", timeout=5)
            if r.status_code == 200:
                seen.add(r.headers["x-replica-id"])
                if len(seen) >= want:
                    return seen
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{len(seen)} of {want} replicas ready after {timeout}s: {seen}")


def _start_head(
    bin_dir: Path, port: int, temp_dir: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """``ray start --head --block`` in its own process group; returns once it runs or has exited."""
    with log.open("wb") as out:
        head = subprocess.Popen(
            [
                str(bin_dir / "ray"),
                "start",
                "--head",
                "--block",
                "--num-cpus=2",
                "--num-gpus=0",
                "--node-ip-address=127.0.0.1",
                f"--port={port}",
                f"--temp-dir={temp_dir}",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if head.poll() is not None or time.monotonic() > deadline:
            _stop_group(head, signal.SIGTERM, 10)
            return head
        time.sleep(0.5)
    return head


@pytest.fixture(scope="module")
def ray_serve(reference_dir: Path) -> Iterator[RayServe]:
    # Not under pytest's basetemp: other pytest sessions on a shared machine prune old basetemps
    # (retention 3), and PostgreSQL exits when its data directory disappears under it.
    tmp = Path(tempfile.mkdtemp(prefix="zv-ray-"))
    ray_tmp = Path("/tmp") / f"rt{os.getpid()}"  # Ray's socket paths must stay short
    (tmp / "ray-tmp").symlink_to(ray_tmp, target_is_directory=True)
    pg = PostgresServer(tmp / "pg")
    redis = RedisServer(tmp / "redis")
    gcs_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONUNBUFFERED": "1",
        # under `uv run`, Ray would otherwise start each worker with `uv run` in a fresh venv
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        "PYTHONPATH": str(REPO_ROOT),
    }
    env.pop("RAY_ADDRESS", None)
    settings = {
        "VOICE_STORE_URL": pg.url,
        "REDIS_URL": redis.url,
        "API_KEYS": KEY,
        "NUM_THREADS": "1",
        "MAX_CONCURRENCY": "1",
        "MAX_QUEUE": "0",  # a busy replica refuses at once: a slot held by a dropped stream shows as 429
        "PRELOAD_MODELS": "kokoro",
        "ALLOW_DOWNLOADS": "false",
        "VOICES_DIR": str(tmp / "voices"),
        "CACHE_DIR": str(tmp / "cache"),
        "ZIPVOICE_MODEL_DIR": str(reference_dir / "models"),
        "VOCOS_MODEL_DIR": str(reference_dir / "vocos-mel-24khz-tiny"),
        "PYTHONPATH": str(REPO_ROOT),
    }
    config = _config(tmp, http_port, settings)
    bin_dir = Path(sys.executable).parent
    serve_log = (tmp / "serve-run.log").open("wb")
    handle = RayServe(f"http://127.0.0.1:{http_port}", tmp)
    head: subprocess.Popen[bytes] | None = None
    serve_run: subprocess.Popen[bytes] | None = None
    try:
        # On a loaded machine the raylet can miss `ray start`'s fixed 30 s registration window: retry.
        for attempt in range(3):
            head = _start_head(bin_dir, gcs_port, ray_tmp / str(attempt), env, tmp / "ray-start.log")
            if head.returncode is None:
                break
        else:
            pytest.fail(f"ray start --head failed 3 times\n{handle.logs()}")
        serve_run = subprocess.Popen(
            [str(bin_dir / "serve"), "run", str(config), f"--address=127.0.0.1:{gcs_port}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=serve_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _ready_replicas(handle.base_url, 2, 240, serve_run)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"{exc}\n{handle.logs()}")
        yield handle
    finally:
        if serve_run is not None:
            _stop_group(serve_run, signal.SIGINT, 30)  # serve run shuts the app down on Ctrl-C
        if head is not None:
            _stop_group(head, signal.SIGTERM, 30)
        serve_log.close()
        redis.stop()
        pg.stop()
        shutil.rmtree(ray_tmp, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _replicas_of(base: str, path: str, n: int) -> set[str]:
    ids = set()
    for _ in range(n):
        r = httpx.get(base + path, headers=_auth(), timeout=30)
        ids.add(r.headers["x-replica-id"])
    return ids


def test_both_replicas_answer_and_name_themselves(ray_serve: RayServe) -> None:
    base = ray_serve.base_url
    health = [httpx.get(base + "/health", timeout=30) for _ in range(40)]
    assert all(r.status_code == 200 for r in health)
    for r in health:
        assert r.headers["x-replica-id"] == r.json()["replica"]  # the header is the /health id
    replicas = {r.json()["replica"] for r in health}
    pids = {r.json()["pid"] for r in health}
    assert len(replicas) == 2 and len(pids) == 2, replicas
    assert all(rid.startswith("zipvoice#") for rid in replicas), replicas  # the Ray replica tag
    # every response carries it: errors, auth refusals, speech
    assert len(_replicas_of(base, "/v1/models", 30)) == 2
    assert httpx.get(base + "/v1/models", timeout=30).headers["x-replica-id"] in replicas  # 401
    assert httpx.get(base + "/nope", timeout=30).headers["x-replica-id"] in replicas
    r = httpx.post(base + "/v1/audio/speech", json=_speech(SHORT), headers=_auth(), timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["x-replica-id"] in replicas and len(r.content) > 24000


def test_sse_through_the_proxy(ray_serve: RayServe) -> None:
    base = ray_serve.base_url
    text = "Streaming starts here. Then a second sentence follows, a little longer than the first one."
    with (
        httpx.Client(timeout=180, headers=_auth()) as client,
        httpx_sse.connect_sse(
            client, "POST", base + "/v1/audio/speech", json=_speech(text, stream_format="sse")
        ) as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        assert "x-replica-id" in source.response.headers
        events = [json.loads(e.data) for e in source.iter_sse()]
    *deltas, done = events
    assert len(deltas) >= 2 and all(e["type"] == "speech.audio.delta" for e in deltas)
    assert done["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert done["usage"]["output_tokens"] == round(len(audio) / 48000 * 50)

    sdk = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0, timeout=180)
    with sdk.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format="mp3", stream_format="sse"
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        sdk_events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    assert sdk_events[-1]["type"] == "speech.audio.done" and len(sdk_events) >= 3

    # chunked (non-SSE) streaming arrives in several pieces too
    with httpx.stream(
        "POST", base + "/v1/audio/speech", json=_speech(text), headers=_auth(), timeout=180
    ) as r:
        assert r.status_code == 200 and "content-length" not in r.headers
        pieces = [len(b) for b in r.iter_raw() if b]
    assert len(pieces) >= 2 and sum(pieces) > 48000


def test_dropped_streams_free_their_replicas(ray_serve: RayServe) -> None:
    base = ray_serve.base_url
    url = base + "/v1/audio/speech"
    with (
        httpx.Client(timeout=120, headers=_auth()) as c1,
        httpx.Client(timeout=120, headers=_auth()) as c2,
        c1.stream("POST", url, json=_speech(LONG)) as r1,
        c2.stream("POST", url, json=_speech(LONG)) as r2,
    ):
        assert r1.status_code == 200 and r2.status_code == 200
        assert r1.headers["x-replica-id"] != r2.headers["x-replica-id"]  # one long stream per replica
        body1, body2 = r1.iter_raw(), r2.iter_raw()
        assert next(body1) and next(body2)
    # both streams dropped after their first bytes: each replica's synthesis slot must come back
    # long before the long text (minutes of audio) would have finished
    in_flight: dict[str, float] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = httpx.get(base + "/metrics", headers=_auth(), timeout=10)
        assert r.status_code == 200
        in_flight[r.headers["x-replica-id"]] = _gauge(r.text, "zvs_synthesis_in_flight")
        if len(in_flight) == 2 and not any(in_flight.values()):
            break
        time.sleep(0.2)
    assert len(in_flight) == 2 and not any(in_flight.values()), f"synthesis slots still taken: {in_flight}"
    for _ in range(2):
        r = httpx.post(url, json=_speech(SHORT), headers=_auth(), timeout=120)
        assert r.status_code == 200, r.text


def _gauge(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


def _register(base: str, reference_dir: Path) -> str:
    with (reference_dir / "audio" / "prompt.wav").open("rb") as f:
        r = httpx.post(
            base + "/v1/audio/voices",
            data={"name": "fox", "transcript": PROMPT_TEXT},
            files={"file": ("prompt.wav", f, "audio/wav")},
            headers=_auth(),
            timeout=300,
        )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _voice_names(base: str, ray_serve: RayServe) -> list[str]:
    # A replica whose first PostgreSQL connection misses the pool's timeout on a loaded machine answers
    # 503 store_unavailable ("retry shortly"): retry those for a while, anything else fails at once.
    deadline = time.monotonic() + 60
    while True:
        r = httpx.get(base + "/v1/audio/voices", headers=_auth(), timeout=60)
        if r.status_code != 503 or time.monotonic() > deadline:
            break
        assert r.json()["error"]["code"] == "store_unavailable", r.text
        time.sleep(1)
    assert r.status_code == 200, f"{r.text} from {r.headers.get('x-replica-id')}\n{ray_serve.logs()}"
    return [v["name"] for v in r.json()["data"] if v.get("type") == "registered"]


def test_killed_replica_is_replaced_and_state_survives(ray_serve: RayServe, reference_dir: Path) -> None:
    base = ray_serve.base_url
    voice_id = _register(base, reference_dir)
    assert "fox" in _voice_names(base, ray_serve), ray_serve.logs()  # listed before the kill
    health = [httpx.get(base + "/health", timeout=30).json() for _ in range(30)]
    by_replica = {h["replica"]: h["pid"] for h in health}
    assert len(by_replica) == 2
    victim, victim_pid = sorted(by_replica.items())[0]

    stop = threading.Event()
    statuses: list[int] = []

    def load() -> None:
        while not stop.is_set():
            try:
                r = httpx.post(base + "/v1/audio/speech", json=_speech(SHORT), headers=_auth(), timeout=60)
                statuses.append(r.status_code)
            except httpx.HTTPError:
                statuses.append(-1)

    workers = [threading.Thread(target=load, daemon=True) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        time.sleep(2)
        os.kill(victim_pid, signal.SIGKILL)  # the replica actor's process, as /health reported it
        # Serve notices the dead actor and starts a new replica (a new tag) in its place
        deadline = time.monotonic() + 150
        fresh: set[str] = set()
        while time.monotonic() < deadline:
            try:
                r = httpx.get(base + "/ready", timeout=5)
                if r.status_code == 200 and r.headers["x-replica-id"] not in by_replica:
                    fresh.add(r.headers["x-replica-id"])
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert fresh, f"no replacement replica after the kill\n{ray_serve.logs()}"
    finally:
        stop.set()
        for w in workers:
            w.join(90)
    assert 200 in statuses

    # after recovery: every request succeeds, on both replicas, and the voice is still there
    ids = set()
    for _ in range(8):
        r = httpx.post(base + "/v1/audio/speech", json=_speech(SHORT), headers=_auth(), timeout=120)
        assert r.status_code == 200, r.text
        ids.add(r.headers["x-replica-id"])
    assert victim not in ids
    assert len(_replicas_of(base, "/health", 30) - {victim}) == 2
    for _ in range(4):
        assert "fox" in _voice_names(base, ray_serve)
        r = httpx.get(base + f"/v1/audio/voices/{voice_id}", headers=_auth(), timeout=30)
        assert r.status_code in (200, 503), r.text
        assert r.status_code == 200 or r.json()["error"]["code"] == "store_unavailable"
