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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from api.engines.base import AudioChunk, Availability, ReferenceVoice, SynthesisOptions, Voice
from api.engines.registry import register_engine
from api.errors import InvalidRequestError, ServiceUnavailableError
from api.lru import LRUCache
from api.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VariantDefaults:
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
DESCRIPTIONS = {
    "zipvoice": "ZipVoice zero-shot voice cloning (flow matching, 16 steps)",
    "zipvoice_distill": "ZipVoice-Distill: faster zero-shot voice cloning (8 steps)",
    "zipvoice_dialog": "ZipVoice-Dialog: two-speaker dialog ([S1]/[S2] turns), mono",
    "zipvoice_dialog_stereo": "ZipVoice-Dialog-Stereo: two-speaker dialog, one speaker per channel",
}


ENGINE_KINDS = ("torch", "onnx", "trt")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@dataclass(frozen=True)
class RuntimeProbe:
    """What this machine has; a seam so that tests can fake "GPU present" / "tensorrt present"."""

    cuda: Callable[[], bool] = _cuda_available
    tensorrt: Callable[[], bool] = lambda: _has("tensorrt")
    onnxruntime: Callable[[], bool] = lambda: _has("onnxruntime")
    onnx: Callable[[], bool] = lambda: _has("onnx")  # needed to export ONNX from the checkpoint


@dataclass(frozen=True)
class EngineChoice:
    """How a variant runs: ``kind`` torch|onnx|trt on ``device``; ``reason`` set when it cannot."""

    kind: str
    device: str
    precision: str = "fp32"
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def label(self) -> str:
        if self.kind == "onnx":
            return f"onnx-{self.precision} ({self.device})"
        if self.kind == "trt":
            return "tensorrt-fp16 (cuda)"
        return f"torch ({self.device})"


def choose_engine(settings: Settings, onnx_ready: bool, probe: RuntimeProbe | None = None) -> EngineChoice:
    """Pick the runtime from ``ENGINE``/``DEVICE`` and what is installed.

    ``onnx_ready``: ONNX files exist for the variant (beside the checkpoint or in the export cache).
    Without them an explicit ``onnx``/``trt`` engine exports the checkpoint once into
    ``<cache_dir>/onnx/<variant>/<checkpoint digest>/`` (needs the ``onnx`` package).

    ``auto``: TensorRT on a GPU when ``tensorrt`` is installed (engines are built from the ONNX,
    exported if needed); else PyTorch on CUDA; else ONNX int8 on CPU when ``onnxruntime`` is
    installed and the ONNX files already exist (``auto`` never starts a minutes-long export on a
    CPU box by itself: run ``zipvoice-export`` or ``ENGINE=onnx`` once); else PyTorch on CPU.
    An explicit engine that cannot run gives a choice with ``reason`` set (availability false).
    """
    probe = probe or RuntimeProbe()
    precision = settings.onnx_precision
    want_gpu = settings.device != "cpu"
    gpu = want_gpu and probe.cuda()
    cuda_device = settings.device if settings.device.startswith("cuda") else "cuda"
    have_ort = probe.onnxruntime()
    onnx_ok = onnx_ready or probe.onnx()
    engine = settings.engine
    if engine == "auto":
        if gpu and probe.tensorrt() and have_ort and onnx_ok:
            return EngineChoice("trt", cuda_device, "fp16")
        if gpu:
            return EngineChoice("torch", cuda_device)
        if have_ort and onnx_ready and precision in ("fp32", "int8"):
            return EngineChoice("onnx", "cpu", precision)
        return EngineChoice("torch", "cpu")
    if engine == "torch":
        return EngineChoice("torch", torch_device(settings.device))
    no_files = (
        "no ONNX files beside the checkpoint and the 'onnx' package (needed to export them) is not "
        "installed; run zipvoice-export or install onnx"
    )
    if engine == "onnx":
        device = cuda_device if gpu else "cpu"
        if precision not in ("fp32", "int8"):
            return EngineChoice(
                "onnx", device, precision, f"ONNX_PRECISION must be fp32 or int8, not {precision!r}"
            )
        if not have_ort:
            return EngineChoice("onnx", device, precision, "ENGINE=onnx needs the 'onnxruntime' package")
        if not onnx_ok:
            return EngineChoice("onnx", device, precision, f"ENGINE=onnx: {no_files}")
        return EngineChoice("onnx", device, precision)
    # trt
    if not want_gpu:
        return EngineChoice("trt", "cpu", "fp16", "ENGINE=trt needs a GPU but DEVICE=cpu")
    if not probe.tensorrt():
        return EngineChoice(
            "trt", cuda_device, "fp16", "ENGINE=trt needs the 'tensorrt' package (not installed)"
        )
    if not gpu:
        return EngineChoice(
            "trt", cuda_device, "fp16", "ENGINE=trt needs an NVIDIA GPU (no CUDA device found)"
        )
    if not have_ort:
        return EngineChoice("trt", cuda_device, "fp16", "ENGINE=trt needs 'onnxruntime' (text encoder)")
    if not onnx_ok:
        return EngineChoice("trt", cuda_device, "fp16", f"ENGINE=trt: {no_files}")
    return EngineChoice("trt", cuda_device, "fp16")


