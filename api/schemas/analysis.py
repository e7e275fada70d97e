"""Schemas of the analysis and tuning endpoints."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import TranscriptText
from api.synthesis.tuning import Priority


class AnalyzeJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")
    voice: str = Field(
        min_length=1, description="A registered voice, `file+`, `url+`, `base64+` or `data:` source."
    )
    transcript: TranscriptText = Field(
        default=None,
        description="Compared with Whisper's transcript; at most `MAX_TRANSCRIPT_CHARS` characters.",
    )


class TuneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    priority: Priority = Field(default="balanced", description="speed, balanced or quality.")
    input: str = Field(default="", max_length=100_000, description="The text you plan to synthesize.")
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
