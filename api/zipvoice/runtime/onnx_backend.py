"""ZipVoice with the two networks in ONNX Runtime, PyTorch-side (torch tensors in and out).

The server's ONNX engine for ``zipvoice``/``zipvoice_distill`` is torch-free
(:mod:`api.zipvoice.runtime.ort_numpy` + :class:`api.zipvoice.pipeline.NumpyZipVoicePipeline`);
this module serves the dialog variants on ONNX, TensorRT (:mod:`.trt_backend`) and tests that
compare against the PyTorch model with a shared ``x0``.

:class:`GraphZipVoice` has the ``sample(...)`` signature of the PyTorch model, so
:class:`api.zipvoice.pipeline.ZipVoicePipeline` and :class:`api.zipvoice.dialog.DialogPipeline`
run it unchanged. It plugs a decoder-step callable into the PyTorch sampler
(:func:`api.zipvoice.model.sampler.euler_sample`, same time schedule); the callables here are
ONNX Runtime sessions, :mod:`api.zipvoice.runtime.trt_backend` supplies a TensorRT one.

The graphs are batch-of-one with no padding mask (as upstream's), so a batch is generated one
item at a time. The initial noise is drawn exactly as the PyTorch model draws it (one
``randn(B, T_max, F)``), so a seeded batch of one gives the same noise as the PyTorch engine.

Frame count: upstream's text graph computes ``ceil(prompt_len / P * (P + S) / speed)`` frames,
while the PyTorch model uses ``prompt_len + ceil(prompt_len / P * S / speed)`` (they differ by a
frame now and then). We compute the PyTorch count ``N`` here and feed the graph the speed value
``prompt_len * (P + S) / (P * (N - 0.5))``, for which the graph's ceil lands on ``N`` with half a
frame of margin against rounding; ``speed`` has no other use in the graph. So ONNX and PyTorch
generate the same number of frames for the same text, also with upstream's published files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from api.zipvoice.model.sampler import euler_sample, get_timesteps
from api.zipvoice.runtime.ort_numpy import (
    FM_INPUTS,
    TEXT_INPUTS,
    graph_speed,
    make_session,
    onnx_file_names,
    onnx_providers,
    predicted_frames,
    resolve_threads,
)
from api.zipvoice.sampling import DEFAULT_OPTIONS, SamplerOptions

__all__ = [
    "GraphZipVoice",
    "OrtDecoderStep",
    "OrtTextEncoder",
    "graph_speed",
    "load_onnx_model",
    "make_session",
    "onnx_providers",
    "predicted_frames",
    "resolve_threads",
]

log = logging.getLogger(__name__)


class TextEncoderFn(Protocol):
    """``(tokens (1,S), prompt_tokens (1,P), prompt_features_len, speed) -> text_condition (1,T,Ft)``."""

    def __call__(
        self, tokens: np.ndarray, prompt_tokens: np.ndarray, prompt_features_len: int, speed: float
    ) -> Tensor: ...


class DecoderStepFn(Protocol):
    """``(t (), x, text_condition, speech_condition, guidance_scale) -> v``, guidance inside."""

    def __call__(
        self, t: Tensor, x: Tensor, text_condition: Tensor, speech_condition: Tensor, guidance_scale: float
    ) -> Tensor: ...


class OrtTextEncoder:
    def __init__(self, session: Any) -> None:
        self.session = session
        names = [i.name for i in session.get_inputs()]
        if names != list(TEXT_INPUTS):
            raise ValueError(f"text encoder inputs are {names}, expected {list(TEXT_INPUTS)}")
        self.feat_dim = int(session.get_outputs()[0].shape[-1])

    def __call__(
        self, tokens: np.ndarray, prompt_tokens: np.ndarray, prompt_features_len: int, speed: float
    ) -> Tensor:
        (out,) = self.session.run(
            None,
            {
                "tokens": tokens,
                "prompt_tokens": prompt_tokens,
                "prompt_features_len": np.array(prompt_features_len, dtype=np.int64),
                "speed": np.array(speed, dtype=np.float32),
            },
        )
        return torch.from_numpy(out)


class OrtDecoderStep:
    def __init__(self, session: Any) -> None:
        self.session = session
        names = [i.name for i in session.get_inputs()]
        if names != list(FM_INPUTS):
            raise ValueError(f"fm decoder inputs are {names}, expected {list(FM_INPUTS)}")
        self.feat_dim = int(session.get_inputs()[1].shape[-1])

    def __call__(
        self, t: Tensor, x: Tensor, text_condition: Tensor, speech_condition: Tensor, guidance_scale: float
    ) -> Tensor:
        (v,) = self.session.run(
            None,
            {
                "t": t.detach().cpu().to(torch.float32).reshape(()).numpy(),
                "x": x.detach().cpu().contiguous().numpy(),
                "text_condition": text_condition.numpy(),
                "speech_condition": speech_condition.numpy(),
                "guidance_scale": np.array(guidance_scale, dtype=np.float32),
            },
        )
        return torch.from_numpy(v)


class GraphZipVoice:
    """The ZipVoice ``sample`` entry point over external text-encoder / decoder-step callables."""

    def __init__(
        self, text_encoder: TextEncoderFn, decoder_step: DecoderStepFn, feat_dim: int, name: str = "onnx"
    ) -> None:
        self.text_encoder = text_encoder
        self.decoder_step = decoder_step
        self.feat_dim = feat_dim
        self.name = name
        self.device = torch.device("cpu")

    def sample(
        self,
        tokens: Sequence[Sequence[int]],
        prompt_tokens: Sequence[Sequence[int]],
        prompt_features: Tensor,
        prompt_features_lens: Tensor,
        options: SamplerOptions = DEFAULT_OPTIONS,
        *,
        x0: Tensor | None = None,
        generator: torch.Generator | None = None,
        features_lens: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Same arguments and result as :meth:`api.zipvoice.model.zipvoice.ZipVoice.sample`."""
        batch = len(tokens)
        if batch != len(prompt_tokens):
            raise ValueError("tokens and prompt_tokens must have the same batch size")
        speed, duration, num_step = options.speed, options.duration, options.num_step
        if duration == "real" and features_lens is None:
            raise ValueError('duration="real" needs features_lens')
        prompt_features = prompt_features.detach().to("cpu", torch.float32)
        plens = [int(n) for n in prompt_features_lens.reshape(-1).cpu()]
        totals: list[int] = []
        for i in range(batch):
            if duration == "predict":
                totals.append(predicted_frames(plens[i], len(prompt_tokens[i]), len(tokens[i]), speed))
            else:
                assert features_lens is not None
                totals.append(plens[i] + int(features_lens.reshape(-1)[i]))
        feat = prompt_features.shape[-1]
        shape = (batch, max(totals), feat)
        if x0 is None:
            x0 = torch.randn(*shape, generator=generator, device=generator.device if generator else "cpu")
        if tuple(x0.shape) != shape:
            raise ValueError(f"x0 must have shape {shape}, got {tuple(x0.shape)}")
        x0 = x0.detach().to("cpu", torch.float32)
        timesteps = get_timesteps(num_step, float(options.t_shift))
        g = float(options.guidance_scale)

        gen_lens = [total - plen for total, plen in zip(totals, plens, strict=True)]
        pred = torch.zeros(batch, max(max(gen_lens), 0), feat)
        for i in range(batch):
            total, plen = totals[i], plens[i]
            text_condition = self.text_encoder(
                np.asarray([list(tokens[i])], dtype=np.int64),
                np.asarray([list(prompt_tokens[i])], dtype=np.int64),
                plen,
                graph_speed(plen, len(prompt_tokens[i]), len(tokens[i]), total),
            ).to(torch.float32)
            if text_condition.shape[1] != total:
                raise RuntimeError(f"text encoder gave {text_condition.shape[1]} frames, expected {total}")
            speech_condition = torch.zeros(1, total, feat)
            width = min(plen, total)
            speech_condition[0, :width] = prompt_features[i, :width]

            def step(
                t: Tensor, x: Tensor, tc: Tensor = text_condition, sc: Tensor = speech_condition
            ) -> Tensor:
                return self.decoder_step(t, x, tc, sc, g).to(torch.float32)

            x1 = euler_sample(step, x0[i : i + 1, :total].contiguous(), num_step, timesteps=timesteps)
            pred[i, : gen_lens[i]] = x1[0, plen:total]
        return pred, torch.tensor(gen_lens, dtype=torch.int64)


def load_onnx_model(
    directory: Path,
    precision: str = "int8",
    num_threads: int = 0,
    device: str = "cpu",
    graph_cache: Path | None = None,
) -> GraphZipVoice:
    """Sessions for ``text_encoder[_int8].onnx`` + ``fm_decoder[_int8].onnx`` in ``directory``
    (``graph_cache``: see :func:`make_session`)."""
    text_name, fm_name = onnx_file_names(precision)
    missing = [n for n in (text_name, fm_name) if not (directory / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not found in {directory}")
    text = OrtTextEncoder(make_session(directory / text_name, num_threads, device, graph_cache))
    fm = OrtDecoderStep(make_session(directory / fm_name, num_threads, device, graph_cache))
    log.info("ONNX %s sessions from %s (%s)", precision, directory, ", ".join(fm.session.get_providers()))
    return GraphZipVoice(text, fm, feat_dim=fm.feat_dim, name=f"onnx-{precision}")
