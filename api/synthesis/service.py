"""The speech pipeline: request → resolve voice → plan → engine → encode.

Heavy work (model loading, voice decoding, synthesis, encoding) runs in worker threads; the
event loop only moves chunks. Streaming runs the engine in a producer thread that checks a
cancellation flag between chunks, so a dropped client stops synthesis within one chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from api.engines.base import AudioChunk, PresetVoice, ReferenceVoice, SpeechEngine, SynthesisOptions, Voice
from api.engines.registry import EngineRegistry
from api.errors import InvalidRequestError
from api.schemas.speech import SpeechRequest
from api.settings import Settings
from api.synthesis.limiter import Limiter
from api.synthesis.reference import ReferencePrep
from api.text.split import split_text

SOURCE_PREFIXES = ("file+", "url+", "base64+", "data:")


class VoiceResolverLike(Protocol):
    def resolve(
        self, spec: str, *, owner: str | None = None, prompt_text: str | None = None, admin: bool = False
    ) -> Voice: ...


@dataclass(frozen=True)
class PreparedVoice:
    """A request's backend (loaded) and its voice, ready for the engine."""

    backend: str
    engine: SpeechEngine
    voice: Voice


@dataclass
class SpeechPlan:
    backend: str
    engine: SpeechEngine
    voice: Voice
    chunks: list[str]
    options: SynthesisOptions
    response_format: str
    input_chars: int


