"""Which runtime serves a ZipVoice variant: PyTorch, ONNX Runtime or TensorRT, and on which device.

:func:`choose_engine` reads ``ENGINE``/``DEVICE``/``ONNX_PRECISION`` and what this machine has
(:class:`RuntimeProbe`, a seam so that tests can fake a GPU or a missing package);
:func:`variant_choice` adds what one variant has (ONNX files on disk or on the hub).
:func:`ensure_onnx` exports the checkpoint to ONNX once when a graph runtime needs the files.

Only the standard library at import time: probing never imports torch or onnxruntime unless
they are installed, and the torch-free install can choose its engine.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from api.settings import Settings

log = logging.getLogger(__name__)

ENGINE_KINDS = ("torch", "onnx", "trt")


def has_module(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def nvidia_driver_present() -> bool:
    """Cheap: is an NVIDIA kernel driver loaded (Linux)? Elsewhere: assume it may be."""
    if not sys.platform.startswith("linux"):
        return True
    return os.path.exists("/proc/driver/nvidia/version") or any(Path("/dev").glob("nvidia[0-9]*"))


def cuda_available() -> bool:
    """A CUDA device usable by torch (``False`` without torch). Importing torch costs seconds, so
    machines without an NVIDIA driver answer without it (availability checks must stay cheap)."""
    if not has_module("torch") or not nvidia_driver_present():
        return False
    import torch

    return bool(torch.cuda.is_available())


def ort_cuda_available() -> bool:
    """onnxruntime has the CUDA execution provider (the ``onnxruntime-gpu`` wheel)."""
    if not has_module("onnxruntime"):
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@dataclass(frozen=True)
class RuntimeProbe:
    """What this machine has; a seam so that tests can fake "GPU present" / "tensorrt present"."""

    cuda: Callable[[], bool] = cuda_available
    tensorrt: Callable[[], bool] = lambda: has_module("tensorrt")
    onnxruntime: Callable[[], bool] = lambda: has_module("onnxruntime")
    onnx: Callable[[], bool] = lambda: has_module("onnx")  # needed to export ONNX from the checkpoint
    torch: Callable[[], bool] = lambda: has_module("torch")
    ort_cuda: Callable[[], bool] = ort_cuda_available


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


def torch_device(setting: str) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


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
    if not has_module("torch"):  # the export cache is keyed by the checkpoint: a torch-side feature
        return None
    from api.zipvoice.onnx_export import checkpoint_digest

    try:
        cached = settings.cache_dir / "onnx" / variant / checkpoint_digest(model_dir)
    except FileNotFoundError:
        return None
    return cached if onnx_files(cached, precision) is not None else None


def find_onnx_dir(settings: Settings, variant: str, precision: str) -> Path | None:
    """Existing ONNX files for ``precision``: an official-layout variant folder, else the export
    beside / for the local checkpoint."""
    from api.zipvoice.weights import local_model_dir, local_onnx_dir

    found = local_onnx_dir(settings, variant, precision)
    if found is not None:
        return found
    return onnx_dir_for(settings, variant, local_model_dir(settings, variant), precision)


def onnx_graph_cache(settings: Settings) -> Path | None:
    """Where the CPU-rewritten graphs are kept (:mod:`api.zipvoice.runtime.graph_opt`), or
    ``None`` when ``ZIPVOICE_ONNX_FAST_ACTIVATIONS`` is off (load the files as they are)."""
    return settings.cache_dir / "onnx-graphs" if settings.zipvoice_onnx_fast_activations else None


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


def variant_choice(
    settings: Settings, variant: str, probe: RuntimeProbe, official_onnx: bool
) -> EngineChoice:
    """The runtime one variant uses (or why the requested one cannot run): :func:`choose_engine`
    with the variant's ONNX files (``official_onnx``: the hub publishes them for this variant)."""
    s = settings
    precision = "fp32" if s.engine == "trt" else s.onnx_precision
    ready = find_onnx_dir(s, variant, precision) is not None
    fetchable = official_onnx and s.allow_downloads and s.zipvoice_model_dir is None
    choice = choose_engine(s, ready, probe, onnx_fetchable=fetchable)
    # auto on the CUDA provider wants fp32: only if those files exist or can be fetched
    if (
        choice.ok
        and choice.kind == "onnx"
        and choice.precision != precision
        and s.engine == "auto"
        and find_onnx_dir(s, variant, choice.precision) is None
        and not fetchable
    ):
        choice = EngineChoice("onnx", "cpu", precision)
    return choice
