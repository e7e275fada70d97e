"""The speech-engine seam: what every backend takes and gives.

An engine receives a prepared voice (a preset name, or a reference clip with its
transcript) and a list of text chunks, and yields PCM chunks. The routes never
know which engine ran.

Audio convention used across the project: ``numpy.float32`` arrays shaped
``(channels, samples)`` with values in ``[-1, 1]``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class PresetVoice:
    """A named voice built into an engine (Kokoro voice packs, mixes like ``a+b(0.5)``)."""

    name: str


@dataclass(frozen=True)
class ReferenceVoice:
    """A reference clip for zero-shot cloning, already decoded."""

    samples: np.ndarray  # float32 (channels, n)
    sample_rate: int
    transcript: str | None
    digest: str  # sha256 of the decoded clip: the cache key for prepared prompts
    source: Literal["registered", "file", "url", "base64", "upload"]
    voice_id: str | None = None
    transcript_source: Literal["given", "stored", "whisper"] | None = None

    @property
    def duration(self) -> float:
        return float(self.samples.shape[-1]) / float(self.sample_rate)


Voice = PresetVoice | ReferenceVoice


@dataclass
class SynthesisOptions:
    """Per-request knobs. ``None`` means: the engine's default."""

    speed: float = 1.0
    seed: int | None = None
    lang: str | None = None
    num_steps: int | None = None
    guidance_scale: float | None = None
    t_shift: float | None = None
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class AudioChunk:
    """A piece of synthesized audio."""

    samples: np.ndarray  # float32 (channels, n)
    sample_rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return float(self.samples.shape[-1]) / float(self.sample_rate)


#: what a request may ask the tuner for (``priority`` on /v1/audio/speech and /v1/audio/tune)
Priority = Literal["speed", "balanced", "quality"]


@dataclass(frozen=True)
class EngineDefaults:
    """The sampler settings an engine uses when a request leaves them out (``SynthesisOptions`` ``None``).

    ``num_steps`` is 0 for engines without sampler steps (Kokoro); it keys the measured real-time
    factors (:class:`api.synthesis.tuning.RTFTracker`).
    """

    num_steps: int
    guidance_scale: float | None
    t_shift: float | None


@dataclass(frozen=True)
class PriorityProfile:
    """What an engine offers for one ``priority``: its sampler settings, and ``rank`` (lower is
    preferred) among the profiles every available engine declares for that priority."""

    num_steps: int
    guidance_scale: float
    rank: int = 0


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str | None = None


@runtime_checkable
class SpeechEngine(Protocol):
    """A speech backend. Implementations are registered by name in :mod:`api.engines.registry`."""

    name: str
    #: "preset": speaks built-in voices; "clone": needs a ReferenceVoice
    voice_kind: Literal["preset", "clone"]
    sample_rate: int
    channels: int
    #: the longest text chunk (characters) the planner should hand to one call
    max_chunk_chars: int
    #: True when the engine needs the whole input in one call (dialog turns); the planner won't split it
    whole_text: bool

    @property
    def defaults(self) -> EngineDefaults:
        """Sampler settings used when a request gives none (steps key the measured RTFs)."""
        ...

    @property
    def priority_profiles(self) -> Mapping[Priority, PriorityProfile]:
        """The ``priority`` values this engine can be tuned for (empty: ``priority`` is ignored)."""
        ...

    def availability(self) -> Availability:
        """Cheap check (no model load): can this engine run here, and if not, why."""
        ...

    def load(self) -> None:
        """Load weights (idempotent, thread-safe). Raises ServiceUnavailableError when impossible."""
        ...

    def preset_voices(self) -> list[str]:
        """Names of built-in voices (empty for cloning engines)."""
        ...

    def synthesize(self, chunks: list[str], voice: Voice, options: SynthesisOptions) -> Iterator[AudioChunk]:
        """Yield audio for each text chunk in order. Runs in a worker thread; may block."""
        ...


@runtime_checkable
class WordTimedEngine(Protocol):
    """An engine whose model reports its own word durations (Kokoro). ``word_timer()`` builds the
    timer once on the engine's weights; ``None`` when this model cannot report them (then word
    timings come from forced alignment)."""

    def word_timer(self) -> Any: ...

    def style(self, spec: str) -> np.ndarray: ...

    def language_for(self, spec: str, lang: str | None) -> str: ...
