"""Request and response schemas of ``POST /v1/audio/speech/captioned``: the speech request plus
``captions``; audio (base64) with every word of the input timed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.speech import SpeechRequest


class CaptionedSpeechRequest(SpeechRequest):
    """``/v1/audio/speech``'s body plus ``captions``."""

    captions: Literal["srt", "vtt"] | None = Field(
        default=None, description="Also return ready caption text (SubRip or WebVTT cues)."
    )


class WordTimestamp(BaseModel):
    """A word of ``input`` and when it is spoken."""

    word: str = Field(description="The word as written in the spoken text (punctuation attached).")
    start: float = Field(description="Start, seconds from the start of the audio.")
    end: float = Field(description="End, seconds (never past the audio).")
    char_start: int = Field(description="Offset of the word's first character in `input`.")
    char_end: int = Field(description="Offset just past the word's last character in `input`.")


class CaptionedSpeechResponse(BaseModel):
    """The whole captioned speech."""

    audio: str = Field(description="The audio, base64, in the requested `response_format`.")
    words: list[WordTimestamp] = Field(description="Every word of the input, in input order.")
    duration: float = Field(description="Seconds of audio.")
    captions: str | None = Field(
        default=None, description="SRT or WebVTT text when `captions` was asked for."
    )
    warnings: list[str] = Field(default_factory=list, description="SSML warnings (unknown elements …).")
