"""``POST /v1/audio/speech``: OpenAI's speech endpoint (audio bytes or SSE)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.audio.encode import CONTENT_TYPES, StreamEncoder
from api.engines.base import AudioChunk
from api.schemas.speech import SpeechRequest
from api.synthesis.limiter import SynthesisLimiter
from api.synthesis.service import SpeechPlan, SpeechService

router = APIRouter(tags=["speech"])

# Extra response headers a cloning engine/voice can contribute (quality report, transcript).
HEADER_HOOK = "speech_headers"


def _usage(plan: SpeechPlan, seconds: float) -> dict[str, int]:
    # Tokens are not meaningful for these models; we report characters in and 20 ms audio frames out.
    out = round(seconds * 50)
    return {"input_tokens": plan.input_chars, "output_tokens": out, "total_tokens": plan.input_chars + out}


async def _audio_bytes(
    service: SpeechService, plan: SpeechPlan, first: AudioChunk, chunks: AsyncIterator[AudioChunk]
) -> AsyncIterator[tuple[bytes, float]]:
    encoder = StreamEncoder(plan.response_format, first.sample_rate, first.channels)
    seconds = first.duration
    data = await asyncio.to_thread(encoder.write, first.samples)
    if data:
        yield data, seconds
    async for chunk in chunks:
        seconds += chunk.duration
        data = await asyncio.to_thread(encoder.write, chunk.samples)
        if data:
            yield data, seconds
    tail = await asyncio.to_thread(encoder.close)
    yield tail, seconds


class ClosingStreamingResponse(StreamingResponse):
    """A streaming response that releases its resources (slot, producer thread) however it ends:
    completed, failed, or the client went away before or during the body."""

    def __init__(self, content: AsyncIterator[bytes], stack: AsyncExitStack, **kw: Any) -> None:
        super().__init__(content, **kw)
        self._stack = stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._stack.aclose()


@router.post(
    "/v1/audio/speech",
    summary="Generate audio from text (OpenAI-compatible)",
    response_class=StreamingResponse,
    responses={200: {"content": {ct: {} for ct in set(CONTENT_TYPES.values())} | {"text/event-stream": {}}}},
)
async def create_speech(body: SpeechRequest, request: Request) -> StreamingResponse:
    state = request.app.state
    service: SpeechService = state.speech
    limiter: SynthesisLimiter = state.limiter
    owner: str | None = getattr(request.state, "owner", None)

    stack = AsyncExitStack()
    await stack.enter_async_context(limiter.slot())
    try:
        plan = await service.plan(body, owner=owner, streaming=True)
        chunks = service.stream(plan)
        stack.push_async_callback(chunks.aclose)  # type: ignore[attr-defined]
        # The first chunk is computed before the response starts, so its errors get a proper status.
        first = await anext(chunks)
    except BaseException:
        await stack.aclose()
        raise

    headers = {"X-Model-Backend": plan.backend}
    hook = getattr(state, HEADER_HOOK, None)
    if hook is not None:
        headers.update(hook(plan))

    async def audio() -> AsyncIterator[bytes]:
        async for data, _ in _audio_bytes(service, plan, first, chunks):
            if data:
                yield data

    async def sse() -> AsyncIterator[bytes]:
        seconds = 0.0
        async for data, total in _audio_bytes(service, plan, first, chunks):
            seconds = total
            if data:
                event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
                yield f"data: {json.dumps(event)}\n\n".encode()
        done = {"type": "speech.audio.done", "usage": _usage(plan, seconds)}
        yield f"data: {json.dumps(done)}\n\n".encode()

    if body.stream_format == "sse":
        headers["Cache-Control"] = "no-cache"
        return ClosingStreamingResponse(sse(), stack, media_type="text/event-stream", headers=headers)
    return ClosingStreamingResponse(
        audio(), stack, media_type=CONTENT_TYPES[plan.response_format], headers=headers
    )
