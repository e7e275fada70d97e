"""Unit checks of model pieces that do not need the golden fixtures."""

from __future__ import annotations

import torch

from api.zipvoice.model.sampler import euler_sample, get_timesteps
from api.zipvoice.model.scaling import ActivationLinear, swoosh_l, swoosh_r
from api.zipvoice.model.zipformer import _rel_to_abs


def test_rel_to_abs_strided_matches_gather_definition() -> None:
    scores = torch.randn(2, 3, 5, 9)
    out = _rel_to_abs(scores)
    expected = torch.empty(2, 3, 5, 5)
    for i in range(5):
        for j in range(5):
            expected[:, :, i, j] = scores[:, :, i, 4 - i + j]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_fused_swoosh_linear_matches_plain_formula() -> None:
    x = torch.randn(4, 7, 16) * 6
    for name, fn in (("SwooshL", swoosh_l), ("SwooshR", swoosh_r)):
        layer = ActivationLinear(16, 8, activation=name)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), torch.nn.functional.linear(fn(x), layer.weight, layer.bias))


def test_timesteps_shift() -> None:
    ts = get_timesteps(4, t_shift=0.5)
    torch.testing.assert_close(ts, torch.tensor([0.0, 1 / 7, 1 / 3, 0.6, 1.0]))


def test_euler_integrates_with_custom_step() -> None:
    seen: list[float] = []

    def step(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x) * 2.0

    x1 = euler_sample(
        step, torch.zeros(1, 3, 2), num_step=5, t_shift=0.7, callback=lambda k, t, x, v: seen.append(float(t))
    )
    torch.testing.assert_close(x1, torch.full((1, 3, 2), 2.0))
    assert len(seen) == 5 and seen[0] == 0.0


def test_rel_to_abs_traced_path_matches() -> None:
    """Under tracing (ONNX export) a gather replaces as_strided; both must agree."""
    scores = torch.randn(1, 2, 6, 11)
    traced = torch.jit.trace(_rel_to_abs, (scores,))
    other = torch.randn(1, 2, 6, 11)
    torch.testing.assert_close(traced(other), _rel_to_abs(other), rtol=0, atol=0)
