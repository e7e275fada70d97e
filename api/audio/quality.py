"""Reference-clip quality analysis: measurements, a 0–1 score and actionable warnings.

Warning codes are stable (clients may switch on them): ``silent``, ``too_short``,
``too_long``, ``clipping``, ``noisy``, ``too_quiet``, ``too_much_silence``,
``low_dynamic_range``, ``low_sample_rate``, ``transcript_mismatch``.

The score is the product of per-aspect scores in [0, 1] (listed in ``components``), so
one bad aspect is enough to pull it down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import quote

import numpy as np

from api.audio.clip import activity_threshold_db, db, frame_power, measure_loudness, to_mono
from api.text.wer import cer, wer


class WarningCode(StrEnum):
    SILENT = "silent"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    CLIPPING = "clipping"
    NOISY = "noisy"
    TOO_QUIET = "too_quiet"
    TOO_MUCH_SILENCE = "too_much_silence"
    LOW_DYNAMIC_RANGE = "low_dynamic_range"
    LOW_SAMPLE_RATE = "low_sample_rate"
    TRANSCRIPT_MISMATCH = "transcript_mismatch"


@dataclass(frozen=True)
class QualityThresholds:
    """Where warnings fire."""

    min_seconds: float = 2.0
    max_seconds: float = 10.0
    min_snr_db: float = 20.0
    max_clipping_ratio: float = 0.001
    max_silence_ratio: float = 0.45
    min_active_rms_dbfs: float = -35.0
    min_dynamic_range_db: float = 15.0
    min_sample_rate: int = 22050
    #: transcript_mismatch fires when both the WER and the CER exceed their limits
    max_transcript_wer: float = 0.35
    max_transcript_cer: float = 0.2


@dataclass(frozen=True)
class QualityWarning:
    code: WarningCode
    message: str
    severity: Literal["warning", "error"] = "warning"

    def to_dict(self) -> dict[str, str]:
        return {"code": str(self.code), "message": self.message, "severity": self.severity}


@dataclass(frozen=True)
class TranscriptCheck:
    """A given transcript compared with Whisper's (normalised WER and CER)."""

    wer: float
    cer: float
    mismatch: bool


def check_transcript(
    given: str, whisper: str, thresholds: QualityThresholds | None = None
) -> TranscriptCheck:
    """Compare a user transcript with Whisper's; mismatch when both WER and CER are over the limits.

    Bounded whatever the lengths: :mod:`api.text.wer` compares at most ``MAX_COMPARE_TOKENS``
    words (WER) and characters (CER) of each side, in memory linear in them.
    """
    t = thresholds or QualityThresholds()
    w, c = wer(given, whisper), cer(given, whisper)
    return TranscriptCheck(w, c, w > t.max_transcript_wer and c > t.max_transcript_cer)


def _excerpt(text: str, limit: int = 300) -> str:
    """``text`` shortened to ``limit`` characters for a warning message."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class QualityReport:
    """Measurements of a clip, its score and warnings."""

    score: float
    duration: float
    sample_rate: int
    channels: int
    rms_dbfs: float
    active_rms_dbfs: float
    peak_dbfs: float
    clipping_ratio: float
    silence_ratio: float
    leading_silence_s: float
    trailing_silence_s: float
    snr_db: float
    dynamic_range_db: float
    warnings: tuple[QualityWarning, ...] = ()
    components: dict[str, float] = field(default_factory=dict)
    transcript: str | None = None
    transcript_source: Literal["given", "whisper"] | None = None
    whisper_transcript: str | None = None
    transcript_wer: float | None = None
    transcript_cer: float | None = None

    @property
    def codes(self) -> list[str]:
        return [str(w.code) for w in self.warnings]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (floats rounded to 4 decimals)."""

        def r(v: float | None) -> float | None:
            return None if v is None else round(float(v), 4)

        return {
            "score": r(self.score),
            "duration": r(self.duration),
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "rms_dbfs": r(self.rms_dbfs),
            "active_rms_dbfs": r(self.active_rms_dbfs),
            "peak_dbfs": r(self.peak_dbfs),
            "clipping_ratio": r(self.clipping_ratio),
            "silence_ratio": r(self.silence_ratio),
            "leading_silence_s": r(self.leading_silence_s),
            "trailing_silence_s": r(self.trailing_silence_s),
            "snr_db": r(self.snr_db),
            "dynamic_range_db": r(self.dynamic_range_db),
            "warnings": [w.to_dict() for w in self.warnings],
            "components": {k: r(v) for k, v in self.components.items()},
            "transcript": self.transcript,
            "transcript_source": self.transcript_source,
            "whisper_transcript": self.whisper_transcript,
            "transcript_wer": r(self.transcript_wer),
            "transcript_cer": r(self.transcript_cer),
        }

    def headers(self) -> dict[str, str]:
        """See :func:`quality_headers`."""
        return quality_headers(self)


