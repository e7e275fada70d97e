import re
import time

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from api.text.split import (
    FIRST_LONG_CHARS,
    FIRST_MAX_CHARS,
    FIRST_MIN_CHARS,
    FIRST_MIN_WORDS,
    _pack,
    lead_of,
    normalize_whitespace,
    split_sentences,
    split_text,
    spoken_len,
    word_count,
)


def test_sentences_keep_punctuation() -> None:
    assert split_sentences("Hello there. How are you?  Fine!") == ["Hello there.", "How are you?", "Fine!"]


def test_cjk_sentences() -> None:
    assert split_sentences("你好。世界！") == ["你好。", "世界！"]


def test_chunks_cover_all_text_and_respect_limit() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    chunks = split_text(text, 100)
    assert all(len(c) <= 100 for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_no_merge_gives_one_sentence_per_chunk() -> None:
    assert split_text("One. Two. Three.", 400, merge=False) == ["One.", "Two.", "Three."]
    assert split_text("One. Two. Three.", 400) == ["One. Two. Three."]


def test_long_unpunctuated_text_is_split_not_truncated() -> None:
    words = ["word"] * 3000
    chunks = split_text(" ".join(words), 300)
    assert sum(len(c.split()) for c in chunks) == 3000
    assert max(len(c) for c in chunks) <= 300


def test_single_huge_token_is_hard_split() -> None:
    chunks = split_text("x" * 1000, 300)
    assert "".join(chunks) == "x" * 1000


@pytest.mark.parametrize(
    "text",
    ["a" * 100_000, ". " * 50_000, ", " * 50_000 + "x", "!?" * 50_000, "a " * 50_000, "." * 100_000],
)
def test_adversarial_inputs_run_in_linear_time(text: str) -> None:
    start = time.perf_counter()
    chunks = split_text(text, 400)
    assert time.perf_counter() - start < 1.0
    assert all(len(c) <= 400 for c in chunks)


def test_invalid_limit() -> None:
    with pytest.raises(ValueError):
        split_text("x", 0)


def test_first_alone_for_streaming() -> None:
    assert split_text("One. Two. Three.", 400, first_alone=True) == ["One.", "Two. Three."]


# -- the streamed first chunk (a short lead) --------------------------------------------------------
LIGHTHOUSE = (
    "The old lighthouse stood at the edge of the cliff, its white paint peeling in the salty wind. "
    "Every evening the keeper climbed the narrow stairs to light the lamp, counting each step as he went."
)


def _streamed(text: str, max_chars: int) -> list[str]:
    return split_text(text, max_chars, first_alone=True)


def test_a_long_first_sentence_is_cut_at_its_first_clause() -> None:
    chunks = _streamed(LIGHTHOUSE, 300)
    assert chunks == [
        "The old lighthouse stood at the edge of the cliff,",
        "its white paint peeling in the salty wind. Every evening the keeper climbed the narrow stairs "
        "to light the lamp, counting each step as he went.",
    ]
    # whole files keep whole sentences
    assert split_text(LIGHTHOUSE, 300) == [LIGHTHOUSE]


def test_short_leading_clauses_are_merged_until_the_minimum() -> None:
    text = "Yes, well, the keeper climbed the narrow stairs to light the lamp, counting each step. Then he slept."
    assert _streamed(text, 300)[0] == "Yes, well, the keeper climbed the narrow stairs to light the lamp,"


def test_a_short_first_sentence_is_spoken_whole() -> None:
    text = "Hello there, my friend. " + LIGHTHOUSE
    assert _streamed(text, 300)[0] == "Hello there, my friend."


def test_no_lead_leaves_a_tiny_chunk_behind() -> None:
    text = "The old lighthouse stood at the edge of the cliff, all alone."
    assert _streamed(text, 300) == [text]  # "all alone." would be spoken alone
    text = "The old lighthouse stood at the edge of the cliff, all alone, the keeper said."
    assert _streamed(text, 300) == ["The old lighthouse stood at the edge of the cliff,", text[51:]]


def test_numbers_and_times_are_not_clause_ends() -> None:
    text = (
        "In 1,000 years and at 10:30 each night the keeper of the lighthouse climbed all the stairs, "
        "counting every one of them. Then he slept."
    )
    assert _streamed(text, 300)[0] == (
        "In 1,000 years and at 10:30 each night the keeper of the lighthouse climbed all the stairs,"
    )


def test_a_long_sentence_without_clause_ends_is_cut_between_words() -> None:
    text = " ".join(["lighthouse"] * 30) + "."
    lead = _streamed(text, 300)[0]
    assert FIRST_MIN_CHARS <= len(lead) <= FIRST_MAX_CHARS
    assert text.startswith(lead + " ") and set(lead.split()) == {"lighthouse"}


def test_cjk_lead_counts_syllables() -> None:
    text = (
        "你好，世界，这是一个很长的句子，我们需要把它分成几个部分来说，这样第一段音频就会很快出来。然后呢。"
    )
    chunks = _streamed(text, 300)
    assert chunks[0] == "你好，世界，这是一个很长的句子，"
    assert "".join(chunks).replace(" ", "") == text


@pytest.mark.parametrize("max_chars", [1, 5, 12, 30, 60, 100, 150, 300])
def test_the_lead_respects_any_limit(max_chars: int) -> None:
    chunks = _streamed(LIGHTHOUSE, max_chars)
    assert all(0 < len(c) <= max_chars for c in chunks)
    assert " ".join(chunks).split() == LIGHTHOUSE.split() or max_chars < len("lighthouse")
    assert "".join(chunks).replace(" ", "") == LIGHTHOUSE.replace(" ", "")


# -- properties -------------------------------------------------------------------------------------
_WORDS = ["the", "keeper", "lit", "a", "lamp", "lighthouse", "I", "1,000", "10:30", "well-known", "你", "好"]
_MARKS = [",", ", ", ": ", "; ", " — ", "—", " - ", " -- ", "–", "\n", "  ", "，", "、", '"', ")"]
_RARE = [". ", "! ", "? ", "。", "supercalifragilistic", "x" * 120]
# a stretch of words and clause marks (often a long first sentence), then anything: mostly words,
# clause marks often, sentence ends and huge words rarely
_TOKENS = st.sampled_from(_WORDS * 6 + _MARKS + _RARE)
_TEXTS = st.tuples(
    st.lists(st.sampled_from(_WORDS * 3 + _MARKS), max_size=60), st.lists(_TOKENS, max_size=80)
).map(lambda ab: "".join(t if t.strip() in ",:;.!?" else " " + t for t in ab[0] + ab[1]))
_LIMITS = st.sampled_from([1, 7, 20, 40, 64, 100, 150, 300, 400])


def _old_streamed(text: str, max_chars: int) -> list[str]:
    """The split before the lead: the first sentence (or its first piece) alone, the rest packed."""
    pieces = split_text(text, max_chars, merge=False)
    return [pieces[0], *_pack(pieces[1:], max_chars)] if len(pieces) > 1 else _pack(pieces, max_chars)


@settings(max_examples=600, deadline=None)
@given(text=_TEXTS, max_chars=_LIMITS)
def test_streamed_chunks_cover_the_text_in_order_within_bounds(text: str, max_chars: int) -> None:
    norm = normalize_whitespace(text)
    chunks = _streamed(text, max_chars)
    assert all(0 < len(c) <= max_chars and c == c.strip() for c in chunks)
    assert "".join(chunks).replace(" ", "") == norm.replace(" ", "")  # all of it, in order, nothing added
    cut = lead_of(norm, max_chars)
    event("lead cut" if cut is not None else "no lead")
    if cut is None:
        assert chunks == _old_streamed(text, max_chars)
        return
    lead, rest = chunks[0], norm[cut:]
    # a prefix of the first sentence, ending between words
    assert lead == norm[:cut] and len(lead) < len(split_sentences(norm)[0])
    assert rest.startswith(" ") or lead[-1] in "—，、：；"
    # within bounds: at least the minimum, at most the cap, and so is what follows
    cap = min(FIRST_MAX_CHARS, max_chars)
    lo = min(FIRST_MIN_CHARS, FIRST_LONG_CHARS, cap)
    assert lo <= spoken_len(lead) <= cap and word_count(lead) >= FIRST_MIN_WORDS
    assert spoken_len(rest.strip()) >= lo and word_count(rest) >= FIRST_MIN_WORDS
    # a clause end, or a space when the sentence is longer than the cap
    if not re.search(r"[,:;，、：；—–-][\"'”’)\]]*$", lead):
        assert spoken_len(split_sentences(norm)[0]) > cap
    # the rest packed as usual; the lead alone is not cut again (a request for it is one chunk)
    assert chunks[1:] == split_text(rest, max_chars)
    assert _streamed(lead, max_chars) == [lead]


@settings(max_examples=200, deadline=None)
@given(text=_TEXTS, max_chars=_LIMITS)
def test_whole_files_are_packed_as_before(text: str, max_chars: int) -> None:
    assert split_text(text, max_chars) == _pack(split_text(text, max_chars, merge=False), max_chars)


@pytest.mark.parametrize(
    "text",
    ["a, " * 50_000, "—" * 100_000, " - " * 40_000, "你" * 100_000, "word " * 5 + "y" * 100_000],
)
def test_the_lead_is_found_in_linear_time(text: str) -> None:
    start = time.perf_counter()
    chunks = _streamed(text, 300)
    assert time.perf_counter() - start < 1.0
    assert all(0 < len(c) <= 300 for c in chunks)
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "")
