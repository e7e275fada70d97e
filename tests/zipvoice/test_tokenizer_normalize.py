"""Unit tests of the ZipVoice text normaliser and language segmenter."""

from __future__ import annotations

import contextlib
import time

import pytest

from api.zipvoice.tokenizer.normalize import EnglishNormalizer, fold_punctuation, tighten_speaker_tags
from api.zipvoice.tokenizer.segment import bracket_spans, language_runs, split_segments


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def english() -> EnglishNormalizer:
    pytest.importorskip("inflect")
    return EnglishNormalizer()


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("$3.50", "three dollars, fifty cents"),
        ("$1", "one dollar"),
        ("$0.01", "one cent"),
        ("$0", "zero dollars"),
        ("$2.", "two dollars ."),
        ("£20", "twenty pounds"),
        ("1,234 pears", "twelve thirty-four pears"),
        ("12,345,678", "twelve million, three hundred forty-five thousand, six hundred seventy-eight"),
        ("45%", "forty-five percent"),
        ("2.5%", "two point five percent"),
        ("3rd", "third"),
        ("21st", "twenty-first"),
        ("1/2", "one half"),
        ("1/4", "one quarter"),
        ("3/4", "three quarters"),
        ("5/2", "five halves"),
        ("2/3", "two third"),
        ("7.25", "seven point twenty-five"),
        ("1999", "nineteen ninety-nine"),
        ("2000", "two thousand"),
        ("2005", "two thousand five"),
        ("1900", "nineteen hundred"),
        ("2024", "twenty twenty-four"),
        ("3000", "three thousand"),
        ("101", "one hundred one"),
        ("10:30 am", "ten : thirty am"),
    ],
)
def test_english_numbers(english: EnglishNormalizer, text: str, spoken: str) -> None:
    assert _words(english.normalize(text)) == spoken


def test_english_dollars_keep_spacing(english: EnglishNormalizer) -> None:
    # Exact spacing matters for espeak: expansions are padded with spaces on both sides.
    assert english.normalize("$3.50") == "  three  dollars,  fifty  cents "


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("Dr. Smith", "doctor. Smith"),
        ("mrs. Lee and MR King", "misess. Lee and mister King"),
        ("Drs. Who", "doctors. Who"),
        ("Lt. Gen. Brown", "lieutenant. general. Brown"),
        ("St. Paul's, etc.", "saint. Paul's, et cetera."),
        ("btw", "by the way"),
        ("drama street", "drama street"),  # only whole words
    ],
)
def test_english_abbreviations(english: EnglishNormalizer, text: str, spoken: str) -> None:
    assert english.normalize(text) == spoken


@pytest.mark.parametrize("text", ["", "   ", "!?...", "...?!;:", "hello world"])
def test_english_text_without_numbers_unchanged(english: EnglishNormalizer, text: str) -> None:
    assert english.normalize(text) == text


def test_english_huge_number_raises_value_error(english: EnglishNormalizer) -> None:
    # Python refuses int() of > 4300 digits; the tokenizer skips such a segment (as upstream).
    with pytest.raises(ValueError):
        english.normalize("1" * 5000)


@pytest.mark.parametrize(
    "text",
    ["1" * 20000, "1" * 20000 + "%", "1," * 10000, "1." * 10000, "1/" * 10000, "$" + "9." * 10000],
)
def test_english_patterns_are_linear(english: EnglishNormalizer, text: str) -> None:
    start = time.perf_counter()
    with contextlib.suppress(ValueError):
        english.normalize(text)
    assert time.perf_counter() - start < 1.0


def test_fold_punctuation() -> None:
    assert fold_punctuation("你好，世界。真的！？；：、") == "你好,世界.真的!?;:,"
    assert fold_punctuation("“a” ‘b’") == "\"a\" 'b'"
    assert fold_punctuation("a...b···c・・・d⋯e") == "a…b…c…d…e"
    assert fold_punctuation("......") == "……"
    assert fold_punctuation("") == ""


def test_tighten_speaker_tags() -> None:
    assert tighten_speaker_tags("[S1]  hi \n [S2]\tyo  [S1]") == "[S1]hi[S2]yo[S1]"
    assert tighten_speaker_tags(" a [S3] b ") == " a [S3] b "
    assert tighten_speaker_tags("x\u3000[S2]\u3000y") == "x[S2]y"
    start = time.perf_counter()
    assert tighten_speaker_tags(" " * 50000 + "x") == " " * 50000 + "x"
    assert time.perf_counter() - start < 1.0


def test_bracket_spans() -> None:
    text = "a<le5>b[S1]c<x]d<<y>e[open"
    spans = [text[s:e] for s, e in bracket_spans(text)]
    assert spans == ["<le5>", "[S1]", "<x]", "<<y>"]
    # A chunk never crosses a newline; the opener is then an ordinary character.
    assert list(bracket_spans("<a\nb>")) == []
    assert list(bracket_spans("")) == []


def test_split_segments_mixed() -> None:
    text = "我们是5年小米人,是吗? Yes I think so!霍…啦啦啦<le5>…?!9204"
    assert split_segments(text) == [
        ("我们是5年小米人,是吗? ", "zh"),
        ("Yes I think so!", "en"),
        ("霍…啦啦啦", "zh"),
        ("<le5>", "pinyin"),
        ("…?!9204", "zh"),
    ]


def test_split_segments_tags_and_neutral_text() -> None:
    assert split_segments("[S1]Hello [LAUGHS] 你好") == [
        ("[S1]", "tag"),
        ("Hello ", "en"),
        ("[LAUGHS]", "tag"),
        (" ", "en"),
        ("你好", "zh"),
    ]
    # Leading neutral characters join the first language run.
    assert split_segments("123 abc") == [("123 abc", "en")]
    assert split_segments("!?…") == [("!?…", "other")]
    assert split_segments("") == []
    # Newlines are dropped.
    assert language_runs("ab\ncd") == [("abcd", "en")]


def test_segmenter_is_linear() -> None:
    for text in ("<" * 50000, "[" * 50000, "<a\n" * 20000, "中a" * 25000):
        start = time.perf_counter()
        split_segments(text)
        assert time.perf_counter() - start < 2.0
