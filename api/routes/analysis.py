"""Reference-clip analysis and tuning: ``/v1/audio/analyze``, ``/v1/audio/voices/{id}/quality``,
``/v1/audio/tune``."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request

from api.audio.quality import analyze_clip
from api.engines.base import ReferenceVoice
from api.errors import InvalidRequestError, UnsupportedMediaError, parse_json_body
from api.routes.deps import CallerDep, ServicesDep
from api.schemas.analysis import AnalyzeJSON, TuneRequest
from api.schemas.common import clean_transcript
from api.synthesis.tuning import recommend

router = APIRouter(tags=["analysis"])


@router.post("/v1/audio/analyze", summary="Quality report of a reference clip (upload or any voice source)")
async def analyze(request: Request, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    owner, admin = caller.owner, caller.is_admin
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=4, max_part_size=services.settings.max_voice_bytes)
        upload, transcript = form.get("file"), form.get("transcript")
        if upload is None or isinstance(upload, str):
            raise InvalidRequestError("Field 'file' (the audio to analyze) is required.", param="file")
        data = await upload.read()
        given = clean_transcript(transcript, max_chars=services.settings.max_transcript_chars)

        def run_upload() -> dict[str, Any]:
            voice = services.voice_resolver.clip_from_upload(data, given)
            return dict(services.reference.prepare(voice).quality)

        async with services.reference_limiter.slot():  # decode + Whisper: a reference slot (429 when full)
            return await asyncio.to_thread(run_upload)
    if content_type.startswith("application/json"):
        body = parse_json_body(AnalyzeJSON, await request.body())

        def run_spec() -> dict[str, Any]:
            voice = services.voice_resolver.resolve(
                body.voice, owner=owner, prompt_text=body.transcript, admin=admin
            )
            if not isinstance(voice, ReferenceVoice):
                raise InvalidRequestError(f"'{body.voice[:64]}' is not a reference clip.", param="voice")
            return dict(services.reference.prepare(voice).quality)

        async with services.reference_limiter.slot():  # fetch + decode + Whisper: a reference slot
            return await asyncio.to_thread(run_spec)
    raise UnsupportedMediaError("Send multipart/form-data (file, transcript) or JSON (voice, transcript).")


@router.get("/v1/audio/voices/{voice_id}/quality", summary="Stored quality report of a registered voice")
async def voice_quality(voice_id: str, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    owner, admin = caller.owner, caller.is_admin

    def run() -> dict[str, Any]:
        meta = services.voice_store.get(owner, voice_id, admin=admin)
        if meta.quality:
            return dict(meta.quality)
        samples, rate = services.voice_store.load_audio(meta)
        return analyze_clip(samples, rate, transcript=meta.transcript).to_dict()

    return await asyncio.to_thread(run)


@router.post("/v1/audio/tune", summary="Recommended model and settings for a priority, with a time estimate")
async def tune(body: TuneRequest, services: ServicesDep) -> dict[str, Any]:
    rec = await asyncio.to_thread(
        recommend, services.engines, services.rtf, body.priority, body.input, body.speed
    )
    return asdict(rec) | {"measured_rtfs": services.rtf.snapshot()}
