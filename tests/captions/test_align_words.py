"""The mapping of recognised words onto known words (no Whisper here: synthetic heard words)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.captions.align import align_words, snap_to_sound, speech_bounds
from api.captions.words import TimedWord, split_words
from api.timing import Word
from api.transcribe.base import Transcript


def _heard(*items: tuple[str, float, float]) -> list[Word]:
    return [Word(s, e, t) for t, s, e in items]


def _check(got: list[TimedWord], text: str, lo: float, hi: float) -> None:
    assert [(w.word, w.char_start, w.char_end) for w in got] == [
        (w.text, w.char_start, w.char_end) for w in split_words(text)
    ]
    prev = lo
    for w in got:
        assert prev - 1e-9 <= w.start <= w.end <= hi + 1e-9
        prev = w.end


def test_exact_match_takes_heard_spans_and_offset() -> None:
    text = "Hello, big world!"
    heard = _heard(("Hello", 0.1, 0.4), ("big", 0.5, 0.7), ("world.", 0.8, 1.2))
    got = align_words(split_words(text, offset=100), heard, 1.5, offset=10.0)
    assert [x for w in got for x in (w.start, w.end)] == pytest.approx([10.1, 10.4, 10.5, 10.7, 10.8, 11.2])
    assert got[0].char_start == 100 and got[-1].char_end == 100 + len(text)


def test_missed_word_interpolated_between_neighbours() -> None:
    text = "one two three"
    heard = _heard(("one", 0.0, 0.3), ("three", 1.0, 1.3))
    got = align_words(split_words(text), heard, 2.0)
    _check(got, text, 0.0, 2.0)
    assert got[1].start == pytest.approx(0.3) and got[1].end == pytest.approx(1.0)


def test_misheard_and_invented_words() -> None:
    text = "the blorptik zanfrey sang"
    # Whisper hears other words, and one extra
    heard = _heard(
        ("the", 0.0, 0.2),
        ("blood", 0.3, 0.6),
        ("tick", 0.6, 0.8),
        ("sand", 0.9, 1.2),
        ("free", 1.2, 1.4),
        ("sang", 1.5, 1.9),
    )
    got = align_words(split_words(text), heard, 2.0)
    _check(got, text, 0.0, 2.0)
    assert got[1].start == pytest.approx(0.3)
    assert got[-1].start == pytest.approx(1.5) and got[-1].end == pytest.approx(1.9)
    assert 0.6 <= got[2].start < got[2].end <= 1.5


def test_merged_heard_word_is_split_by_length() -> None:
    text = "New York is big"
    heard = _heard(("NewYork", 0.0, 0.7), ("is", 0.8, 0.9), ("big", 1.0, 1.3))
    got = align_words(split_words(text), heard, 1.5)
    _check(got, text, 0.0, 1.5)
    assert got[0].start == pytest.approx(0.0) and got[1].end == pytest.approx(0.7 + 0.1, abs=0.11)
    assert got[0].end == pytest.approx(got[1].start)
    assert got[0].end - got[0].start > 0.1 and got[1].end - got[1].start > 0.1


def test_split_heard_words_make_one_span() -> None:
    text = "In 1990 it rained"
    heard = _heard(
        ("In", 0.0, 0.2), ("nineteen", 0.3, 0.7), ("ninety", 0.7, 1.0), ("it", 1.1, 1.2), ("rained", 1.3, 1.7)
    )
    got = align_words(split_words(text), heard, 2.0)
    _check(got, text, 0.0, 2.0)
    # "1990" matches neither token: it is placed over the unmatched heard words between its neighbours
    assert got[1].start == pytest.approx(0.3) and got[1].end == pytest.approx(1.0)


def test_nothing_heard_spreads_over_speech() -> None:
    text = "a few words here"
    got = align_words(split_words(text), [], 3.0, speech=(0.5, 2.5))
    _check(got, text, 0.5, 2.5)
    assert got[0].start == pytest.approx(0.5) and got[-1].end == pytest.approx(2.5)


def test_heard_times_past_the_audio_are_clipped() -> None:
    text = "late words"
    heard = _heard(("late", 0.5, 1.5), ("words", 1.6, 9.0))
    got = align_words(split_words(text), heard, 2.0)
    _check(got, text, 0.0, 2.0)
    assert got[-1].end == pytest.approx(2.0)


words_st = st.lists(
    st.sampled_from(["a", "bb", "see", "dee,", "eff.", "42", "—", "x-y"]), min_size=1, max_size=12
)


@settings(max_examples=60, deadline=None)
@given(words_st, words_st, st.lists(st.floats(0.0, 5.0), min_size=24, max_size=24))
def test_property_cover_order_bounds(known: list[str], said: list[str], times: list[float]) -> None:
    text = " ".join(known)
    ts = sorted(times)
    heard = [Word(ts[2 * i], ts[2 * i + 1], t) for i, t in enumerate(said)]
    got = align_words(split_words(text), heard, 4.0)
    _check(got, text, 0.0, 4.0)


def test_snap_cuts_long_silence_only() -> None:
    rate = 16000
    audio = np.zeros(rate * 2, dtype=np.float32)
    t = np.arange(rate // 2) / rate
    audio[rate // 2 : rate] = 0.5 * np.sin(2 * np.pi * 220 * t)  # sound from 0.5 s to 1.0 s
    lo, hi = speech_bounds(audio, rate)
    assert lo == pytest.approx(0.5, abs=0.011) and hi == pytest.approx(1.0, abs=0.011)
    from api.captions.align import loud_frames

    loud = loud_frames(audio, rate)
    words = [TimedWord("w", 0.2, 1.4, 0, 1), TimedWord("v", 0.47, 1.03, 2, 3)]
    snapped = snap_to_sound(words, loud)
    assert snapped[0].start == pytest.approx(0.5, abs=0.011) and snapped[0].end == pytest.approx(
        1.0, abs=0.011
    )
    assert (snapped[1].start, snapped[1].end) == (0.47, 1.03)  # 30 ms edges: kept


def test_long_input_beyond_the_alignment_cap() -> None:
    """Past the aligner's token cap words are still all placed, by character position."""
    n = 3000
    text = " ".join(f"w{i:04d}" for i in range(n))
    heard = [Word(i * 0.5, i * 0.5 + 0.4, f"w{i:04d}") for i in range(n)]
    got = align_words(split_words(text), heard, n * 0.5)
    _check(got, text, 0.0, n * 0.5)
    tail = got[-100:]
    assert all(abs(w.start - heard[n - 100 + i].start) < 1e-6 for i, w in enumerate(tail))


def test_align_audio_trivial_inputs_need_no_transcriber() -> None:
    from api.captions.align import align_audio

    class Refuses:
        name = "none"

        def load(self) -> None:  # pragma: no cover
            raise AssertionError

        def transcribe(
            self, samples: np.ndarray, sample_rate: int, language: str | None = None
        ) -> Transcript:
            raise AssertionError("not needed")

    assert align_audio(np.zeros(100, np.float32), 16000, [], Refuses()) == []
    got = align_audio(np.zeros(0, np.float32), 16000, split_words("a b", offset=4), Refuses(), offset=3.0)
    assert [(w.start, w.end, w.char_start) for w in got] == [(3.0, 3.0, 4), (3.0, 3.0, 6)]
