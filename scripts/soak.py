"""Soak test: a fixed count of mixed requests from several clients; does the server stay healthy?

    python scripts/soak.py --spawn --clients 4 --requests 2000
    python scripts/soak.py --url http://127.0.0.1:8880 --pid "$(pgrep -n -f 'api.cli')" --requests 500

The mix (deterministic from ``--seed``): valid Kokoro speech in several formats; bad inputs (bad
JSON, unknown model, input over MAX_INPUT_CHARS, a source voice for a preset model, an unknown
voice id, a bad base64 voice to /v1/audio/analyze); and every file of the decode-bomb corpus
(``tests/audio/corpus/``, skipped when empty) uploaded to /v1/audio/analyze and /v1/audio/voices.

Measured: the server's RSS (``/proc/PID/status``, sampled every ``--sample-every`` seconds) against
the count of completed requests; the least-squares slope after the warm-up (MB per 1000 requests);
5xx answers and transport errors (both must be 0); 429s (allowed: admission control); and ``/health``
probed throughout (every probe must answer 200; its max latency is reported). Exit status 1 when
any 5xx, transport error or failed health probe happened.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = REPO_ROOT / "tests" / "audio" / "corpus"
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".mp4", ".bin", ".raw"}

# (kind, weight): valid speech is the expensive part; most of the rest is answered in milliseconds.
MIX = [
    ("speech", 3),
    ("bad_json", 2),
    ("bad_model", 2),
    ("huge_input", 1),
    ("bad_voice_source", 1),
    ("bad_voice_id", 1),
    ("bad_base64_analyze", 1),
    ("corpus_analyze", 2),
    ("corpus_register", 1),
]
TEXTS = ["Hello there.", "The soak test keeps talking.", "Short and sweet, again and again."]
FORMATS = ["wav", "pcm", "mp3", "opus"]


@dataclass
class SoakResult:
    requests: int
    clients: int
    wall_s: float
    by_kind: dict[str, dict[str, int]]
    max_latency_s: dict[str, float]  # by kind, request to last byte
    status_counts: dict[str, int]
    server_errors: int  # 5xx
    transport_errors: int
    rate_limited: int  # 429
    health_probes: int
    health_failures: int
    health_max_latency_s: float
    rss_start_mib: float | None
    rss_end_mib: float | None
    rss_max_mib: float | None
    rss_slope_mib_per_1000: float | None  # after warm-up; None without a pid or too few samples
    rss_samples: list[tuple[int, float]] = field(default_factory=list)  # (completed requests, MiB)
    corpus_files: int = 0

    @property
    def ok(self) -> bool:
        return self.server_errors == 0 and self.transport_errors == 0 and self.health_failures == 0


def corpus_files(folder: Path = CORPUS_DIR) -> list[Path]:
    """The corpus's audio files (helpers such as ``make_corpus.py`` left out); empty if none."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and (p.suffix.lower() in AUDIO_SUFFIXES or not p.suffix)
    )


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def slope_per_1000(samples: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of MiB against completed requests, times 1000 (None: < 3 distinct x)."""
    xs = [float(x) for x, _ in samples]
    if len(set(xs)) < 3:
        return None
    ys = [y for _, y in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return 1000.0 * sxy / sxx


def plan_requests(count: int, seed: int, speech_weight: int | None = None) -> list[str]:
    rng = random.Random(seed)
    weights = [(k, speech_weight if k == "speech" and speech_weight is not None else w) for k, w in MIX]
    kinds = [k for k, w in weights for _ in range(w)]
    return [rng.choice(kinds) for _ in range(count)]


def _send(client: httpx.Client, kind: str, i: int, rng: random.Random, corpus: list[Path]) -> int:
    speech = "/v1/audio/speech"
    if kind in ("corpus_analyze", "corpus_register") and not corpus:
        kind = "bad_json"
    if kind == "speech":
        body = {
            "model": "tts-1",
            "voice": "alloy",
            "input": rng.choice(TEXTS),
            "response_format": rng.choice(FORMATS),
        }
        with client.stream("POST", speech, json=body) as r:
            for _ in r.iter_raw():
                pass
            return r.status_code
    if kind == "bad_json":
        headers = {"content-type": "application/json"}
        return client.post(speech, content=b'{"model": "tts-1", "input": ', headers=headers).status_code
    if kind == "bad_model":
        model = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789-_.", k=rng.randint(1, 60)))
        return client.post(speech, json={"model": model, "voice": "alloy", "input": "Hi."}).status_code
    if kind == "huge_input":
        return client.post(
            speech, json={"model": "tts-1", "voice": "alloy", "input": "a" * 100_000}
        ).status_code
    if kind == "bad_voice_source":
        return client.post(
            speech, json={"model": "tts-1", "voice": "base64+AAAA", "input": "Hi."}
        ).status_code
    if kind == "bad_voice_id":
        by_id: dict[str, object] = {"model": "tts-1", "voice": {"id": f"nobody-{i}"}, "input": "Hi."}
        return client.post(speech, json=by_id).status_code
    if kind == "bad_base64_analyze":
        junk = base64.b64encode(rng.randbytes(rng.randint(1, 4096))).decode()
        return client.post("/v1/audio/analyze", json={"voice": "base64+" + junk}).status_code
    path = corpus[i % len(corpus)]
    files = {"file": (path.name, path.read_bytes(), "application/octet-stream")}
    if kind == "corpus_analyze":
        return client.post("/v1/audio/analyze", files=files).status_code
    data = {"name": f"soak-{i}", "transcript": "Hello there."}
    status = client.post("/v1/audio/voices", files=files, data=data).status_code
    if status == 201:  # a corpus file that decodes: do not let registered voices pile up
        client.delete(f"/v1/audio/voices/soak-{i}")
    return status


def run_soak(
    base_url: str,
    *,
    pid: int | None,
    requests: int = 400,
    clients: int = 4,
    warmup: float = 0.25,
    seed: int = 1,
    sample_every: float = 0.5,
    health_every: float = 0.25,
    corpus: list[Path] | None = None,
    api_key: str | None = None,
    timeout: float = 120.0,
    speech_weight: int | None = None,
) -> SoakResult:
    corpus = corpus_files() if corpus is None else corpus
    kinds = plan_requests(requests, seed, speech_weight)
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    lock = threading.Lock()
    state = {"next": 0, "done": 0}
    outcomes: list[tuple[str, int | str, float]] = []
    samples: list[tuple[int, float]] = []
    health: list[float] = []
    health_failures = [0]
    stop = threading.Event()

    def client_loop(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        with httpx.Client(base_url=base_url, timeout=timeout, headers=headers) as client:
            while True:
                with lock:
                    i = state["next"]
                    if i >= len(kinds):
                        return
                    state["next"] += 1
                outcome: int | str
                sent = time.perf_counter()
                try:
                    outcome = _send(client, kinds[i], i, rng, corpus)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    outcomes.append((kinds[i], outcome, time.perf_counter() - sent))
                    state["done"] += 1

    def sampler() -> None:
        while True:
            if pid is not None:
                value = rss_mib(pid)
                if value is not None:
                    with lock:
                        samples.append((state["done"], value))
            if stop.wait(sample_every):
                return

    def prober() -> None:
        with httpx.Client(base_url=base_url, timeout=10.0) as client:
            while True:
                started = time.perf_counter()
                try:
                    ok = client.get("/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                health.append(time.perf_counter() - started)
                if not ok:
                    health_failures[0] += 1
                if stop.wait(health_every):
                    return

    background = [threading.Thread(target=sampler, daemon=True), threading.Thread(target=prober, daemon=True)]
    workers = [threading.Thread(target=client_loop, args=(n,), daemon=True) for n in range(clients)]
    started = time.perf_counter()
    for t in background + workers:
        t.start()
    for t in workers:
        t.join()
    wall = time.perf_counter() - started
    stop.set()
    for t in background:
        t.join()
    if pid is not None:
        final = rss_mib(pid)
        if final is not None:
            samples.append((state["done"], final))

    by_kind: dict[str, Counter[str]] = {}
    statuses: Counter[str] = Counter()
    latency: dict[str, list[float]] = {}
    for kind, outcome, seconds in outcomes:
        by_kind.setdefault(kind, Counter())[str(outcome)] += 1
        latency.setdefault(kind, []).append(seconds)
        statuses[str(outcome)] += 1
    server_errors = sum(n for s, n in statuses.items() if s.isdigit() and int(s) >= 500)
    transport = sum(n for s, n in statuses.items() if not s.isdigit())
    after = [(x, y) for x, y in samples if x >= warmup * requests]
    return SoakResult(
        requests=len(outcomes),
        clients=clients,
        wall_s=round(wall, 1),
        by_kind={k: dict(sorted(c.items())) for k, c in sorted(by_kind.items())},
        max_latency_s={k: round(max(v), 2) for k, v in sorted(latency.items())},
        status_counts=dict(sorted(statuses.items())),
        server_errors=server_errors,
        transport_errors=transport,
        rate_limited=statuses.get("429", 0),
        health_probes=len(health),
        health_failures=health_failures[0],
        health_max_latency_s=round(max(health, default=0.0), 3),
        rss_start_mib=round(samples[0][1], 1) if samples else None,
        rss_end_mib=round(samples[-1][1], 1) if samples else None,
        rss_max_mib=round(max(y for _, y in samples), 1) if samples else None,
        rss_slope_mib_per_1000=None if (s := slope_per_1000(after)) is None else round(s, 2),
        rss_samples=samples,
        corpus_files=len(corpus),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_server(log_dir: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server (Kokoro, offline) on a free loopback port and wait until /ready."""
    port = _free_port()
    full_env = {
        **os.environ,
        "ALLOW_DOWNLOADS": os.environ.get("ALLOW_DOWNLOADS", "false"),
        "VOICES_DIR": str(log_dir / "voices"),
        **(env or {}),
    }
    log = (log_dir / f"server-{port}.log").open("wb")
    cmd = [
        sys.executable,
        "-m",
        "api.cli",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early; log in {log.name}")
        try:
            if httpx.get(base + "/ready", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server not ready after 180 s")


def markdown_row(r: SoakResult) -> str:
    slope = "n/a" if r.rss_slope_mib_per_1000 is None else f"{r.rss_slope_mib_per_1000:+.2f}"
    return (
        f"| {r.requests} | {r.clients} | {r.wall_s:.0f} | {r.corpus_files} | {r.status_counts.get('200', 0)} | "
        f"{r.rate_limited} | {r.server_errors} | {r.transport_errors} | {r.health_probes} / {r.health_failures} | "
        f"{r.health_max_latency_s:.2f} | {r.rss_start_mib} → {r.rss_end_mib} (max {r.rss_max_mib}) | {slope} |"
    )


TABLE_HEADER = (
    "| requests | clients | wall s | corpus files | 200 | 429 | 5xx | transport errors | health probes / failed "
    "| health max s | RSS MiB start → end | RSS slope MiB/1000 req |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spawn", action="store_true", help="start a server (Kokoro, offline) for the run")
    p.add_argument("--url", default="http://127.0.0.1:8880", help="server to target (without --spawn)")
    p.add_argument("--pid", type=int, help="the server's pid, for RSS (without --spawn)")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument(
        "--warmup", type=float, default=0.25, help="fraction of requests before the RSS slope counts"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--speech-weight", type=int, help=f"weight of valid speech in the mix (default {dict(MIX)['speech']})"
    )
    p.add_argument("--max-concurrency", type=int, default=2, help="MAX_CONCURRENCY of a spawned server")
    p.add_argument("--api-key", default=os.environ.get("ZVS_API_KEY"))
    p.add_argument("--json", action="store_true", help="print the full result as JSON (with the RSS samples)")
    args = p.parse_args(argv)

    proc: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        try:
            if args.spawn:
                env = {"MAX_CONCURRENCY": str(args.max_concurrency), "MAX_QUEUE": str(4 * args.clients)}
                proc, url = spawn_server(Path(tmp), env)
                pid: int | None = proc.pid
            else:
                url, pid = args.url, args.pid
            result = run_soak(
                url,
                pid=pid,
                requests=args.requests,
                clients=args.clients,
                warmup=args.warmup,
                seed=args.seed,
                speech_weight=args.speech_weight,
                api_key=args.api_key,
            )
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    if args.json:
        print(json.dumps(asdict(result), indent=1))
    print(TABLE_HEADER)
    print(markdown_row(result))
    print("statuses by kind:", json.dumps(result.by_kind))
    print("max latency by kind (s):", json.dumps(result.max_latency_s))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
