"""The speech pipeline, one entry point: :meth:`SpeechService.start` takes a :class:`SpeechJob` and
returns a running :class:`SpeechRun`.

    job → input checks → quota → priority → voice (reference slot) → synthesis slot → plan
        → engine (producer thread) → encode → bytes; metrics, RTFs and usage recorded once

Heavy work (model loading, voice decoding, synthesis, encoding) runs in worker threads; the
event loop only moves chunks. Streaming runs the engine in a producer thread that checks a
cancellation flag between chunks, so a dropped client stops synthesis within one chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from api.audio.clip import resample
from api.audio.encode import CONTENT_TYPES, StreamEncoder, encode_audio
from api.auth import DEFAULT_NAMESPACE
from api.captions.align import align_audio
from api.captions.kokoro_timing import KokoroTimer
from api.captions.words import TextWord, TimedWord, split_words
from api.engines.base import (
    AudioChunk,
    PresetVoice,
    ReferenceVoice,
    SpeechEngine,
    SynthesisOptions,
    Voice,
    WordTimedEngine,
)
from api.engines.registry import EngineRegistry
from api.errors import APIError, InvalidRequestError, ServiceUnavailableError
from api.limits.base import UsageLimits
from api.metrics import Metrics, model_label
from api.settings import Settings
from api.synthesis.limiter import Limiter, ReferenceLimiter, SynthesisLimiter
from api.synthesis.reference import ReferencePrep
from api.synthesis.request import SpeechJob
from api.synthesis.tuning import RTFTracker, recommend
from api.text.split import split_text
from api.text.ssml import Break, Speech, SSMLDocument, is_ssml, parse_ssml
from api.transcribe.base import Transcriber, backend_installed, create_transcriber

log = logging.getLogger(__name__)


class VoiceResolverLike(Protocol):
    """What the pipeline asks of :class:`api.voices.sources.VoiceResolver` (blocking)."""

    def for_engine(
        self,
        spec: str,
        *,
        kind: Literal["preset", "clone"],
        engine_name: str,
        presets: Callable[[], list[str]],
        owner: str | None = None,
        prompt_text: str | None = None,
        admin: bool = False,
    ) -> Voice: ...


@dataclass(frozen=True)
class PreparedVoice:
    """A request's backend (loaded) and its voice, ready for the engine; ``voices``: the other
    voices an SSML request switches to with ``<voice name>`` (by name)."""

    backend: str
    engine: SpeechEngine
    voice: Voice
    voices: dict[str, Voice] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Segment:
    """One engine call of a plan: text chunks spoken with one voice and options; ``span`` is the
    SSML span it came from (its offsets in ``input``)."""

    chunks: list[str]
    voice: Voice
    options: SynthesisOptions
    span: Speech | None = None
    #: the input's words each chunk speaks (timestamps only), offsets in ``input``
    words: list[list[TextWord]] | None = None


@dataclass(frozen=True)
class Silence:
    """Exact silence (an SSML ``<break>``, ``<p>``/``<s>`` boundary or emphasis pause)."""

    seconds: float
    span: Break | None = None

    def samples(self, sample_rate: int) -> int:
        return round(self.seconds * sample_rate)


@dataclass
class SpeechPlan:
    backend: str
    engine: SpeechEngine
    voice: Voice
    chunks: list[str]
    options: SynthesisOptions
    response_format: str
    input_chars: int
    #: the engine calls and silences in output order (SSML); ``None``: one call with ``chunks``
    segments: list[Segment | Silence] | None = None
    #: SSML warnings (the ``X-SSML-Warnings`` header)
    warnings: tuple[str, ...] = ()
    #: timestamps: the input's words of each of ``chunks`` (plain text), offsets in ``input``
    chunk_words: list[list[TextWord]] | None = None
    timestamps: bool = False


@dataclass(frozen=True)
class TimedChunk(AudioChunk):
    """A chunk of audio with the input's words it speaks, timed in the whole output (seconds)."""

    words: tuple[TimedWord, ...] = ()


