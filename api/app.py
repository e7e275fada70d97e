"""The app factory: ``create_app(settings)`` wires routers, middleware, error mapping and state."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import __version__
from api.auth import APIKeyMiddleware
from api.engines.registry import EngineRegistry
from api.errors import install_error_handlers
from api.limits.factory import build_limits
from api.limits.middleware import RateLimitMiddleware
from api.metrics import Metrics, MetricsMiddleware
from api.middleware import BodyLimitMiddleware
from api.openapi import install_openapi
from api.replica import ReplicaIdMiddleware, replica_id
from api.routes import analysis, models, ops, speech, usage, voices
from api.routes.web import mount_web
from api.schemas.common import apply_transcript_limit
from api.settings import Settings
from api.synthesis.limiter import ReferenceLimiter, SynthesisLimiter
from api.synthesis.reference import ReferencePrep
from api.synthesis.service import SpeechService
from api.synthesis.tuning import RTFTracker
from api.transcribe.factory import build_transcriber
from api.voices.sources import VoiceResolver
from api.voices.store import FileVoiceStore

log = logging.getLogger(__name__)


def _warm(app: FastAPI) -> None:
    """Load and warm the preloaded backends (worker thread)."""
    state = app.state
    for name in state.settings.preload_models:
        try:
            backend = state.engines.resolve_model(name)
            avail = state.engines.availability(backend)
            if not avail.ok:
                log.warning("backend %s unavailable: %s", backend, avail.reason)
                state.ready_detail = f"backend {backend} unavailable: {avail.reason}"
                return
            engine = state.engines.loaded(backend)
            if engine.voice_kind == "preset":
                from api.engines.base import PresetVoice, SynthesisOptions

                voices = engine.preset_voices()
                if voices:
                    voice = state.settings.kokoro_default_voice
                    list(
                        engine.synthesize(
                            ["Ready."],
                            PresetVoice(voice if voice in voices else voices[0]),
                            SynthesisOptions(),
                        )
                    )
            log.info("backend %s ready", backend)
        except Exception:
            log.exception("warming %s failed", name)
            state.ready_detail = f"backend {name[:40]!r} failed to load"
            return
    state.ready.set()


def _build_voices(app: FastAPI, settings: Settings) -> None:
    state = app.state
    if settings.voice_store_url:
        from api.voices.pg_store import PostgresVoiceStore

        state.voice_store = PostgresVoiceStore(
            settings.voice_store_url, max_per_namespace=settings.max_voices_per_key
        )
    else:
        state.voice_store = FileVoiceStore(settings.voices_dir, max_per_namespace=settings.max_voices_per_key)
    state.voice_resolver = VoiceResolver(settings, state.voice_store)
    state.transcriber = build_transcriber(settings)
    state.reference = ReferencePrep(settings, state.transcriber)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warm = asyncio.get_running_loop().run_in_executor(None, _warm, app)
        try:
            yield
        finally:
            app.state.draining = True
            warm.cancel()
            await app.state.limits.close()
            close = getattr(app.state.voice_store, "close", None)
            if close is not None:
                await asyncio.to_thread(close)

    app = FastAPI(
        title="zipvoice-server",
        version=__version__,
        description="OpenAI-compatible speech server: zero-shot voice cloning (ZipVoice) and preset voices (Kokoro).",
        lifespan=lifespan,
        dependencies=[Depends(apply_transcript_limit)],  # JSON transcripts follow MAX_TRANSCRIPT_CHARS
    )
    state = app.state
    state.settings = settings
    state.engines = EngineRegistry(settings)
    state.limiter = SynthesisLimiter(settings.max_concurrency, settings.max_queue)
    state.reference_limiter = ReferenceLimiter(settings.reference_concurrency, settings.reference_queue)
    state.limits = build_limits(settings)
    state.metrics = Metrics()
    state.rtf = RTFTracker()
    state.ready = threading.Event()
    state.ready_detail = "loading"
    state.draining = False
    _build_voices(app, settings)
    state.speech = SpeechService(settings, state.engines, state.voice_resolver, state.reference)

    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimitMiddleware, limits=state.limits)  # inside the key check: sees the owner
    app.add_middleware(APIKeyMiddleware, keys=settings.api_keys, admin_keys=settings.admin_api_keys)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)  # outermost but CORS: counts 401s too
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["*"],
        )
    state.replica_id = replica_id(settings.replica_id)  # X-Replica-Id on every response, also /health
    app.add_middleware(ReplicaIdMiddleware, replica=state.replica_id)
    app.include_router(ops.router)
    app.include_router(models.router)
    app.include_router(speech.router)
    app.include_router(voices.router)
    app.include_router(analysis.router)
    app.include_router(usage.router)
    mount_web(app, settings)
    install_openapi(app, settings)
    return app
