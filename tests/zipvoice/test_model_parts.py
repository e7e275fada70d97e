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


def test_fast_path_matches_plain_path() -> None:
    """The inference-mode path (in place, fused residuals, cached weights) equals the traced one."""
    from api.zipvoice.model.zipformer import TTSZipformer

    torch.manual_seed(0)
    net = TTSZipformer(
        in_dim=12,
        out_dim=6,
        downsampling_factor=(1, 2, 4, 2, 1),
        num_encoder_layers=1,
        cnn_module_kernel=(5, 3, 3, 3, 5),
        encoder_dim=16,
        query_head_dim=4,
        pos_head_dim=2,
        value_head_dim=3,
        num_heads=2,
        feedforward_dim=24,
        pos_dim=8,
        time_embed_dim=8,
    ).eval()
    for p in net.parameters():  # the random init leaves biases at zero; exercise them
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 11, 12)  # odd length: the upsampling remainder
    t = torch.tensor([0.3, 0.7])
    mask = torch.zeros(2, 11, dtype=torch.bool)
    mask[1, 8:] = True
    for padding in (None, mask):
        with torch.no_grad():
            plain = net(x, t=t, padding_mask=padding)
        with torch.inference_mode():
            fast = net(x, t=t, padding_mask=padding)
            again = net(x, t=t, padding_mask=padding)  # cached derived weights
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(again, fast, rtol=0, atol=0)


def test_derived_cache_follows_weight_changes() -> None:
    layer = ActivationLinear(8, 4, activation="SwooshR")
    x = torch.randn(3, 8)
    with torch.inference_mode():
        first = layer(x)
        layer.weight.mul_(2.0)  # in place: the version counter moves
        second = layer(x)
        layer.weight = torch.nn.Parameter(torch.randn(4, 8))  # replaced
        third = layer(x)
        with torch.no_grad():
            expected = torch.nn.functional.linear(swoosh_r(x), layer.weight, layer.bias)
    assert not torch.allclose(first, second)
    torch.testing.assert_close(third, expected)


def test_project_add_accumulates_into_residual() -> None:
    from api.zipvoice.model.scaling import project_add

    x, w, b = torch.randn(2, 5, 7), torch.randn(3, 7), torch.randn(3)
    residual, extra = torch.randn(2, 5, 3), torch.randn(2, 1, 3)
    expected = residual + torch.nn.functional.linear(x, w, b) + extra
    with torch.inference_mode():
        out = project_add(x, w, b, residual, extra)
    torch.testing.assert_close(out, expected)
    assert not torch.equal(residual, out)  # the residual itself is left alone