def words_per_chunk(chunks: list[str], words: list[TextWord]) -> list[list[TextWord]]:
    """``words`` (of the text ``chunks`` were split from, in order) shared out to the chunks by
    their word counts; the last chunk takes any left over, so every word is covered once."""
    out: list[list[TextWord]] = []
    i = 0
    for n, chunk in enumerate(chunks):
        k = len(split_words(chunk))
        take = words[i:] if n == len(chunks) - 1 else words[i : i + k]
        out.append(take)
        i += len(take)
    return out


def span_words(span: Speech, source: str) -> list[TextWord]:
    """The words a SSML span speaks with their offsets in ``input`` (``source``): plain text words
    where they are in the source, ``<say-as>``/``<sub>`` expansions over their whole element."""
    out: list[TextWord] = []
    cursor = span.char_start
    for w in split_words(span.text):
        piece = next((p for p in span.pieces if p.text_start <= w.char_start < p.text_end), None)
        if piece is None:
            out.append(TextWord(w.text, span.char_start, span.char_end))
            continue
        src = source[piece.char_start : piece.char_end]
        plain = "<" not in src and " ".join(src.split()) == " ".join(
            span.text[piece.text_start : piece.text_end].split()
        )
        at = source.find(w.text, max(cursor, piece.char_start), piece.char_end) if plain else -1
        if at >= 0:
            out.append(TextWord(w.text, at, at + len(w.text)))
            cursor = at + len(w.text)
        else:
            out.append(TextWord(w.text, piece.char_start, piece.char_end))
    return out


@dataclass(frozen=True)
class SpeechResult:
    """A whole synthesis (:meth:`SpeechService.collect`)."""

    audio: AudioChunk
    backend: str
    headers: dict[str, str]
    usage: dict[str, int]


def split_for(engine: SpeechEngine, text: str, *, streaming: bool) -> list[str]:
    """The text chunks ``engine`` gets (blocking, linear time): whole for ``whole_text`` engines, else
    sentences packed up to ``max_chunk_chars``. Streaming: the first chunk is a short lead (a short
    first sentence, or the first clause of a long one, at least a few words: ``lead_of``), so first
    audio waits for one clause; the rest is packed as for a whole file."""
    if engine.whole_text:
        return [text]
    return split_text(text, engine.max_chunk_chars, first_alone=streaming)


def clamp_speed(speed: float) -> float:
    return min(4.0, max(0.25, speed))


def conform(chunk: AudioChunk, sample_rate: int, channels: int) -> AudioChunk:
    """``chunk`` at ``sample_rate`` with ``channels`` (blocking): one output format across the
    spans of a request whatever voice spoke them."""
    x = chunk.samples
    if chunk.sample_rate != sample_rate:
        x = np.stack([resample(c, chunk.sample_rate, sample_rate) for c in x])
    if x.shape[0] != channels:
        mono = x.mean(axis=0, dtype=np.float32, keepdims=True)
        x = np.repeat(mono, channels, axis=0)
    return AudioChunk(np.asarray(x, dtype=np.float32), sample_rate)


def usage_of(input_chars: int, seconds: float) -> dict[str, int]:
    """OpenAI's ``usage``. Tokens are not meaningful for these models: input characters and 20 ms
    audio frames."""
    out = round(seconds * 50)
    return {"input_tokens": input_chars, "output_tokens": out, "total_tokens": input_chars + out}


