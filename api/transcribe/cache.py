"""A bounded LRU cache of transcripts keyed by the audio digest (:func:`api.audio.digest.audio_digest`)."""

from __future__ import annotations

import numpy as np

from api.audio.digest import audio_digest
from api.lru import LRUCache
from api.transcribe.base import Transcriber, Transcript


class TranscriptCache:
    """Thread-safe LRU mapping ``(digest, language, model)`` → :class:`Transcript`."""

    def __init__(self, maxsize: int = 128) -> None:
        self._lru: LRUCache[tuple[str, str | None, str], Transcript] = LRUCache(maxsize)
        self.maxsize = self._lru.capacity

    @property
    def hits(self) -> int:
        return self._lru.hits

    @property
    def misses(self) -> int:
        return self._lru.misses

    def get(self, digest: str, language: str | None = None, model: str = "") -> Transcript | None:
        return self._lru.get((digest, language, model))

    def put(self, digest: str, transcript: Transcript, language: str | None = None, model: str = "") -> None:
        self._lru.put((digest, language, model), transcript)

    def clear(self) -> None:
        self._lru.clear()

    def __len__(self) -> int:
        return len(self._lru)


class CachedTranscriber:
    """A :class:`Transcriber` that remembers results by audio digest."""

    def __init__(self, inner: Transcriber, cache: TranscriptCache | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.cache = cache if cache is not None else TranscriptCache()

    def load(self) -> None:
        self.inner.load()

    def transcribe(
        self, samples: np.ndarray, sample_rate: int, language: str | None = None, *, digest: str | None = None
    ) -> Transcript:
        """Transcribe, or return the cached transcript; ``digest`` skips hashing (e.g. ReferenceVoice.digest)."""
        key = digest or audio_digest(samples, sample_rate)
        model = str(getattr(self.inner, "model_name", ""))
        found = self.cache.get(key, language, model)
        if found is not None:
            return found
        result = self.inner.transcribe(samples, sample_rate, language)
        self.cache.put(key, result, language, model)
        return result
