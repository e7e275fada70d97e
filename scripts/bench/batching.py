"""Batching section: cross-request batching of ZipVoice sampler calls, on vs off, at 1/2/4/8 clients.

.venv/bin/python -m scripts.bench.batching --quick --merge   # one round per side and client count
.venv/bin/python -m scripts.bench.batching --merge           # --repeats rounds, 2 requests per client

Two real servers run side by side on the harness's full-size random-weight ``zipvoice_distill``
(PyTorch engine, ``ENGINE=torch``, ``DEVICE`` from ``--batching-device``: auto is CUDA on a GPU
machine), with the same settings (``MAX_CONCURRENCY`` = the largest client count, ``MAX_QUEUE`` 32,
``NUM_THREADS``) except ``BATCH_MAX_SIZE`` (1 = off, the largest client count = on) and
``BATCH_WINDOW_MS``. For each client count the two servers take turns (on/off, then off/on for the
next round, ...): N asyncio httpx clients each send ``--batching-per-client`` requests back to back,
short texts of different lengths (the same texts and seeds on both sides), whole PCM responses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from bench_lib.assets import ensure_assets
from bench_lib.stats import fmt, percentile, summary

from .harness import PASSAGE, NoteOf, loadavg, log, main_for, num, pcm_seconds, section, server, speech

VARIANT = "zipvoice_distill"
STEPS = 8
GOAL_GPU_SPEEDUP = 3.0


def short_texts(count: int = 8, max_chars: int = 48) -> list[str]:
    """Short texts of different lengths: the passage's sentences cut after a word to at most
    ``max_chars`` characters, every other one halved."""
    out: list[str] = []
    for i, sentence in enumerate(s.strip() for s in PASSAGE.split(". ") if s.strip()):
        limit = max_chars if i % 2 == 0 else max_chars // 2
        words, text = sentence.rstrip(".").split(), ""
        for w in words:
            if len(text) + len(w) + 1 > limit:
                break
            text = f"{text} {w}".strip()
        out.append(text.rstrip(",;:") + ".")
        if len(out) == count:
            break
    return out


def _body(texts: list[str], client: int, k: int) -> dict[str, Any]:
    from .streaming import VOICE

    return {
        "model": VARIANT,
        "input": texts[(client + k) % len(texts)],
        "voice": VOICE,
        "response_format": "pcm",
        "seed": 1000 * client + k,
        "num_steps": STEPS,
    }


async def _round(base_url: str, clients: int, per_client: int, texts: list[str]) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    audio = 0.0

    async def client(cl: httpx.AsyncClient, i: int) -> None:
        nonlocal audio
        for k in range(per_client):
            t = time.perf_counter()
            r = await cl.post("/v1/audio/speech", json=_body(texts, i, k))
            latencies.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
            audio += pcm_seconds(r.content)

    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=1800, limits=limits) as cl:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(cl, i) for i in range(clients)))
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "latencies": latencies, "audio_s": audio, "req_per_s": len(latencies) / wall}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far, all its threads (``/proc``)."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _timed_round(pid: int, base_url: str, clients: int, per_client: int, texts: list[str]) -> dict[str, Any]:
    """One round, plus the server's CPU seconds per request (load-independent, unlike wall time)."""
    before = cpu_seconds(pid)
    out = asyncio.run(_round(base_url, clients, per_client, texts))
    after = cpu_seconds(pid)
    if before is not None and after is not None:
        out["cpu_s_per_request"] = (after - before) / len(out["latencies"])
    return out


