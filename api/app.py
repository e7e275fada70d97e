"""The app factory: ``create_app(settings)`` wires routers, middleware, error mapping and the services
(``app.state.services``, built by :func:`api.services.build_services`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import __version__
from api.auth import APIKeyMiddleware
from api.errors import install_error_handlers
from api.limits.middleware import RateLimitMiddleware
from api.metrics import MetricsMiddleware
from api.middleware import BodyLimitMiddleware
from api.replica import ReplicaIdMiddleware
from api.routes import analysis, captioned, models, ops, speech, usage, voices
from api.routes.openapi import install_openapi
from api.routes.web import mount_web
from api.runtime_env import configure_process
from api.schemas.common import apply_transcript_limit
from api.services import Services, build_services
from api.settings import Settings

log = logging.getLogger(__name__)


def _warm(services: Services) -> None:
    """Load and warm the preloaded backends (worker thread)."""
    readiness = services.readiness
    for name in services.settings.preload_models:
        try:
            backend = services.engines.resolve_model(name)
            avail = services.engines.availability(backend)
            if not avail.ok:
                log.warning("backend %s unavailable: %s", backend, avail.reason)
                readiness.detail = f"backend {backend} unavailable: {avail.reason}"
                return
            engine = services.engines.loaded(backend)
            if engine.voice_kind == "preset":
                from api.engines.base import PresetVoice, SynthesisOptions

                voices = engine.preset_voices()
                if voices:
                    voice = services.settings.kokoro_default_voice
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
            readiness.detail = f"backend {name[:40]!r} failed to load"
            return
    readiness.ready.set()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_process(settings)  # torch threads/denormals, once, from the settings (api/runtime_env.py)
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warm = asyncio.get_running_loop().run_in_executor(None, _warm, services)
        try:
            yield
        finally:
            services.readiness.draining = True
            warm.cancel()
            await services.limits.close()
            close = getattr(services.voice_store, "close", None)
            if close is not None:
                await asyncio.to_thread(close)

    app = FastAPI(
        title="zipvoice-server",
        version=__version__,
        description="OpenAI-compatible speech server: zero-shot voice cloning (ZipVoice) and preset voices (Kokoro).",
        lifespan=lifespan,
        dependencies=[Depends(apply_transcript_limit)],  # JSON transcripts follow MAX_TRANSCRIPT_CHARS
    )
    app.state.services = services  # the only thing on app.state; routes use api.routes.deps.ServicesDep

    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimitMiddleware, limits=services.limits)  # inside the key check: sees the owner
    app.add_middleware(APIKeyMiddleware, keys=settings.api_keys, admin_keys=settings.admin_api_keys)
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)  # outermost but CORS: counts 401s too
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["*"],
        )
    # X-Replica-Id on every response, also /health
    app.add_middleware(ReplicaIdMiddleware, replica=services.replica_id)
    app.include_router(ops.router)
    app.include_router(models.router)
    app.include_router(speech.router)
    app.include_router(captioned.router)
    app.include_router(voices.router)
    app.include_router(analysis.router)
    app.include_router(usage.router)
    mount_web(app, settings)
    install_openapi(app, settings)
    return app
