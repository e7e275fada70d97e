"""ZipVoice backends (zero-shot cloning): ``zipvoice``, ``zipvoice_distill``, ``zipvoice_dialog``,
``zipvoice_dialog_stereo``, running our own PyTorch implementation (``api.zipvoice``).

The engine owns the loaded model, tokenizer and vocoder of one variant, and a bounded cache of
prepared prompts (cleaned audio, features, RMS) keyed by the reference clip's digest, so reusing a
voice skips that work.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from api.engines.base import (
    AudioChunk,
    Availability,
    EngineDefaults,
    Priority,
    PriorityProfile,
    ReferenceVoice,
    SynthesisOptions,
    Voice,
)
from api.errors import InvalidRequestError, RateLimitError, ServiceUnavailableError
from api.loading import LoadOnce
from api.lru import LRUCache
from api.runtime_env import torch_imported
from api.settings import Settings
from api.zipvoice.batching import BatchQueueFull, SampleCancelled, cancel_scope
from api.zipvoice.runtime.select import (
    EngineChoice,
    RuntimeProbe,
    ensure_onnx,
    find_onnx_dir,
    onnx_graph_cache,
    variant_choice,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VariantDefaults(EngineDefaults):
    num_steps: int
    guidance_scale: float
    t_shift: float
    channels: int
    tokenizer: str
    dialog: bool


# Upstream defaults (infer_zipvoice.py / infer_zipvoice_dialog.py).
VARIANTS: dict[str, VariantDefaults] = {
    "zipvoice": VariantDefaults(16, 1.0, 0.5, 1, "emilia", False),
    "zipvoice_distill": VariantDefaults(8, 3.0, 0.5, 1, "emilia", False),
    "zipvoice_dialog": VariantDefaults(16, 1.5, 0.5, 1, "dialog", True),
    "zipvoice_dialog_stereo": VariantDefaults(16, 1.5, 0.5, 2, "dialog", True),
}
#: what each variant offers for ``priority`` (lower rank preferred across variants); dialog: nothing
PRIORITY_PROFILES: dict[str, dict[Priority, PriorityProfile]] = {
    "zipvoice": {
        "speed": PriorityProfile(8, 1.0, rank=1),
        "balanced": PriorityProfile(12, 1.0, rank=1),
        "quality": PriorityProfile(16, 1.0, rank=0),
    },
    "zipvoice_distill": {
        "speed": PriorityProfile(4, 3.0, rank=0),
        "balanced": PriorityProfile(8, 3.0, rank=0),
        "quality": PriorityProfile(8, 3.0, rank=1),
    },
}
#: prepared prompts keyed by ``<clip digest>:<channels>`` (kept as a name for callers and tests)
PromptCache = LRUCache


def batch_workers(setting: int, device: str) -> int:
    """``BATCH_WORKERS``, with 0 (auto) resolved for the engine's device: 1 on CUDA, 2 on CPU."""
    if setting > 0:
        return setting
    return 1 if device.startswith("cuda") else 2


