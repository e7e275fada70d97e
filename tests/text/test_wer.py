"""Word/character error rates and the English normaliser."""

from __future__ import annotations

import pytest

from api.text.wer import align, cer, error_counts, normalize_text, normalize_words, wer


def test_normalizer_lowercases_strips_punctuation_keeps_numbers() -> None:
    assert normalize_text("  Hello, World!  It's 10:30 — OK?") == "hello world its 10 30 ok"
    assert normalize_words("Don’t stop… the well-known “fox”.") == [
        "dont",
        "stop",
        "the",
        "well",
        "known",
        "fox",
    ]
    assert normalize_text("") == ""


def test_identical_after_normalisation_is_zero() -> None:
    assert wer("The quick brown fox.", "the quick, brown FOX") == 0.0
    assert cer("The quick brown fox.", "the quick brown fox") == 0.0


def test_counts_substitution_deletion_insertion() -> None:
    c = error_counts(["a", "b", "c", "d"], ["a", "x", "c", "d", "e"])
    assert (c.substitutions, c.deletions, c.insertions, c.reference_length) == (1, 0, 1, 4)
    assert c.rate == pytest.approx(0.5)
    c = error_counts(["a", "b", "c"], ["a", "c"])
    assert (c.substitutions, c.deletions, c.insertions) == (0, 1, 0)


def test_wer_values() -> None:
    assert wer("the quick brown fox", "the quick brown box") == pytest.approx(0.25)
    assert wer("one two", "") == 1.0
    assert wer("", "") == 0.0
    assert wer("", "words") == 1.0
    assert wer("a", "a b c") == pytest.approx(2.0)  # insertions can push WER past 1
    assert wer("ten apples", "10 apples") == pytest.approx(0.5)  # numbers are not spelled out


def test_cer_is_softer_than_wer_for_small_spelling_differences() -> None:
    assert wer("colour", "color") == 1.0
    assert cer("colour", "color") == pytest.approx(1 / 6)


def test_align_pairs_in_order() -> None:
    assert align(["a", "b", "c"], ["a", "c"]) == [(0, 0), (1, None), (2, 1)]
    assert align([], ["x"]) == [(None, 0)]
