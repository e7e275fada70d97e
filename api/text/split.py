"""Sentence splitting and chunking, in linear time.

Text is cut after sentence punctuation (``. ! ? ; …`` and CJK ``。！？；``), then sentences are
packed into chunks of at most ``max_chars``. A sentence longer than that is cut at clause
punctuation, then at whitespace, then hard — never truncated, never rejected.
"""

from __future__ import annotations

import re

# A match starts only at the beginning of a punctuation run (lookbehind) and the runs are
# possessive: a long run not followed by a space fails once, not once per position (quadratic).
_SENTENCE_END = re.compile(r"(?<![.!?;…。！？；])[.!?;…。！？；]++[\"'”’)\]]*+(?:\s+|$)|[。！？；]+")
_CLAUSE_END = re.compile(r"[,:，、：—–]+\s*")
_SPACES = re.compile(r"\s+")


def normalize_whitespace(text: str) -> str:
    """Collapse runs of whitespace and drop control characters."""
    text = "".join(ch for ch in text if ch.isprintable() or ch in "\n\t")
    return _SPACES.sub(" ", text).strip()


def _cut(text: str, pattern: re.Pattern[str]) -> list[str]:
    out: list[str] = []
    start = 0
    for m in pattern.finditer(text):
        end = m.end()
        piece = text[start:end].strip()
        if piece:
            out.append(piece)
        start = end
    rest = text[start:].strip()
    if rest:
        out.append(rest)
    return out


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (whitespace-normalised), punctuation kept."""
    return _cut(normalize_whitespace(text), _SENTENCE_END)


def _hard_split(piece: str, max_chars: int) -> list[str]:
    out: list[str] = []
    current = ""
    for word in piece.split(" "):
        while len(word) > max_chars:
            if current:
                out.append(current)
                current = ""
            out.append(word[:max_chars])
            word = word[max_chars:]
        if not word:
            continue
        if current and len(current) + 1 + len(word) > max_chars:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        out.append(current)
    return out


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    out: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 1 + len(piece) > max_chars:
            out.append(current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        out.append(current)
    return out


def split_text(text: str, max_chars: int, *, merge: bool = True, first_alone: bool = False) -> list[str]:
    """Chunks of at most ``max_chars`` characters covering all of ``text``.

    With ``merge`` (default) consecutive short sentences share a chunk; without, each sentence
    is its own chunk. ``first_alone`` keeps the first sentence as its own chunk and packs the
    rest: streaming gets its first audio after one sentence, and later chunks stay efficient.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    pieces: list[str] = []
    for sentence in split_sentences(text):
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        for clause in _cut(sentence, _CLAUSE_END):
            if len(clause) <= max_chars:
                pieces.append(clause)
            else:
                pieces.extend(_hard_split(clause, max_chars))
    if not merge:
        return pieces
    if first_alone and len(pieces) > 1:
        return [pieces[0], *_pack(pieces[1:], max_chars)]
    return _pack(pieces, max_chars)
