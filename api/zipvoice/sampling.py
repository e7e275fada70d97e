"""The sampler's options, one object for every ZipVoice runtime (torch-free).

:class:`SamplerOptions` is what :meth:`api.zipvoice.model.zipvoice.ZipVoice.sample`, the graph
runtimes (:class:`api.zipvoice.runtime.onnx_backend.GraphZipVoice` on ONNX Runtime or TensorRT)
and the numpy sampler (:meth:`api.zipvoice.runtime.ort_numpy.OnnxZipVoice.sample_chunk`) take
instead of five loose keyword arguments. Per-call data (tokens, prompt, ``x0``, RNG,
``features_lens``) stays in the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DURATIONS = ("predict", "real")


@dataclass(frozen=True, slots=True)
class SamplerOptions:
    """How to sample: frame count, Euler schedule and guidance.

    The defaults are the PyTorch model's (upstream's ``ZipVoice.sample``); the pipelines pass
    their own (16 steps, ``t_shift`` 0.5, guidance 1.0, dialog 1.5).
    """

    #: speaking rate; the generated frame count is divided by it (``duration="predict"``)
    speed: float = 1.0
    #: time-schedule shift ``t_shift·u / (1 + (t_shift-1)·u)``; 1.0 is a uniform grid
    t_shift: float = 1.0
    #: ``"predict"`` (frames from the prompt's frames per token) or ``"real"`` (given lengths)
    duration: Literal["predict", "real"] = "predict"
    #: Euler steps
    num_step: int = 5
    #: classifier-free guidance scale (a graph input for distilled models)
    guidance_scale: float = 0.5

    def __post_init__(self) -> None:
        if self.duration not in DURATIONS:
            raise ValueError(f"duration must be 'predict' or 'real', got {self.duration!r}")


#: the defaults, shared as the ``options`` default of every ``sample`` signature
DEFAULT_OPTIONS = SamplerOptions()