class SpeechService:
    """The pipeline. ``limiter``/``reference_limiter`` (synthesis and reference slots), ``metrics`` and
    ``rtf`` default to fresh ones (the app passes its own); without ``limits`` no quota is checked
    and no usage recorded (``zipvoice-synth``)."""

    def __init__(
        self,
        settings: Settings,
        engines: EngineRegistry,
        resolver: VoiceResolverLike,
        reference: ReferencePrep,
        *,
        limiter: Limiter | None = None,
        reference_limiter: Limiter | None = None,
        limits: UsageLimits | None = None,
        metrics: Metrics | None = None,
        rtf: RTFTracker | None = None,
    ) -> None:
        self.settings = settings
        self.engines = engines
        self.resolver = resolver
        self.reference = reference
        self.limiter = limiter or SynthesisLimiter(settings.max_concurrency, settings.max_queue)
        self.reference_limiter = reference_limiter or ReferenceLimiter(
            settings.reference_concurrency, settings.reference_queue
        )
        self.limits = limits
        self.metrics = metrics or Metrics()
        self.rtf = rtf or RTFTracker()
        self._aligner: Transcriber | None = None
        self._aligner_lock = threading.Lock()
        self._producers = 0  # producer threads running (streams, including abandoned ones finishing a chunk)
        self._producers_lock = threading.Lock()

    @property
    def producers(self) -> int:
        return self._producers

    # -- the entry points ---------------------------------------------------------------------
    async def start(self, job: SpeechJob) -> SpeechRun:
        """Admit, plan and start ``job``; the first chunk is computed before this returns, so its
        errors (and every earlier one) are raised here, with their status. The caller must
        ``aclose()`` the run however it ends (it releases the synthesis slot and the producer)."""
        started = time.perf_counter()
        stack = AsyncExitStack()
        try:
            # a bad input gets its 400 at once, not after a wait for a slot
            doc = await self.parse(job)
            if self.limits is not None:
                await self.limits.check_quota(job.owner or DEFAULT_NAMESPACE)
            job = await self.apply_priority(job)
            # The voice first, under a reference slot (a slow url+ fetch or a Whisper pass must not
            # hold a synthesis slot); then the synthesis slot.
            prepared = await self.prepare_voice(job, doc)
            await stack.enter_async_context(self.limiter.slot())
            plan = await self.plan(job, prepared, doc)
            chunks = self.stream(plan, on_chunk=self.metrics.chunks.labels(plan.backend).inc)
            stack.push_async_callback(chunks.aclose)  # type: ignore[attr-defined]
            first = await anext(chunks)
            run = SpeechRun(self, job, plan, first, chunks, stack)
        except BaseException as exc:
            await stack.aclose()
            label = model_label(self.engines.resolve_model, job.model)  # never the client's string
            self.metrics.speech.labels(label, str(getattr(exc, "status_code", 500))).inc()
            raise
        self.metrics.ttfa.labels(plan.backend).observe(time.perf_counter() - started)
        return run

    async def collect(self, job: SpeechJob) -> SpeechResult:
        """The same path as :meth:`start`, the whole audio at once (a mid-stream error is raised)."""
        run = await self.start(job)
        try:
            audio = await run.collect()
        finally:
            await run.aclose()
        return SpeechResult(audio, run.backend, run.headers, run.usage)

    async def synthesize(self, job: SpeechJob) -> tuple[bytes, SpeechResult]:
        """:meth:`collect`, encoded as one whole file in ``job.response_format``."""
        result = await self.collect(job)
        audio = result.audio
        data = await asyncio.to_thread(encode_audio, audio.samples, audio.sample_rate, job.response_format)
        return data, result

    # -- the steps ----------------------------------------------------------------------------
    @staticmethod
    def is_ssml(job: SpeechJob) -> bool:
        return job.input_format == "ssml" or (job.input_format is None and is_ssml(job.text))

    async def parse(self, job: SpeechJob) -> SSMLDocument | None:
        """Check the input; SSML is parsed (hardened, off the loop) and its spoken text limited
        by ``MAX_INPUT_CHARS`` (the markup by four times that)."""
        if not self.is_ssml(job):
            self.check_input(job.text)
            return None
        limit = self.settings.max_input_chars
        doc = await asyncio.to_thread(parse_ssml, job.text, max_chars=4 * limit, lang=job.lang)
        doc.check_spoken_chars(limit)
        if not doc.speech:
            raise InvalidRequestError("'input' has no text to speak.", param="input", code="empty_input")
        return doc

    def check_input(self, text: str) -> None:
        """Cheap checks of the text (length, emptiness): run them before waiting for a slot."""
        limit = self.settings.max_input_chars
        if len(text) > limit:
            raise InvalidRequestError(
                f"'input' is too long: {len(text)} characters, the limit is {limit}.",
                param="input",
                code="string_above_max_length",
            )
        if not text.strip():
            raise InvalidRequestError("'input' is empty.", param="input", code="empty_input")

    async def apply_priority(self, job: SpeechJob) -> SpeechJob:
        """``priority`` picks model, steps and guidance among the profiles the engines declare
        (explicit values win); ignored for an engine that declares none."""
        if job.priority is None:
            return job
        backend = self.engines.resolve_model(job.model)
        if not self.engines.get(backend).priority_profiles:
            return job
        rec = await asyncio.to_thread(recommend, self.engines, self.rtf, job.priority, job.text, job.speed)
        return dataclasses.replace(
            job,
            model=rec.model,
            num_steps=job.num_steps or rec.num_steps,
            guidance_scale=rec.guidance_scale if job.guidance_scale is None else job.guidance_scale,
        )

    def voice_for(self, job: SpeechJob, engine: SpeechEngine) -> Voice:
        """The job's voice for ``engine`` (blocking): the resolver decides what the string is; ad-hoc
        reference clips are then prepared (clean-up, transcript)."""
        voice = self.resolver.for_engine(
            job.voice,
            kind=engine.voice_kind,
            engine_name=engine.name,
            presets=engine.preset_voices,
            owner=job.owner,
            prompt_text=job.prompt_text,
            admin=job.admin,
        )
        if isinstance(voice, ReferenceVoice):
            voice = self.reference.for_request(voice, engine.channels)
        return voice

    async def prepare_voice(self, job: SpeechJob, doc: SSMLDocument | None = None) -> PreparedVoice:
        """Before any synthesis slot: load the backend and resolve the voice (and the voices an SSML
        ``<voice name>`` switches to, through the same resolver). Reference voices (fetch, decode,
        clean-up, Whisper) are prepared under a reference slot (429 when its queue is full); preset
        voices need none."""
        if doc is None:
            self.check_input(job.text)
        backend = self.engines.resolve_model(job.model)
        engine = await asyncio.to_thread(self.engines.loaded, backend)
        names = sorted({s.voice for s in doc.speech if s.voice is not None} if doc else set())

        def resolve() -> tuple[Voice, dict[str, Voice]]:
            voice = self.voice_for(job, engine)
            others = {
                n: self.voice_for(dataclasses.replace(job, voice=n, prompt_text=None), engine) for n in names
            }
            return voice, others

        if engine.voice_kind == "preset":
            voice, others = await asyncio.to_thread(resolve)
        else:
            async with self.reference_limiter.slot():
                voice, others = await asyncio.to_thread(resolve)
        return PreparedVoice(backend, engine, voice, others)

    @staticmethod
    def options(job: SpeechJob) -> SynthesisOptions:
        return SynthesisOptions(
            speed=job.speed,
            seed=job.seed,
            lang=job.lang,
            num_steps=job.num_steps,
            guidance_scale=job.guidance_scale,
            t_shift=job.t_shift,
        )

    async def plan(
        self, job: SpeechJob, prepared: PreparedVoice, doc: SSMLDocument | None = None
    ) -> SpeechPlan:
        """Split the text (cheap): the first clause alone when streaming, for a quick first chunk.
        SSML: one segment per span (its voice, ``speed × rate`` clamped to 0.25–4, its language;
        dialog engines get the turn tag in effect), silences between."""
        backend, engine, voice = prepared.backend, prepared.engine, prepared.voice
        options = self.options(job)
        if doc is None:
            chunks = await asyncio.to_thread(split_for, engine, job.text, streaming=job.streaming)
            words = words_per_chunk(chunks, split_words(job.text)) if job.timestamps else None
            return SpeechPlan(
                backend,
                engine,
                voice,
                chunks,
                options,
                job.response_format,
                len(job.text),
                chunk_words=words,
                timestamps=job.timestamps,
            )

        def segments() -> list[Segment | Silence]:
            out: list[Segment | Silence] = []
            first = job.streaming
            for span in doc.spans:
                if isinstance(span, Break):
                    if span.seconds > 0:
                        out.append(Silence(span.seconds, span))
                    continue
                text = span.text
                if engine.whole_text and span.speaker and not text.lstrip().startswith("[S"):
                    text = f"{span.speaker} {text}"
                opts = dataclasses.replace(
                    options, speed=clamp_speed(job.speed * span.rate), lang=span.lang or job.lang
                )
                v = voice if span.voice is None else prepared.voices[span.voice]
                chunks = split_for(engine, text, streaming=first)
                words = words_per_chunk(chunks, span_words(span, job.text)) if job.timestamps else None
                out.append(Segment(chunks, v, opts, span, words))
                first = False
            return out

        planned = await asyncio.to_thread(segments)
        speech = [s for s in planned if isinstance(s, Segment)]
        return SpeechPlan(
            backend,
            engine,
            voice,
            [c for s in speech for c in s.chunks],
            options,
            job.response_format,
            doc.spoken_chars,
            segments=planned,
            warnings=doc.warnings,
            timestamps=job.timestamps,
        )

    def response_headers(self, plan: SpeechPlan) -> dict[str, str]:
        """Headers describing the voice used (quality report, transcript) for cloning requests;
        ``X-SSML-Warnings`` (``; ``-separated, ASCII) when the SSML had any."""
        voice = plan.voice
        headers = self.reference.headers(voice) if isinstance(voice, ReferenceVoice) else {}
        if plan.warnings:
            headers["X-SSML-Warnings"] = "; ".join(plan.warnings)
        return headers

    # -- run --------------------------------------------------------------------------------
    def iter_audio(
        self,
        plan: SpeechPlan,
        cancel: threading.Event | None = None,
        on_chunk: Callable[[], None] | None = None,
    ) -> Iterator[AudioChunk]:
        """The plan's audio in output order (blocking). SSML silences are exact zeros at the
        output's rate and channel count (the first chunk's, else the engine's). With timestamps
        every chunk is a :class:`TimedChunk`: its words aligned on the audio as emitted (after the
        engine's trimming and speed change) and shifted by where the chunk starts in the output."""
        rate, channels = 0, 0
        t = 0.0  # where the next chunk starts in the output (s)
        for part in plan.segments if plan.segments is not None else [None]:
            if cancel is not None and cancel.is_set():
                return
            if isinstance(part, Silence):
                rate, channels = rate or plan.engine.sample_rate, channels or plan.engine.channels
                silence = np.zeros((channels, part.samples(rate)), dtype=np.float32)
                t += silence.shape[-1] / rate
                yield TimedChunk(silence, rate) if plan.timestamps else AudioChunk(silence, rate)
                continue
            if part is None:
                chunks, voice, options, known = plan.chunks, plan.voice, plan.options, plan.chunk_words
            else:
                chunks, voice, options, known = part.chunks, part.voice, part.options, part.words
            timer = self.kokoro_timer(plan.engine) if plan.timestamps else None
            if timer is not None and isinstance(voice, PresetVoice):
                for i, text in enumerate(chunks):
                    if cancel is not None and cancel.is_set():
                        return
                    if not text.strip():
                        continue
                    words = known[i] if known is not None and i < len(known) else []
                    timed_chunk = self.kokoro_chunk(timer, plan.engine, text, voice, options, words, t)
                    if on_chunk is not None:
                        on_chunk()
                    rate, channels = rate or timed_chunk.sample_rate, channels or timed_chunk.channels
                    t += timed_chunk.duration
                    yield timed_chunk
                continue
            if cancel is not None:  # the engine may drop a cancelled request's waiting work (batching)
                options = dataclasses.replace(options, extra={**options.extra, "cancel": cancel})
            for i, chunk in enumerate(plan.engine.synthesize(chunks, voice, options)):
                if on_chunk is not None:
                    on_chunk()
                if cancel is not None and cancel.is_set():
                    return
                if not rate:
                    rate, channels = chunk.sample_rate, chunk.channels
                elif chunk.sample_rate != rate or chunk.channels != channels:
                    chunk = conform(chunk, rate, channels)
                if plan.timestamps:
                    words = known[i] if known is not None and i < len(known) else []
                    chunk = TimedChunk(chunk.samples, rate, self.time_words(chunk, words, t, options.lang))
                t += chunk.duration
                yield chunk

    def aligner(self) -> Transcriber | None:
        """The Whisper model that times words (``ALIGN_WHISPER_MODEL``; the reference transcriber's
        when it is the same model), created once, loaded on first use; ``None`` when not installed."""
        s = self.settings
        with self._aligner_lock:
            if self._aligner is None:
                shared = self.reference.transcriber
                if shared is not None and s.align_whisper_model == s.whisper_model:
                    self._aligner = shared.inner
                elif backend_installed(s.whisper_engine):
                    self._aligner = create_transcriber(
                        s.whisper_engine,
                        model=s.align_whisper_model,
                        cache_dir=s.cache_dir,
                        allow_downloads=s.allow_downloads,
                        cpu_threads=s.num_threads,
                    )
            return self._aligner

    @staticmethod
    def kokoro_timer(engine: SpeechEngine) -> KokoroTimer | None:
        """The engine's own word durations when it has them (:class:`WordTimedEngine`: Kokoro);
        ``None`` otherwise or when its model cannot report durations (then Whisper aligns)."""
        if not isinstance(engine, WordTimedEngine):
            return None
        timer: KokoroTimer | None = engine.word_timer()
        return timer

    def kokoro_chunk(
        self,
        timer: KokoroTimer,
        engine: Any,
        text: str,
        voice: PresetVoice,
        options: SynthesisOptions,
        words: list[TextWord],
        offset: float,
    ) -> TimedChunk:
        """One chunk of Kokoro speech with its words timed by the model's predicted durations."""
        lang = engine.language_for(voice.name, options.lang)
        style = engine.style(voice.name)  # an unknown voice is the engine's 400
        try:
            audio, rate, timed = timer.synthesize(
                text, style, speed=float(options.speed), lang=lang, time_offset=offset
            )
        except Exception:  # the durations could not be mapped: the plain engine, aligned by Whisper
            log.warning("Kokoro durations failed for a chunk; Whisper aligns it", exc_info=True)
            plain = next(iter(engine.synthesize([text], voice, options)))
            return TimedChunk(
                plain.samples, plain.sample_rate, self.time_words(plain, words, offset, options.lang)
            )
        chunk = AudioChunk(np.asarray(audio, dtype=np.float32).reshape(1, -1), rate)
        if len(timed) == len(words):
            end = offset + chunk.duration
            out = tuple(
                TimedWord(k.text, min(w.start, end), min(max(w.end, w.start), end), k.char_start, k.char_end)
                for k, w in zip(words, timed, strict=True)
            )
        else:
            out = self.time_words(chunk, words, offset, options.lang)
        return TimedChunk(chunk.samples, rate, out)

    def time_words(
        self, chunk: AudioChunk, words: list[TextWord], offset: float, lang: str | None
    ) -> tuple[TimedWord, ...]:
        """``words`` timed in ``chunk`` (forced alignment with Whisper word timestamps, blocking),
        clamped to the chunk so no word runs past the audio."""
        if not words:
            return ()
        transcriber = self.aligner()
        if transcriber is None:
            raise ServiceUnavailableError(
                "Word timestamps need a Whisper model (WHISPER_MODEL); none is available."
            )
        language = (lang or "en").split("-")[0].lower()
        timed = align_audio(
            chunk.samples, chunk.sample_rate, words, transcriber, offset=offset, language=language
        )
        end = offset + chunk.duration
        out = []
        for w in timed:
            start = min(max(w.start, offset), end)
            out.append(dataclasses.replace(w, start=start, end=min(max(w.end, start), end)))
        return tuple(out)

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


