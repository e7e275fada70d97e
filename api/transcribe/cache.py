"""A bounded LRU cache of transcripts keyed by the audio's sha256."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from api.transcribe.base import Transcriber, Transcript


def audio_digest(samples: np.ndarray, sample_rate: int) -> str:
    """sha256 of the float32 samples (C order), their shape and the sample rate."""
    arr = np.ascontiguousarray(samples, dtype=np.float32)
    h = hashlib.sha256()
    h.update(f"{sample_rate}:{arr.shape}:".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


class TranscriptCache:
    """Thread-safe LRU mapping ``(digest, language, model)`` → :class:`Transcript`."""

    def __init__(self, maxsize: int = 128) -> None:
        self.maxsize = max(0, maxsize)
        self._items: OrderedDict[tuple[str, str | None, str], Transcript] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, digest: str, language: str | None = None, model: str = "") -> Transcript | None:
        key = (digest, language, model)
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def put(self, digest: str, transcript: Transcript, language: str | None = None, model: str = "") -> None:
        if self.maxsize == 0:
            return
        key = (digest, language, model)
        with self._lock:
            self._items[key] = transcript
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


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