class ZipVoiceEngine:
    voice_kind: Literal["preset", "clone"] = "clone"
    sample_rate = 24000

    def __init__(self, settings: Settings, variant: str) -> None:
        self.name = variant
        self.variant = variant
        self.defaults = VARIANTS[variant]
        self.priority_profiles: Mapping[Priority, PriorityProfile] = PRIORITY_PROFILES.get(variant, {})
        self.channels = self.defaults.channels
        # dialog text must stay whole (turn tags); the pipeline chunks it by turns
        self.max_chunk_chars = 300
        self.whole_text = self.defaults.dialog
        self._settings = settings
        self._loader: LoadOnce[Any] = LoadOnce(self._build)
        self.prompts: LRUCache[str, Any] = LRUCache(settings.prompt_cache_size)
        self.probe = RuntimeProbe()
        #: the runtime in use once loaded, e.g. ``onnx-int8 (cpu)``
        self.runtime: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def official_onnx(self) -> bool:
        """The hub publishes ONNX files for this variant (not for the dialog models)."""
        return not self.defaults.dialog

    def _uses_array_pipeline(self, choice: EngineChoice) -> bool:
        """The torch-free pipeline (ONNX Runtime + numpy) serves this choice."""
        return choice.kind == "onnx" and not self.defaults.dialog

    def availability(self) -> Availability:
        for module in ("piper_phonemize", "jieba"):
            if importlib.util.find_spec(module) is None:
                return Availability(False, f"{module} is not installed (run uv sync)")
        choice = self.engine_choice()
        if not choice.ok:
            if not self.probe.torch():
                if not self.official_onnx:
                    return Availability(False, "no official ONNX files; needs the torch extra")
                if self.probe.onnxruntime() and choice.kind != "trt" and self._settings.engine != "torch":
                    from api.zipvoice.weights import onnx_weights_state

                    _, reason = onnx_weights_state(
                        self._settings, self.variant, self._settings.onnx_precision
                    )
                    return Availability(False, reason)
            return Availability(False, choice.reason)
        if self._uses_array_pipeline(choice):
            from api.zipvoice.weights import local_model_dir, onnx_weights_state, weights_state

            onnx_dir = self._onnx_dir(choice.precision)
            if onnx_dir is None and local_model_dir(self._settings, self.variant) and self.probe.torch():
                ok, reason = weights_state(self._settings, self.variant)  # exported on first use
            else:
                ok, reason = onnx_weights_state(
                    self._settings, self.variant, choice.precision, model_present=onnx_dir is not None
                )
            return Availability(ok, reason)
        if not self.probe.torch():
            if not self.official_onnx:
                return Availability(False, "no official ONNX files; needs the torch extra")
            return Availability(False, "torch is not installed (install the 'torch' extra)")
        from api.zipvoice.weights import weights_state

        ok, reason = weights_state(self._settings, self.variant)
        return Availability(ok, reason)

    def _onnx_dir(self, precision: str) -> Path | None:
        """Existing ONNX files for ``precision`` (see :func:`find_onnx_dir`)."""
        return find_onnx_dir(self._settings, self.variant, precision)

    def engine_choice(self) -> EngineChoice:
        """The runtime this variant uses (or why the requested one cannot run)."""
        return variant_choice(self._settings, self.variant, self.probe, self.official_onnx)

    @property
    def _pipeline(self) -> Any:
        """The loaded pipeline (``None`` before :meth:`load`)."""
        return self._loader.get() if self._loader.loaded else None

    def load(self) -> None:
        self._loader.get()

    def _build(self) -> Any:
        avail = self.availability()
        if not avail.ok:
            raise ServiceUnavailableError(f"Backend '{self.variant}' is unavailable: {avail.reason}.")
        choice = self.engine_choice()
        if not choice.ok:
            raise ServiceUnavailableError(f"Backend '{self.variant}' is unavailable: {choice.reason}.")
        pipeline = self._load_array(choice) if self._uses_array_pipeline(choice) else self._load_torch(choice)
        self.runtime = choice.label
        self._enable_batching(pipeline)
        return pipeline

    def _enable_batching(self, pipeline: Any) -> None:
        """Cross-request batching of the sampler calls (``BATCH_MAX_SIZE`` > 1, PyTorch model only;
        see :mod:`api.zipvoice.batching`)."""
        s = self._settings
        enable = getattr(pipeline, "enable_batching", None)
        if s.batch_max_size <= 1 or enable is None:
            return
        queue = 4 * max(s.batch_max_size, s.max_concurrency)
        workers = batch_workers(s.batch_workers, str(getattr(pipeline, "device", "cpu")))
        if enable(s.batch_window_ms / 1000.0, s.batch_max_size, queue, workers):
            log.info(
                "%s: batching up to %d sampler calls within %g ms, %d batch(es) at a time",
                self.variant,
                s.batch_max_size,
                s.batch_window_ms,
                workers,
            )
            if s.max_concurrency < s.batch_max_size:
                log.warning(
                    "BATCH_MAX_SIZE=%d but MAX_CONCURRENCY=%d: batches hold at most %d requests",
                    s.batch_max_size,
                    s.max_concurrency,
                    s.max_concurrency,
                )
        else:
            log.info("%s: batching not used with %s (runs sequentially)", self.variant, self.runtime)

    def _load_array(self, choice: EngineChoice) -> Any:
        """The torch-free path: ONNX Runtime sessions, numpy features, sampler and vocoder."""
        from api.zipvoice.pipeline import NumpyZipVoicePipeline
        from api.zipvoice.runtime.array_frontend import load_array_frontend
        from api.zipvoice.runtime.ort_numpy import load_onnx_dir
        from api.zipvoice.tokenizer import get_tokenizer
        from api.zipvoice.weights import (
            WeightsMissing,
            fetch_onnx_weights,
            fetch_weights,
            local_model_dir,
            local_vocos_dir,
        )

        s = self._settings
        try:
            onnx_dir = self._onnx_dir(choice.precision)
            vocos_dir = local_vocos_dir(s)
            if onnx_dir is None and local_model_dir(s, self.variant) is not None and self.probe.torch():
                model_dir, vocos_dir = fetch_weights(s, self.variant)
                onnx_dir = ensure_onnx(s, self.variant, model_dir, choice.precision)
            elif onnx_dir is None or vocos_dir is None:
                onnx_dir, vocos_dir = fetch_onnx_weights(s, self.variant, choice.precision, onnx_dir)
        except WeightsMissing as exc:
            raise ServiceUnavailableError(f"Backend '{self.variant}' is unavailable: {exc}.") from exc
        assert onnx_dir is not None and vocos_dir is not None
        tokens = onnx_dir / "tokens.txt"
        if not tokens.is_file():  # an export cache folder written before model.json/tokens.txt were copied
            ckpt_dir = local_model_dir(s, self.variant)
            if ckpt_dir is not None:
                tokens = ckpt_dir / "tokens.txt"
        model = load_onnx_dir(
            onnx_dir,
            choice.precision,
            num_threads=s.num_threads,
            device=choice.device,
            graph_cache=onnx_graph_cache(s),
        )
        tokenizer = get_tokenizer(self.defaults.tokenizer, tokens)
        extractor, vocoder, frontend = load_array_frontend(vocos_dir)
        log.info("%s loaded (%s, %s front-end) from %s", self.variant, choice.label, frontend, onnx_dir)
        # clause-scale decoder passes: the decoder's memory grows with the square of a pass's frames
        return NumpyZipVoicePipeline(
            model, tokenizer, vocoder, extractor, chunk_target_s=s.zipvoice_onnx_chunk_seconds
        )

    def _load_torch(self, choice: EngineChoice) -> Any:
        import torch  # noqa: F401  (imported before torch_imported() applies the app's settings)

        from api.zipvoice.pipeline import ZipVoicePipeline
        from api.zipvoice.tokenizer import get_tokenizer
        from api.zipvoice.vocos import load_vocos
        from api.zipvoice.weights import WeightsMissing, fetch_weights

        try:
            model_dir, vocos_dir = fetch_weights(self._settings, self.variant)
        except WeightsMissing as exc:
            raise ServiceUnavailableError(f"Backend '{self.variant}' is unavailable: {exc}.") from exc
        # Thread count and denormal flushing are process-wide: the app's settings, applied once
        # (api/runtime_env.py), never this engine's own choice.
        torch_imported()
        model = self._load_model(choice, model_dir, choice.device)
        # ONNX/TensorRT samplers return CPU tensors: vocoder and pipeline stay on the CPU there
        device = choice.device if choice.kind == "torch" else "cpu"
        tokenizer = get_tokenizer(self.defaults.tokenizer, model_dir / "tokens.txt")
        vocoder = load_vocos(vocos_dir, device=device)
        log.info("%s loaded (%s) from %s", self.variant, choice.label, model_dir)
        if self.defaults.dialog:
            from api.zipvoice.dialog import DialogPipeline

            return DialogPipeline(model, tokenizer, vocoder, num_channels=self.channels, device=device)
        return ZipVoicePipeline(model, tokenizer, vocoder, device=device)

    def _load_model(self, choice: EngineChoice, model_dir: Path, device: str) -> Any:
        """The object whose ``sample(...)`` the pipeline calls: the torch model or a graph runtime."""
        s = self._settings
        if choice.kind == "torch":
            import torch

            from api.zipvoice.model.checkpoint import load_model

            return load_model(model_dir, device=device, dtype=getattr(torch, s.torch_dtype))
        if choice.kind == "onnx":
            from api.zipvoice.runtime.onnx_backend import load_onnx_model

            onnx_dir = ensure_onnx(s, self.variant, model_dir, choice.precision)
            return load_onnx_model(
                onnx_dir,
                choice.precision,
                num_threads=s.num_threads,
                device=choice.device,
                graph_cache=onnx_graph_cache(s),
            )
        from api.zipvoice.runtime.trt_backend import load_trt_model

        onnx_dir = ensure_onnx(s, self.variant, model_dir, "fp32")
        return load_trt_model(
            onnx_dir,
            s.cache_dir,
            self.variant,
            s.zipvoice_max_chunk_seconds,
            dialog=self.defaults.dialog,
            num_threads=s.num_threads,
            device=choice.device,
        )

    def preset_voices(self) -> list[str]:
        return []

    # -- synthesis ---------------------------------------------------------------------------
    def prepared_prompt(self, voice: ReferenceVoice) -> Any:
        """Prepared prompt for a clip, cached by its digest."""
        from api.zipvoice.pipeline import NumpyZipVoicePipeline

        key = f"{voice.digest}:{self.channels}"
        prompt = self.prompts.get(key)
        if prompt is None:
            samples = np.ascontiguousarray(voice.samples, dtype=np.float32)
            try:
                if isinstance(self._pipeline, NumpyZipVoicePipeline):
                    prompt = self._pipeline.prepare_prompt(samples, voice.sample_rate)
                else:
                    import torch

                    prompt = self._pipeline.prepare_prompt(torch.from_numpy(samples), voice.sample_rate)
            except ValueError as exc:  # e.g. a silent clip
                raise InvalidRequestError(f"Cannot use this reference clip: {exc}", param="voice") from exc
            self.prompts.put(key, prompt)
        return prompt

    def synthesize(self, chunks: list[str], voice: Voice, options: SynthesisOptions) -> Iterator[AudioChunk]:
        if not isinstance(voice, ReferenceVoice):
            raise InvalidRequestError(
                f"Model '{self.variant}' clones a voice: give a registered voice, file+PATH, url+URL or "
                "base64+DATA reference clip.",
                param="voice",
            )
        if not voice.transcript:
            raise InvalidRequestError(
                "The reference clip needs a transcript ('prompt_text').", param="prompt_text"
            )
        if self.defaults.dialog:
            from api.zipvoice.dialog import validate_dialog_text

            try:
                validate_dialog_text(" ".join(chunks))
            except ValueError as exc:
                raise InvalidRequestError(
                    f"Model '{self.variant}' speaks dialogs: mark turns with [S1] and [S2] ({exc}).",
                    param="input",
                ) from exc
            try:
                validate_dialog_text(voice.transcript, prompt=True)
            except ValueError as exc:
                raise InvalidRequestError(
                    f"The dialog prompt transcript needs [S1] and [S2] turns ({exc}).", param="prompt_text"
                ) from exc
        self.load()
        prompt = self.prepared_prompt(voice)
        d = self.defaults
        cancel = options.extra.get("cancel")  # the service's cancellation event (batched sampling)
        for i, text in enumerate(chunks):
            if not text.strip():
                continue
            seed = None if options.seed is None else options.seed + i
            try:
                with cancel_scope(cancel if isinstance(cancel, threading.Event) else None):
                    result = self._pipeline.generate(
                        text,
                        voice.transcript,
                        prompt,
                        num_step=options.num_steps or d.num_steps,
                        guidance_scale=d.guidance_scale
                        if options.guidance_scale is None
                        else options.guidance_scale,
                        speed=options.speed,
                        t_shift=options.t_shift or d.t_shift,
                        seed=seed,
                        remove_long_sil=self._settings.zipvoice_remove_long_silence,
                    )
            except SampleCancelled:  # the request went away while its chunk waited in a batch
                return
            except BatchQueueFull as exc:
                raise RateLimitError(f"The server is busy: {exc}. Retry shortly.", retry_after=1) from exc
            except ValueError as exc:  # e.g. text that yields no tokens
                raise InvalidRequestError(f"Cannot synthesize this input: {exc}", param="input") from exc
            wav = result.wav if isinstance(result.wav, np.ndarray) else result.wav.detach().cpu().numpy()
            wav = wav.astype(np.float32, copy=False)
            if wav.ndim == 1:
                wav = wav[None, :]
            yield AudioChunk(wav, int(result.sampling_rate))
