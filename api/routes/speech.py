"""``POST /v1/audio/speech``: OpenAI's speech endpoint (audio bytes or SSE), a thin adapter over
:meth:`api.synthesis.service.SpeechService.start`."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.audio.encode import CONTENT_TYPES
from api.routes.deps import CallerDep, ServicesDep
from api.schemas.speech import SpeechRequest
from api.synthesis.request import SpeechJob
from api.synthesis.service import SpeechRun

router = APIRouter(tags=["speech"])


def speech_job(body: SpeechRequest, owner: str, admin: bool) -> SpeechJob:
    """The HTTP request as the pipeline's domain request."""
    return SpeechJob(
        model=body.model,
        text=body.input,
        voice=body.voice_spec(),
        response_format=body.response_format,
        speed=body.speed,
        seed=body.seed,
        lang=body.lang,
        num_steps=body.num_steps,
        guidance_scale=body.guidance_scale,
        t_shift=body.t_shift,
        priority=body.priority,
        prompt_text=body.prompt_text,
        input_format=body.input_format,
        owner=owner,
        admin=admin,
    )


class ClosingStreamingResponse(StreamingResponse):
    """A streaming response that closes its run (slot, producer thread) however it ends:
    completed, failed, or the client gone before or during the body."""

    def __init__(
        self, content: AsyncIterator[bytes], close: Callable[[], Awaitable[None]], **kw: Any
    ) -> None:
        super().__init__(content, **kw)
        self._close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._close()


async def _sse(run: SpeechRun) -> AsyncIterator[bytes]:
    async for data in run:
        event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
        yield f"data: {json.dumps(event)}\n\n".encode()
    yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': run.usage})}\n\n".encode()


@router.post(
    "/v1/audio/speech",
    summary="Generate audio from text (OpenAI-compatible)",
    response_class=StreamingResponse,
    responses={200: {"content": {ct: {} for ct in set(CONTENT_TYPES.values())} | {"text/event-stream": {}}}},
)
async def create_speech(body: SpeechRequest, services: ServicesDep, caller: CallerDep) -> StreamingResponse:
    run = await services.speech.start(speech_job(body, caller.owner, caller.is_admin))
    if body.stream_format == "sse":
        headers = run.headers | {"Cache-Control": "no-cache"}
        return ClosingStreamingResponse(
            _sse(run), run.aclose, media_type="text/event-stream", headers=headers
        )
    return ClosingStreamingResponse(aiter(run), run.aclose, media_type=run.media_type, headers=run.headers)
