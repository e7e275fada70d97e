"""Word/character error rates and the English normaliser."""

from __future__ import annotations

import time
import tracemalloc
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.text import wer as wer_module
from api.text.wer import (
    MAX_COMPARE_TOKENS,
    align,
    cer,
    edit_distance,
    error_counts,
    normalize_text,
    normalize_words,
    wer,
)


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


def _naive_distance(a: list[str], b: list[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            row[j] = min(prev[j - 1] + (x != y), prev[j] + 1, row[j - 1] + 1)
        prev = row
    return prev[-1]


def _check_alignment(a: list[str], b: list[str], pairs: list[tuple[int | None, int | None]]) -> int:
    """Pairs cover every index of both sides once, in order; returns the alignment's cost."""
    assert [i for i, _ in pairs if i is not None] == list(range(len(a)))
    assert [j for _, j in pairs if j is not None] == list(range(len(b)))
    return sum(1 if i is None or j is None else int(a[i] != b[j]) for i, j in pairs)


tokens = st.lists(st.sampled_from("abcde"), max_size=90)


@settings(max_examples=150, deadline=None)
@given(a=tokens, b=tokens, small=st.sampled_from([1, 16, 4096]))
def test_linear_memory_alignment_is_minimal(a: list[str], b: list[str], small: int) -> None:
    """Hirschberg (any split depth) and the two-row distance agree with the textbook DP."""
    expected = _naive_distance(a, b)
    assert edit_distance(a, b) == expected
    with patch.object(wer_module, "_SMALL_CELLS", small):
        pairs = align(a, b)
    assert _check_alignment(a, b, pairs) == expected
    c = error_counts(a, b)
    assert c.errors == expected and c.reference_length == len(a)


def test_huge_inputs_stay_bounded_in_time_and_memory() -> None:
    """200k-word texts: only the first MAX_COMPARE_TOKENS are compared, in linear memory."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon"]
    ref = " ".join(words[i % 5] for i in range(200_000))
    hyp = " ".join(words[(i + 1) % 5] if i % 10 == 0 else words[i % 5] for i in range(200_000))
    t0 = time.perf_counter()
    w, c = wer(ref, hyp), cer(ref, hyp)
    counts = error_counts(ref.split(), hyp.split())
    elapsed = time.perf_counter() - t0
    assert 0.0 < w < 1.0 and 0.0 < c < 1.0
    assert counts.reference_length == MAX_COMPARE_TOKENS
    assert elapsed < 60, elapsed  # generous for a loaded CI box; ~1 s on an idle core
    tracemalloc.start()
    try:
        wer(ref, hyp)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the inputs themselves are ~1 MB each; a full table would be 200k² cells (the cap alone 6M)
    assert peak < 32 * 1024 * 1024, peak
