"""Schemas of the voice registry endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class VoiceCreateJSON(BaseModel):
    """JSON form of ``POST /v1/audio/voices``: the audio as any voice source form."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, description="Voice name (letters, digits, space, _ . -).")
    audio: str = Field(
        min_length=1, description="`url+https://…`, `base64+…`, `data:audio/…;base64,…` or `file+PATH`."
    )
    transcript: str | None = Field(
        default=None, max_length=2000, description="What the clip says (else Whisper)."
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
    object: Literal["list"] = "list"
    data: list[VoiceObject]


class VoiceDeleted(BaseModel):
    id: str
    object: Literal["voice"] = "voice"
    deleted: bool = True