class SpeechService:
    def __init__(
        self,
        settings: Settings,
        engines: EngineRegistry,
        resolver: VoiceResolverLike,
        reference: ReferencePrep,
    ) -> None:
        self.settings = settings
        self.engines = engines
        self.resolver = resolver
        self.reference = reference
        self._producers = 0  # producer threads running (streams, including abandoned ones finishing a chunk)
        self._producers_lock = threading.Lock()

    @property
    def producers(self) -> int:
        return self._producers

    # -- plan -------------------------------------------------------------------------------
    def check_input(self, text: str) -> None:
        """Cheap checks of ``input`` (length, emptiness): run them before waiting for a slot."""
        limit = self.settings.max_input_chars
        if len(text) > limit:
            raise InvalidRequestError(
                f"'input' is too long: {len(text)} characters, the limit is {limit}.",
                param="input",
                code="string_above_max_length",
            )
        if not text.strip():
            raise InvalidRequestError("'input' is empty.", param="input", code="empty_input")

    def resolve_voice(
        self,
        spec: str,
        engine: SpeechEngine,
        *,
        owner: str | None,
        prompt_text: str | None,
        admin: bool = False,
    ) -> Voice:
        """Voice spec → preset or reference clip, following VOICE_ALIASES (blocking)."""
        alias = self.settings.voice_aliases.get(spec.lower()) if len(spec) < 64 else None
        if engine.voice_kind == "preset":
            if spec.startswith(SOURCE_PREFIXES):
                raise InvalidRequestError(
                    f"Model '{engine.name}' speaks preset voices only; use a ZipVoice model to clone a voice.",
                    param="voice",
                )
            if alias is not None:
                presets = engine.preset_voices()
                return PresetVoice(alias if alias in presets else self.settings.kokoro_default_voice)
            return PresetVoice(spec)
        voice = self.resolver.resolve(alias or spec, owner=owner, prompt_text=prompt_text, admin=admin)
        if isinstance(voice, ReferenceVoice):
            voice = self.reference.for_request(voice, engine.channels)
        return voice

    def options(self, req: SpeechRequest) -> SynthesisOptions:
        return SynthesisOptions(
            speed=req.speed,
            seed=req.seed,
            lang=req.lang,
            num_steps=req.num_steps,
            guidance_scale=req.guidance_scale,
            t_shift=req.t_shift,
        )

    async def prepare_voice(
        self,
        req: SpeechRequest,
        *,
        owner: str | None = None,
        admin: bool = False,
        reference_slots: Limiter | None = None,
    ) -> PreparedVoice:
        """Step 1, before any synthesis slot: load the backend and resolve the voice.

        Reference voices (fetch, decode, clean-up, Whisper) are prepared under a slot of
        ``reference_slots`` (429 when its queue is full); preset voices need none.
        """
        self.check_input(req.input)
        backend = self.engines.resolve_model(req.model)
        engine = await asyncio.to_thread(self.engines.loaded, backend)
        resolve = functools.partial(
            self.resolve_voice,
            req.voice_spec(),
            engine,
            owner=owner,
            prompt_text=req.prompt_text,
            admin=admin,
        )
        if engine.voice_kind == "preset" or reference_slots is None:
            voice = await asyncio.to_thread(resolve)
        else:
            async with reference_slots.slot():
                voice = await asyncio.to_thread(resolve)
        return PreparedVoice(backend, engine, voice)

    async def plan(
        self,
        req: SpeechRequest,
        *,
        owner: str | None = None,
        admin: bool = False,
        streaming: bool = False,
        prepared: PreparedVoice | None = None,
    ) -> SpeechPlan:
        """Step 2 (cheap): split the text. Without ``prepared``, step 1 runs here first."""
        if prepared is None:
            prepared = await self.prepare_voice(req, owner=owner, admin=admin)
        backend, engine, voice = prepared.backend, prepared.engine, prepared.voice
        if engine.whole_text:
            chunks = [req.input]
        else:
            chunks = await asyncio.to_thread(
                split_text, req.input, engine.max_chunk_chars, first_alone=streaming
            )
        return SpeechPlan(
            backend, engine, voice, chunks, self.options(req), req.response_format, len(req.input)
        )

    def response_headers(self, plan: SpeechPlan) -> dict[str, str]:
        """Headers describing the voice used (quality report, transcript) for cloning requests."""
        voice = plan.voice
        if not isinstance(voice, ReferenceVoice):
            return {}
        return self.reference.headers(voice)

    # -- run --------------------------------------------------------------------------------
    @staticmethod
    def iter_audio(
        plan: SpeechPlan, cancel: threading.Event | None = None, on_chunk: Callable[[], None] | None = None
    ) -> Iterator[AudioChunk]:
        for chunk in plan.engine.synthesize(plan.chunks, plan.voice, plan.options):
            if on_chunk is not None:
                on_chunk()
            if cancel is not None and cancel.is_set():
                return
            yield chunk

    @staticmethod
    def collect(plan: SpeechPlan) -> AudioChunk:
        """Run the whole plan and join the chunks (blocking)."""
        pieces = list(SpeechService.iter_audio(plan))
        if not pieces:
            return AudioChunk(np.zeros((plan.engine.channels, 0), dtype=np.float32), plan.engine.sample_rate)
        rate = pieces[0].sample_rate
        return AudioChunk(np.concatenate([p.samples for p in pieces], axis=-1), rate)

    async def stream(
        self, plan: SpeechPlan, *, prefetch: int = 1, on_chunk: Callable[[], None] | None = None
    ) -> AsyncIterator[AudioChunk]:
        """Chunks as they are synthesized. The next chunk is computed while this one is sent.

        ``on_chunk`` is called (in the producer thread) after each chunk the engine produced.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        room = threading.Semaphore(prefetch + 1)
        done = object()

        def produce() -> None:
            with self._producers_lock:
                self._producers += 1
            try:
                for chunk in self.iter_audio(plan, cancel, on_chunk):
                    while not room.acquire(timeout=0.1):
                        if cancel.is_set():
                            return
                    if cancel.is_set():
                        return
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
                loop.call_soon_threadsafe(queue.put_nowait, done)
            except BaseException as exc:  # handed to the consumer
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                with self._producers_lock:
                    self._producers -= 1

        worker = loop.run_in_executor(None, produce)
        try:
            while True:
                item = await queue.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                room.release()
                yield item
        finally:
            cancel.set()
            room.release()
            with contextlib.suppress(BaseException):
                await asyncio.shield(worker)