def quality_headers(report: QualityReport) -> dict[str, str]:
    """Response headers: score (2 decimals), warning codes, transcript (percent-encoded) and its source."""
    out = {
        "X-Voice-Quality-Score": f"{report.score:.2f}",
        "X-Voice-Quality-Warnings": ",".join(report.codes),
    }
    if report.transcript is not None:
        out["X-Prompt-Transcript"] = quote(report.transcript, safe="")
        if report.transcript_source:
            out["X-Prompt-Transcript-Source"] = report.transcript_source
    return out


def _ramp(v: float, lo: float, hi: float, at_lo: float, at_hi: float) -> float:
    """Linear from ``at_lo`` (v ≤ lo) to ``at_hi`` (v ≥ hi)."""
    if v <= lo:
        return at_lo
    if v >= hi:
        return at_hi
    return at_lo + (at_hi - at_lo) * (v - lo) / (hi - lo)


def clipping_ratio(x: np.ndarray) -> float:
    """Share of samples on flat tops at the peak (runs of ≥ 2 samples within 0.1 % of a peak ≥ 0.25)."""
    if x.size < 2:
        return 0.0
    a = np.abs(x)
    level = max(0.25, float(a.max()) * 0.999)
    hot = a >= level
    run = hot[1:] & hot[:-1]
    on_run = np.zeros_like(hot)
    on_run[1:] |= run
    on_run[:-1] |= run
    return float(on_run.sum()) / x.size


def estimate_snr_db(x: np.ndarray, sr: int, *, cap_db: float = 80.0) -> float:
    """SNR from 10 ms frame powers: speech = 95th percentile, noise = 5th (capped at ``cap_db``)."""
    p = frame_power(x, sr, frame_s=0.01, hop_s=0.01)
    if p.size == 0:
        return 0.0
    noise = float(np.percentile(p, 5))
    speech = float(np.percentile(p, 95))
    if speech <= 1e-10:
        return 0.0
    snr = float(db(max(speech - noise, 1e-12) / max(noise, 1e-12)))
    return min(snr, cap_db)


