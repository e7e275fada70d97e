"""Benchmark Whisper auto-transcription: model load time and compute seconds per audio second.

Prints a markdown table. The benchmark harness imports :func:`bench_transcribe` and
:func:`to_markdown`; nothing here is a test.

    .venv/bin/python scripts/bench_transcribe.py [--models tiny.en base] [--audio FILE] [--repeats 3]

Audio defaults to the golden ``prompt.wav`` (``ZIPVOICE_REFERENCE_DIR`` or
``../shared/fixtures/zipvoice-reference``) and a ~10 s clip built from it (3× with 1 s pauses).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.audio.decode import decode_audio
from api.text.wer import wer
from api.transcribe.faster_whisper import FasterWhisperTranscriber

PROMPT_TEXT = "The quick brown fox jumps over the lazy dog."


@dataclass(frozen=True)
class BenchRow:
    model: str
    source: str
    device: str
    compute_type: str
    threads: int
    load_s: float  # resolve (incl. one-time assembly of packaged parts) + model construction
    clip: str
    audio_s: float
    compute_s: float  # median over repeats, after one warm-up run
    rtf: float  # compute seconds per audio second
    language: str | None
    language_probability: float | None
    wer: float | None
    text: str


def default_clips() -> list[tuple[str, np.ndarray, int, str | None]]:
    """(name, mono samples, rate, reference text) for the golden prompt and a 3× version."""
    root = Path(
        os.environ.get(
            "ZIPVOICE_REFERENCE_DIR",
            Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "zipvoice-reference",
        )
    )
    x, sr = decode_audio((root / "audio" / "prompt.wav").read_bytes(), max_seconds=60, mono=True)
    mono = x[0]
    pause = np.zeros(sr, np.float32)
    long = np.concatenate([mono, pause, mono, pause, mono])
    return [("prompt.wav", mono, sr, PROMPT_TEXT), ("prompt×3", long, sr, " ".join([PROMPT_TEXT] * 3))]


def bench_transcribe(
    models: tuple[str, ...] = ("tiny.en", "base"),
    clips: list[tuple[str, np.ndarray, int, str | None]] | None = None,
    *,
    repeats: int = 3,
    device: str = "auto",
    threads: int = 0,
    cache_dir: Path | None = None,
    allow_downloads: bool = False,
    word_timestamps: bool = True,
) -> list[BenchRow]:
    """Load each model once (timed), then time transcription of each clip (median of ``repeats``)."""
    clips = clips if clips is not None else default_clips()
    cache = cache_dir or Path(tempfile.mkdtemp(prefix="bench-whisper-"))
    rows: list[BenchRow] = []
    for name in models:
        t = FasterWhisperTranscriber(
            name,
            cache_dir=cache,
            allow_downloads=allow_downloads,
            device=device,
            cpu_threads=threads,
            word_timestamps=word_timestamps,
        )
        t.load()
        assert t.load_seconds is not None and t.resolved is not None
        for clip_name, samples, sr, ref in clips:
            result = t.transcribe(samples, sr)  # warm-up
            times = []
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                result = t.transcribe(samples, sr)
                times.append(time.perf_counter() - t0)
            audio_s = samples.shape[-1] / sr
            compute = statistics.median(times)
            rows.append(
                BenchRow(
                    model=name,
                    source=t.resolved.source,
                    device=t.device,
                    compute_type=str(t.compute_type),
                    threads=t.cpu_threads,
                    load_s=t.load_seconds,
                    clip=clip_name,
                    audio_s=audio_s,
                    compute_s=compute,
                    rtf=compute / audio_s,
                    language=result.language,
                    language_probability=result.language_probability,
                    wer=wer(ref, result.text) if ref else None,
                    text=result.text,
                )
            )
    return rows


def to_markdown(rows: list[BenchRow]) -> str:
    """The rows as a markdown table."""
    out = [
        "| model | source | device | compute | threads | load s | clip | audio s | compute s | s/audio s "
        "| lang (p) | WER |",
        "|---|---|---|---|---:|---:|---|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lang = (
            f"{r.language} ({r.language_probability:.2f})"
            if r.language_probability is not None
            else str(r.language)
        )
        w = f"{r.wer:.0%}" if r.wer is not None else "–"
        out.append(
            f"| {r.model} | {r.source} | {r.device} | {r.compute_type} | {r.threads} | {r.load_s:.2f} | {r.clip} "
            f"| {r.audio_s:.2f} | {r.compute_s:.3f} | {r.rtf:.3f} | {lang} | {w} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    ap.add_argument("--audio", type=Path, help="any audio file (decoded with PyAV); default: golden prompt")
    ap.add_argument("--text", help="reference text of --audio (for WER)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="CTranslate2 CPU threads (0: cores, at most 8)")
    ap.add_argument("--cache-dir", type=Path)
    ap.add_argument("--allow-downloads", action="store_true")
    ap.add_argument("--no-word-timestamps", action="store_true")
    args = ap.parse_args(argv)
    clips = None
    if args.audio:
        x, sr = decode_audio(args.audio.read_bytes(), max_seconds=600, mono=True)
        clips = [(args.audio.name, x[0], sr, args.text)]
    rows = bench_transcribe(
        tuple(args.models),
        clips,
        repeats=args.repeats,
        device=args.device,
        threads=args.threads,
        cache_dir=args.cache_dir,
        allow_downloads=args.allow_downloads,
        word_timestamps=not args.no_word_timestamps,
    )
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
