"""Small inference-only building blocks: Swoosh activations, BiasNorm, bypass scale."""

from __future__ import annotations

import torch
from torch import Tensor, nn

# Offsets that make SwooshL/SwooshR pass (approximately) through the origin.
_SWOOSH_L_OFFSET = 0.035
_SWOOSH_R_OFFSET = 0.313261687
_SWOOSH_SLOPE = 0.08


def swoosh_l(x: Tensor) -> Tensor:
    """SwooshL(x) = log(1 + exp(x - 4)) - 0.08 x - 0.035 (softplus form: ONNX-exportable)."""
    return torch.nn.functional.softplus(x - 4.0) - _SWOOSH_SLOPE * x - _SWOOSH_L_OFFSET


def swoosh_r(x: Tensor) -> Tensor:
    """SwooshR(x) = log(1 + exp(x - 1)) - 0.08 x - 0.313261687."""
    return torch.nn.functional.softplus(x - 1.0) - _SWOOSH_SLOPE * x - _SWOOSH_R_OFFSET


class SwooshR(nn.Module):
    """Parameter-free SwooshR module (keeps `nn.Sequential` indices aligned with checkpoints)."""

    def forward(self, x: Tensor) -> Tensor:
        return swoosh_r(x)


class ActivationLinear(nn.Linear):
    """Swoosh activation followed by a linear layer (parameters `weight`, `bias`)."""

    def __init__(self, in_features: int, out_features: int, activation: str, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if activation == "SwooshL":
            self._offset = 4.0
            self._const = _SWOOSH_L_OFFSET
        elif activation == "SwooshR":
            self._offset = 1.0
            self._const = _SWOOSH_R_OFFSET
        else:
            raise ValueError(f"unknown activation {activation!r}")

    @property
    def input_shift(self) -> float:
        """The activation's inner shift ``c`` in ``softplus(x - c)``."""
        return self._offset

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_shifted(x - self._offset)

    def forward_shifted(self, z: Tensor) -> Tensor:
        """Same as ``forward(z + input_shift)``; lets the producer of ``x`` fold the shift into its bias.

        ``swoosh(x) = softplus(z) - 0.08 z - (0.08 c + const)`` with ``z = x - c``; the constant is
        folded into this layer's bias, so only two elementwise passes remain.
        """
        # softplus switches to the identity for large inputs, like the reference's overflow guard.
        y = torch.nn.functional.softplus(z).add_(z, alpha=-_SWOOSH_SLOPE)
        const = _SWOOSH_SLOPE * self._offset + self._const
        bias = -const * self.weight.sum(dim=1)
        if self.bias is not None:
            bias = bias + self.bias
        return torch.nn.functional.linear(y, self.weight, bias)


class BiasNorm(nn.Module):
    """LayerNorm replacement: x * rms(x - bias)^-1 * exp(log_scale), over the last dim."""

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(1.0))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        scales = torch.mean((x - self.bias) ** 2, dim=-1, keepdim=True) ** -0.5 * self.log_scale.exp()
        return x * scales


class BypassModule(nn.Module):
    """Learned per-channel interpolation between a block's input and output."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.bypass_scale = nn.Parameter(torch.full((embed_dim,), 0.5))

    def forward(self, src_orig: Tensor, src: Tensor) -> Tensor:
        return src_orig + (src - src_orig) * self.bypass_scale
