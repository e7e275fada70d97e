"""Reference-clip clean-up for zero-shot cloning.

:func:`prepare_reference` turns any decoded clip into what the cloning engine wants:
mono, 24 kHz, leading/trailing silence trimmed, at most ``max_seconds`` long (cut at a
pause), with the transcript cut at the same point when Whisper timestamps are given,
plus a loudness measurement and a gain hint (or applied normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import soxr

from api.text.wer import align, normalize_words
from api.timing import Segment, Word

TARGET_SAMPLE_RATE = 24000
TARGET_LOUDNESS_DBFS = -20.0
PEAK_CEILING_DBFS = -1.0
_EPS = 1e-10
_FRAME_S = 0.02
_HOP_S = 0.01

CutMethod = Literal["none", "pause", "segment", "word"]


def to_mono(samples: np.ndarray) -> np.ndarray:
    """``(channels, n)`` or ``(n,)`` → float32 ``(n,)`` (channel mean)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"audio must be (n,) or (channels, n), got shape {x.shape}")
    return x[0] if x.shape[0] == 1 else x.mean(axis=0, dtype=np.float32)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono float32 audio with soxr (HQ)."""
    x = np.asarray(x, dtype=np.float32)
    if sr_in == sr_out or x.size == 0:
        return x
    return np.asarray(soxr.resample(x, sr_in, sr_out, quality="HQ"), dtype=np.float32)


def db(power: np.ndarray | float) -> np.ndarray:
    """Power → dB (floored at -100 dB)."""
    return np.asarray(10.0 * np.log10(np.maximum(power, _EPS)), dtype=np.float64)


def frame_power(x: np.ndarray, sr: int, frame_s: float = _FRAME_S, hop_s: float = _HOP_S) -> np.ndarray:
    """Mean power of frames of ``frame_s`` every ``hop_s`` seconds (frame i starts at i*hop)."""
    frame, hop = max(1, round(frame_s * sr)), max(1, round(hop_s * sr))
    if x.size == 0:
        return np.zeros(0)
    n_frames = max(1, 1 + (x.size - 1) // hop)
    c = np.concatenate([[0.0], np.cumsum(np.asarray(x, dtype=np.float64) ** 2)])
    starts = np.arange(n_frames) * hop
    ends = np.minimum(starts + frame, x.size)
    return np.asarray((c[ends] - c[starts]) / np.maximum(ends - starts, 1))


def activity_threshold_db(
    frame_db: np.ndarray, *, below_max_db: float = 40.0, floor_db: float = -75.0
) -> float:
    """Frames above this level count as sound: ≥ 40 dB under the loudest, 4 dB over the noise floor."""
    if frame_db.size == 0:
        return floor_db
    noise = float(np.percentile(frame_db, 5))
    return max(float(frame_db.max()) - below_max_db, noise + 4.0, floor_db)


def trim_silence(
    x: np.ndarray, sr: int, *, pad_s: float = 0.15, threshold_db: float | None = None
) -> tuple[int, int]:
    """Sample range ``[start, end)`` without leading/trailing silence, padded by ``pad_s``."""
    fdb = db(frame_power(x, sr))
    if fdb.size == 0:
        return 0, 0
    thr = activity_threshold_db(fdb) if threshold_db is None else threshold_db
    active = np.flatnonzero(fdb > thr)
    if active.size == 0:
        return 0, 0
    hop, frame, pad = round(_HOP_S * sr), round(_FRAME_S * sr), round(pad_s * sr)
    start = max(0, int(active[0]) * hop - pad)
    end = min(x.size, int(active[-1]) * hop + frame + pad)
    return start, end


def _smoothed_db(x: np.ndarray, sr: int, win_s: float = 0.2) -> np.ndarray:
    """Power over ``win_s`` windows centred every 10 ms, in dB; index i ↔ time i*10 ms."""
    p = frame_power(x, sr, frame_s=_HOP_S, hop_s=_HOP_S)
    k = max(1, round(win_s / _HOP_S))
    kernel = np.ones(k) / k
    return db(np.convolve(p, kernel, mode="same"))


def _best_in(sdb: np.ndarray, lo_s: float, hi_s: float) -> tuple[float, float] | None:
    """Latest time in [lo, hi] whose level is within 1 dB of the quietest there: (time, dB)."""
    lo, hi = max(0, int(np.ceil(lo_s / _HOP_S))), min(sdb.size - 1, int(hi_s / _HOP_S))
    if hi < lo:
        return None
    window = sdb[lo : hi + 1]
    quiet = np.flatnonzero(window <= window.min() + 1.0)
    i = lo + int(quiet[-1])
    return i * _HOP_S, float(sdb[i])


def find_pause(x: np.ndarray, sr: int, limit_s: float, search_s: float | None = None) -> float:
    """Time (s) of the quietest moment in ``[limit - search, limit]`` (prefers later on ties)."""
    search = search_s if search_s is not None else min(5.0, limit_s / 2)
    return _pause_time(_smoothed_db(x, sr), limit_s, search)


def _pause_time(sdb: np.ndarray, limit_s: float, search: float) -> float:
    found = _best_in(sdb, max(0.0, limit_s - search), limit_s)
    return found[0] if found else limit_s


@dataclass(frozen=True)
class CutPlan:
    """Where to cut and how many transcript units (words or segments) stay before it."""

    cut_s: float
    method: CutMethod
    kept_units: int | None  # None: no timestamps, transcript cannot be cut
    aligned: bool
    at_pause: bool = True  # the level at the cut is below the speech-activity threshold


def _units(segments: Sequence[Segment]) -> tuple[list[Word], bool]:
    """Words when every segment has them, else segments as pseudo-words."""
    if segments and all(s.words for s in segments):
        return [w for s in segments for w in s.words], True
    return [Word(s.start, s.end, s.text) for s in segments], False


def plan_cut(
    x: np.ndarray,
    sr: int,
    max_seconds: float,
    segments: Sequence[Segment] | None = None,
    *,
    search_s: float | None = None,
) -> CutPlan:
    """Choose a cut ≤ ``max_seconds``: a quiet boundary between Whisper units when given, else a pause."""
    search = search_s if search_s is not None else min(5.0, max_seconds / 2)
    sdb = _smoothed_db(x, sr)
    silence_db = activity_threshold_db(db(frame_power(x, sr)))
    plan = _plan_cut(x, sr, sdb, max_seconds, search, segments)
    i = min(max(0, round(plan.cut_s / _HOP_S)), sdb.size - 1)
    return replace(plan, at_pause=bool(sdb[i] <= silence_db)) if sdb.size else plan


def _plan_cut(
    x: np.ndarray,
    sr: int,
    sdb: np.ndarray,
    max_seconds: float,
    search: float,
    segments: Sequence[Segment] | None,
) -> CutPlan:
    if segments:
        units, are_words = _units(segments)
        slack = 0.2 if are_words else 0.4
        candidates: list[tuple[float, float, int]] = []  # (time, dB, kept units)
        for k, u in enumerate(units):
            nxt = units[k + 1].start if k + 1 < len(units) else x.size / sr
            lo, hi = u.end - slack, min(max(nxt, u.end) + slack, max_seconds)
            found = _best_in(sdb, max(lo, 0.5), hi)
            if found is not None:
                candidates.append((found[0], found[1], k + 1))
        in_region = [c for c in candidates if c[0] >= max_seconds - search]
        chosen: tuple[float, float, int] | None = None
        if in_region:
            quietest = min(c[1] for c in in_region)
            chosen = max((c for c in in_region if c[1] <= quietest + 3.0), key=lambda c: c[0])
        elif candidates:
            chosen = max(candidates, key=lambda c: c[0])
        if chosen is not None:
            return CutPlan(chosen[0], "word" if are_words else "segment", chosen[2], True)
        cut = _pause_time(sdb, max_seconds, search)
        kept = sum(1 for u in units if (u.start + u.end) / 2 < cut)
        return CutPlan(cut, "pause", kept, False)
    return CutPlan(_pause_time(sdb, max_seconds, search), "pause", None, False)


def uncovered_speech_s(x: np.ndarray, sr: int, segments: Sequence[Segment], slack_s: float = 0.3) -> float:
    """Seconds of active audio outside every Whisper unit (± ``slack_s``): speech Whisper missed."""
    fp = frame_power(x, sr)
    if fp.size == 0:
        return 0.0
    fdb = db(fp)
    active = fdb > activity_threshold_db(fdb)
    covered = np.zeros_like(active)
    units, _ = _units(segments)
    for u in units:
        lo, hi = max(0, int((u.start - slack_s) / _HOP_S)), int(np.ceil((u.end + slack_s) / _HOP_S))
        covered[lo : hi + 1] = True
    return float(np.sum(active & ~covered)) * _HOP_S


def _shift(segments: Sequence[Segment], offset: float) -> tuple[Segment, ...]:
    def w(word: Word) -> Word:
        return replace(word, start=word.start - offset, end=word.end - offset)

    return tuple(
        replace(s, start=s.start - offset, end=s.end - offset, words=tuple(w(x) for x in s.words))
        for s in segments
    )


def fit_segments(segments: Sequence[Segment], duration: float) -> tuple[Segment, ...]:
    """Segments (and their words) clipped into ``[0, duration]``; those left empty are dropped.

    Times must already be relative to the kept audio (see :func:`_shift`). Whisper's boundaries
    overlap pauses and differ between machines, so a kept segment may start before the trimmed
    start or end after the cut; this makes every span lie inside the clip, in the input order.
    """
    duration = max(0.0, float(duration))

    def clip(t: float) -> float:
        return min(max(float(t), 0.0), duration)

    out: list[Segment] = []
    for s in segments:
        start, end = clip(s.start), clip(s.end)
        if end <= start:
            continue
        words = []
        for w in s.words:
            ws, we = max(clip(w.start), start), min(clip(w.end), end)
            if we > ws:
                words.append(replace(w, start=ws, end=we))
        out.append(replace(s, start=start, end=end, words=tuple(words)))
    return tuple(out)


def _keep_units(segments: Sequence[Segment], n: int, are_words: bool) -> tuple[Segment, ...]:
    if not are_words:
        return tuple(segments[:n])
    out: list[Segment] = []
    left = n
    for s in segments:
        if left <= 0:
            break
        words = s.words[:left]
        left -= len(words)
        text = " ".join(w.text for w in words) if len(words) < len(s.words) else s.text
        out.append(Segment(s.start, words[-1].end if len(words) < len(s.words) else s.end, text, words))
    return tuple(out)


def cut_given_transcript(given: str, whisper_words: Sequence[str], kept: int) -> str:
    """Cut a user transcript where Whisper's first ``kept`` words end (word alignment)."""
    tokens = given.split()
    ref: list[str] = []
    owner: list[int] = []
    for t_i, tok in enumerate(tokens):
        for w in normalize_words(tok):
            ref.append(w)
            owner.append(t_i)
    hyp: list[str] = []
    hyp_owner: list[int] = []
    for u_i, text in enumerate(whisper_words):
        for w in normalize_words(text):
            hyp.append(w)
            hyp_owner.append(u_i)
    # each reference word is kept when it aligns to a kept Whisper word; a word Whisper
    # missed (deletion) follows the next aligned word (or the previous one at the end)
    status: list[bool | None] = [None] * len(ref)
    for i, j in align(ref, hyp):
        if i is not None and j is not None:
            status[i] = hyp_owner[j] < kept
    following: bool | None = None
    for i in range(len(ref) - 1, -1, -1):
        if status[i] is None:
            status[i] = following
        following = status[i]
    n_kept = 0
    for i, st in enumerate(status):
        if st is None:  # nothing aligned after: follow the previous word
            st = status[i - 1] if i > 0 else False
            status[i] = st
        if not st:
            break
        n_kept = i + 1
    if n_kept == 0:
        return ""
    return " ".join(tokens[: owner[n_kept - 1] + 1])


