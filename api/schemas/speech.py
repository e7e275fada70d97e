"""Request schema of ``POST /v1/audio/speech``: OpenAI's fields plus optional extensions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import TranscriptText

ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class VoiceId(BaseModel):
    """A voice given as an object, as in OpenAI's custom-voice form."""

    model_config = ConfigDict(extra="ignore")
    id: str = Field(
        min_length=1,
        max_length=100_000_000,
        description="A registered voice id or name, or any voice source form.",
    )


class SpeechRequest(BaseModel):
    """OpenAI ``audio.speech.create`` body. Fields after ``stream_format`` are project extensions."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(
        min_length=1, max_length=200, description="tts-1, tts-1-hd, gpt-4o-mini-tts, or a backend name."
    )
    input: str = Field(min_length=1, description="Text to speak (length limit: MAX_INPUT_CHARS).")
    voice: str | VoiceId = Field(
        description=(
            "A preset or registered voice name/id, an OpenAI voice name (mapped by VOICE_ALIASES), "
            '`file+PATH`, `url+https://…`, `base64+…` or `data:audio/…;base64,…`, or `{"id": …}`.'
        )
    )
    instructions: str | None = Field(default=None, max_length=4096, description="Accepted for compatibility.")
    response_format: ResponseFormat = Field(
        default="mp3", description="Audio container/codec of the response."
    )
    speed: float = Field(default=1.0, ge=0.25, le=4.0, description="Speaking rate multiplier.")
    stream_format: Literal["audio", "sse"] = Field(
        default="audio", description="`audio`: the audio bytes (chunked); `sse`: server-sent events."
    )

    # --- extensions ---
    prompt_text: TranscriptText = Field(
        default=None,
        description="Transcript of the reference clip (cloning backends); at most `MAX_TRANSCRIPT_CHARS` characters.",
    )
    seed: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="Random seed: same seed, same audio."
    )
    lang: str | None = Field(
        default=None, max_length=16, description="Language code (e.g. en-us) for the G2P."
    )
    num_steps: int | None = Field(
        default=None, ge=1, le=64, description="Flow-matching sampler steps (ZipVoice)."
    )
    guidance_scale: float | None = Field(
        default=None, ge=0.0, le=10.0, description="Guidance scale (ZipVoice)."
    )
    t_shift: float | None = Field(default=None, gt=0.0, le=1.0, description="Sampler time shift (ZipVoice).")

    input_format: Literal["text", "ssml"] | None = Field(
        default=None,
        description=(
            "`text` or `ssml` (an SSML subset: break, p, s, prosody rate, emphasis, say-as, sub, voice); "
            "default: SSML when `input` starts with `<speak`. `MAX_INPUT_CHARS` limits the spoken text."
        ),
    )
    priority: Literal["speed", "balanced", "quality"] | None = Field(
        default=None,
        description="ZipVoice only: pick model, steps and guidance for speed, balance or quality (see /v1/audio/tune).",
    )

    def voice_spec(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceId) else self.voice
