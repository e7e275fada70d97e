"""``POST /v1/audio/speech/captioned``: speech with word timestamps (JSON, or SSE with each chunk's
words), a thin adapter over :meth:`api.synthesis.service.SpeechService.start` with ``timestamps``."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from api.audio.encode import encode_audio
from api.captions.cues import render
from api.captions.words import TimedWord
from api.routes.deps import CallerDep, ServicesDep
from api.routes.speech import ClosingStreamingResponse, speech_job
from api.schemas.captions import CaptionedSpeechRequest, CaptionedSpeechResponse
from api.synthesis.service import SpeechRun

router = APIRouter(tags=["speech"])


def _words(words: list[TimedWord]) -> list[dict[str, object]]:
    return [w.to_dict() for w in words]


def _warnings(run: SpeechRun) -> list[str]:
    return list(run.plan.warnings)


async def _sse(run: SpeechRun, captions: str | None) -> AsyncIterator[bytes]:
    async for data in run:
        event = {
            "type": "speech.audio.delta",
            "audio": base64.b64encode(data).decode("ascii"),
            "words": _words(run.take_words()),
        }
        yield f"data: {json.dumps(event)}\n\n".encode()
    done: dict[str, object] = {
        "type": "speech.audio.done",
        "usage": run.usage,
        "words": _words(run.take_words()),
    }
    done["duration"] = run.seconds
    if captions is not None:
        done["captions"] = render(run.words, captions, duration=run.seconds)  # type: ignore[arg-type]
    yield f"data: {json.dumps(done)}\n\n".encode()


@router.post(
    "/v1/audio/speech/captioned",
    summary="Generate audio with word timestamps (and SRT/WebVTT captions)",
    response_model=CaptionedSpeechResponse,
    responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}},
)
async def create_captioned_speech(
    body: CaptionedSpeechRequest, services: ServicesDep, caller: CallerDep
) -> StreamingResponse | JSONResponse:
    job = speech_job(body, caller.owner, caller.is_admin)
    sse = body.stream_format == "sse"
    job = dataclasses.replace(job, timestamps=True, streaming=sse)
    run = await services.speech.start(job)
    if sse:
        headers = run.headers | {"Cache-Control": "no-cache"}
        return ClosingStreamingResponse(
            _sse(run, body.captions), run.aclose, media_type="text/event-stream", headers=headers
        )
    try:
        audio = await run.collect()
    finally:
        await run.aclose()
    data = await asyncio.to_thread(encode_audio, audio.samples, audio.sample_rate, job.response_format)
    out = CaptionedSpeechResponse(
        audio=base64.b64encode(data).decode("ascii"),
        words=[w.to_dict() for w in run.words],  # type: ignore[misc]
        duration=audio.duration,
        captions=render(run.words, body.captions, duration=audio.duration) if body.captions else None,
        warnings=_warnings(run),
    )
    return JSONResponse(out.model_dump(), headers=run.headers)
