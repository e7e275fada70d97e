"""Split mixed text into language runs (Chinese, English, ``<pinyin>`` and ``[tag]`` chunks).

Rules (same results as the reference implementation, but linear time):

* A *bracket chunk* starts at ``<`` or ``[`` and ends at the first ``>`` or ``]`` after it on the
  same line; an opener without such a closer is an ordinary character. Newlines are dropped.
* Each character is Chinese (U+4E00..U+9FA5), English (ASCII letter) or neutral; a bracket chunk
  of the form ``<...>`` counts as Chinese, any other chunk as neutral.
* Neutral pieces join the run in progress; a run that has only neutral pieces so far takes the
  language of the next piece. A piece of the other language starts a new run.
* Each run is then cut again at its bracket chunks: ``<...>`` becomes a ``pinyin`` segment,
  ``[...]`` a ``tag`` segment; mixed chunks such as ``<x]`` stay in the run's language.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

Lang = Literal["zh", "en", "pinyin", "tag", "other"]

_OPENER_RE = re.compile(r"[<\[]")
_CLOSER_OR_NEWLINE_RE = re.compile(r"[>\]\n]")


def bracket_spans(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` of the bracket chunks of ``text``, left to right, non-overlapping."""
    n = len(text)
    stop = -1  # position of the next closer-or-newline at or after the last searched offset
    pos = 0
    while True:
        m = _OPENER_RE.search(text, pos)
        if m is None:
            return
        start = m.start()
        if stop <= start:
            # The cached stop lies before this opener: look again. Each search resumes past the
            # previous stop, so the total work stays linear.
            hit = _CLOSER_OR_NEWLINE_RE.search(text, start + 1)
            stop = hit.start() if hit is not None else n
        if stop < n and text[stop] != "\n":
            yield start, stop + 1
            pos = stop + 1
        else:
            pos = start + 1


def _char_lang(ch: str) -> Lang:
    if "\u4e00" <= ch <= "\u9fa5":
        return "zh"
    if ("A" <= ch <= "Z") or ("a" <= ch <= "z"):
        return "en"
    return "other"


def _is_pinyin_chunk(chunk: str) -> bool:
    return chunk.startswith("<") and chunk.endswith(">")


def _is_tag_chunk(chunk: str) -> bool:
    return chunk.startswith("[") and chunk.endswith("]")


def _pieces(text: str) -> Iterator[tuple[str, Lang]]:
    """Characters (newlines dropped) and bracket chunks of ``text`` with their language."""
    pos = 0
    for start, end in bracket_spans(text):
        for ch in text[pos:start]:
            if ch != "\n":
                yield ch, _char_lang(ch)
        chunk = text[start:end]
        yield chunk, ("zh" if _is_pinyin_chunk(chunk) else "other")
        pos = end
    for ch in text[pos:]:
        if ch != "\n":
            yield ch, _char_lang(ch)


def language_runs(text: str) -> list[tuple[str, Lang]]:
    """First pass: group pieces into runs of one language (neutral pieces attach to runs)."""
    runs: list[tuple[str, Lang]] = []
    buf: list[str] = []
    lang: Lang = "other"
    for piece, piece_lang in _pieces(text):
        if buf and lang != "other" and piece_lang not in (lang, "other"):
            runs.append(("".join(buf), lang))
            buf = []
        if not buf or lang == "other":
            lang = piece_lang
        buf.append(piece)
    if buf:
        runs.append(("".join(buf), lang))
    return runs


def split_segments(text: str) -> list[tuple[str, Lang]]:
    """Segments of ``text`` as ``(string, lang)``; ``lang`` is zh/en/pinyin/tag/other."""
    segments: list[tuple[str, Lang]] = []
    for run, lang in language_runs(text):
        pos = 0
        for start, end in bracket_spans(run):
            if start > pos:
                segments.append((run[pos:start], lang))
            chunk = run[start:end]
            if _is_pinyin_chunk(chunk):
                segments.append((chunk, "pinyin"))
            elif _is_tag_chunk(chunk):
                segments.append((chunk, "tag"))
            else:
                segments.append((chunk, lang))
            pos = end
        if pos < len(run):
            segments.append((run[pos:], lang))
    return segments