def _side(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    lat = [x for r in rounds for x in r["latencies"]]
    cpu = [r["cpu_s_per_request"] for r in rounds if "cpu_s_per_request" in r]
    return {
        "cpu_s_per_request": summary(cpu) if cpu else None,
        "req_per_s": summary([r["req_per_s"] for r in rounds]),
        "audio_s_per_s": summary([r["audio_s"] / r["wall_s"] for r in rounds]),
        "p50_s": percentile(lat, 50),
        "p95_s": percentile(lat, 95),
        "requests": len(lat),
    }


def _env(cfg: argparse.Namespace, batch: int) -> dict[str, str]:
    model_root, vocos = ensure_assets(cfg.cache_dir, cfg.batching_size, (VARIANT,))
    top = max(cfg.batching_clients)
    return {
        "ENGINE": "torch",
        "DEVICE": cfg.batching_device,
        "ZIPVOICE_MODEL_DIR": str(model_root),
        "VOCOS_MODEL_DIR": str(vocos),
        "PRELOAD_MODELS": f'["{VARIANT}"]',
        "MAX_CONCURRENCY": str(top),
        "MAX_QUEUE": "32",
        "BATCH_MAX_SIZE": str(batch),
        "BATCH_WINDOW_MS": str(cfg.batching_window_ms),
        "BATCH_WORKERS": str(cfg.batching_workers),
    }


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from .streaming import _register_voice

    texts = short_texts()
    top = max(cfg.batching_clients)
    sides = {"on": top, "off": 1}
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}
        pids: dict[str, int] = {}
        runtime = None
        for name, batch in sides.items():
            srv = stack.enter_context(server(cfg, _env(cfg, batch)))
            urls[name] = srv.base_url
            pids[name] = srv.proc.pid
            with httpx.Client(base_url=srv.base_url, timeout=1800) as cl:
                _register_voice(cl)
                for k in range(max(1, cfg.warmup)):  # model load, prompt preparation: not counted
                    speech(cl, _body(texts, 0, k))
                models = {m["id"]: m for m in cl.get("/v1/models").json().get("data", [])}
                runtime = models.get(VARIANT, {}).get("runtime")
        for n in cfg.batching_clients:
            rounds: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
            for r in range(cfg.batching_rounds):
                order = ["on", "off"] if (r + cfg.batching_clients.index(n)) % 2 == 0 else ["off", "on"]
                for name in order:
                    rounds[name].append(
                        _timed_round(pids[name], urls[name], n, cfg.batching_per_client, texts)
                    )
            on, off = _side(rounds["on"]), _side(rounds["off"])
            ratios = [
                a["req_per_s"] / b["req_per_s"] for a, b in zip(rounds["on"], rounds["off"], strict=True)
            ]
            cpu_ratio = None
            if on["cpu_s_per_request"] and off["cpu_s_per_request"]:
                cpu_ratio = off["cpu_s_per_request"]["median"] / on["cpu_s_per_request"]["median"]
            rows.append(
                {
                    "clients": n,
                    "on": on,
                    "off": off,
                    "ratio": on["req_per_s"]["median"] / off["req_per_s"]["median"],
                    "cpu_ratio": cpu_ratio,
                    "round_ratios": summary(ratios),
                    "loadavg": loadavg(),
                }
            )
            log(
                f"batching {n} clients: on {fmt(on['req_per_s'], 3)} req/s, off {fmt(off['req_per_s'], 3)} "
                f"req/s, ratio {rows[-1]['ratio']:.2f}; CPU s/request on {fmt(on['cpu_s_per_request'], 2)}, "
                f"off {fmt(off['cpu_s_per_request'], 2)}"
            )
    return {
        "rows": rows,
        "runtime": runtime,
        "device": cfg.batching_device,
        "size": cfg.batching_size,
        "steps": STEPS,
        "texts": texts,
        "per_client": cfg.batching_per_client,
        "repeats": cfg.batching_rounds,
        "window_ms": cfg.batching_window_ms,
        "max_concurrency": top,
        "batch_max_size": top,
        "batch_workers": cfg.batching_workers,
    }


def _workers(setting: int) -> str:
    return f"{setting}" if setting else "0 (auto: 2 on CPU, 1 on CUDA)"


def _cell(x: dict[str, Any] | None) -> str:
    return "–" if not x else fmt(x, 2)