@dataclass(frozen=True)
class Loudness:
    """Level of a clip: RMS over the whole clip and over its active frames, peak, gain hint."""

    rms_dbfs: float
    active_rms_dbfs: float
    peak_dbfs: float
    gain_db: float  # gain that brings active RMS to the target without the peak passing the ceiling


def measure_loudness(
    x: np.ndarray,
    sr: int,
    *,
    target_dbfs: float = TARGET_LOUDNESS_DBFS,
    ceiling_dbfs: float = PEAK_CEILING_DBFS,
) -> Loudness:
    """RMS/peak dBFS (full-scale sine = 0 dB peak, -3 dB RMS) and a normalisation gain hint."""
    if x.size == 0:
        return Loudness(-100.0, -100.0, -100.0, 0.0)
    rms = float(db(float(np.mean(np.asarray(x, dtype=np.float64) ** 2))))
    peak = float(db(float(np.max(np.abs(x))) ** 2))
    fp = frame_power(x, sr)
    fdb = db(fp)
    active = fp[fdb > activity_threshold_db(fdb)]
    active_rms = float(db(float(active.mean()))) if active.size else rms
    gain = min(target_dbfs - active_rms, ceiling_dbfs - peak)
    return Loudness(rms, active_rms, peak, gain)


def apply_gain(x: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by ``gain_db`` and clip to [-1, 1]."""
    return np.clip(x * np.float32(10 ** (gain_db / 20)), -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class PreparedClip:
    """A cleaned-up reference clip and what was done to it."""

    samples: np.ndarray  # float32 (1, n)
    sample_rate: int
    transcript: str | None
    #: False when the transcript may not match the kept audio (cut without timestamps, or
    #: Whisper's timestamps miss speech): re-transcribe the kept audio
    transcript_aligned: bool
    #: kept Whisper segments, re-based to the kept audio and clipped into [0, duration]
    segments: tuple[Segment, ...]
    original_duration: float
    start_s: float  # where the kept audio starts in the original clip
    end_s: float
    cut: bool
    cut_method: CutMethod
    loudness: Loudness
    normalized: bool
    cut_at_pause: bool = True  # the cut fell where the level is below the speech threshold
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.samples.shape[-1] / self.sample_rate


def prepare_reference(
    samples: np.ndarray,
    sample_rate: int,
    *,
    transcript: str | None = None,
    segments: Sequence[Segment] | None = None,
    max_seconds: float = 10.0,
    target_rate: int = TARGET_SAMPLE_RATE,
    trim: bool = True,
    normalize: bool = False,
) -> PreparedClip:
    """Mono → resample → trim → cut at a pause (≤ ``max_seconds``) → loudness.

    ``segments`` are Whisper segments of the same input clip (seconds from its start).
    With them, the transcript is cut where the audio is: the given ``transcript`` by word
    alignment with Whisper's words, or, when none is given, Whisper's own kept text.
    """
    x = resample(to_mono(samples), sample_rate, target_rate)
    sr = target_rate
    original = x.size / sr
    notes: list[str] = []
    start, end = trim_silence(x, sr) if trim else (0, x.size)
    if end <= start:
        start, end = 0, x.size
        notes.append("no sound found; nothing trimmed")
    x = x[start:end]
    offset = start / sr
    segs = _shift(segments, offset) if segments else ()
    all_segs = segs
    text = (
        transcript if transcript is not None else (" ".join(s.text for s in segs).strip() if segs else None)
    )
    aligned = True
    cut, at_pause = False, True
    method: CutMethod = "none"
    if x.size / sr > max_seconds:
        plan = plan_cut(x, sr, max_seconds, segs or None)
        cut, method, at_pause = True, plan.method, plan.at_pause
        x = x[: round(plan.cut_s * sr)]
        _, tail = trim_silence(x, sr)
        if tail > 0:
            x = x[:tail]
        if plan.kept_units is None:
            aligned = text is None
            if text is not None:
                notes.append("audio cut without timestamps: transcript not cut, re-transcribe the kept audio")
        else:
            units, are_words = _units(segs)
            kept_segs = _keep_units(segs, plan.kept_units, are_words)
            aligned = plan.aligned
            if transcript is not None:
                text = cut_given_transcript(transcript, [u.text for u in units], plan.kept_units)
            else:
                text = " ".join(s.text for s in kept_segs).strip()
            segs = kept_segs
            if not plan.aligned:
                notes.append("no pause between transcript units before the limit: cut is approximate")
            elif not plan.at_pause:
                notes.append("cut between Whisper units where there is no pause: check the transcript")
    if segments and (cut or transcript is None) and uncovered_speech_s(x, sr, all_segs) > 0.5:
        aligned = False
        notes.append("Whisper's timestamps miss some speech: transcript may be incomplete, re-transcribe")
    segs = fit_segments(segs, x.size / sr)
    loud = measure_loudness(x, sr)
    normalized = False
    if normalize and x.size and abs(loud.gain_db) > 0.5:
        x = apply_gain(x, loud.gain_db)
        normalized = True
        loud = measure_loudness(x, sr)
    return PreparedClip(
        samples=x.reshape(1, -1).astype(np.float32, copy=False),
        sample_rate=sr,
        transcript=text,
        transcript_aligned=aligned,
        segments=segs,
        original_duration=original,
        start_s=offset,
        end_s=offset + x.size / sr,
        cut=cut,
        cut_method=method,
        loudness=loud,
        normalized=normalized,
        cut_at_pause=at_pause,
        notes=notes,
    )
