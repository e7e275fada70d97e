import time

import pytest

from api.text.split import split_sentences, split_text


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
