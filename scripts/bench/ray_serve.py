"""Ray Serve section: Kokoro at 4 clients under Ray Serve (1 and 2 replicas, 1 CPU / 1 thread each)
against plain uvicorn (one process, 1 thread), and the Serve proxy's added latency per request.

.venv/bin/python -m scripts.bench.ray_serve --quick

A local Ray cluster (``ray start --head --block`` in its own process group, a temp dir) runs
``serve run`` on deploy/ray/serve.yaml with the replica count changed; it is torn down after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from bench_lib.stats import fmt, percentile, summary

from . import REPO_ROOT
from .concurrency import _round
from .harness import log, main_for, section, server, text_of

BODY = {"model": "kokoro", "voice": "jm_kumo", "response_format": "pcm"}


def _settings(tmp: Path) -> dict[str, str]:
    return {
        "NUM_THREADS": "1",
        "MAX_CONCURRENCY": "1",
        "MAX_QUEUE": "32",
        "PRELOAD_MODELS": "kokoro",
        "ALLOW_DOWNLOADS": "false",
        "LOG_LEVEL": "warning",
        "VOICES_DIR": str(tmp / "voices"),
        "CACHE_DIR": str(tmp / "cache"),
        "PYTHONPATH": str(REPO_ROOT),
    }


@contextmanager
def _ray_head(tmp: Path) -> Iterator[tuple[int, dict[str, str]]]:
    from tests.e2e.server import free_port
    from tests.e2e.test_ray_serve import _start_head, _stop_group

    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        "PYTHONPATH": str(REPO_ROOT),
    }
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    bin_dir = Path(sys.executable).parent
    head = None
    try:
        for attempt in range(3):
            head = _start_head(
                bin_dir, port, Path("/tmp") / f"rb{os.getpid()}-{attempt}", env, tmp / "ray.log"
            )
            if head.returncode is None:
                break
        else:
            raise RuntimeError("ray start --head failed:\n" + (tmp / "ray.log").read_text()[-3000:])
        yield port, env
    finally:
        if head is not None:
            _stop_group(head, signal.SIGTERM, 30)
        for attempt in range(3):
            shutil.rmtree(Path("/tmp") / f"rb{os.getpid()}-{attempt}", ignore_errors=True)


@contextmanager
def _serve(tmp: Path, gcs_port: int, env: dict[str, str], replicas: int) -> Iterator[str]:
    from tests.e2e.server import free_port
    from tests.e2e.test_ray_serve import _ready_replicas, _stop_group

    http_port = free_port()
    cfg = yaml.safe_load((REPO_ROOT / "deploy/ray/serve.yaml").read_text())
    cfg["http_options"].update(host="127.0.0.1", port=http_port)
    app = cfg["applications"][0]
    app["runtime_env"]["env_vars"].update(_settings(tmp))
    dep = app["deployments"][0]
    dep.update(num_replicas=replicas, max_ongoing_requests=8)
    dep["ray_actor_options"] = {"num_cpus": 1, "num_gpus": 0}
    path = tmp / f"serve-{replicas}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    bin_dir = Path(sys.executable).parent
    with (tmp / f"serve-{replicas}.log").open("wb") as out:
        proc = subprocess.Popen(
            [str(bin_dir / "serve"), "run", str(path), f"--address=127.0.0.1:{gcs_port}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{http_port}"
    try:
        try:
            _ready_replicas(base, replicas, 300, proc)
        except (RuntimeError, TimeoutError) as exc:
            tail = (tmp / f"serve-{replicas}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{exc}; serve run log:\n{tail}") from exc
        yield base
    finally:
        _stop_group(proc, signal.SIGINT, 60)


def _warm(base: str, body: dict[str, Any], n: int) -> None:
    import httpx

    with httpx.Client(base_url=base, timeout=300) as cl:
        for _ in range(n):
            cl.post("/v1/audio/speech", json=body).raise_for_status()


def _load(cfg: argparse.Namespace, base: str, body: dict[str, Any]) -> dict[str, Any]:
    tput, p95s, lat_all = [], [], []
    for _ in range(cfg.repeats):
        wall, lat, _audio = asyncio.run(_round(base, cfg.ray_clients, cfg.ray_per_client, body))
        tput.append(len(lat) / wall)
        p95s.append(percentile(lat, 95) or 0.0)
        lat_all.extend(lat)
    return {"req_per_s": summary(tput), "p95_s": summary(p95s), "p95_all_s": percentile(lat_all, 95)}


def _sequential(base: str, body: dict[str, Any], n: int) -> dict[str, float]:
    """Median latency of one client's back-to-back requests: speech (same work) and /health (no work)."""
    import httpx

    speech, health = [], []
    with httpx.Client(base_url=base, timeout=300) as cl:
        for _ in range(n):
            t = time.perf_counter()
            cl.post("/v1/audio/speech", json=body).raise_for_status()
            speech.append(time.perf_counter() - t)
            t = time.perf_counter()
            cl.get("/health").raise_for_status()
            health.append(time.perf_counter() - t)
    return {"speech_ms": statistics.median(speech) * 1000, "health_ms": statistics.median(health) * 1000}


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    body = {**BODY, "input": text_of(40)}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as t:
        tmp = Path(t)
        env = {k: v for k, v in _settings(tmp).items() if k != "PYTHONPATH"}
        with server(argparse.Namespace(**{**vars(cfg), "threads": 1}), env) as srv:
            _warm(srv.base_url, body, cfg.warmup + 1)
            seq = _sequential(srv.base_url, body, cfg.seq_requests)
            rows.append(
                {"setup": "uvicorn (1 process)", "replicas": 1, **_load(cfg, srv.base_url, body), **seq}
            )
            log(f"ray_serve uvicorn: {fmt(rows[-1]['req_per_s'])} req/s")
        for replicas in (1, 2):
            # a fresh local cluster per replica count: `serve run` on a cluster that already ran the
            # app updates it in place (a lightweight num_replicas change), so nothing would be clean
            with _ray_head(tmp) as (gcs_port, ray_env), _serve(tmp, gcs_port, ray_env, replicas) as base:
                _warm(base, body, (cfg.warmup + 1) * replicas)
                seq = _sequential(base, body, cfg.seq_requests)
                rows.append({"setup": f"Ray Serve, {replicas} replica(s)", "replicas": replicas})
                rows[-1].update(_load(cfg, base, body), **seq)
                log(f"ray_serve {replicas} replica(s): {fmt(rows[-1]['req_per_s'])} req/s")
    uvicorn, serve1 = rows[0], rows[1]
    return {
        "rows": rows,
        "clients": cfg.ray_clients,
        "per_client": cfg.ray_per_client,
        "repeats": cfg.repeats,
        "text_chars": len(body["input"]),
        "proxy_ms_speech": serve1["speech_ms"] - uvicorn["speech_ms"],
        "proxy_ms_health": serve1["health_ms"] - uvicorn["health_ms"],
        "cpus": os.cpu_count(),
    }


