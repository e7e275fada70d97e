"""Build the app's transcriber from the settings: the chosen backend wrapped in a transcript cache."""

from __future__ import annotations

import logging

from api.settings import Settings
from api.transcribe.base import backend_installed, create_transcriber
from api.transcribe.cache import CachedTranscriber, SharedTranscriptCache, TranscriptCache

log = logging.getLogger(__name__)


def build_transcriber(settings: Settings) -> CachedTranscriber | None:
    """A lazy (model loads on first use) cached transcriber, or None when its package is missing."""
    if not backend_installed(settings.whisper_engine):
        log.warning("%s is not installed: reference clips need a transcript", settings.whisper_engine)
        return None
    inner = create_transcriber(
        settings.whisper_engine,
        model=settings.whisper_model,
        cache_dir=settings.cache_dir,
        allow_downloads=settings.allow_downloads,
        cpu_threads=settings.num_threads,
    )
    cache = SharedTranscriptCache(settings.redis_url) if settings.redis_url else TranscriptCache()
    return CachedTranscriber(inner, cache)
