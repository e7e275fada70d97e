"""Fakes for the pipeline's unit tests: an engine (preset or clone kind) that records its calls and
can be slow or fail mid-stream, a transcriber, a stdlib WAV decoder, and a service built on them."""

from __future__ import annotations

import io
import threading
import time
import wave
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from api.engines.base import (
    AudioChunk,
    Availability,
    EngineDefaults,
    Priority,
    PriorityProfile,
    SynthesisOptions,
    Voice,
)
from api.engines.registry import EngineRegistry, EngineSpec
from api.errors import APIError, ServiceUnavailableError
from api.limits.memory import MemoryLimits
from api.metrics import Metrics
from api.settings import Settings
from api.synthesis.limiter import ReferenceLimiter, SynthesisLimiter
from api.synthesis.reference import ReferencePrep
from api.synthesis.service import SpeechService
from api.synthesis.tuning import RTFTracker
from api.timing import Segment
from api.transcribe.base import Transcript
from api.transcribe.cache import CachedTranscriber
from api.voices.sources import VoiceResolver

RATE = 24000
CHUNK_SAMPLES = 2400  # 0.1 s per text chunk


@dataclass
class Call:
    chunks: list[str]
    voice: Voice
    options: SynthesisOptions


@dataclass
class FakeEngine:
    """0.1 s of a constant tone per text chunk. ``fail_at``: raise ``error`` before that chunk;
    ``delay``: seconds per chunk (for cancellation)."""

    name: str
    voice_kind: Literal["preset", "clone"] = "clone"
    channels: int = 1
    max_chunk_chars: int = 400
    whole_text: bool = False
    defaults: EngineDefaults = field(default_factory=lambda: EngineDefaults(0, None, None))
    priority_profiles: Mapping[Priority, PriorityProfile] = field(default_factory=dict)
    presets: tuple[str, ...] = ("af_alloy", "jm_kumo")
    available: bool = True
    fail_at: int | None = None
    error: Exception = field(default_factory=lambda: ServiceUnavailableError("engine broke"))
    delay: float = 0.0
    sample_rate: int = RATE
    calls: list[Call] = field(default_factory=list)
    produced: int = 0  # chunks synthesized (all calls)
    loads: int = 0

    def availability(self) -> Availability:
        return Availability(True) if self.available else Availability(False, "switched off")

    def load(self) -> None:
        self.loads += 1

    def preset_voices(self) -> list[str]:
        return list(self.presets) if self.voice_kind == "preset" else []

    def synthesize(self, chunks: list[str], voice: Voice, options: SynthesisOptions) -> Iterator[AudioChunk]:
        self.calls.append(Call(list(chunks), voice, options))
        for i, _ in enumerate(chunks):
            if self.fail_at == i:
                raise self.error
            if self.delay:
                time.sleep(self.delay)
            self.produced += 1
            yield AudioChunk(np.full((self.channels, CHUNK_SAMPLES), 0.1, dtype=np.float32), self.sample_rate)


class FakeTranscriber:
    """Hears ``text`` in any clip; counts its calls; ``error`` makes it fail (e.g. no model offline)."""

    name = "fake"
    model_name = "fake"

    def __init__(self, text: str = "Heard by the fake.", error: APIError | None = None) -> None:
        self.text, self.error = text, error
        self.calls = 0
        self.lock = threading.Lock()

    def load(self) -> None:
        pass

    def transcribe(self, samples: np.ndarray, sample_rate: int, language: str | None = None) -> Transcript:
        with self.lock:
            self.calls += 1
        if self.error is not None:
            raise self.error
        duration = float(np.asarray(samples).shape[-1]) / sample_rate
        segment = Segment(0.0, duration, self.text)  # one segment over the whole clip
        return Transcript(self.text, "en", 1.0, (segment,), duration, "fake")


def speechlike(seconds: float = 3.0, rate: int = 16000, channels: int = 1) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope (float32, (channels, n))."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420), start=1))
    env = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) * (t > 0.2) * (t < seconds - 0.2)
    x = (0.2 * tone * env).astype(np.float32)
    return np.repeat(x[None, :], channels, axis=0)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(samples.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((samples.T * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def wav_decoder(
    data: bytes, *, max_seconds: float, max_decoded_bytes: int | None = None
) -> tuple[np.ndarray, int]:
    """Stands in for decode_audio: 16-bit WAV with the stdlib."""
    with wave.open(io.BytesIO(data), "rb") as w:
        ch, rate = w.getnchannels(), w.getframerate()
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return frames.reshape(-1, ch).T.astype(np.float32) / 32768.0, rate


@dataclass
class Rig:
    """A service on fake engines, with its collaborators at hand."""

    service: SpeechService
    engines: dict[str, FakeEngine]
    transcriber: FakeTranscriber
    limits: MemoryLimits
    metrics: Metrics
    rtf: RTFTracker
    limiter: SynthesisLimiter
    reference_limiter: ReferenceLimiter

    def count(self, model: str, status: str) -> float:
        return (
            self.metrics.registry.get_sample_value("zvs_speech_total", {"model": model, "status": status})
            or 0.0
        )

    def assert_released(self) -> None:
        """Every slot free, no producer thread left."""
        assert self.limiter.in_flight == 0 and self.limiter.waiting == 0
        assert self.reference_limiter.in_flight == 0 and self.reference_limiter.waiting == 0
        deadline = time.monotonic() + 5
        while self.service.producers and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.service.producers == 0


def rig(
    *engines: FakeEngine,
    quota: float = 0.0,
    transcriber: FakeTranscriber | None = None,
    concurrency: int = 2,
    queue: int = 4,
    **settings: object,
) -> Rig:
    s = Settings(allow_downloads=False, **settings)  # type: ignore[arg-type]
    by_name = {e.name: e for e in engines}
    specs = {e.name: EngineSpec(e.name, lambda _s, e=e: e, e.name) for e in engines}  # type: ignore[misc]
    fake = transcriber or FakeTranscriber()
    limits = MemoryLimits(quota_seconds_per_day=quota)
    metrics, rtf = Metrics(), RTFTracker()
    limiter = SynthesisLimiter(concurrency, queue)
    refs = ReferenceLimiter(1, 0)
    service = SpeechService(
        s,
        EngineRegistry(s, specs),
        VoiceResolver(s, None, decoder=wav_decoder),
        ReferencePrep(s, CachedTranscriber(fake)),  # type: ignore[arg-type]
        limiter=limiter,
        reference_limiter=refs,
        limits=limits,
        metrics=metrics,
        rtf=rtf,
    )
    return Rig(service, by_name, fake, limits, metrics, rtf, limiter, refs)
