"""``GET /v1/usage``: per-key usage (requests, input characters, audio seconds, by model)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelUsage(BaseModel):
    requests: int
    input_characters: int
    audio_seconds: float


class KeyUsageObject(BaseModel):
    key: str = Field(description="The key's namespace id (a hash of the API key, never the key).")
    requests: int
    input_characters: int
    audio_seconds: float
    by_model: dict[str, ModelUsage]


class UsageList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyUsageObject]
