"""Voice reuse section: first vs second request with the same (newly) registered voice.

.venv/bin/python -m scripts.bench.voice_reuse
"""

from __future__ import annotations

import argparse
import io
import wave
from typing import Any

from bench_lib.assets import PROMPT_TEXT, ensure_assets, prompt_wav
from bench_lib.stats import fmt, summary

from .harness import ZV_SHORT, NoteOf, log, main_for, pcm_seconds, section, server, speech, text_of

GOAL_REUSE_GAIN = 0.25


def _wav_bytes(scale: float) -> bytes:
    import numpy as np

    from api.audio.decode import decode_audio

    x, sr = decode_audio(prompt_wav().read_bytes(), max_seconds=60, mono=True)
    pcm = np.clip(x[0] * scale, -1, 1)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((pcm * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def _timed_pairs(cfg: argparse.Namespace, cl: Any, text: str) -> tuple[list[float], list[float], float]:
    """``(first request s, second request s, audio s)`` over ``repeats`` newly registered voices."""

    def register(i: int) -> str:
        r = cl.post(
            "/v1/audio/voices",
            data={"name": f"bench-{i}", "transcript": PROMPT_TEXT},
            files={"file": ("prompt.wav", _wav_bytes(1.0 - 0.01 * i), "audio/wav")},
        )
        r.raise_for_status()
        return str(r.json()["id"])

    def body(vid: str) -> dict[str, Any]:
        return {"model": cfg.reuse_variant, "input": text, "voice": vid, "response_format": "pcm", "seed": 1}

    # warm-up: loads the model and runs the code paths once, with a voice not used below
    for _ in range(cfg.warmup):
        vid = register(99)
        speech(cl, body(vid))
        speech(cl, body(vid))
    first, second = [], []
    data = b""
    for i in range(cfg.repeats):
        vid = register(i)  # a new clip each time: its prompt is not cached yet
        t1, _, _ = speech(cl, body(vid))
        t2, _, data = speech(cl, body(vid))
        first.append(t1)
        second.append(t2)
    return first, second, pcm_seconds(data)


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    import httpx

    model_dir, vocos_dir = ensure_assets(cfg.cache_dir, cfg.reuse_size, (cfg.reuse_variant,))
    env = {
        "PRELOAD_MODELS": "[]",
        "ZIPVOICE_MODEL_DIR": str(model_dir),
        "VOCOS_MODEL_DIR": str(vocos_dir),
        "DEVICE": "cpu",
    }
    with server(cfg, env) as srv, httpx.Client(base_url=srv.base_url, timeout=900) as cl:
        first, second, audio_s = _timed_pairs(cfg, cl, text_of(ZV_SHORT))
    f, s = summary(first), summary(second)
    gains = summary([1 - b / a for a, b in zip(first, second, strict=True)])
    log(f"voice reuse: first {fmt(f, 3)} second {fmt(s, 3)}")
    row = {
        "backend": cfg.reuse_variant,
        "size": cfg.reuse_size,
        "audio_s": audio_s,
        "first_s": f,
        "second_s": s,
        "saved_s": f["median"] - s["median"],
        "gain": 1 - s["median"] / f["median"],
        "pair_gain": gains,
    }
    return {"rows": [row], "repeats": cfg.repeats, "warmup": cfg.warmup}


def render(res: dict[str, Any]) -> str:
    out = [
        "| backend | checkpoint | audio s | first request s | second request s | saved s | second faster by "
        "| per-pair gain median (min–max) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        out.append(
            f"| {r['backend']} | {r['size']} | {r['audio_s']:.2f} | {fmt(r['first_s'], 3)} "
            f"| {fmt(r['second_s'], 3)} | {r['saved_s']:.3f} | {r['gain']:.0%} | {fmt(r['pair_gain'], 2, 100)} % |"
        )
    return "\n".join(out)


def goals(res: dict[str, Any], note_of: NoteOf) -> list[dict[str, Any]]:
    g = []
    for r in res.get("rows", []):
        met = r["gain"] >= GOAL_REUSE_GAIN
        reason = ""
        if not met:
            reason = (
                f"the prompt cache saves {r['saved_s'] * 1000:.0f} ms (prompt preparation), small next to "
                f"the synthesis itself ({r['second_s']['median']:.2f} s)"
            )
        g.append(
            {
                "goal": f"voice reuse ({r['backend']}, {r['size']} checkpoint): second request ≥ 25 % faster",
                "measured": f"{r['gain']:.0%} faster ({r['saved_s'] * 1000:.0f} ms saved)",
                "met": met,
                "reason": reason,
            }
        )
    return g


def add_args(ap: Any) -> None:
    ap.add_argument("--reuse-variant", default="zipvoice_distill")
    ap.add_argument("--reuse-size", choices=["base", "tiny"], default="tiny")


SECTION = section(
    name="voice_reuse",
    order=40,
    title="Voice reuse: prompt cache",
    note="A newly registered voice (a distinct clip each repeat, so its prompt is not cached), then "
    "two identical requests with it. The model is loaded and warmed up with another voice "
    "first.",
    run=run,
    render=render,
    add_args=add_args,
    goals=goals,
)

if __name__ == "__main__":
    raise SystemExit(main_for(SECTION.name))
