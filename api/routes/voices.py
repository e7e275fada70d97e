"""Voice registry: ``/v1/audio/voices`` (register, list, get, delete) and quality reports."""

from __future__ import annotations

import asyncio
from typing import Any, Literal, cast

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.engines.base import ReferenceVoice
from api.errors import ConflictError, InvalidRequestError, UnsupportedMediaError, parse_json_body
from api.routes.deps import CallerDep, ServicesDep
from api.schemas.common import clean_transcript
from api.schemas.voices import VoiceCreateJSON, VoiceDeleted, VoiceList, VoiceObject
from api.services import Services
from api.settings import Settings
from api.voices.store import TranscriptSource, VoiceMeta, is_voice_id, quota_error, validate_name

router = APIRouter(tags=["voices"])


def _check_room(services: Services, owner: str, name: str) -> None:
    """Refuse early (before decoding and Whisper) a taken name or a full namespace; the store
    checks both again under its lock."""
    store = services.voice_store
    if store.find(owner, name) is not None and not is_voice_id(name):
        raise ConflictError(f"A voice named '{name}' already exists.", param="name")
    limit = services.settings.max_voices_per_key
    if limit and store.count(owner) >= limit:
        raise quota_error(limit)


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


async def _form_fields(
    request: Request, settings: Settings
) -> tuple[str, bytes | None, str | None, str | None]:
    """(name, file bytes | None, source spec | None, transcript) from multipart or JSON."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8, max_part_size=settings.max_voice_bytes)
        name, transcript, upload = form.get("name"), form.get("transcript"), form.get("file")
        if not isinstance(name, str):
            raise InvalidRequestError("Field 'name' is required.", param="name")
        if upload is None or isinstance(upload, str):
            raise InvalidRequestError("Field 'file' (the reference audio) is required.", param="file")
        text = clean_transcript(transcript, max_chars=settings.max_transcript_chars)
        data = await upload.read()
        return name, data, None, text
    if content_type.startswith("application/json"):
        body = parse_json_body(VoiceCreateJSON, await request.body())
        return body.name, None, body.audio, body.transcript
    raise UnsupportedMediaError(
        "Send multipart/form-data (name, file, transcript) or JSON (name, audio, transcript)."
    )


@router.post("/v1/audio/voices", status_code=201, response_model=VoiceObject, summary="Register a voice")
async def create_voice(request: Request, services: ServicesDep, caller: CallerDep) -> Any:
    owner, admin = caller.owner, caller.is_admin
    name, data, spec, transcript = await _form_fields(request, services.settings)
    validate_name(name)
    await asyncio.to_thread(_check_room, services, owner, name)

    def register() -> VoiceMeta:
        if data is not None:
            voice = services.voice_resolver.clip_from_upload(data, transcript)
        else:
            assert spec is not None
            found = services.voice_resolver.resolve(spec, owner=owner, prompt_text=transcript, admin=admin)
            if not isinstance(found, ReferenceVoice):
                raise InvalidRequestError(
                    "'audio' must be a url+, base64+, data: or file+ source.", param="audio"
                )
            voice = found
        prepared = services.reference.prepare(voice)
        return services.voice_store.create(
            owner,
            name,
            prepared.samples,
            prepared.sample_rate,
            transcript=prepared.transcript,
            # ReferencePrep only sets given/stored/whisper (its field is typed as a plain str)
            transcript_source=cast(TranscriptSource | None, prepared.transcript_source),
            quality=prepared.quality,
        )

    # Fetch, decode, clean-up and Whisper run under a reference slot (429 + Retry-After when full).
    async with services.reference_limiter.slot():
        meta = await asyncio.to_thread(register)
    return JSONResponse(voice_object(meta).model_dump(), status_code=201)


def _preset_objects(services: Services) -> list[VoiceObject]:
    """Preset voices of every available preset backend, in a stable order (blocking)."""
    out: list[VoiceObject] = []
    registry = services.engines
    for backend in registry.names():
        engine = registry.get(backend)
        if engine.voice_kind != "preset" or not registry.availability(backend).ok:
            continue
        try:
            presets = engine.preset_voices()
        except Exception:  # a backend that fails to load lists no presets
            continue
        out.extend(VoiceObject(id=p, name=p, type="preset", backend=backend) for p in presets)
    return out


def _bad_cursor() -> InvalidRequestError:
    return InvalidRequestError("'after' must be the id of the last voice of an earlier page.", param="after")


def _list_page(
    services: Services, owner: str, admin: bool, limit: int, after: str | None, kind: str | None
) -> VoiceList:
    """Registered voices (oldest first), then presets: one sequence, paged by ``limit``/``after``."""
    data: list[VoiceObject] = []
    preset_start = 0
    after_registered = after is not None and is_voice_id(after)
    if after_registered and kind == "preset":
        raise _bad_cursor()
    if kind != "preset" and (after is None or after_registered):
        page = services.voice_store.list(owner, admin=admin, limit=limit, after=after)
        data = [voice_object(m) for m in page.voices]
        if page.has_more:
            return VoiceList(data=data, first_id=data[0].id, last_id=data[-1].id, has_more=True)
    presets = _preset_objects(services) if kind != "registered" else []
    if after is not None and not after_registered:
        ids = [p.id for p in presets]
        if after not in ids:
            raise _bad_cursor()
        preset_start = ids.index(after) + 1
    room = limit - len(data)
    data.extend(presets[preset_start : preset_start + room])
    has_more = preset_start + room < len(presets)
    return VoiceList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )


@router.get("/v1/audio/voices", response_model=VoiceList, summary="List voices (registered, then presets)")
async def list_voices(
    services: ServicesDep,
    caller: CallerDep,
    limit: int = Query(default=20, ge=1, le=100, description="Voices per page (1-100)."),
    after: str | None = Query(
        default=None, max_length=200, description="Cursor: the `last_id` of the previous page."
    ),
    kind: Literal["registered", "preset"] | None = Query(
        default=None, alias="type", description="Only registered voices, or only presets."
    ),
) -> VoiceList:
    """OpenAI-style list: registered voices oldest first, then the presets of available backends,
    as one sequence paged with ``limit`` and ``after`` (``has_more``, ``first_id``, ``last_id``)."""
    return await asyncio.to_thread(_list_page, services, caller.owner, caller.is_admin, limit, after, kind)


@router.get("/v1/audio/voices/{voice_id}", response_model=VoiceObject, summary="Retrieve a registered voice")
async def get_voice(voice_id: str, services: ServicesDep, caller: CallerDep) -> VoiceObject:
    meta = await asyncio.to_thread(services.voice_store.get, caller.owner, voice_id, admin=caller.is_admin)
    return voice_object(meta)


@router.delete(
    "/v1/audio/voices/{voice_id}", response_model=VoiceDeleted, summary="Delete a registered voice"
)
async def delete_voice(voice_id: str, services: ServicesDep, caller: CallerDep) -> VoiceDeleted:
    meta = await asyncio.to_thread(services.voice_store.delete, caller.owner, voice_id, admin=caller.is_admin)
    return VoiceDeleted(id=meta.id)
