"""Small inference-only building blocks: Swoosh activations, BiasNorm, bypass scale.

Most modules have two paths. Under ``torch.inference_mode`` (outside tracing and ONNX export;
:func:`fast_path`) they work in place where they own the memory, let the GEMM accumulate into the
residual (:func:`project_add`) and reuse tensors derived from their weights (:func:`derived`);
otherwise (export, autograd) they run the plain expressions the exporters trace.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

# Offsets that make SwooshL/SwooshR pass (approximately) through the origin.
_SWOOSH_L_OFFSET = 0.035
_SWOOSH_R_OFFSET = 0.313261687
_SWOOSH_SLOPE = 0.08


def fast_path() -> bool:
    """True under ``torch.inference_mode`` and outside tracing / ONNX export.

    There nothing records the graph or needs autograd, so in-place updates of tensors a module
    created itself and cached weight-derived tensors are safe.
    """
    return (
        torch.is_inference_mode_enabled()
        and not torch.jit.is_tracing()
        and not torch.onnx.is_in_onnx_export()
    )


def _source_key(t: Tensor | None) -> tuple[object, ...] | None:
    if t is None:
        return None
    # inference tensors (weights created under inference_mode) have no version counter
    version = None if t.is_inference() else t._version
    return (t, t.data_ptr(), version, t.dtype, t.device)


def derived(
    module: nn.Module, name: str, sources: tuple[Tensor | None, ...], fn: Callable[[], Tensor]
) -> Tensor:
    """``fn()`` cached on ``module`` until one of ``sources`` is replaced, moved or changed in place.

    The key holds the source tensors themselves (identity), their storage pointer and version
    counter, so ``load_state_dict``, ``.to()`` and in-place edits all invalidate it (in-place
    edits of inference-tensor weights excepted: those have no version counter). Only for the
    fast path: the cached tensor is an inference tensor.
    """
    key = tuple(_source_key(t) for t in sources)
    store: dict[str, tuple[tuple[object, ...], Tensor]] = module.__dict__.setdefault("_derived_cache", {})
    hit = store.get(name)
    if (
        hit is not None
        and len(hit[0]) == len(key)
        and all(_same(a, b) for a, b in zip(hit[0], key, strict=True))
    ):
        return hit[1]
    value = fn()
    store[name] = (key, value)
    return value


def _same(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is b
    assert isinstance(a, tuple) and isinstance(b, tuple)
    return a[0] is b[0] and a[1:] == b[1:]


def project_add(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    residual: Tensor | None = None,
    extra: Tensor | None = None,
) -> Tensor:
    """``residual + linear(x, weight, bias) + extra`` (``residual``/``extra`` optional).

    On the fast path with a residual the sum ``residual + bias + extra`` is formed once and the
    GEMM accumulates into it (``addmm_``, beta = 1): no separate output, no extra pass.
    """
    if residual is None:
        out = nn.functional.linear(x, weight, bias)
        return out if extra is None else out + extra
    if fast_path() and x.shape[:-1] == residual.shape[:-1] and x.dim() >= 2:
        shift = bias if extra is None else (extra if bias is None else extra + bias)
        acc = residual + shift if shift is not None else residual.clone()
        if acc.shape != residual.shape:  # a shift that broadcasts wider than the residual
            acc = residual + nn.functional.linear(x, weight, bias)
            return acc if extra is None else acc + extra
        acc = acc.contiguous()
        acc.view(-1, acc.shape[-1]).addmm_(x.reshape(-1, x.shape[-1]), weight.t())
        return acc
    out = residual + nn.functional.linear(x, weight, bias)
    return out if extra is None else out + extra


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

    def _folded_bias(self) -> Tensor:
        const = _SWOOSH_SLOPE * self._offset + self._const
        bias = -const * self.weight.sum(dim=1)
        return bias if self.bias is None else bias + self.bias

    def forward_shifted(self, z: Tensor, residual: Tensor | None = None) -> Tensor:
        """Same as ``forward(z + input_shift)`` (plus ``residual`` when given).

        Lets the producer of ``x`` fold the shift into its bias. ``swoosh(x) = softplus(z) -
        0.08 z - (0.08 c + const)`` with ``z = x - c``; the constant is folded into this layer's
        bias, so only two elementwise passes remain. On the fast path the folded bias is cached.
        """
        # softplus switches to the identity for large inputs, like the reference's overflow guard.
        y = torch.nn.functional.softplus(z).add_(z, alpha=-_SWOOSH_SLOPE)
        if fast_path():
            bias = derived(self, "folded_bias", (self.weight, self.bias), self._folded_bias)
        else:
            bias = self._folded_bias()
        return project_add(y, self.weight, bias, residual)


class BiasNorm(nn.Module):
    """LayerNorm replacement: x * rms(x - bias)^-1 * exp(log_scale), over the last dim."""

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(1.0))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        if fast_path():
            ms = (x - self.bias).square_().mean(dim=-1, keepdim=True)
            return x * ms.rsqrt_().mul_(self.log_scale.exp())
        scales = torch.mean((x - self.bias) ** 2, dim=-1, keepdim=True) ** -0.5 * self.log_scale.exp()
        return x * scales


class BypassModule(nn.Module):
    """Learned per-channel interpolation between a block's input and output."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.bypass_scale = nn.Parameter(torch.full((embed_dim,), 0.5))

    def forward(self, src_orig: Tensor, src: Tensor) -> Tensor:
        if fast_path():
            return torch.lerp(src_orig, src, self.bypass_scale)  # one pass, same formula
        return src_orig + (src - src_orig) * self.bypass_scale
