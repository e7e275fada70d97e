"""Euler ODE sampler for flow matching, independent of how one decoder step is computed.

A *step function* maps ``(t, x) -> v`` where ``t`` is a 0-dim tensor and ``x`` is
``(B, T, F)``. :func:`guided_step` and :func:`distill_step` build step functions around a
PyTorch ``forward_fm_decoder``; ONNX / TensorRT engines can pass their own callable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

StepFn = Callable[[Tensor, Tensor], Tensor]
StepCallback = Callable[[int, Tensor, Tensor, Tensor], None]


class DecoderFn(Protocol):
    """Signature of ``ZipVoice.forward_fm_decoder``."""

    def __call__(
        self,
        t: Tensor,
        xt: Tensor,
        text_condition: Tensor,
        speech_condition: Tensor,
        padding_mask: Tensor | None = None,
        guidance_scale: Tensor | None = None,
    ) -> Tensor: ...


def get_timesteps(
    num_step: int,
    t_shift: float = 1.0,
    t_start: float = 0.0,
    t_end: float = 1.0,
    device: torch.device | str = "cpu",
) -> Tensor:
    """``num_step + 1`` float32 times, ``t_shift·u / (1 + (t_shift-1)·u)`` of a uniform grid."""
    u = torch.linspace(t_start, t_end, num_step + 1).to(device)
    return t_shift * u / (1 + (t_shift - 1) * u)


def euler_sample(
    step_fn: StepFn,
    x0: Tensor,
    num_step: int,
    t_shift: float = 1.0,
    t_start: float = 0.0,
    t_end: float = 1.0,
    timesteps: Tensor | None = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """Integrate ``dx/dt = step_fn(t, x)`` from ``x0`` with explicit Euler steps.

    ``timesteps`` overrides the schedule from ``num_step``/``t_shift``. ``callback(k, t, x, v)``
    is called at every step with the step's input ``x`` and velocity ``v``.
    """
    if timesteps is None:
        timesteps = get_timesteps(num_step, t_shift, t_start, t_end, device=x0.device)
    x = x0
    for k in range(timesteps.shape[0] - 1):
        t = timesteps[k]
        v = step_fn(t, x)
        if callback is not None:
            callback(k, t, x, v)
        x = x + v * (timesteps[k + 1] - t)
    return x


def guided_step(
    decoder: DecoderFn,
    text_condition: Tensor,
    speech_condition: Tensor,
    padding_mask: Tensor | None,
    guidance_scale: float | Tensor,
) -> StepFn:
    """Classifier-free guidance around a non-distilled decoder.

    With scale ``g != 0`` the decoder runs once on the batch ``[uncond; cond]``: the unconditional
    half has a zero text condition, and a zero speech condition too when ``t > 0.5`` (otherwise
    ``g`` is doubled). Returns ``(1 + g)·cond - g·uncond``.
    """
    g = torch.as_tensor(guidance_scale, dtype=torch.float32, device=text_condition.device)
    if bool((g == 0.0).all()):

        def plain(t: Tensor, x: Tensor) -> Tensor:
            return decoder(t, x, text_condition, speech_condition, padding_mask)

        return plain

    text2 = torch.cat([torch.zeros_like(text_condition), text_condition], dim=0)
    mask2 = torch.cat([padding_mask, padding_mask], dim=0) if padding_mask is not None else None
    speech_late = torch.cat([torch.zeros_like(speech_condition), speech_condition], dim=0)
    speech_early = torch.cat([speech_condition, speech_condition], dim=0)
    g_early = g * 2

    def step(t: Tensor, x: Tensor) -> Tensor:
        late = bool(t > 0.5)
        out = decoder(t, torch.cat([x, x], dim=0), text2, speech_late if late else speech_early, mask2)
        uncond, cond = out.chunk(2, dim=0)
        scale = g if late else g_early
        return (1 + scale) * cond - scale * uncond

    return step


def distill_step(
    decoder: DecoderFn,
    text_condition: Tensor,
    speech_condition: Tensor,
    padding_mask: Tensor | None,
    guidance_scale: float | Tensor,
) -> StepFn:
    """A distilled decoder: one call per step, the guidance scale is a decoder input."""
    g = torch.as_tensor(guidance_scale, dtype=torch.float32, device=text_condition.device)

    def step(t: Tensor, x: Tensor) -> Tensor:
        return decoder(t, x, text_condition, speech_condition, padding_mask, g.to(t.dtype))

    return step
