"""Server overhead section: the bare engine call vs ``/v1/audio/speech``, interleaved.

.venv/bin/python -m scripts.bench.server --quick
"""

from __future__ import annotations

import argparse
from typing import Any

from bench_lib.stats import fmt, summary

from .harness import (
    KOKORO_SHORT,
    NoteOf,
    interleaved,
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


def _bare_engine(cfg: argparse.Namespace, text: str) -> tuple[Any, int]:
    """``(timed bare call, chunk count)``: Kokoro in this process, chunked as the server plans it."""
    import time

    from api.engines.base import PresetVoice, SynthesisOptions
    from api.engines.kokoro import KokoroEngine
    from api.settings import Settings
    from api.synthesis.service import split_for

    engine = KokoroEngine(
        Settings(num_threads=cfg.threads, allow_downloads=False, cache_dir=cfg.cache_dir / "server")
    )
    engine.load()
    # the server's own planner, as for a streamed request (first sentence alone)
    chunks = split_for(engine, text, streaming=True)

    def bare() -> float:
        t = time.perf_counter()
        for c in engine.synthesize(chunks, PresetVoice(VOICE), SynthesisOptions()):
            c.samples.tobytes()
        return time.perf_counter() - t

    return bare, len(chunks)


def _format_row(
    cfg: argparse.Namespace, cl: Any, bare: Any, n_chunks: int, text: str, fmt_name: str
) -> dict[str, Any]:
    body = {"model": "kokoro", "input": text, "voice": VOICE, "response_format": fmt_name}
    for _ in range(cfg.warmup):  # warm-up, not counted
        bare()
        speech(cl, body)
    b_times, s_times, ratios = [], [], []
    audio_s = None
    for b, (s, _, data) in interleaved(bare, lambda: speech(cl, body), cfg.repeats_server):
        b_times.append(b)
        s_times.append(s)
        ratios.append(s / b)
        if fmt_name == "pcm":
            audio_s = pcm_seconds(data)
    bm, sm = summary(b_times), summary(s_times)
    return {
        "backend": "kokoro",
        "format": fmt_name,
        "text_chars": len(text),
        "chunks": n_chunks,
        "audio_s": audio_s,
        "bare_s": bm,
        "server_s": sm,
        "ratio_of_medians": sm["median"] / bm["median"],
        "pair_ratio": summary(ratios),
    }


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    import httpx

    text = text_of(KOKORO_SHORT)
    bare, n_chunks = _bare_engine(cfg, text)
    rows = []
    with (
        server(cfg, {"PRELOAD_MODELS": '["kokoro"]'}) as srv,
        httpx.Client(base_url=srv.base_url, timeout=300) as cl,
    ):
        for fmt_name in cfg.server_formats:
            rows.append(_format_row(cfg, cl, bare, n_chunks, text, fmt_name))
            log(f"server {fmt_name}: ratio {rows[-1]['ratio_of_medians']:.3f}")
    return {"rows": rows, "repeats": cfg.repeats_server, "warmup": cfg.warmup}


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
    return "\n".join(out)


def goals(res: dict[str, Any], note_of: NoteOf) -> list[dict[str, Any]]:
    g = []
    for r in res.get("rows", []):
        if r["format"] in ("wav", "pcm"):
            ratio = r["ratio_of_medians"]
            g.append(
                {
                    "goal": f"server overhead ({r['format']}) ≤ {GOAL_SERVER_RATIO}×",
                    "measured": f"{ratio:.3f}×",
                    "met": ratio <= GOAL_SERVER_RATIO,
                    "reason": ""
                    if ratio <= GOAL_SERVER_RATIO
                    else f"per-pair ratios {fmt(r['pair_ratio'], 3)}: the spread under this load is wider than the "
                    "3 % goal, so the overhead is not resolved; no cause isolated",
                }
            )
    return g


def add_args(ap: Any) -> None:
    ap.add_argument("--server-formats", default="wav", help="e.g. wav,mp3")
    ap.add_argument("--repeats-server", type=int, default=4, help="interleaved pairs for the server overhead")


def configure(cfg: argparse.Namespace) -> None:
    if cfg.quick:
        cfg.server_formats = "wav"
    cfg.server_formats = [v.strip() for v in cfg.server_formats.split(",") if v.strip()]


SECTION = section(
    name="server",
    order=20,
    title="Server overhead: `/v1/audio/speech` vs the bare engine call",
    note="The same text, voice and chunking (the server's streaming plan, first sentence alone) "
    "through the real server (subprocess, httpx, whole body read) and through "
    "`KokoroEngine.synthesize` in the harness process, interleaved A/B then B/A so load "
    "drift hits both. Both use the same thread count. Warm-up not counted.",
    run=run,
    render=render,
    add_args=add_args,
    configure=configure,
    goals=goals,
)

if __name__ == "__main__":
    raise SystemExit(main_for(SECTION.name))
