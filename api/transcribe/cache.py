"""Transcript caches keyed by the audio digest (:func:`api.audio.digest.audio_digest`): a bounded
LRU per process, and optionally one shared by every replica in Redis."""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from api.audio.digest import audio_digest
from api.lru import LRUCache
from api.timing import Segment, Word
from api.transcribe.base import Transcriber, Transcript

log = logging.getLogger(__name__)


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


def transcript_to_json(t: Transcript) -> str:
    return json.dumps(t.to_dict(), ensure_ascii=False, separators=(",", ":"))


def transcript_from_json(text: str) -> Transcript:
    d = json.loads(text)
    segments = tuple(
        Segment(
            float(s["start"]), float(s["end"]), str(s["text"]), tuple(Word(**w) for w in s.get("words") or ())
        )
        for s in d.get("segments") or ()
    )
    return Transcript(
        text=str(d["text"]),
        language=d.get("language"),
        language_probability=d.get("language_probability"),
        segments=segments,
        duration=d.get("duration"),
        model=d.get("model"),
    )


class SharedTranscriptCache(TranscriptCache):
    """A fleet-wide transcript cache in Redis (``REDIS_URL``) behind the local LRU: a clip is
    transcribed once per fleet. Entries expire after ``ttl`` seconds. Redis being unreachable only
    costs a transcription (a cache must never fail a request); it is logged once per minute."""

    def __init__(self, url: str, maxsize: int = 128, *, ttl: int = 30 * 86400, prefix: str = "zv:") -> None:
        import redis

        super().__init__(maxsize)
        self._redis = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._ttl = ttl
        self._prefix = prefix
        self._warned_at = 0.0

    def _key(self, digest: str, language: str | None, model: str) -> str:
        return f"{self._prefix}transcript:{model}:{language or '-'}:{digest}"

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:
            self._warned_at = now
            log.warning("shared transcript cache unavailable: %s", type(exc).__name__)

    def get(self, digest: str, language: str | None = None, model: str = "") -> Transcript | None:
        found = super().get(digest, language, model)
        if found is not None:
            return found
        from redis import RedisError

        try:
            raw = self._redis.get(self._key(digest, language, model))
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return None
        if raw is None:
            return None
        try:
            t = transcript_from_json(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
        except (ValueError, KeyError, TypeError):
            return None
        super().put(digest, t, language, model)
        return t

    def put(self, digest: str, transcript: Transcript, language: str | None = None, model: str = "") -> None:
        super().put(digest, transcript, language, model)
        from redis import RedisError

        try:
            self._redis.set(self._key(digest, language, model), transcript_to_json(transcript), ex=self._ttl)
        except (RedisError, OSError) as exc:
            self._warn(exc)
