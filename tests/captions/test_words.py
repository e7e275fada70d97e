"""Words and their character offsets round-trip the input exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from api.captions.words import TimedWord, split_words


def test_words_punctuation_attached() -> None:
    text = "  — Hello, world!  It's 4 p.m. … ok?  "
    words = split_words(text)
    assert [w.text for w in words] == ["— Hello,", "world!", "It's", "4", "p.m. …", "ok?"]
    for w in words:
        assert text[w.char_start : w.char_end] == w.text


def test_offset_shifts_into_input() -> None:
    text = "First part. Second part."
    span = text[12:]
    words = split_words(span, offset=12)
    assert [text[w.char_start : w.char_end] for w in words] == ["Second", "part."]


def test_no_word_chars_keeps_one_word() -> None:
    assert [w.text for w in split_words(" ... !! ")] == ["... !!"]
    assert split_words("   ") == []
    assert split_words("") == []


@given(st.text(alphabet=st.sampled_from(list("ab1 ,.!—\n\t'é")), max_size=80))
def test_roundtrip_property(text: str) -> None:
    words = split_words(text)
    prev = 0
    for w in words:
        assert text[w.char_start : w.char_end] == w.text
        assert w.char_start >= prev and w.text == w.text.strip() and w.text
        prev = w.char_end
    # every non-space character belongs to a word
    covered = {i for w in words for i in range(w.char_start, w.char_end)}
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


def test_timed_word_shift_and_dict() -> None:
    w = TimedWord("hi", 0.5, 0.75, 3, 5).shifted(1.0, 10)
    assert w.to_dict() == {"word": "hi", "start": 1.5, "end": 1.75, "char_start": 13, "char_end": 15}
    assert w.as_timing_word().text == "hi"
