"""Server overhead section: the bare engine call vs ``/v1/audio/speech``, interleaved, with the
difference taken apart stage by stage.

.venv/bin/python -m scripts.bench.server --quick
.venv/bin/python scripts.bench.py --sections server --repeats-server 20 --merge   (the report's figures)

Four ways to speak the same text, in one interleaved loop (the order rotates every round and
reverses every other one, so load drift hits every variant alike):

* ``bare``: ``KokoroEngine.synthesize`` on the server's own chunk plan, in the harness process;
* ``service``: :meth:`SpeechService.start` + the encoded bytes, in the harness process, on the same
  engine object (plan, voice, limiter slot, producer thread, encoder off the loop, metrics, usage);
  the engine's own time inside that call is clocked too, so ``service − engine inside`` is the
  pipeline's cost measured within one call (no run-to-run noise);
* ``app``: the whole ASGI app in the harness process (``httpx.ASGITransport``): middleware (replica
  id, metrics, API key, rate limit, body limit), pydantic validation, routing, ``StreamingResponse``;
* ``server``: the real server (``api.cli`` subprocess, uvicorn, loopback HTTP, httpx reading the
  whole body). Its own clocks are read from ``/metrics`` around each request (not timed): the
  handler's time (``zvs_request_seconds``, outermost middleware to the last body byte) and the time
  to the first chunk (``zvs_time_to_first_audio_seconds``), so ``client wall − handler`` is HTTP,
  uvicorn and the client's read loop.

Per round the differences telescope: ``server − bare = (service − bare) + (app − service) +
(handler − app) + (server − handler)``; the decomposition table shows each term's median over the
rounds, in ms. ``handler − app`` is the same app and engine code in another process: the price
of the process (its own ORT session and thread pool, CPU placement), not of any code on the path.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench_lib.stats import fmt, summary

from .harness import (
    KOKORO_SHORT,
    NoteOf,
    log,
    main_for,
    pcm_seconds,
    section,
    server,
    speech,
    text_of,
)

GOAL_SERVER_RATIO = 1.03
VOICE = "jm_kumo"
VARIANTS = ("bare", "service", "app", "server")

#: the decomposition: (key, stage, what it is)
STAGES = (
    ("engine", "engine (bare call)", "`KokoroEngine.synthesize`, harness process"),
    (
        "pipeline",
        "pipeline (service − engine inside, same call)",
        "plan, voice, slot, producer thread, encoder, metrics, usage",
    ),
    ("service_vs_bare", "service − bare (per round)", "the pipeline plus run-to-run engine noise"),
    ("app", "app − service", "middleware, validation, routing, `StreamingResponse`"),
    (
        "process",
        "server handler − app",
        "the same code in the server process (its own ORT session, CPU placement)",
    ),
    ("http", "server client wall − handler", "uvicorn, loopback HTTP, httpx read loop"),
    ("total", "server − bare (per round)", "all of the above"),
)


def rounds(variants: tuple[str, ...], n: int) -> Iterator[list[str]]:
    """``n`` orders of ``variants``: rotated by one each round (each variant first once per ``k``
    rounds), every other block of ``k`` rounds reversed, so over ``2k`` rounds each variant runs
    first and last equally often and after each other variant as often as before it."""
    k = len(variants)
    for i in range(n):
        order = list(variants[i % k :] + variants[: i % k])
        yield order[::-1] if (i // k) % 2 else order


_METRIC = re.compile(r"^(zvs_[a-z_]+)\{([^}]*)\} ([0-9.eE+-]+)$", re.M)


def metric_sums(text: str) -> dict[str, float]:
    """The server's own clocks for speech, from a ``/metrics`` scrape: handler seconds (sum over the
    speech route), time to first audio (sum), requests counted."""
    out = {"handler": 0.0, "ttfa": 0.0, "handled": 0.0}
    for name, labels, value in _METRIC.findall(text):
        if name == "zvs_request_seconds_sum" and 'route="/v1/audio/speech"' in labels:
            out["handler"] += float(value)
        elif name == "zvs_request_seconds_count" and 'route="/v1/audio/speech"' in labels:
            out["handled"] += float(value)
        elif name == "zvs_time_to_first_audio_seconds_sum":
            out["ttfa"] += float(value)
    return out


class EngineClock:
    """Wraps one engine object's ``synthesize`` so the time spent inside it (pulling chunks from
    its generator, in whichever thread) is added up; ``original`` is the unwrapped call."""

    def __init__(self, engine: Any) -> None:
        self.original: Callable[..., Iterator[Any]] = engine.synthesize
        self.inside = 0.0

        def timed(*args: Any, **kw: Any) -> Iterator[Any]:
            it = self.original(*args, **kw)
            while True:
                t = time.perf_counter()
                try:
                    chunk = next(it)
                except StopIteration:
                    self.inside += time.perf_counter() - t
                    return
                self.inside += time.perf_counter() - t
                yield chunk

        engine.synthesize = timed


class InProcess:
    """The app and its speech service in this process, built from the same settings as the server."""

    def __init__(self, cfg: argparse.Namespace, tmp: Path) -> None:
        import asyncio

        import httpx

        from api.app import create_app
        from api.settings import Settings

        settings = Settings(
            num_threads=cfg.threads,
            allow_downloads=False,
            cache_dir=cfg.cache_dir / "server",
            voices_dir=tmp / "voices",
            max_queue=32,
            preload_models=["kokoro"],
            log_level="warning",
        )
        self.app = create_app(settings)
        self.services = self.app.state.services
        self.engine = self.services.engines.loaded("kokoro")
        self.clock = EngineClock(self.engine)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://bench")
        # One event loop for the whole run, in its own thread, whose main task lives as long as it
        # (as uvicorn's does): anyio keeps its worker threads for the root task, so a loop per call
        # would start a fresh worker thread per request and bill it to the app.
        started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            started.set()
            await self._stop.wait()
            await self.client.aclose()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="bench-inproc", daemon=True)
        self._thread.start()
        started.wait()

    def _run(self, coro: Any) -> Any:
        import asyncio

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def service(self, job: Any) -> tuple[float, float]:
        """(wall s, engine s inside) of one request through :meth:`SpeechService.start`."""

        async def go() -> None:
            run = await self.services.speech.start(job)
            try:
                async for _ in run:
                    pass
            finally:
                await run.aclose()

        self.clock.inside = 0.0
        t = time.perf_counter()
        self._run(go())
        return time.perf_counter() - t, self.clock.inside

    def app_call(self, body: dict[str, Any]) -> tuple[float, float]:
        """(wall s, engine s inside) of one request through the whole ASGI app."""

        async def go() -> None:
            r = await self.client.post("/v1/audio/speech", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")

        self.clock.inside = 0.0
        t = time.perf_counter()
        self._run(go())
        return time.perf_counter() - t, self.clock.inside


#: py-spy categories, first match from the leaf of a sampled stack upwards: (label, path pieces)
PROFILE_CATEGORIES = (
    ("event loop, waiting (uvloop's C wait looks active to py-spy)", ("asyncio/runners.py",)),
    (
        "engine (kokoro_onnx, onnxruntime, phonemizer)",
        ("kokoro_onnx", "onnxruntime", "phonemizer", "espeak", "misaki", "api/engines/"),
    ),
    ("encoder (api/audio)", ("api/audio/",)),
    ("pipeline (api/synthesis)", ("api/synthesis/",)),
    ("our routes and middleware (api/)", ("/api/",)),
    ("metrics (prometheus_client)", ("prometheus_client",)),
    ("framework (FastAPI, Starlette, pydantic, anyio)", ("fastapi", "starlette", "pydantic", "anyio")),
    ("HTTP server (uvicorn, httptools)", ("uvicorn", "httptools", "h11", "uvloop")),
    (
        "event loop and thread hops (asyncio, threads)",
        ("asyncio", "concurrent/futures", "threading.py", "selectors"),
    ),
)


def classify(stack: str) -> str:
    """The category of one py-spy raw stack (``root;...;leaf``), by the leaf-most known frame."""
    for frame in reversed(stack.split(";")):
        for label, pieces in PROFILE_CATEGORIES:
            if any(p in frame for p in pieces):
                return label
    return "other"


def profile_summary(raw: str, rate: int, requests: int) -> dict[str, float]:
    """ms of sampled (non-idle) Python thread time per request, by category, from py-spy's raw
    (collapsed) output."""
    counts: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            key = classify(stack)
            counts[key] = counts.get(key, 0) + int(n)
    return {k: 1000.0 * v / rate / max(requests, 1) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


def profile_server(pid: int, cl: Any, body: dict[str, Any], requests: int, rate: int = 200) -> dict[str, Any]:
    """``requests`` server requests under ``py-spy record`` (not timed; after the timed rounds):
    where the server process's Python threads spend their time, ms per request. ORT's own pool
    threads are native and not sampled; the thread that calls ORT is (inside ``run``)."""
    import shutil
    import signal
    import subprocess
    import sys

    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        return {"status": "not run (py-spy not installed)"}
    with tempfile.TemporaryDirectory(prefix="bench-pyspy-") as tmp:
        out = Path(tmp) / "raw.txt"
        cmd = [
            spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            "--full-filenames",
            "-o",
            str(out),
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            time.sleep(1.0)  # attached
            if proc.poll() is not None:
                err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace").strip()
                return {"status": f"not run (py-spy: {err[-200:]})"}
            walls = [speech(cl, body)[0] for _ in range(requests)]
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not out.exists():
            return {"status": "not run (py-spy wrote nothing)"}
        by_cat = profile_summary(out.read_text(), rate, requests)
    return {
        "status": "ok",
        "requests": requests,
        "rate": rate,
        "wall_s": summary(walls),
        "ms_per_request": by_cat,
    }


def fixed_costs(
    inproc: InProcess, job: Any, body: dict[str, Any], chunks: list[str], n: int
) -> dict[str, Any]:
    """The code's own cost per request, without the engine's noise: the same requests with a
    stand-in engine that hands back the real audio at once (``n`` interleaved service/app calls,
    ms). Everything but the synthesis runs: plan, voice, slot, threads, encoder, middleware,
    validation, routing, the response."""
    from api.engines.base import PresetVoice, SynthesisOptions

    if n <= 0:
        return {}
    audio = list(inproc.clock.original(chunks, PresetVoice(VOICE), SynthesisOptions()))
    real = inproc.clock.original
    inproc.clock.original = lambda *a, **k: iter(audio[: len(a[0])])
    try:
        out: dict[str, list[float]] = {"service": [], "app": []}
        for i in range(n + 10):  # 10 warm-up pairs
            for name in ("service", "app") if i % 2 else ("app", "service"):
                wall = inproc.service(job)[0] if name == "service" else inproc.app_call(body)[0]
                if i >= 10:
                    out[name].append(1000.0 * wall)
    finally:
        inproc.clock.original = real
    res = {k: summary(v) for k, v in out.items()}
    res["app_minus_service"] = summary([a - b for a, b in zip(out["app"], out["service"], strict=True)])
    return res


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _format_row(
    cfg: argparse.Namespace, inproc: InProcess, cl: Any, pid: int, text: str, fmt_name: str
) -> dict[str, Any]:
    from api.engines.base import PresetVoice, SynthesisOptions
    from api.synthesis.request import SpeechJob
    from api.synthesis.service import split_for

    engine = inproc.engine
    chunks = split_for(engine, text, streaming=True)  # the server's own plan for a streamed request
    body = {"model": "kokoro", "input": text, "voice": VOICE, "response_format": fmt_name}
    job = SpeechJob(model="kokoro", text=text, voice=VOICE, response_format=fmt_name)

    def bare() -> dict[str, float]:
        c = time.process_time()
        t = time.perf_counter()
        for ch in inproc.clock.original(chunks, PresetVoice(VOICE), SynthesisOptions()):
            ch.samples.tobytes()
        return {"wall": time.perf_counter() - t, "cpu": time.process_time() - c}

    def service() -> dict[str, float]:
        c = time.process_time()
        wall, inside = inproc.service(job)
        return {"wall": wall, "inside": inside, "cpu": time.process_time() - c}

    def app() -> dict[str, float]:
        c = time.process_time()
        wall, inside = inproc.app_call(body)
        return {"wall": wall, "inside": inside, "cpu": time.process_time() - c}

    audio_s: list[float] = []

    def real() -> dict[str, float]:
        before = metric_sums(cl.get("/metrics").text)
        s, c = process_cpu(pid), time.process_time()
        wall, _, data = speech(cl, body)
        s, c = process_cpu(pid) - s, time.process_time() - c
        after = metric_sums(cl.get("/metrics").text)
        if fmt_name == "pcm":
            audio_s.append(pcm_seconds(data))
        ok = after["handled"] - before["handled"] == 1
        return {
            "wall": wall,
            "cpu": s,
            "client_cpu": c,
            "handler": after["handler"] - before["handler"] if ok else float("nan"),
            "ttfa": after["ttfa"] - before["ttfa"] if ok else float("nan"),
        }

    calls = {"bare": bare, "service": service, "app": app, "server": real}
    for _ in range(cfg.warmup):  # warm-up, not counted
        for f in calls.values():
            f()
    per: list[dict[str, dict[str, float]]] = []
    for i, order in enumerate(rounds(VARIANTS, cfg.repeats_server)):
        per.append({name: calls[name]() for name in order})
        walls_i = ", ".join(f"{k} {per[-1][k]['wall']:.3f}" for k in VARIANTS)
        log(f"server {fmt_name} round {i + 1}/{cfg.repeats_server}: {walls_i} s")

    def stage(f: Callable[[dict[str, dict[str, float]]], float]) -> dict[str, Any]:
        vals = [f(r) for r in per]
        return summary([v for v in vals if v == v])  # NaN: a scrape that saw another request

    fixed = fixed_costs(inproc, job, body, chunks, cfg.server_fixed)
    decomposition = {
        "engine": stage(lambda r: r["bare"]["wall"]),
        "pipeline": stage(lambda r: r["service"]["wall"] - r["service"]["inside"]),
        "service_vs_bare": stage(lambda r: r["service"]["wall"] - r["bare"]["wall"]),
        "app": stage(lambda r: r["app"]["wall"] - r["service"]["wall"]),
        "process": stage(lambda r: r["server"]["handler"] - r["app"]["wall"]),
        "http": stage(lambda r: r["server"]["wall"] - r["server"]["handler"]),
        "total": stage(lambda r: r["server"]["wall"] - r["bare"]["wall"]),
    }
    walls = {name: summary([r[name]["wall"] for r in per]) for name in VARIANTS}
    # CPU seconds per request (process-wide, every thread, ORT's spin-waiting included): the work,
    # which the machine's load changes far less than the wall time
    cpu = {name: summary([r[name]["cpu"] for r in per]) for name in VARIANTS}
    cpu["client"] = summary([r["server"]["client_cpu"] for r in per])
    cpu["server_minus_bare"] = summary([r["server"]["cpu"] - r["bare"]["cpu"] for r in per])
    ratios = {
        name: summary([r[name]["wall"] / r["bare"]["wall"] for r in per])
        for name in ("service", "app", "server")
    }
    server_handler = summary(
        [r["server"]["handler"] for r in per if r["server"]["handler"] == r["server"]["handler"]]
    )
    server_ttfa = summary([r["server"]["ttfa"] for r in per if r["server"]["ttfa"] == r["server"]["ttfa"]])
    bm, sm = walls["bare"], walls["server"]
    return {
        "backend": "kokoro",
        "format": fmt_name,
        "text_chars": len(text),
        "chunks": len(chunks),
        "audio_s": statistics.median(audio_s) if audio_s else None,
        "bare_s": bm,
        "server_s": sm,
        "walls": walls,
        "ratio_of_medians": sm["median"] / bm["median"],
        "pair_ratio": ratios["server"],
        "ratios": ratios,
        "server_handler_s": server_handler,
        "server_ttfa_s": server_ttfa,
        "decomposition": decomposition,
        "cpu_s": cpu,
        "fixed_ms": fixed,
        # CPU placement of the two processes (both inherit the shell's; nothing pins either)
        "affinity": {"harness": sorted(os.sched_getaffinity(0)), "server": sorted(os.sched_getaffinity(pid))},
    }


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    import httpx

    text = text_of(KOKORO_SHORT)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-inproc-") as tmp:
        inproc = InProcess(cfg, Path(tmp))
        try:
            with (
                server(cfg, {"PRELOAD_MODELS": '["kokoro"]'}) as srv,
                httpx.Client(base_url=srv.base_url, timeout=300) as cl,
            ):
                for fmt_name in cfg.server_formats:
                    rows.append(_format_row(cfg, inproc, cl, srv.proc.pid, text, fmt_name))
                    if cfg.server_profile > 0:
                        body = {"model": "kokoro", "input": text, "voice": VOICE, "response_format": fmt_name}
                        rows[-1]["profile"] = profile_server(srv.proc.pid, cl, body, cfg.server_profile)
                    r = rows[-1]
                    log(
                        f"server {fmt_name}: per-pair ratio {r['pair_ratio']['median']:.3f}, "
                        f"ratio of medians {r['ratio_of_medians']:.3f}"
                    )
        finally:
            inproc.close()
    return {"rows": rows, "repeats": cfg.repeats_server, "warmup": cfg.warmup}


def _ms(s: dict[str, Any] | None) -> str:
    return fmt(s, 1, scale=1000.0)


def render(res: dict[str, Any]) -> str:
    out = [
        "| backend | response_format | text chars | chunks | bare engine s | server s | ratio of medians "
        "| per-pair ratio median (min–max) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        out.append(
            f"| {r['backend']} | {r['format']} | {r['text_chars']} | {r['chunks']} | {fmt(r['bare_s'], 3)} "
            f"| {fmt(r['server_s'], 3)} | {r['ratio_of_medians']:.3f} | {fmt(r['pair_ratio'], 3)} |"
        )
    for r in res["rows"]:
        dec = r.get("decomposition")
        if not dec:
            continue
        ratios = r.get("ratios", {})
        out += [
            "",
            f"Where the time goes ({r['format']}, {r['pair_ratio']['n']} rounds; ms, median (min–max) of the "
            "per-round values; the variants' per-pair ratios to the bare call: "
            + ", ".join(f"{k} {fmt(v, 3)}" for k, v in ratios.items())
            + f"; the server's own clocks: handler {_ms(r.get('server_handler_s'))} ms, "
            f"time to first chunk {_ms(r.get('server_ttfa_s'))} ms):",
            "",
            "| stage | ms | what it is |",
            "|---|---:|---|",
        ]
        for key, name, what in STAGES:
            out.append(f"| {name} | {_ms(dec.get(key))} | {what} |")
        fixed = r.get("fixed_ms")
        if fixed:
            out += [
                "",
                f"The code's own cost per request (the same requests, {fixed['service']['n']} each, with a stand-in "
                "engine that returns the same audio at once; ms): service "
                f"{fmt(fixed['service'], 2)} (plan, voice, slot, producer thread, encoder, metrics), whole app "
                f"{fmt(fixed['app'], 2)} (adds middleware, validation, routing, the response, the in-process "
                f"client); app − service per pair {fmt(fixed['app_minus_service'], 2)}.",
            ]
        cpu = r.get("cpu_s")
        if cpu:
            out += [
                "",
                "CPU seconds per request (process-wide, every thread; ORT's spin-waiting counts): "
                f"bare {fmt(cpu['bare'], 3)}, service {fmt(cpu['service'], 3)}, app {fmt(cpu['app'], 3)} "
                f"(harness process); server process {fmt(cpu['server'], 3)} plus the client's "
                f"{fmt(cpu['client'], 3)}; server − bare per round {_ms(cpu['server_minus_bare'])} ms. "
                f"CPU affinity: harness {r.get('affinity', {}).get('harness', '?')}, "
                f"server {r.get('affinity', {}).get('server', '?')}.",
            ]
        prof = r.get("profile") or {}
        if prof.get("status") == "ok":
            out += [
                "",
                f"Inside the server process ({r['format']}, py-spy, {prof['requests']} requests after the timed rounds, "
                f"{prof['rate']} samples/s, non-idle Python threads; ORT's own pool threads are native and not "
                "sampled, the thread calling ORT is):",
                "",
                "| where (leaf-most known frame) | ms per request |",
                "|---|---:|",
            ]
            out += [f"| {k} | {v:.1f} |" for k, v in prof["ms_per_request"].items()]
        elif prof:
            out += ["", f"Server profile: {prof.get('status')}."]
    if any(r.get("decomposition") for r in res["rows"]):
        out += ["", FINDINGS.strip()]
    return "\n".join(out)


#: what the profiles of 2026-11-29 found (2 shared cores at load 9-12, so the wall times were 10-15×
#: a quiet machine's; the same-call and stand-in figures hold up under load, the cross-call ones do not)
FINDINGS = """Findings (2026-11-29, profiled at load 9-12 on the 2 shared cores):