def onnx_dir_for(settings: Settings, variant: str, model_dir: Path | None, precision: str) -> Path | None:
    """Where this variant's ONNX files of ``precision`` are: beside the checkpoint, else the export
    cache for the checkpoint's digest. ``None`` when neither has them."""
    from api.zipvoice.onnx_export import checkpoint_digest, onnx_files

    if model_dir is None:
        return None
    if onnx_files(model_dir, precision) is not None:
        return model_dir
    try:
        cached = settings.cache_dir / "onnx" / variant / checkpoint_digest(model_dir)
    except FileNotFoundError:
        return None
    return cached if onnx_files(cached, precision) is not None else None


def ensure_onnx(settings: Settings, variant: str, model_dir: Path, precision: str) -> Path:
    """ONNX files for ``precision`` (exporting into the cache the first time)."""
    from api.zipvoice.onnx_export import checkpoint_digest, export_onnx

    found = onnx_dir_for(settings, variant, model_dir, precision)
    if found is not None:
        return found
    out = settings.cache_dir / "onnx" / variant / checkpoint_digest(model_dir)
    log.info("exporting %s to ONNX in %s (once; takes a few minutes for full-size models)", variant, out)
    export_onnx(model_dir, out, int8=True, progress=log.info)
    return out


def torch_device(setting: str) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


#: prepared prompts keyed by ``<clip digest>:<channels>`` (kept as a name for callers and tests)
PromptCache = LRUCache


