"""Timed text: words and segments with their time spans in seconds.

A neutral room: transcribers produce them (Whisper's segments and word timestamps), the clip
clean-up cuts by them, and captions are built from them; none of those rooms owns the types.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Word:
    """One word with its time span in seconds (relative to the audio given)."""

    start: float
    end: float
    text: str
    probability: float | None = None


@dataclass(frozen=True)
class Segment:
    """A stretch of transcript with its time span in seconds; ``words`` when word timestamps ran."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