def render(res: dict[str, Any]) -> str:
    out = [
        f"{res['clients']} clients, {res['per_client']} request(s) each per round, {res['repeats']} rounds; "
        f"{res['text_chars']}-character text; NUM_THREADS=1 and MAX_CONCURRENCY=1 per process/replica; "
        f"machine: {res['cpus']} CPU cores.",
        "",
        "| setup | requests/s | requests/s per replica | p95 latency s (per round) | p95 s (all) "
        "| 1-client speech median ms | 1-client /health median ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        per = r["req_per_s"]["median"] / r["replicas"]
        out.append(
            f"| {r['setup']} | {fmt(r['req_per_s'])} | {per:.2f} | {fmt(r['p95_s'])} | {r['p95_all_s']:.2f} "
            f"| {r['speech_ms']:.0f} | {r['health_ms']:.1f} |"
        )
    out += [
        "",
        f"Serve proxy's added latency per request (median, 1 client, Serve 1 replica minus uvicorn): "
        f"{res['proxy_ms_speech']:.0f} ms on the speech request, {res['proxy_ms_health']:.1f} ms on /health.",
    ]
    return "\n".join(out)


def add_args(ap: Any) -> None:
    ap.add_argument("--ray-clients", type=int, default=4)
    ap.add_argument("--ray-per-client", type=int, default=3, help="requests per client per round")
    ap.add_argument("--seq-requests", type=int, default=10, help="1-client requests for the proxy latency")


def configure(cfg: argparse.Namespace) -> None:
    if cfg.quick:
        cfg.seq_requests = min(cfg.seq_requests, 6)


SECTION = section(
    name="ray_serve",
    order=80,
    title="Ray Serve: replicas against plain uvicorn (Kokoro)",
    note="A local Ray cluster on this machine runs deploy/ray/serve.yaml with 1 and then 2 replicas "
    "(1 CPU, 1 thread each); plain uvicorn is one server process with 1 thread. Throughput and p95 "
    "latency at 4 clients (median and spread over rounds); the proxy's overhead is the difference of "
    "1-client medians on the same requests. On 2 cores the second replica competes with the proxy, "
    "the controller and the clients, so the gain is capped.",
    run=run,
    render=render,
    add_args=add_args,
    configure=configure,
)

if __name__ == "__main__":
    raise SystemExit(main_for(SECTION.name))
