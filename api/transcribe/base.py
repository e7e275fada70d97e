"""The transcription seam: what every speech-to-text backend takes and gives, and a registry.

Backends are registered by name and imported only when chosen:

* ``faster-whisper`` (default, extra ``whisper``): CTranslate2 Whisper, CPU int8 or CUDA.
* ``openai-whisper`` (extra ``openai-whisper``): the reference PyTorch implementation.

Audio follows the project convention: float32 ``(channels, n)`` (or ``(n,)``) in ``[-1, 1]``,
at any sample rate; backends downmix and resample themselves.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from api.errors import InvalidRequestError, ServiceUnavailableError
from api.timing import Segment

WHISPER_SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Transcript:
    """A transcription result."""

    text: str
    language: str | None
    language_probability: float | None
    segments: tuple[Segment, ...] = ()
    duration: float | None = None
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Transcriber(Protocol):
    """A speech-to-text backend."""

    name: str

    def load(self) -> None:
        """Load weights (idempotent, thread-safe). Raises ServiceUnavailableError when impossible."""
        ...

    def transcribe(self, samples: np.ndarray, sample_rate: int, language: str | None = None) -> Transcript:
        """Transcribe a clip; detect the language when ``language`` is None. Blocks."""
        ...


@dataclass(frozen=True)
class _Backend:
    module: str
    cls: str
    requires: str  # import name of the third-party package
    extra: str
    package: str = field(default="")


_BACKENDS: dict[str, _Backend] = {
    "faster-whisper": _Backend(
        "api.transcribe.faster_whisper",
        "FasterWhisperTranscriber",
        "faster_whisper",
        "whisper",
        "faster-whisper",
    ),
    "openai-whisper": _Backend(
        "api.transcribe.openai_whisper",
        "OpenAIWhisperTranscriber",
        "whisper",
        "openai-whisper",
        "openai-whisper",
    ),
}

DEFAULT_BACKEND = "faster-whisper"


def available_backends() -> list[str]:
    """Registered backend names (installed or not)."""
    return list(_BACKENDS)


def missing_extra_error(name: str) -> ServiceUnavailableError:
    """The error raised when a backend's Python package is not installed."""
    b = _BACKENDS[name]
    return ServiceUnavailableError(
        f"Transcriber '{name}' is not installed: install it with "
        f"`pip install 'zipvoice-server[{b.extra}]'` (package {b.package}).",
        code="transcriber_unavailable",
    )


def backend_installed(name: str) -> bool:
    """True when the backend's package can be imported (cheap: no import)."""
    b = _BACKENDS.get(name)
    return b is not None and importlib.util.find_spec(b.requires) is not None


def create_transcriber(name: str = DEFAULT_BACKEND, **options: Any) -> Transcriber:
    """Build a backend by name; its module (and package) is imported only here.

    Raises InvalidRequestError for an unknown name and ServiceUnavailableError when the
    backend's extra is missing. The model itself loads lazily on first use.
    """
    b = _BACKENDS.get(name)
    if b is None:
        raise InvalidRequestError(
            f"Unknown transcriber '{name}'; choose one of: {', '.join(_BACKENDS)}.", code="invalid_value"
        )
    if not backend_installed(name):
        raise missing_extra_error(name)
    module = importlib.import_module(b.module)
    factory = getattr(module, b.cls)
    transcriber: Transcriber = factory(**options)
    return transcriber


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Downmix to mono float32 and resample to 16 kHz (Whisper's input)."""
    from api.audio.clip import resample, to_mono

    mono = to_mono(samples)
    if sample_rate <= 0:
        raise InvalidRequestError("Sample rate must be positive.", code="invalid_value")
    return resample(mono, sample_rate, WHISPER_SAMPLE_RATE)