* The code on the path costs about 2 ms per request: with a stand-in engine that returns the real
  audio at once, `SpeechService` took 1.0 ms (plan, voice, slot, producer thread, encoder, metrics,
  usage) and the whole app 2.1 ms (adds middleware, pydantic, routing, the response and the
  in-process client); the server's own clock puts HTTP, uvicorn and the client's read loop at
  1-3 ms (client wall − handler). That is 0.2-0.4 % of a 1.3 s request, against the 3 % goal.
* In the server process py-spy finds its Python threads in the engine (`Session.run`) for all but
  about 20 ms per request at this load (event loop and thread hops 33 ms, uvicorn 18 ms,
  prometheus_client and FastAPI/pydantic 3 ms each); the rest is uvloop's wait, which py-spy counts
  as active.
* Fixed here: FastAPI ran the two route accessors (`ServicesDep`, `CallerDep`, plain `def`) in its
  thread pool, two thread hops per request on every route (now `async def`); the WAV/PCM/FLAC int16
  conversion makes one buffer instead of three (bytes unchanged; 0.09 → 0.03 ms per 3 s chunk).
* Not a cost: the chunking (the bench speaks the server's own `split_for(streaming=True)` plan: 2
  chunks for this text since the short-lead split, 1 before), the thread count (both processes
  build the ORT session with the same code and `NUM_THREADS`: intra-op 2, inter-op 1, all graph
  optimisations), CPU placement (neither process is pinned; the row shows both affinities), the
  engine called from a worker thread as the server does (user CPU 6.07 and 6.41 s on the main
  thread against 6.25 and 6.21 s in a worker, no page faults either way), the encoder (under 0.1 ms
  per chunk) and the thread hops per chunk (inside the 1 ms of the pipeline).
