"""Feature extractor and vocoder on numpy arrays for :class:`api.zipvoice.pipeline.NumpyZipVoicePipeline`.

Preferred: the torch-free implementations (:mod:`api.zipvoice.features_np`,
:mod:`api.zipvoice.vocos_np`, reading ``pytorch_model.bin`` with a restricted unpickler). When
those modules are absent and torch is installed, thin adapters around the PyTorch ones
(:mod:`api.zipvoice.features`, :mod:`api.zipvoice.vocos`) give the same contract.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from api.zipvoice.runtime.heap import release_free_heap


def _module(name: str) -> Any | None:
    try:
        if importlib.util.find_spec(name) is None:
            return None
        return importlib.import_module(name)
    except ImportError:
        return None


def numpy_frontend_available() -> bool:
    """Whether the torch-free feature extractor and vocoder are installed."""
    return _module("api.zipvoice.features_np") is not None and _module("api.zipvoice.vocos_np") is not None


class _TorchFbank:
    def __init__(self) -> None:
        from api.zipvoice.features import VocosFbank

        self._fbank = VocosFbank(num_channels=1)

    def extract(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray:
        out = self._fbank.extract(np.ascontiguousarray(samples, dtype=np.float32), sampling_rate)
        return np.asarray(out.cpu().numpy(), dtype=np.float32)


class _TorchVocos:
    def __init__(self, vocos_dir: Path) -> None:
        from api.zipvoice.vocos import load_vocos

        self._vocos = load_vocos(vocos_dir)

    def decode(self, features: np.ndarray) -> np.ndarray:
        import torch

        out = self._vocos.decode(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)))
        return np.asarray(out.cpu().numpy(), dtype=np.float32)


def _numpy_fbank(module: Any) -> Any:
    for name in ("VocosFbank", "NumpyVocosFbank", "VocosFbankNp"):
        cls = getattr(module, name, None)
        if cls is not None:
            return cls(num_channels=1)
    raise ImportError("api.zipvoice.features_np has no VocosFbank class")


def load_array_frontend(vocos_dir: Path) -> tuple[Any, Any, str]:
    """``(extractor, vocoder, kind)``: kind is ``numpy`` (no torch) or ``torch`` (adapters)."""
    features_np = _module("api.zipvoice.features_np")
    vocos_np = _module("api.zipvoice.vocos_np")
    if features_np is not None and vocos_np is not None:
        vocoder = vocos_np.NumpyVocos.from_dir(vocos_dir)
        release_free_heap()  # the state dict and its transposed copies were temporaries (~50 MB)
        return _numpy_fbank(features_np), vocoder, "numpy"
    if importlib.util.find_spec("torch") is None:
        raise ImportError(
            "the torch-free vocoder (api.zipvoice.vocos_np) is missing and torch is not installed"
        )
    return _TorchFbank(), _TorchVocos(vocos_dir), "torch"