class ZipVoiceEngine:
    voice_kind: Literal["preset", "clone"] = "clone"
    sample_rate = 24000

    def __init__(self, settings: Settings, variant: str) -> None:
        self.name = variant
        self.variant = variant
        self.defaults = VARIANTS[variant]
        self.channels = self.defaults.channels
        # dialog text must stay whole (turn tags); the pipeline chunks it by turns
        self.max_chunk_chars = 300
        self.whole_text = self.defaults.dialog
        self._settings = settings
        self._lock = threading.Lock()
        self._pipeline: Any = None
        self.prompts: LRUCache[str, Any] = LRUCache(settings.prompt_cache_size)
        self.probe = RuntimeProbe()
        #: the runtime in use once loaded, e.g. ``onnx-int8 (cpu)``
        self.runtime: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def availability(self) -> Availability:
        for module, extra in (("torch", "torch"), ("piper_phonemize", "zipvoice"), ("jieba", "zipvoice")):
            if importlib.util.find_spec(module) is None:
                return Availability(False, f"{module} is not installed (install the '{extra}' extra)")
        from api.zipvoice.weights import weights_state

        ok, reason = weights_state(self._settings, self.variant)
        if not ok:
            return Availability(False, reason)
        choice = self.engine_choice()
        if not choice.ok:
            return Availability(False, choice.reason)
        return Availability(True, reason)

    def engine_choice(self) -> EngineChoice:
        """The runtime this variant uses (or why the requested one cannot run)."""
        from api.zipvoice.weights import local_model_dir

        precision = self._settings.onnx_precision
        model_dir = local_model_dir(self._settings, self.variant)
        ready = onnx_dir_for(
            self._settings, self.variant, model_dir, "fp32" if self._settings.engine == "trt" else precision
        )
        return choose_engine(self._settings, ready is not None, self.probe)

    def load(self) -> None:
        if self._pipeline is not None:
            return
        with self._lock:
            if self._pipeline is not None:
                return
            avail = self.availability()
            if not avail.ok:
                raise ServiceUnavailableError(f"Backend '{self.variant}' is unavailable: {avail.reason}.")
            import torch

            from api.zipvoice.pipeline import ZipVoicePipeline
            from api.zipvoice.tokenizer import get_tokenizer
            from api.zipvoice.vocos import load_vocos
            from api.zipvoice.weights import WeightsMissing, fetch_weights

            try:
                model_dir, vocos_dir = fetch_weights(self._settings, self.variant)
            except WeightsMissing as exc:
                raise ServiceUnavailableError(f"Backend '{self.variant}' is unavailable: {exc}.") from exc
            if self._settings.num_threads:
                torch.set_num_threads(self._settings.num_threads)
            choice = self.engine_choice()
            if not choice.ok:
                raise ServiceUnavailableError(f"Backend '{self.variant}' is unavailable: {choice.reason}.")
            if choice.kind == "torch" and choice.device == "cpu":
                # Denormal floats make CPU matmuls several times slower on random-ish activations
                # (measured: one decoder step 5–7 s → 1.9 s); flushing them changes nothing audible.
                # Process-wide setting, harmless for the rest of the server.
                torch.set_flush_denormal(True)
            model = self._load_model(choice, model_dir, choice.device)
            # ONNX/TensorRT samplers return CPU tensors: vocoder and pipeline stay on the CPU there
            device = choice.device if choice.kind == "torch" else "cpu"
            tokenizer = get_tokenizer(self.defaults.tokenizer, model_dir / "tokens.txt")
            vocoder = load_vocos(vocos_dir, device=device)
            if self.defaults.dialog:
                from api.zipvoice.dialog import DialogPipeline

                self._pipeline = DialogPipeline(
                    model, tokenizer, vocoder, num_channels=self.channels, device=device
                )
            else:
                self._pipeline = ZipVoicePipeline(model, tokenizer, vocoder, device=device)
            self.runtime = choice.label
            log.info("%s loaded (%s) from %s", self.variant, choice.label, model_dir)

    def _load_model(self, choice: EngineChoice, model_dir: Path, device: str) -> Any:
        """The object whose ``sample(...)`` the pipeline calls: the torch model or a graph runtime."""
        s = self._settings
        if choice.kind == "torch":
            from api.zipvoice.model.checkpoint import load_model

            return load_model(model_dir, device=device)
        if choice.kind == "onnx":
            from api.zipvoice.runtime.onnx_backend import load_onnx_model

            onnx_dir = ensure_onnx(s, self.variant, model_dir, choice.precision)
            return load_onnx_model(
                onnx_dir, choice.precision, num_threads=s.num_threads, device=choice.device
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
        import torch

        key = f"{voice.digest}:{self.channels}"
        prompt = self.prompts.get(key)
        if prompt is None:
            prompt = self._pipeline.prepare_prompt(
                torch.from_numpy(np.ascontiguousarray(voice.samples)), voice.sample_rate
            )
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
        for i, text in enumerate(chunks):
            if not text.strip():
                continue
            seed = None if options.seed is None else options.seed + i
            try:
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
            except ValueError as exc:  # e.g. text that yields no tokens
                raise InvalidRequestError(f"Cannot synthesize this input: {exc}", param="input") from exc
            wav = result.wav.detach().cpu().numpy().astype(np.float32, copy=False)
            if wav.ndim == 1:
                wav = wav[None, :]
            yield AudioChunk(wav, int(result.sampling_rate))


def _factory(variant: str) -> Any:
    def build(settings: Settings) -> ZipVoiceEngine:
        return ZipVoiceEngine(settings, variant)

    return build


for _variant in VARIANTS:
    register_engine(_variant, _factory(_variant), DESCRIPTIONS[_variant])
