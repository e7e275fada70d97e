"""Transcription section: Whisper (faster-whisper) via ``scripts/bench_transcribe.py``.

.venv/bin/python -m scripts.bench.transcription --whisper-models tiny.en
"""

from __future__ import annotations

import argparse
from typing import Any

from bench_lib.stats import fmt, summary

from .harness import log, main_for, section


def _rows_of(model: str, samples: list[Any]) -> list[dict[str, Any]]:
    """One row per clip: the spread of each figure over the repeats."""
    rows = []
    for j, base in enumerate(samples[0]):
        per = [s[j] for s in samples]
        rows.append(
            {
                "model": model,
                "source": base.source,
                "device": base.device,
                "compute_type": base.compute_type,
                "threads": base.threads,
                "clip": base.clip,
                "audio_s": base.audio_s,
                "load_s": summary([p.load_s for p in per]),
                "compute_s": summary([p.compute_s for p in per]),
                "s_per_audio_s": summary([p.rtf for p in per]),
                "wer": base.wer,
                "text": base.text,
            }
        )
    return rows


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    from bench_transcribe import bench_transcribe, to_markdown

    wcache = cfg.cache_dir / "whisper"
    rows: list[dict[str, Any]] = []
    md_rows = []
    for model in cfg.whisper_models:
        # bench_transcribe loads the model (timed) and warms it up before timing; calling it once per
        # repeat gives a spread for the load time too. The first call (one-time assembly) is not counted.
        samples: list[Any] = []
        for i in range(cfg.repeats + 1):
            got = bench_transcribe((model,), repeats=1, threads=cfg.threads, cache_dir=wcache)
            if i > 0:
                samples.append(got)
        md_rows.extend(samples[-1])
        rows += _rows_of(model, samples)
        log(f"transcription {model} done")
    return {"rows": rows, "repeats": cfg.repeats, "last_run_table": to_markdown(md_rows)}


def render(res: dict[str, Any]) -> str:
    out = [
        "| model | source | device | compute | threads | clip | audio s | load s | compute s | s per audio s "
        "| WER |",
        "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        w = "–" if r["wer"] is None else f"{r['wer']:.0%}"
        out.append(
            f"| {r['model']} | {r['source']} | {r['device']} | {r['compute_type']} | {r['threads']} "
            f"| {r['clip']} | {r['audio_s']:.2f} | {fmt(r['load_s'])} | {fmt(r['compute_s'], 3)} "
            f"| {fmt(r['s_per_audio_s'], 3)} | {w} |"
        )
    return "\n".join(out)


def add_args(ap: Any) -> None:
    ap.add_argument("--whisper-models", default="tiny.en,base")


def configure(cfg: argparse.Namespace) -> None:
    if cfg.quick:
        cfg.whisper_models = "tiny.en"
    cfg.whisper_models = [m.strip() for m in cfg.whisper_models.split(",") if m.strip()]


SECTION = section(
    name="transcription",
    order=60,
    title="Transcription: Whisper (faster-whisper)",
    note="Via `scripts/bench_transcribe.py` (`bench_transcribe`), called once per repeat (each "
    "call: load, timed; one warm-up transcription, not counted; one timed transcription); "
    "the first call (one-time assembly of the packaged model) is not counted.",
    run=run,
    render=render,
    add_args=add_args,
    configure=configure,
)

if __name__ == "__main__":
    raise SystemExit(main_for(SECTION.name))
