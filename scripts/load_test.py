"""Load test for the speech endpoint: N concurrent clients for a fixed time, on loopback.

    python scripts/load_test.py --spawn --concurrency 2 --duration 20
    python scripts/load_test.py --url http://127.0.0.1:8880 --pid 1234 --concurrency 4

Each client sends ``POST /v1/audio/speech`` (streaming, pcm by default) back to back until the
time is up, and reads the whole body. Reported: latency p50/p95 (request to last byte), time to
first audio p50/p95, errors by status, requests/s and audio seconds per wall second (the wall
time runs until the last request ends), the server's peak RSS (``VmHWM`` of ``/proc/<pid>``:
``--pid``, or the server ``--spawn`` started) and the machine's 1-minute load average.
``--spawn`` starts one fresh server per concurrency level, with MAX_CONCURRENCY = that level.
Only 127.0.0.1/localhost/::1 URLs are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import soak

DEFAULT_TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "Load testing keeps the server honest about latency under pressure."
)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    ttfa: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    audio_seconds: float = 0.0
    ok: int = 0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def peak_rss_mib(pid: int) -> float | None:
    """High-water mark of the resident set (VmHWM), MiB; None if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def audio_seconds(data_bytes: int, fmt: str) -> float:
    return data_bytes / 48000 if fmt == "pcm" else 0.0  # pcm: 24 kHz, 16-bit mono


async def client_loop(
    client: httpx.AsyncClient, url: str, body: dict[str, str], deadline: float, result: Result
) -> None:
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        first: float | None = None
        size = 0
        try:
            async with client.stream("POST", url, json=body) as r:
                async for chunk in r.aiter_raw():
                    if chunk and first is None:
                        first = time.perf_counter() - started
                    size += len(chunk)
                status = r.status_code
        except httpx.HTTPError as exc:
            result.errors[type(exc).__name__] += 1
            await asyncio.sleep(0.1)  # don't spin on a dead server
            continue
        if status != 200:
            result.errors[str(status)] += 1
            if status == 429:
                await asyncio.sleep(0.1)
            continue
        result.ok += 1
        result.latencies.append(time.perf_counter() - started)
        if first is not None:
            result.ttfa.append(first)
        result.audio_seconds += audio_seconds(size, body["response_format"])


async def run(args: argparse.Namespace, pid: int | None) -> dict[str, object]:
    url = args.url.rstrip("/") + "/v1/audio/speech"
    body = {
        "model": args.model,
        "voice": args.voice,
        "input": args.text,
        "response_format": args.format,
    }
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    result = Result()
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(timeout=args.timeout, limits=limits, headers=headers) as client:
        # one warm-up request (not counted): the first request pays lazy initialisation
        await client.post(url, json=body)
        started = time.perf_counter()
        deadline = started + args.duration
        await asyncio.gather(
            *(client_loop(client, url, body, deadline, result) for _ in range(args.concurrency))
        )
        wall = time.perf_counter() - started
    return {
        "concurrency": args.concurrency,
        "duration_s": round(wall, 1),
        "requests_ok": result.ok,
        "errors": dict(result.errors),
        "latency_p50_s": round(percentile(result.latencies, 50), 3),
        "latency_p95_s": round(percentile(result.latencies, 95), 3),
        "ttfa_p50_s": round(percentile(result.ttfa, 50), 3),
        "ttfa_p95_s": round(percentile(result.ttfa, 95), 3),
        "requests_per_s": round(result.ok / wall, 3),
        "audio_s_per_s": round(result.audio_seconds / wall, 2) if args.format == "pcm" else None,
        "peak_rss_mib": None if pid is None else peak_rss_mib(pid),
        "load_avg_1m": round(os.getloadavg()[0], 2),  # the machine's load, other processes included
    }


def spawn_server(concurrency: int, log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server (Kokoro, MAX_CONCURRENCY = client concurrency) and wait until /ready."""
    env = {"MAX_CONCURRENCY": str(concurrency), "MAX_QUEUE": str(max(8, concurrency))}
    try:
        return soak.spawn_server(log_dir, env)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


def print_table(rows: list[dict[str, object]]) -> None:
    cols = [
        "concurrency",
        "duration_s",
        "requests_ok",
        "errors",
        "latency_p50_s",
        "latency_p95_s",
        "ttfa_p50_s",
        "ttfa_p95_s",
        "requests_per_s",
        "audio_s_per_s",
        "peak_rss_mib",
        "load_avg_1m",
    ]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        cells = []
        for c in cols:
            v = row.get(c)
            if isinstance(v, dict):
                v = ", ".join(f"{k}: {n}" for k, n in v.items()) or "0"
            elif isinstance(v, float) and c == "peak_rss_mib":
                v = f"{v:.0f}"
            cells.append(str(v))
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8880", help="server base URL (loopback only)")
    p.add_argument("--spawn", action="store_true", help="start the server itself (ignores --url and --pid)")
    p.add_argument("--pid", type=int, help="server process id, for its peak RSS")
    p.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1],
        help="clients at once; several values: one run each",
    )
    p.add_argument("--duration", type=float, default=20.0, help="seconds per run")
    p.add_argument("--model", default="tts-1")
    p.add_argument("--voice", default="alloy")
    p.add_argument("--text", default=DEFAULT_TEXT)
    p.add_argument("--format", default="pcm", choices=["pcm", "mp3", "opus", "aac", "flac", "wav"])
    p.add_argument("--api-key", default=os.environ.get("ZVS_API_KEY"))
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--json", action="store_true", help="print one JSON object per run instead of a table")
    args = p.parse_args(argv)
    if any(c < 1 or c > 256 for c in args.concurrency):
        p.error("--concurrency must be between 1 and 256")
    if not args.spawn and urlsplit(args.url).hostname not in LOOPBACK:
        p.error("--url must point at 127.0.0.1, localhost or ::1")

    rows: list[dict[str, object]] = []
    levels: list[int] = args.concurrency
    for level in levels:
        args.concurrency = level
        proc: subprocess.Popen[bytes] | None = None
        pid = args.pid
        if args.spawn:
            tmp = Path(tempfile.mkdtemp(prefix="zvs-load-"))
            proc, args.url = spawn_server(level, tmp)
            pid = proc.pid
        try:
            row = asyncio.run(run(args, pid))
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        print_table(rows)


if __name__ == "__main__":
    main()
