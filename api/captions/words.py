"""Words of a text with their character offsets, and words with times.

A word is a maximal run of non-space characters; a run that holds no letter or digit (a lone
dash, an ellipsis, a quote mark) is attached to the word before it (to the next one at the very
start), so punctuation never becomes a word of its own and every character of the text that is
not leading or trailing space belongs to exactly one word. ``text[w.char_start:w.char_end] ==
w.text`` always holds, so the offsets round-trip the input exactly.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from api.timing import Word

_RUN = re.compile(r"\S+")


def _has_word_char(s: str) -> bool:
    return any(ch.isalnum() for ch in s)


@dataclass(frozen=True)
class TextWord:
    """A word of a text: its characters and where they are (``text[char_start:char_end]``)."""

    text: str
    char_start: int
    char_end: int


@dataclass(frozen=True)
class TimedWord:
    """A word of the input with its time span in seconds and its character offsets in the input."""

    word: str
    start: float
    end: float
    char_start: int
    char_end: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_timing_word(self) -> Word:
        """The same span as :class:`api.timing.Word` (what transcribers produce)."""
        return Word(self.start, self.end, self.word)

    def shifted(self, seconds: float, chars: int = 0) -> TimedWord:
        """This word moved by ``seconds`` in time and ``chars`` in the text (a chunk's offsets)."""
        return TimedWord(
            self.word,
            self.start + seconds,
            self.end + seconds,
            self.char_start + chars,
            self.char_end + chars,
        )


def split_words(text: str, offset: int = 0) -> list[TextWord]:
    """The words of ``text`` in order; offsets are shifted by ``offset`` (a span's start in ``input``).

    Linear time. Word texts are exact slices of ``text`` (a punctuation-only run joins its
    neighbour with the spaces between them, so the slice stays exact).
    """
    runs = [(m.start(), m.end()) for m in _RUN.finditer(text)]
    merged: list[list[int]] = []
    pending: int | None = None  # start of leading punctuation-only runs
    for start, end in runs:
        if _has_word_char(text[start:end]):
            if pending is not None:
                start, pending = pending, None
            merged.append([start, end])
        elif merged:
            merged[-1][1] = end
        elif pending is None:
            pending = start
    if pending is not None:  # punctuation only: one "word" so nothing is dropped
        merged.append([pending, runs[-1][1]])
    return [TextWord(text[s:e], s + offset, e + offset) for s, e in merged]
