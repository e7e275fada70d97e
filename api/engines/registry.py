"""Engine registry: backend names → engine factories; engines are built lazily, once.

Every backend is a row of one static table, :data:`ENGINES` (name → factory → description). The
factories import their engine's module only when first called, so a server without torch still
starts and serves Kokoro, and no engine module imports this one.
"""

from __future__ import annotations

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


def _kokoro(settings: Settings) -> SpeechEngine:
    from api.engines.kokoro import KokoroEngine

    return KokoroEngine(settings)


def _zipvoice(variant: str) -> EngineFactory:
    def build(settings: Settings) -> SpeechEngine:
        from api.engines.zipvoice import ZipVoiceEngine

        return ZipVoiceEngine(settings, variant)

    return build


_NO_ONNX = "; no official ONNX files: runs on PyTorch (the torch extra)"

#: every backend, in the order ``/v1/models`` lists them
ENGINES: dict[str, EngineSpec] = {
    spec.name: spec
    for spec in (
        EngineSpec("kokoro", _kokoro, "Kokoro-82M preset voices (ONNX Runtime)"),
        EngineSpec(
            "zipvoice", _zipvoice("zipvoice"), "ZipVoice zero-shot voice cloning (flow matching, 16 steps)"
        ),
        EngineSpec(
            "zipvoice_distill",
            _zipvoice("zipvoice_distill"),
            "ZipVoice-Distill: faster zero-shot voice cloning (8 steps)",
        ),
        EngineSpec(
            "zipvoice_dialog",
            _zipvoice("zipvoice_dialog"),
            "ZipVoice-Dialog: two-speaker dialog ([S1]/[S2] turns), mono" + _NO_ONNX,
        ),
        EngineSpec(
            "zipvoice_dialog_stereo",
            _zipvoice("zipvoice_dialog_stereo"),
            "ZipVoice-Dialog-Stereo: two-speaker dialog, one speaker per channel" + _NO_ONNX,
        ),
    )
}


class EngineRegistry:
    """Per-app registry: owns the engine instances (state lives on ``app.state``)."""

    def __init__(self, settings: Settings, specs: dict[str, EngineSpec] | None = None) -> None:
        self._settings = settings
        self._specs = dict(specs if specs is not None else ENGINES)
        self._engines: dict[str, SpeechEngine] = {}
        #: backends whose ``load()`` has returned: ``loaded`` hands them out without re-probing
        self._loaded: set[str] = set()
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
        """The engine, loaded (blocking; call off the event loop).

        Availability (package, file and device probes) is checked until the engine has loaded;
        after that the loaded engine is returned as is.
        """
        engine = self.get(name)
        if name in self._loaded:
            return engine
        avail = engine.availability()
        if not avail.ok:
            raise ServiceUnavailableError(f"Backend '{name}' is unavailable: {avail.reason}.", param="model")
        engine.load()
        self._loaded.add(name)
        return engine
