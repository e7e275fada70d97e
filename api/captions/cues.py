"""Readable caption cues from timed words, rendered as SRT or WebVTT.

Grouping (greedy, one pass, linear time): a cue takes words while its text fits in
``max_lines`` lines of ``max_line_chars`` characters (a single longer word gets a line of its
own), it lasts at most ``max_cue_seconds`` and no pause between two words reaches
``pause_seconds``; it closes after a word that ends a sentence. A cue shown for less than
``min_cue_seconds`` is held longer, up to the next cue's start and the end of the audio.

Text: whitespace inside a word is collapsed to one space, so a cue never holds an empty line;
``-->`` (the timing arrow) never appears in cue text; WebVTT escapes ``&``, ``<`` and ``>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from api.captions.words import TimedWord

CaptionFormat = Literal["srt", "vtt"]

MAX_LINE_CHARS = 42
MAX_LINES = 2
MAX_CUE_SECONDS = 6.0
MIN_CUE_SECONDS = 0.8
PAUSE_SECONDS = 0.8

_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]»]*$")


@dataclass(frozen=True)
class Cue:
    """One caption: its time span (seconds), its lines and the words it shows."""

    start: float
    end: float
    lines: tuple[str, ...]
    words: tuple[TimedWord, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _clean(text: str) -> str:
    return " ".join(text.split()).replace("-->", "->")


def wrap(texts: Sequence[str], max_line_chars: int = MAX_LINE_CHARS) -> list[str]:
    """Greedy line filling: words joined by spaces, a new line when the next would not fit."""
    lines: list[str] = []
    for t in texts:
        if lines and len(lines[-1]) + 1 + len(t) <= max_line_chars:
            lines[-1] += " " + t
        else:
            lines.append(t)
    return lines


def ends_sentence(text: str) -> bool:
    """True when a word closes a sentence (``.``, ``!``, ``?``, ``…``, maybe then a quote or bracket)."""
    return bool(_SENTENCE_END.search(text))


def group_cues(
    words: Sequence[TimedWord],
    *,
    duration: float | None = None,
    max_line_chars: int = MAX_LINE_CHARS,
    max_lines: int = MAX_LINES,
    max_cue_seconds: float = MAX_CUE_SECONDS,
    min_cue_seconds: float = MIN_CUE_SECONDS,
    pause_seconds: float = PAUSE_SECONDS,
) -> list[Cue]:
    """Group timed words (in order) into cues; see the module docstring for the rules."""
    groups: list[list[TimedWord]] = []
    current: list[TimedWord] = []
    texts: list[str] = []
    for w in words:
        t = _clean(w.word)
        if current:
            fits = len(wrap([*texts, t], max_line_chars)) <= max_lines
            short = w.end - current[0].start <= max_cue_seconds
            close = w.start - current[-1].end < pause_seconds
            if not (fits and short and close):
                groups.append(current)
                current, texts = [], []
        current.append(w)
        texts.append(t)
        if ends_sentence(t):
            groups.append(current)
            current, texts = [], []
    if current:
        groups.append(current)

    cues: list[Cue] = []
    for i, group in enumerate(groups):
        start = group[0].start
        end = max(group[-1].end, start)
        limit = (
            groups[i + 1][0].start if i + 1 < len(groups) else (duration if duration is not None else None)
        )
        held = start + min_cue_seconds
        if end < held:
            end = held if limit is None else max(end, min(held, limit))
        lines = tuple(wrap([_clean(w.word) for w in group], max_line_chars))
        cues.append(Cue(start, end, lines, tuple(group)))
    return cues


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt_time(seconds: float) -> str:
    """``HH:MM:SS,mmm`` (SubRip)."""
    return _timestamp(seconds, ",")


def vtt_time(seconds: float) -> str:
    """``HH:MM:SS.mmm`` (WebVTT)."""
    return _timestamp(seconds, ".")


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _spans_ms(cues: Sequence[Cue]) -> list[tuple[int, int]]:
    """Cue spans in whole milliseconds: in order, never overlapping, each at least 1 ms long."""
    out: list[tuple[int, int]] = []
    prev = 0
    for c in cues:
        s = max(prev, round(c.start * 1000))
        e = max(s + 1, round(c.end * 1000))
        out.append((s, e))
        prev = e
    return out


def render_srt(cues: Sequence[Cue]) -> str:
    """SubRip text: numbered cues, ``start --> end``, the lines, a blank line."""
    parts = []
    for n, (c, (s, e)) in enumerate(zip(cues, _spans_ms(cues), strict=True), start=1):
        parts.append(f"{n}\n{srt_time(s / 1000)} --> {srt_time(e / 1000)}\n{c.text}\n")
    return "\n".join(parts)


def render_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT text: the ``WEBVTT`` header, then cues (``start --> end``, escaped lines)."""
    parts = ["WEBVTT\n"]
    for n, (c, (s, e)) in enumerate(zip(cues, _spans_ms(cues), strict=True), start=1):
        parts.append(f"{n}\n{vtt_time(s / 1000)} --> {vtt_time(e / 1000)}\n{_vtt_escape(c.text)}\n")
    return "\n".join(parts)


def render(words: Sequence[TimedWord], fmt: CaptionFormat, *, duration: float | None = None) -> str:
    """Caption text of the given format for timed words (cues grouped by :func:`group_cues`)."""
    cues = group_cues(words, duration=duration)
    if fmt == "srt":
        return render_srt(cues)
    if fmt == "vtt":
        return render_vtt(cues)
    raise ValueError(f"unknown caption format {fmt!r}")