def render(res: dict[str, Any]) -> str:
    out = [
        f"{VARIANT}, {res['steps']} steps, {res.get('size')} checkpoint, runtime {res.get('runtime') or '–'}; "
        f"MAX_CONCURRENCY {res['max_concurrency']} on both servers; on: BATCH_MAX_SIZE {res['batch_max_size']}, "
        f"BATCH_WINDOW_MS {res['window_ms']}, BATCH_WORKERS {_workers(res.get('batch_workers', 0))}; "
        f"off: BATCH_MAX_SIZE 1; {res['per_client']} request(s) per "
        f"client per round, {res['repeats']} round(s) per side.",
        "",
        "| clients | requests/s on | requests/s off | on / off | per-round ratio | server CPU s per request on "
        "| off | CPU efficiency on / off | p50 s on | p50 s off | p95 s on | p95 s off | audio s per s on "
        "| audio s per s off |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        on, off = r["on"], r["off"]
        out.append(
            f"| {r['clients']} | {fmt(on['req_per_s'], 3)} | {fmt(off['req_per_s'], 3)} | {r['ratio']:.2f} "
            f"| {fmt(r['round_ratios'], 2)} | {_cell(on.get('cpu_s_per_request'))} "
            f"| {_cell(off.get('cpu_s_per_request'))} | {num(r.get('cpu_ratio'))} | {on['p50_s']:.2f} | {off['p50_s']:.2f} | {on['p95_s']:.2f} "
            f"| {off['p95_s']:.2f} | {fmt(on['audio_s_per_s'], 2)} | {fmt(off['audio_s_per_s'], 2)} |"
        )
    if res.get("texts"):
        out += ["", "Texts: " + " / ".join(f"“{t}”" for t in res["texts"])]
    return "\n".join(out)


def goals(res: dict[str, Any], note_of: NoteOf) -> list[dict[str, Any]]:
    rows = {r["clients"]: r for r in res.get("rows", [])}
    on_gpu = "cuda" in str(res.get("runtime") or "")
    cpu_goal = "batching (CPU): on ≥ off throughput at every client count (1/2/4/8)"
    gpu_goal = f"batching (GPU): on ≥ {GOAL_GPU_SPEEDUP:g}× batching-off throughput at 8 clients"
    if not rows:
        return [
            {"goal": cpu_goal, "measured": "not run", "met": None, "reason": "not measured"},
            {"goal": gpu_goal, "measured": "not measured", "met": None, "reason": "not measured"},
        ]
    measured = ", ".join(f"{n}: {r['ratio']:.2f}×" for n, r in rows.items())
    if on_gpu:
        top = rows.get(8)
        cpu = {"goal": cpu_goal, "measured": "not measured", "met": None, "reason": "this run was on a GPU"}
        gpu = {
            "goal": gpu_goal,
            "measured": measured,
            "met": None if top is None else top["ratio"] >= GOAL_GPU_SPEEDUP,
            "reason": "" if top is None or top["ratio"] >= GOAL_GPU_SPEEDUP else note_of(res).split(";")[0],
        }
        return [cpu, gpu]
    worst = min(rows.values(), key=lambda r: r["ratio"])
    met = all(r["ratio"] >= 1.0 for r in rows.values())
    reason = ""
    if not met:
        cpu_ratios = ", ".join(f"{n}: {r['cpu_ratio']:.2f}×" for n, r in rows.items() if r.get("cpu_ratio"))
        reason = (
            f"{worst['clients']} clients: {worst['ratio']:.2f}× (per-round ratios "
            f"{fmt(worst['round_ratios'], 2)}); {note_of(res).split(';')[0]}"
            + (f"; server CPU seconds per request, off / on: {cpu_ratios}" if cpu_ratios else "")
        )
    gpu = {
        "goal": gpu_goal,
        "measured": "not measured",
        "met": None,
        "reason": "no GPU on this machine (the code runs on CUDA unchanged: DEVICE=auto, the engine's device)",
    }
    return [{"goal": cpu_goal, "measured": measured, "met": met, "reason": reason}, gpu]


def add_args(ap: Any) -> None:
    ap.add_argument("--batching-clients", default="1,2,4,8", help="client counts, each on and off")
    ap.add_argument("--batching-per-client", type=int, default=2, help="requests per client per round")
    ap.add_argument(
        "--batching-rounds", type=int, default=None, help="rounds per side and client count (--repeats)"
    )
    ap.add_argument("--batching-window-ms", type=float, default=20.0, help="BATCH_WINDOW_MS of the on server")
    ap.add_argument("--batching-device", default="auto", help="DEVICE of both servers (auto: CUDA on a GPU)")
    ap.add_argument(
        "--batching-workers", type=int, default=0, help="BATCH_WORKERS of both servers (0: the engine's auto)"
    )
    ap.add_argument(
        "--batching-size",
        choices=["base", "tiny"],
        default="base",
        help="ZipVoice checkpoint (random weights)",
    )


def configure(cfg: argparse.Namespace) -> None:
    if isinstance(cfg.batching_clients, str):
        cfg.batching_clients = [int(c) for c in cfg.batching_clients.split(",") if c.strip()]
    if cfg.batching_rounds is None:
        cfg.batching_rounds = 1 if cfg.quick else cfg.repeats
    if cfg.quick:
        cfg.batching_per_client = 1


SECTION = section(
    name="batching",
    order=55,
    title="Batching: cross-request ZipVoice batches, on vs off",
    note="Two real servers (PyTorch engine, full-size random-weight zipvoice_distill, 8 steps) with the same "
    "settings except BATCH_MAX_SIZE; N asyncio httpx clients send short texts (different lengths, the same "
    "texts and seeds on both sides) back to back; requests/s per round (median and spread over rounds), "
    "p50/p95 latency over all requests; the sides alternate per round and client count; warm-up not counted. "
    "On a busy shared machine the off side (N request threads, each with its own intra-op team) gets a larger "
    "share of the CPU than the on side (one batch at a time), which favours off; compare on a quiet machine "
    "(the load average after each client count is in the JSON).",
    run=run,
    render=render,
    add_args=add_args,
    configure=configure,
    goals=goals,
)

if __name__ == "__main__":
    raise SystemExit(main_for(SECTION.name))
