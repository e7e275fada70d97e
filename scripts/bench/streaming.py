"""Streaming section: time to first audio for a one-minute text vs the first sentence alone.

.venv/bin/python -m scripts.bench.streaming --quick
"""

from __future__ import annotations

import argparse
from typing import Any

from bench_lib.stats import fmt, summary

from .harness import NoteOf, log, main_for, pcm_seconds, section, server, speech, text_of

GOAL_TTFA_RATIO = 1.3


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from api.text.split import split_sentences

    text = text_of(cfg.streaming_chars)
    first_sentence = split_sentences(text)[0]
    rows = []
    with (
        server(cfg, {"PRELOAD_MODELS": '["kokoro"]'}) as srv,
        httpx.Client(base_url=srv.base_url, timeout=600) as cl,
    ):
        long_body = {"model": "kokoro", "input": text, "voice": "jm_kumo", "response_format": "pcm"}
        first_body = {**long_body, "input": first_sentence}
        for _ in range(cfg.warmup):
            speech(cl, first_body)
        ttfa, total, alone = [], [], []
        audio_s = 0.0
        for (t, f, data), (a, _, _) in _pairs(cl, long_body, first_body, cfg.repeats):
            total.append(t)
            ttfa.append(f or t)
            audio_s = pcm_seconds(data)
            alone.append(a)
        ttfa_s, alone_s = summary(ttfa), summary(alone)
        rows.append(
            {
                "backend": "kokoro",
                "text_chars": len(text),
                "first_sentence_chars": len(first_sentence),
                "audio_s": audio_s,
                "ttfa_s": ttfa_s,
                "total_s": summary(total),
                "first_alone_s": alone_s,
                "ttfa_ratio": ttfa_s["median"] / alone_s["median"],
            }
        )
        log(f"streaming: ttfa {fmt(ttfa_s, 3)} alone {fmt(alone_s, 3)}")
    return {"rows": rows, "repeats": cfg.repeats, "warmup": cfg.warmup, "first_sentence": first_sentence}


def _pairs(cl: Any, long_body: dict[str, Any], first_body: dict[str, Any], repeats: int) -> Any:
    """The long request then the first sentence alone, ``repeats`` times (always in that order)."""
    for _ in range(repeats):
        yield speech(cl, long_body), speech(cl, first_body)


def render(res: dict[str, Any]) -> str:
    out = [
        "| backend | text chars | audio s | time to first audio s | total s | first sentence alone s "
        "| TTFA / first sentence alone |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        out.append(
            f"| {r['backend']} | {r['text_chars']} | {r['audio_s']:.1f} | {fmt(r['ttfa_s'], 3)} "
            f"| {fmt(r['total_s'], 2)} | {fmt(r['first_alone_s'], 3)} | {r['ttfa_ratio']:.2f} |"
        )
    return "\n".join(out)


def goals(res: dict[str, Any], note_of: NoteOf) -> list[dict[str, Any]]:
    g = []
    for r in res.get("rows", []):
        ratio = r["ttfa_ratio"]
        g.append(
            {
                "goal": f"streaming ({r['backend']}) first audio ≤ {GOAL_TTFA_RATIO}× first sentence alone",
                "measured": f"{ratio:.2f}×",
                "met": ratio <= GOAL_TTFA_RATIO,
                "reason": "",
            }
        )
    return g


def add_args(ap: Any) -> None:
    ap.add_argument(
        "--streaming-chars", type=int, default=900, help="streaming text length (~1 min of audio)"
    )


def configure(cfg: argparse.Namespace) -> None:
    if cfg.quick:
        cfg.streaming_chars = 300


SECTION = section(
    name="streaming",
    order=30,
    title="Streaming: time to first audio",
    note="A one-minute text streamed as raw PCM; time to first audio = first non-empty body chunk. "
    "'First sentence alone' = a whole request for just the first sentence. Interleaved; "
    "warm-up not counted.",
    run=run,
    render=render,
    add_args=add_args,
    configure=configure,
    goals=goals,
)

if __name__ == "__main__":
    raise SystemExit(main_for(SECTION.name))
