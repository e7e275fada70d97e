"""Voice registry: ``/v1/audio/voices`` (register, list, get, delete) and quality reports."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.engines.base import ReferenceVoice
from api.errors import InvalidRequestError, UnsupportedMediaError, parse_json_body
from api.schemas.voices import VoiceCreateJSON, VoiceDeleted, VoiceList, VoiceObject
from api.voices.store import DEFAULT_NAMESPACE, VoiceMeta

router = APIRouter(tags=["voices"])


def owner_of(request: Request) -> tuple[str, bool]:
    return getattr(request.state, "owner", None) or DEFAULT_NAMESPACE, bool(
        getattr(request.state, "is_admin", False)
    )


def voice_object(meta: VoiceMeta) -> VoiceObject:
    return VoiceObject(
        id=meta.id,
        name=meta.name,
        type="registered",
        created_at=meta.created_at,
        duration=meta.duration,
        sample_rate=meta.sample_rate,
        transcript=meta.transcript,
        transcript_source=meta.transcript_source,
        quality=meta.quality or None,
    )


async def _form_fields(request: Request) -> tuple[str, bytes | None, str | None, str | None]:
    """(name, file bytes | None, source spec | None, transcript) from multipart or JSON."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(
            max_files=1, max_fields=8, max_part_size=request.app.state.settings.max_voice_bytes
        )
        name, transcript, upload = form.get("name"), form.get("transcript"), form.get("file")
        if not isinstance(name, str):
            raise InvalidRequestError("Field 'name' is required.", param="name")
        if upload is None or isinstance(upload, str):
            raise InvalidRequestError("Field 'file' (the reference audio) is required.", param="file")
        data = await upload.read()
        return name, data, None, transcript if isinstance(transcript, str) and transcript.strip() else None
    if content_type.startswith("application/json"):
        body = parse_json_body(VoiceCreateJSON, await request.body())
        return body.name, None, body.audio, body.transcript
    raise UnsupportedMediaError(
        "Send multipart/form-data (name, file, transcript) or JSON (name, audio, transcript)."
    )


@router.post("/v1/audio/voices", status_code=201, response_model=VoiceObject, summary="Register a voice")
async def create_voice(request: Request) -> Any:
    state = request.app.state
    owner, admin = owner_of(request)
    name, data, spec, transcript = await _form_fields(request)

    def register() -> VoiceMeta:
        from api.voices.store import validate_name

        validate_name(name)
        if data is not None:
            voice = state.voice_resolver.clip_from_upload(data, transcript)
        else:
            assert spec is not None
            voice = state.voice_resolver.resolve(spec, owner=owner, prompt_text=transcript, admin=admin)
            if not isinstance(voice, ReferenceVoice):
                raise InvalidRequestError(
                    "'audio' must be a url+, base64+, data: or file+ source.", param="audio"
                )
        prepared = state.reference.prepare(voice)
        return state.voice_store.create(
            owner,
            name,
            prepared.samples,
            prepared.sample_rate,
            transcript=prepared.transcript,
            transcript_source=prepared.transcript_source,
            quality=prepared.quality,
        )

    # Fetch, decode, clean-up and Whisper run under a reference slot (429 + Retry-After when full).
    async with state.reference_limiter.slot():
        meta = await asyncio.to_thread(register)
    return JSONResponse(voice_object(meta).model_dump(), status_code=201)


@router.get("/v1/audio/voices", response_model=VoiceList, summary="List voices (registered and presets)")
async def list_voices(request: Request) -> VoiceList:
    state = request.app.state
    owner, admin = owner_of(request)
    metas = await asyncio.to_thread(state.voice_store.list, owner, admin=admin)
    data = [voice_object(m) for m in metas]
    registry = state.engines
    for backend in registry.names():
        engine = registry.get(backend)
        if engine.voice_kind != "preset" or not registry.availability(backend).ok:
            continue
        try:
            presets = await asyncio.to_thread(engine.preset_voices)
        except Exception:  # a backend that fails to load lists no presets
            continue
        data.extend(VoiceObject(id=p, name=p, type="preset", backend=backend) for p in presets)
    return VoiceList(data=data)


@router.get("/v1/audio/voices/{voice_id}", response_model=VoiceObject, summary="Retrieve a registered voice")
async def get_voice(voice_id: str, request: Request) -> VoiceObject:
    owner, admin = owner_of(request)
    meta = await asyncio.to_thread(request.app.state.voice_store.get, owner, voice_id, admin=admin)
    return voice_object(meta)


@router.delete(
    "/v1/audio/voices/{voice_id}", response_model=VoiceDeleted, summary="Delete a registered voice"
)
async def delete_voice(voice_id: str, request: Request) -> VoiceDeleted:
    owner, admin = owner_of(request)
    meta = await asyncio.to_thread(request.app.state.voice_store.delete, owner, voice_id, admin=admin)
    return VoiceDeleted(id=meta.id)