class SpeechRun:
    """A started synthesis: iterate it for the encoded bytes (encoding runs off the event loop), or
    ``await collect()`` for the whole audio; then ``aclose()``, however it ended.

    Recorded once, on completion or abort: the speech counter (200, or the mid-stream error's
    status), audio seconds, RTFs (steps: the request's, else the engine's declared default) and
    the caller's usage (``limits.record``, the audio produced so far counts).
    """

    def __init__(
        self,
        service: SpeechService,
        job: SpeechJob,
        plan: SpeechPlan,
        first: AudioChunk,
        rest: AsyncIterator[AudioChunk],
        stack: AsyncExitStack,
    ) -> None:
        self._service, self.job, self.plan = service, job, plan
        self._first, self._rest, self._stack = first, rest, stack
        self.backend = plan.backend
        self.media_type = CONTENT_TYPES[plan.response_format]
        self.headers: dict[str, str] = {"X-Model-Backend": plan.backend, **service.response_headers(plan)}
        self.seconds = 0.0  # audio handed out so far
        #: timestamps: every word timed so far, in input order
        self.words: list[TimedWord] = []
        self._fresh: list[TimedWord] = []
        self._used = False
        self._completed = False
        self._usage_recorded = False
        self._encoded: AsyncGenerator[bytes, None] | None = None

    @property
    def usage(self) -> dict[str, int]:
        """OpenAI's ``usage`` for the audio produced so far (the SSE ``done`` event)."""
        return usage_of(self.plan.input_chars, self.seconds)

    def take_words(self) -> list[TimedWord]:
        """The words timed since the last call (SSE: the words of the audio just sent)."""
        fresh, self._fresh = self._fresh, []
        return fresh

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._encoded is None:
            self._claim()
            self._encoded = self._encode()
        return self._encoded

    async def collect(self) -> AudioChunk:
        """The whole audio, joined (a mid-stream error is raised, not swallowed)."""
        self._claim()
        started = time.perf_counter()
        pieces: list[np.ndarray] = []
        try:
            async for chunk in self._audio(raise_errors=True):
                pieces.append(chunk.samples)
            self._record_success(time.perf_counter() - started)
        finally:
            await self._record_usage()
        return AudioChunk(np.concatenate(pieces, axis=-1), self._first.sample_rate)

    async def aclose(self) -> None:
        """Stop the producer and release the synthesis slot; record usage if nothing did yet."""
        try:
            if self._encoded is not None:
                with contextlib.suppress(RuntimeError):  # still running elsewhere: its own finally records
                    await self._encoded.aclose()
            await self._record_usage()
        finally:
            await self._stack.aclose()

    # -- inside ---------------------------------------------------------------------------------
    def _claim(self) -> None:
        if self._used:
            raise RuntimeError("a SpeechRun is consumed once")
        self._used = True

    async def _audio(self, *, raise_errors: bool) -> AsyncIterator[AudioChunk]:
        chunk: AudioChunk | None = self._first
        while chunk is not None:
            self.seconds += chunk.duration
            if isinstance(chunk, TimedChunk):
                self.words.extend(chunk.words)
                self._fresh.extend(chunk.words)
            yield chunk
            try:
                chunk = await anext(self._rest, None)
            except APIError as exc:
                # Streaming: the headers are gone already, so the body ends early (a truncated stream).
                log.warning("speech stream aborted after %.1f s of audio: %s", self.seconds, exc.message)
                self._service.metrics.speech.labels(self.backend, str(exc.status_code)).inc()
                if raise_errors:
                    raise
                return
        self._completed = True

    async def _encode(self) -> AsyncGenerator[bytes, None]:
        try:
            started = time.perf_counter()
            encoder = StreamEncoder(self.plan.response_format, self._first.sample_rate, self._first.channels)
            async for chunk in self._audio(raise_errors=False):
                data = await asyncio.to_thread(encoder.write, chunk.samples)
                if data:
                    yield data
            if not self._completed:
                return
            tail = await asyncio.to_thread(encoder.close)
            if tail:
                yield tail
            self._record_success(time.perf_counter() - started)
        finally:  # completed, failed or abandoned: the audio produced counts
            await self._record_usage()

    def _record_success(self, elapsed: float) -> None:
        metrics, backend = self._service.metrics, self.backend
        metrics.speech.labels(backend, "200").inc()
        steps = int(self.plan.options.num_steps or self.plan.engine.defaults.num_steps)
        self._service.rtf.record(backend, steps, elapsed, self.seconds)
        if self.seconds > 0:
            metrics.audio_seconds.labels(backend).inc(self.seconds)
            metrics.rtf.labels(backend).observe(elapsed / self.seconds)

    async def _record_usage(self) -> None:
        limits = self._service.limits
        if self._usage_recorded or limits is None or self.seconds <= 0:
            return
        self._usage_recorded = True
        key = self.job.owner or DEFAULT_NAMESPACE
        try:
            await limits.record(key, self.backend, self.plan.input_chars, self.seconds)
        except APIError as exc:
            log.warning("usage not recorded: %s", exc.message)