def analyze_clip(
    samples: np.ndarray,
    sample_rate: int,
    *,
    transcript: str | None = None,
    whisper_transcript: str | None = None,
    thresholds: QualityThresholds | None = None,
) -> QualityReport:
    """Measure a clip (any channels/rate) and score it for zero-shot cloning.

    ``transcript``: the user's text (source ``given``); ``whisper_transcript``: Whisper's.
    With both, they are compared (``transcript_mismatch``); with only Whisper's, it becomes
    the transcript (source ``whisper``).
    """
    t = thresholds or QualityThresholds()
    arr = np.asarray(samples, dtype=np.float32)
    channels = 1 if arr.ndim == 1 else int(arr.shape[0])
    x = to_mono(arr)
    sr = int(sample_rate)
    duration = x.size / sr if sr > 0 else 0.0
    loud = measure_loudness(x, sr)

    fp = frame_power(x, sr)
    fdb = db(fp)
    if fdb.size:
        active = fdb > activity_threshold_db(fdb)
        silence = 1.0 - float(active.mean())
        idx = np.flatnonzero(active)
        lead = float(idx[0]) * 0.01 if idx.size else duration
        trail = max(0.0, duration - (float(idx[-1]) * 0.01 + 0.02)) if idx.size else duration
        dyn = float(np.percentile(fdb, 95) - np.percentile(fdb, 5))
    else:
        silence, lead, trail, dyn = 1.0, 0.0, 0.0, 0.0
    snr = estimate_snr_db(x, sr)
    clip = clipping_ratio(x)
    is_silent = x.size == 0 or loud.peak_dbfs < -60.0

    warnings: list[QualityWarning] = []
    comp: dict[str, float] = {}

    def warn(code: WarningCode, message: str, severity: Literal["warning", "error"] = "warning") -> None:
        warnings.append(QualityWarning(code, message, severity))

    if is_silent:
        warn(WarningCode.SILENT, "The clip is silent: record or upload speech.", "error")
        comp["sound"] = 0.0
    comp["duration"] = (
        _ramp(duration, 0.5, t.min_seconds, 0.2, 0.8)
        if duration < t.min_seconds
        else _ramp(duration, t.min_seconds, 3.0, 0.8, 1.0)
        if duration < 3.0
        else _ramp(duration, t.max_seconds, 2 * t.max_seconds, 1.0, 0.85)
    )
    if duration < t.min_seconds:
        warn(
            WarningCode.TOO_SHORT,
            f"The clip is {duration:.1f} s long; use at least {t.min_seconds:.0f} s (3–10 s of speech works best).",
        )
    elif duration > t.max_seconds:
        warn(
            WarningCode.TOO_LONG,
            f"The clip is {duration:.1f} s long; it will be cut at a pause to at most {t.max_seconds:.0f} s.",
        )
    comp["clipping"] = _ramp(clip, t.max_clipping_ratio / 2, 0.02, 1.0, 0.3)
    if clip > t.max_clipping_ratio:
        warn(
            WarningCode.CLIPPING,
            f"{clip:.1%} of the samples are clipped; record with lower input gain (peaks below -3 dBFS).",
        )
    if not is_silent:
        comp["snr"] = _ramp(snr, 5.0, 30.0, 0.2, 1.0)
        if snr < t.min_snr_db:
            warn(
                WarningCode.NOISY,
                f"Background noise is high (SNR about {snr:.0f} dB); record in a quieter room or denoise.",
            )
        comp["loudness"] = _ramp(loud.active_rms_dbfs, -50.0, t.min_active_rms_dbfs + 5.0, 0.4, 1.0)
        if loud.active_rms_dbfs < t.min_active_rms_dbfs:
            warn(
                WarningCode.TOO_QUIET,
                f"Speech is quiet ({loud.active_rms_dbfs:.0f} dBFS RMS); raise the level by about "
                f"{loud.gain_db:.0f} dB.",
            )
        comp["silence"] = _ramp(silence, t.max_silence_ratio - 0.1, 0.9, 1.0, 0.3)
        if silence > t.max_silence_ratio:
            warn(
                WarningCode.TOO_MUCH_SILENCE,
                f"{silence:.0%} of the clip is silence; cut long pauses so that it is mostly speech.",
            )
        comp["dynamic_range"] = _ramp(dyn, 8.0, t.min_dynamic_range_db + 5.0, 0.7, 1.0)
        if dyn < t.min_dynamic_range_db:
            warn(
                WarningCode.LOW_DYNAMIC_RANGE,
                f"Little level difference between speech and pauses ({dyn:.0f} dB): heavy compression "
                "or constant background sound.",
            )
    comp["sample_rate"] = _ramp(float(sr), 8000.0, float(t.min_sample_rate), 0.5, 1.0)
    if sr < t.min_sample_rate:
        warn(
            WarningCode.LOW_SAMPLE_RATE,
            f"Sample rate {sr} Hz is low; clones sound duller. Use 24 kHz or higher.",
        )

    source: Literal["given", "whisper"] | None = None
    t_wer = t_cer = None
    if transcript is not None:
        source = "given"
        if whisper_transcript is not None:
            chk = check_transcript(transcript, whisper_transcript, t)
            t_wer, t_cer = chk.wer, chk.cer
            comp["transcript"] = _ramp(chk.cer, t.max_transcript_cer / 2, 0.6, 1.0, 0.4)
            if chk.mismatch:
                warn(
                    WarningCode.TRANSCRIPT_MISMATCH,
                    f"The transcript does not match the speech (WER {chk.wer:.0%} against Whisper's "
                    f"“{_excerpt(whisper_transcript)}”); fix it or leave it empty to use Whisper's.",
                )
    elif whisper_transcript is not None:
        transcript, source = whisper_transcript, "whisper"

    score = float(np.prod(list(comp.values()))) if comp else 0.0
    return QualityReport(
        score=max(0.0, min(1.0, score)),
        duration=duration,
        sample_rate=sr,
        channels=channels,
        rms_dbfs=loud.rms_dbfs,
        active_rms_dbfs=loud.active_rms_dbfs,
        peak_dbfs=loud.peak_dbfs,
        clipping_ratio=clip,
        silence_ratio=silence,
        leading_silence_s=lead,
        trailing_silence_s=trail,
        snr_db=snr,
        dynamic_range_db=dyn,
        warnings=tuple(warnings),
        components=comp,
        transcript=transcript,
        transcript_source=source,
        whisper_transcript=whisper_transcript,
        transcript_wer=t_wer,
        transcript_cer=t_cer,
    )
