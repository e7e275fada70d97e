"""Engine registry: backend names → engine factories; engines are built lazily, once.

Factories are registered by name (``register_engine``); the built-in ones import their heavy
modules only when first built, so a server without torch still starts and serves Kokoro.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

from api.engines.base import Availability, SpeechEngine
from api.errors import NotFoundError, ServiceUnavailableError
from api.settings import Settings

EngineFactory = Callable[[Settings], SpeechEngine]


@dataclass(frozen=True)
class EngineSpec:
    name: str
    factory: EngineFactory
    description: str


_BUILTIN: dict[str, EngineSpec] = {}


def register_engine(name: str, factory: EngineFactory, description: str) -> None:
    """Make a backend available under ``name`` (call at import time of the engine's module)."""
    _BUILTIN[name] = EngineSpec(name, factory, description)


def _kokoro(settings: Settings) -> SpeechEngine:
    from api.engines.kokoro import KokoroEngine

    return KokoroEngine(settings)


register_engine("kokoro", _kokoro, "Kokoro-82M preset voices (ONNX Runtime)")


def _register_optional() -> None:
    # ZipVoice backends register themselves when their package is present.
    with contextlib.suppress(ImportError):
        import api.engines.zipvoice  # noqa: F401


class EngineRegistry:
    """Per-app registry: owns the engine instances (state lives on ``app.state``)."""

    def __init__(self, settings: Settings, specs: dict[str, EngineSpec] | None = None) -> None:
        _register_optional()
        self._settings = settings
        self._specs = dict(specs if specs is not None else _BUILTIN)
        self._engines: dict[str, SpeechEngine] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(self._specs)

    def spec(self, name: str) -> EngineSpec:
        return self._specs[name]

    def resolve_model(self, model: str) -> str:
        """Map an OpenAI model name or a backend name to a backend name (404 if unknown)."""
        if model in self._specs:
            return model
        alias = self._settings.model_aliases.get(model)
        if alias is not None and alias in self._specs:
            return alias
        raise NotFoundError(
            f"The model '{model[:100]}' does not exist. Available: {', '.join(self.model_ids())}.",
            param="model",
            code="model_not_found",
        )

    def model_ids(self) -> list[str]:
        return [*self._specs, *[a for a, t in self._settings.model_aliases.items() if t in self._specs]]

    def get(self, name: str) -> SpeechEngine:
        """The engine instance for a backend name (constructed once; not loaded)."""
        engine = self._engines.get(name)
        if engine is not None:
            return engine
        with self._lock:
            engine = self._engines.get(name)
            if engine is None:
                engine = self._specs[name].factory(self._settings)
                self._engines[name] = engine
        return engine

    def availability(self, name: str) -> Availability:
        try:
            return self.get(name).availability()
        except ServiceUnavailableError as exc:
            return Availability(False, exc.message)

    def loaded(self, name: str) -> SpeechEngine:
        """The engine, loaded (blocking; call off the event loop)."""
        engine = self.get(name)
        avail = engine.availability()
        if not avail.ok:
            raise ServiceUnavailableError(f"Backend '{name}' is unavailable: {avail.reason}.", param="model")
        engine.load()
        return engine
