"""``POST /v1/audio/speech``: OpenAI's speech endpoint (audio bytes or SSE)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.audio.encode import CONTENT_TYPES, StreamEncoder
from api.auth import DEFAULT_NAMESPACE
from api.engines.base import AudioChunk
from api.errors import APIError
from api.metrics import Metrics, model_label
from api.schemas.speech import SpeechRequest
from api.synthesis.limiter import SynthesisLimiter
from api.synthesis.service import SpeechPlan, SpeechService
from api.synthesis.tuning import RTFTracker, recommend

log = logging.getLogger(__name__)
router = APIRouter(tags=["speech"])


def _usage(plan: SpeechPlan, seconds: float) -> dict[str, int]:
    # Tokens are not meaningful for these models: we report input characters and 20 ms audio frames.
    out = round(seconds * 50)
    return {"input_tokens": plan.input_chars, "output_tokens": out, "total_tokens": plan.input_chars + out}


async def apply_priority(body: SpeechRequest, state: Any) -> SpeechRequest:
    """``priority`` on a ZipVoice request picks model, steps and guidance (explicit values win)."""
    backend = state.engines.resolve_model(body.model)
    if backend not in ("zipvoice", "zipvoice_distill") or body.priority is None:
        return body
    rec = await asyncio.to_thread(recommend, state.engines, state.rtf, body.priority, body.input, body.speed)
    return body.model_copy(
        update={
            "model": rec.model,
            "num_steps": body.num_steps or rec.num_steps,
            "guidance_scale": rec.guidance_scale if body.guidance_scale is None else body.guidance_scale,
        }
    )


class ClosingStreamingResponse(StreamingResponse):
    """A streaming response that releases its resources (slot, producer thread) however it ends:
    completed, failed, or the client gone before or during the body."""

    def __init__(self, content: AsyncIterator[bytes], stack: AsyncExitStack, **kw: Any) -> None:
        super().__init__(content, **kw)
        self._stack = stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._stack.aclose()


class _EncodedStream:
    """Encodes engine chunks to the response format, off the event loop, and records metrics."""

    def __init__(
        self,
        plan: SpeechPlan,
        first: AudioChunk,
        rest: AsyncIterator[AudioChunk],
        metrics: Metrics,
        rtf: RTFTracker | None = None,
        usage: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.plan, self.first, self.rest, self.metrics, self.rtf = plan, first, rest, metrics, rtf
        self.usage = usage
        self.seconds = 0.0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._encode():
                yield data
        finally:  # completed, failed or abandoned: the audio produced counts
            if self.usage is not None and self.seconds > 0:
                try:
                    await self.usage(self.seconds)
                except APIError as exc:
                    log.warning("usage not recorded: %s", exc.message)

    async def _encode(self) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        encoder = StreamEncoder(self.plan.response_format, self.first.sample_rate, self.first.channels)
        chunk: AudioChunk | None = self.first
        while chunk is not None:
            self.seconds += chunk.duration
            data = await asyncio.to_thread(encoder.write, chunk.samples)
            if data:
                yield data
            try:
                chunk = await anext(self.rest, None)
            except APIError as exc:
                # Headers are gone already: end the body early; the client sees a truncated stream.
                log.warning("speech stream aborted after %.1f s of audio: %s", self.seconds, exc.message)
                self.metrics.speech.labels(self.plan.backend, str(exc.status_code)).inc()
                return
        tail = await asyncio.to_thread(encoder.close)
        if tail:
            yield tail
        backend = self.plan.backend
        self.metrics.speech.labels(backend, "200").inc()
        if self.rtf is not None:
            defaults = getattr(self.plan.engine, "defaults", None)
            steps = int(self.plan.options.num_steps or getattr(defaults, "num_steps", 0) or 0)
            self.rtf.record(backend, steps, time.perf_counter() - started, self.seconds)
        if self.seconds > 0:
            self.metrics.audio_seconds.labels(backend).inc(self.seconds)
            self.metrics.rtf.labels(backend).observe((time.perf_counter() - started) / self.seconds)


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
    metrics: Metrics = state.metrics
    owner: str | None = getattr(request.state, "owner", None)

    started = time.perf_counter()
    stack = AsyncExitStack()
    try:
        service.check_input(body.input)  # a bad input gets its 400 at once, not after a wait for a slot
        await state.limits.check_quota(owner or DEFAULT_NAMESPACE)
        if body.priority is not None:
            body = await apply_priority(body, state)
        admin = bool(getattr(request.state, "is_admin", False))
        # The voice first, under a reference slot (a slow url+ fetch or a Whisper pass must not
        # hold a synthesis slot); then the synthesis slot.
        prepared = await service.prepare_voice(
            body, owner=owner, admin=admin, reference_slots=state.reference_limiter
        )
        await stack.enter_async_context(limiter.slot())
        plan = await service.plan(body, owner=owner, admin=admin, streaming=True, prepared=prepared)
        chunks = service.stream(plan, on_chunk=metrics.chunks.labels(plan.backend).inc)
        stack.push_async_callback(chunks.aclose)  # type: ignore[attr-defined]
        # The first chunk is computed before the response starts, so its errors get a proper status.
        first = await anext(chunks)
    except BaseException as exc:
        await stack.aclose()
        label = model_label(state.engines.resolve_model, body.model)  # never the client's string
        metrics.speech.labels(label, str(getattr(exc, "status_code", 500))).inc()
        raise
    metrics.ttfa.labels(plan.backend).observe(time.perf_counter() - started)

    headers = {"X-Model-Backend": plan.backend, **service.response_headers(plan)}
    key = owner or DEFAULT_NAMESPACE
    backend, chars = plan.backend, plan.input_chars

    async def record_usage(seconds: float) -> None:
        await state.limits.record(key, backend, chars, seconds)

    encoded = _EncodedStream(plan, first, chunks, metrics, state.rtf, record_usage)

    async def sse() -> AsyncIterator[bytes]:
        async for data in encoded:
            event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
            yield f"data: {json.dumps(event)}\n\n".encode()
        done = {"type": "speech.audio.done", "usage": _usage(plan, encoded.seconds)}
        yield f"data: {json.dumps(done)}\n\n".encode()

    if body.stream_format == "sse":
        headers["Cache-Control"] = "no-cache"
        return ClosingStreamingResponse(sse(), stack, media_type="text/event-stream", headers=headers)
    return ClosingStreamingResponse(
        encoded.__aiter__(), stack, media_type=CONTENT_TYPES[plan.response_format], headers=headers
    )
