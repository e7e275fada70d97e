"""The app's services, typed: one :class:`Services` on ``app.state.services``, built by :func:`build_services`.

Routes reach it through ``ServicesDep`` (``api/routes/deps.py``); middleware gets what it needs at
construction in ``create_app``. Nothing else lives on ``app.state``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from api.engines.registry import EngineRegistry
from api.limits.base import UsageLimits
from api.limits.factory import build_limits
from api.metrics import Metrics
from api.replica import replica_id
from api.settings import Settings
from api.synthesis.limiter import ReferenceLimiter, SynthesisLimiter
from api.synthesis.reference import ReferencePrep
from api.synthesis.service import SpeechService
from api.synthesis.tuning import RTFTracker
from api.transcribe.cache import CachedTranscriber
from api.transcribe.factory import build_transcriber
from api.voices.sources import VoiceResolver
from api.voices.store import FileVoiceStore, VoiceStore


@dataclass
class Readiness:
    """Warm-up and shutdown state: ``/ready`` answers 200 only when ``ready`` is set and not ``draining``."""

    ready: threading.Event = field(default_factory=threading.Event)
    detail: str = "loading"  # why not ready yet (shown by /ready)
    draining: bool = False  # set by the lifespan's shutdown and by the CLI's SIGTERM handler


@dataclass
class Services:
    """Every app-wide service, one typed field each."""

    settings: Settings
    replica_id: str
    engines: EngineRegistry
    limiter: SynthesisLimiter
    reference_limiter: ReferenceLimiter
    limits: UsageLimits
    metrics: Metrics
    rtf: RTFTracker
    voice_store: VoiceStore
    voice_resolver: VoiceResolver
    transcriber: CachedTranscriber | None
    reference: ReferencePrep
    speech: SpeechService
    readiness: Readiness


def build_voice_store(settings: Settings) -> VoiceStore:
    """PostgreSQL when ``VOICE_STORE_URL`` is set, else the embedded file store under ``VOICES_DIR``."""
    if settings.voice_store_url:
        from api.voices.pg_store import PostgresVoiceStore

        return PostgresVoiceStore(settings.voice_store_url, max_per_namespace=settings.max_voices_per_key)
    return FileVoiceStore(settings.voices_dir, max_per_namespace=settings.max_voices_per_key)


def build_services(settings: Settings) -> Services:
    """Construct the services from the settings (nothing loads a model here; engines load lazily)."""
    engines = EngineRegistry(settings)
    voice_store = build_voice_store(settings)
    voice_resolver = VoiceResolver(settings, voice_store)
    transcriber = build_transcriber(settings)
    reference = ReferencePrep(settings, transcriber)
    limiter = SynthesisLimiter(settings.max_concurrency, settings.max_queue)
    reference_limiter = ReferenceLimiter(settings.reference_concurrency, settings.reference_queue)
    limits, metrics, rtf = build_limits(settings), Metrics(), RTFTracker()
    return Services(
        settings=settings,
        replica_id=replica_id(settings.replica_id),
        engines=engines,
        limiter=limiter,
        reference_limiter=reference_limiter,
        limits=limits,
        metrics=metrics,
        rtf=rtf,
        voice_store=voice_store,
        voice_resolver=voice_resolver,
        transcriber=transcriber,
        reference=reference,
        speech=SpeechService(
            settings,
            engines,
            voice_resolver,
            reference,
            limiter=limiter,
            reference_limiter=reference_limiter,
            limits=limits,
            metrics=metrics,
            rtf=rtf,
        ),
        readiness=Readiness(),
    )
