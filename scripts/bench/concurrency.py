"""Concurrency section: N clients against the server (Kokoro).

.venv/bin/python -m scripts.bench.concurrency --clients 1,4
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench_lib.stats import fmt, percentile, summary

from .harness import log, main_for, pcm_seconds, section, server, speech, text_of


async def _round(
    base_url: str, clients: int, per_client: int, body: dict[str, Any]
) -> tuple[float, list[float], float]:
    import httpx

    latencies: list[float] = []
    audio = 0.0

    async def client(cl: httpx.AsyncClient) -> None:
        nonlocal audio
        for _ in range(per_client):
            t = time.perf_counter()
            r = await cl.post("/v1/audio/speech", json=body)
            latencies.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
            audio += pcm_seconds(r.content)

    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as cl:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(cl) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return wall, latencies, audio


def _level(cfg: argparse.Namespace, base_url: str, n: int, body: dict[str, Any]) -> dict[str, Any]:
    """``repeats`` rounds of ``n`` clients."""
    tput, audio_tput, p95s, all_lat = [], [], [], []
    for _ in range(cfg.repeats):
        wall, lat, audio = asyncio.run(_round(base_url, n, cfg.per_client, body))
        tput.append(len(lat) / wall)
        audio_tput.append(audio / wall)
        p95s.append(percentile(lat, 95) or 0.0)
        all_lat.extend(lat)
    return {
        "clients": n,
        "requests_per_round": n * cfg.per_client,
        "req_per_s": summary(tput),
        "audio_s_per_s": summary(audio_tput),
        "p95_s": summary(p95s),
        "p50_all_s": percentile(all_lat, 50),
        "p95_all_s": percentile(all_lat, 95),
    }


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    import httpx

    text = text_of(40)  # one short sentence (~3 s of audio)
    body = {"model": "kokoro", "input": text, "voice": "jm_kumo", "response_format": "pcm"}
    env = {"PRELOAD_MODELS": '["kokoro"]', "MAX_CONCURRENCY": str(cfg.max_concurrency)}
    rows = []
    with server(cfg, env) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=300) as cl:
            for _ in range(cfg.warmup):
                speech(cl, body)
        for n in cfg.clients:
            rows.append(_level(cfg, srv.base_url, n, body))
            log(f"concurrency {n}: {fmt(rows[-1]['req_per_s'])} req/s, p95 {fmt(rows[-1]['p95_s'])}")
    return {
        "rows": rows,
        "text_chars": len(text),
        "per_client": cfg.per_client,
        "repeats": cfg.repeats,
        "max_concurrency": cfg.max_concurrency,
    }


def render(res: dict[str, Any]) -> str:
    out = [
        "| clients | requests / round | requests/s | audio s per s | p95 latency s (per round) "
        "| p50 latency s (all) | p95 latency s (all) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        out.append(
            f"| {r['clients']} | {r['requests_per_round']} | {fmt(r['req_per_s'])} | {fmt(r['audio_s_per_s'])} "
            f"| {fmt(r['p95_s'])} | {r['p50_all_s']:.2f} | {r['p95_all_s']:.2f} |"
        )
    return "\n".join(out)


def add_args(ap: Any) -> None:
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--per-client", type=int, default=1)
    ap.add_argument("--max-concurrency", type=int, default=1, help="server MAX_CONCURRENCY (its default: 1)")


def configure(cfg: argparse.Namespace) -> None:
    if cfg.quick:
        cfg.clients = "1,4"
    cfg.clients = [int(c) for c in cfg.clients.split(",") if c.strip()]


SECTION = section(
    name="concurrency",
    order=50,
    title="Concurrency: Kokoro through the server",
    note="N asyncio httpx clients, each sending requests back to back; requests/s and audio "
    "seconds per wall second per round; p95 latency per round (median and spread over rounds) "
    "and over all requests pooled.",
    run=run,
    render=render,
    add_args=add_args,
    configure=configure,
)

if __name__ == "__main__":
    raise SystemExit(main_for(SECTION.name))