* Open: the CPU seconds per request were higher through the pipeline than for the bare call in
  every one of the 4 rounds of 2026-11-29 (server process +0.10 to +0.37 s, median +0.22 s, about
  3 %; the in-process service alike), with no matching wall time. The code (1 ms with a stand-in
  engine) and the worker thread (above) do not explain it; the candidate left is the overlap the
  pipeline adds: while the next chunk is synthesized on both cores, the loop and an encoder thread
  wake for the previous chunk and pre-empt an ORT thread, and ORT's other thread spin-waits at the
  op's barrier. The quiet rerun's CPU line says whether it holds without load.
* So the 1.041 of 2026-11-22 (a ratio of medians over 10 unpaired calls; its per-pair median was
  1.015, spread 0.908-1.141) is not a cost of the code on the path (about 2 ms); the per-pair
  median (the goal's figure now) and the decomposition separate the engine's run-to-run variation,
  which the `server handler − app` row (the same code and engine in another process) carries.
"""


def named_cost(r: dict[str, Any]) -> str:
    """The stages that make up ``server − bare``, largest first, e.g. ``process 21 ms, http 3 ms``."""
    dec = r.get("decomposition") or {}
    parts = [
        (k, dec[k]["median"])
        for k in ("pipeline", "app", "process", "http")
        if dec.get(k, {}).get("median") is not None
    ]
    parts.sort(key=lambda kv: -abs(kv[1]))
    names = {k: n for k, n, _ in STAGES}
    return ", ".join(f"{names[k]} {1000 * v:+.1f} ms" for k, v in parts)


def goals(res: dict[str, Any], note_of: NoteOf) -> list[dict[str, Any]]:
    g = []
    for r in res.get("rows", []):
        if r["format"] not in ("wav", "pcm"):
            continue
        ratio = r["pair_ratio"]["median"]
        met = ratio <= GOAL_SERVER_RATIO
        cost = named_cost(r)
        fixed = r.get("fixed_ms") or {}
        if fixed.get("app", {}).get("median") is not None:
            cost += (
                f"; the code's own cost (stand-in engine): {fixed['app']['median']:.1f} ms per request for the "
                f"whole app, {fixed['service']['median']:.1f} ms of it the pipeline"
            )
        spread = f"per-pair ratios {fmt(r['pair_ratio'], 3)}, ratio of medians {r['ratio_of_medians']:.3f}"
        g.append(
            {
                "goal": f"server overhead ({r['format']}) ≤ {GOAL_SERVER_RATIO}× (per-pair median)",
                "measured": f"{ratio:.3f}×",
                "met": met,
                "reason": f"{spread}; the cost by stage: {cost}" if cost else spread,
            }
        )
    return g


def add_args(ap: Any) -> None:
    ap.add_argument("--server-formats", default="wav", help="e.g. wav,mp3")
    ap.add_argument(
        "--repeats-server", type=int, default=12, help="interleaved rounds for the server overhead"
    )
    ap.add_argument(
        "--server-fixed",
        type=int,
        default=100,
        help="requests with a stand-in (instant) engine for the code's own cost (0: none)",
    )
    ap.add_argument(
        "--server-profile",
        type=int,
        default=6,
        help="server requests profiled with py-spy after the timed rounds (0: none)",
    )


def configure(cfg: argparse.Namespace) -> None:
    if cfg.quick:
        cfg.server_formats = "wav"
        cfg.repeats_server = min(cfg.repeats_server, 4)
        cfg.server_profile = min(cfg.server_profile, 2)
        cfg.server_fixed = min(cfg.server_fixed, 40)
    cfg.server_formats = [v.strip() for v in cfg.server_formats.split(",") if v.strip()]


SECTION = section(
    name="server",
    order=20,
    title="Server overhead: `/v1/audio/speech` vs the bare engine call",
    note="The same text, voice and chunking (the server's streaming plan) spoken four ways in one "
    "interleaved loop (order rotated and reversed per round): the bare `KokoroEngine.synthesize` in the "
    "harness process; `SpeechService` in the harness process on the same engine object (its engine time "
    "clocked inside the call); the whole ASGI app in the harness process (`httpx.ASGITransport`); and the "
    "real server (subprocess, httpx, whole body read), whose own handler time and time to first chunk "
    "are read from `/metrics` around each request. Same thread count everywhere. Warm-up not counted. "
    "The goal is judged on the per-pair ratio (server / bare in the same round).",
    run=run,
    render=render,
    add_args=add_args,
    configure=configure,
    goals=goals,
)

if __name__ == "__main__":
    raise SystemExit(main_for(SECTION.name))
