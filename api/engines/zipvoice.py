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
from collections.abc import Callable, Iterator, Mapping
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
from api.engines.registry import register_engine
from api.errors import InvalidRequestError, ServiceUnavailableError
from api.lru import LRUCache
from api.runtime_env import torch_imported
from api.settings import Settings

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
DESCRIPTIONS = {
    "zipvoice": "ZipVoice zero-shot voice cloning (flow matching, 16 steps)",
    "zipvoice_distill": "ZipVoice-Distill: faster zero-shot voice cloning (8 steps)",
    "zipvoice_dialog": "ZipVoice-Dialog: two-speaker dialog ([S1]/[S2] turns), mono"
    "; no official ONNX files: runs on PyTorch (the torch extra)",
    "zipvoice_dialog_stereo": "ZipVoice-Dialog-Stereo: two-speaker dialog, one speaker per channel"
    "; no official ONNX files: runs on PyTorch (the torch extra)",
}


ENGINE_KINDS = ("torch", "onnx", "trt")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cuda_available() -> bool:
    """A CUDA device usable by torch (``False`` without torch)."""
    if not _has("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def _ort_cuda_available() -> bool:
    """onnxruntime has the CUDA execution provider (the ``onnxruntime-gpu`` wheel)."""
    if not _has("onnxruntime"):
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@dataclass(frozen=True)
class RuntimeProbe:
    """What this machine has; a seam so that tests can fake "GPU present" / "tensorrt present"."""

    cuda: Callable[[], bool] = _cuda_available
    tensorrt: Callable[[], bool] = lambda: _has("tensorrt")
    onnxruntime: Callable[[], bool] = lambda: _has("onnxruntime")
    onnx: Callable[[], bool] = lambda: _has("onnx")  # needed to export ONNX from the checkpoint
    torch: Callable[[], bool] = lambda: _has("torch")
    ort_cuda: Callable[[], bool] = _ort_cuda_available


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


def choose_engine(
    settings: Settings,
    onnx_ready: bool,
    probe: RuntimeProbe | None = None,
    onnx_fetchable: bool = False,
) -> EngineChoice:
    """Pick the runtime from ``ENGINE``/``DEVICE`` and what is installed.

    ``onnx_ready``: ONNX files exist for the variant (official layout, beside the checkpoint or in
    the export cache). ``onnx_fetchable``: the variant has official ONNX files on the hub and
    downloads are allowed. Without either, an explicit ``onnx``/``trt`` engine exports the
    checkpoint once into ``<cache_dir>/onnx/<variant>/<checkpoint digest>/`` (needs torch + onnx).

    ``auto``: TensorRT on a GPU when ``tensorrt`` is installed (engines are built from the ONNX,
    exported if needed); else PyTorch on CUDA; else ONNX when the files exist or can be
    downloaded (CUDA provider in fp32 where onnxruntime has it and ``DEVICE`` allows, else CPU
    with ``ONNX_PRECISION``, int8 by default; ``auto`` never starts a minutes-long export by
    itself); else PyTorch on CPU. Without torch, ONNX is chosen when it can run at all.
    An engine that cannot run gives a choice with ``reason`` set (availability false).
    """
    probe = probe or RuntimeProbe()
    precision = settings.onnx_precision
    want_gpu = settings.device != "cpu"
    have_torch = probe.torch()
    gpu = want_gpu and have_torch and probe.cuda()
    cuda_device = settings.device if settings.device.startswith("cuda") else "cuda"
    have_ort = probe.onnxruntime()
    onnx_ok = onnx_ready or (have_torch and probe.onnx())
    engine = settings.engine
    no_torch = "torch is not installed (install the 'torch' extra)"
    if engine == "auto":
        if gpu and probe.tensorrt() and have_ort and onnx_ok:
            return EngineChoice("trt", cuda_device, "fp16")
        if gpu:
            return EngineChoice("torch", cuda_device)
        if have_ort and (onnx_ready or onnx_fetchable) and precision in ("fp32", "int8"):
            if want_gpu and probe.ort_cuda():
                return EngineChoice("onnx", cuda_device, "fp32")
            return EngineChoice("onnx", "cpu", precision)
        if have_torch:
            return EngineChoice("torch", "cpu")
        return EngineChoice(
            "torch",
            "cpu",
            reason=f"no ONNX files for this variant and {no_torch}"
            if have_ort
            else "neither onnxruntime nor torch is installed",
        )
    if engine == "torch":
        if not have_torch:
            return EngineChoice("torch", "cpu", reason=f"ENGINE=torch: {no_torch}")
        return EngineChoice("torch", torch_device(settings.device))
    no_files = (
        "no ONNX files beside the checkpoint and the 'onnx' package (needed to export them) is not "
        "installed; run zipvoice-export or install onnx"
    )
    if engine == "onnx":
        ort_gpu = want_gpu and (gpu or probe.ort_cuda())
        device = cuda_device if ort_gpu else "cpu"
        if precision not in ("fp32", "int8"):
            return EngineChoice(
                "onnx", device, precision, f"ONNX_PRECISION must be fp32 or int8, not {precision!r}"
            )
        if not have_ort:
            return EngineChoice("onnx", device, precision, "ENGINE=onnx needs the 'onnxruntime' package")
        if not (onnx_ok or onnx_fetchable):
            return EngineChoice("onnx", device, precision, f"ENGINE=onnx: {no_files}")
        return EngineChoice("onnx", device, precision)
    # trt
    if not have_torch:
        return EngineChoice("trt", cuda_device, "fp16", f"ENGINE=trt: {no_torch}")
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
    from api.zipvoice.runtime.ort_numpy import onnx_files

    if model_dir is None:
        return None
    if onnx_files(model_dir, precision) is not None:
        return model_dir
    if not _has("torch"):  # the export cache is keyed by the checkpoint: a torch-side feature
        return None
    from api.zipvoice.onnx_export import checkpoint_digest

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
        self.priority_profiles: Mapping[Priority, PriorityProfile] = PRIORITY_PROFILES.get(variant, {})
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
        """Existing ONNX files for ``precision``: an official-layout variant folder, else the
        export beside / for the local checkpoint."""
        from api.zipvoice.weights import local_model_dir, local_onnx_dir

        found = local_onnx_dir(self._settings, self.variant, precision)
        if found is not None:
            return found
        return onnx_dir_for(
            self._settings, self.variant, local_model_dir(self._settings, self.variant), precision
        )

    def engine_choice(self) -> EngineChoice:
        """The runtime this variant uses (or why the requested one cannot run)."""
        s = self._settings
        precision = "fp32" if s.engine == "trt" else s.onnx_precision
        ready = self._onnx_dir(precision) is not None
        fetchable = self.official_onnx and s.allow_downloads and s.zipvoice_model_dir is None
        choice = choose_engine(s, ready, self.probe, onnx_fetchable=fetchable)
        # auto on the CUDA provider wants fp32: only if those files exist or can be fetched
        if (
            choice.ok
            and choice.kind == "onnx"
            and choice.precision != precision
            and s.engine == "auto"
            and self._onnx_dir(choice.precision) is None
            and not fetchable
        ):
            choice = EngineChoice("onnx", "cpu", precision)
        return choice

    def load(self) -> None:
        if self._pipeline is not None:
            return
        with self._lock:
            if self._pipeline is not None:
                return
            avail = self.availability()
            if not avail.ok:
                raise ServiceUnavailableError(f"Backend '{self.variant}' is unavailable: {avail.reason}.")
            choice = self.engine_choice()
            if not choice.ok:
                raise ServiceUnavailableError(f"Backend '{self.variant}' is unavailable: {choice.reason}.")
            if self._uses_array_pipeline(choice):
                self._load_array(choice)
            else:
                self._load_torch(choice)
            self.runtime = choice.label

    def _load_array(self, choice: EngineChoice) -> None:
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
        model = load_onnx_dir(onnx_dir, choice.precision, num_threads=s.num_threads, device=choice.device)
        tokenizer = get_tokenizer(self.defaults.tokenizer, tokens)
        extractor, vocoder, frontend = load_array_frontend(vocos_dir)
        self._pipeline = NumpyZipVoicePipeline(model, tokenizer, vocoder, extractor)
        log.info("%s loaded (%s, %s front-end) from %s", self.variant, choice.label, frontend, onnx_dir)

    def _load_torch(self, choice: EngineChoice) -> None:
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
        if self.defaults.dialog:
            from api.zipvoice.dialog import DialogPipeline

            self._pipeline = DialogPipeline(
                model, tokenizer, vocoder, num_channels=self.channels, device=device
            )
        else:
            self._pipeline = ZipVoicePipeline(model, tokenizer, vocoder, device=device)
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
            wav = result.wav if isinstance(result.wav, np.ndarray) else result.wav.detach().cpu().numpy()
            wav = wav.astype(np.float32, copy=False)
            if wav.ndim == 1:
                wav = wav[None, :]
            yield AudioChunk(wav, int(result.sampling_rate))


def _factory(variant: str) -> Any:
    def build(settings: Settings) -> ZipVoiceEngine:
        return ZipVoiceEngine(settings, variant)

    return build


for _variant in VARIANTS:
    register_engine(_variant, _factory(_variant), DESCRIPTIONS[_variant])
