"""Schemas of the voice registry endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import TranscriptText


class VoiceCreateJSON(BaseModel):
    """JSON form of ``POST /v1/audio/voices``: the audio as any voice source form."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, description="Voice name (letters, digits, space, _ . -).")
    audio: str = Field(
        min_length=1, description="`url+https://…`, `base64+…`, `data:audio/…;base64,…` or `file+PATH`."
    )
    transcript: TranscriptText = Field(
        default=None,
        description="What the clip says (else Whisper); at most `MAX_TRANSCRIPT_CHARS` characters.",
    )


class VoiceObject(BaseModel):
    id: str
    object: Literal["voice"] = "voice"
    name: str
    type: Literal["preset", "registered"]
    backend: str | None = None
    created_at: str | None = None
    duration: float | None = None
    sample_rate: int | None = None
    transcript: str | None = None
    transcript_source: str | None = None
    quality: dict[str, Any] | None = None


class VoiceList(BaseModel):
    """One page of ``GET /v1/audio/voices`` (registered voices oldest first, then presets)."""

    object: Literal["list"] = "list"
    data: list[VoiceObject]
    first_id: str | None = None
    last_id: str | None = Field(default=None, description="Pass as `after` to get the next page.")
    has_more: bool = False


class VoiceDeleted(BaseModel):
    id: str
    object: Literal["voice"] = "voice"
    deleted: bool = True
