"""Inference-only Zipformer stacks used by ZipVoice (text encoder and flow-matching decoder).

All tensors are batch-first, ``(batch, time, channels)``. Module and parameter names follow
the official checkpoints so that ``load_state_dict(strict=True)`` works unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from api.zipvoice.model.scaling import (
    ActivationLinear,
    BiasNorm,
    BypassModule,
    SwooshR,
    derived,
    fast_path,
    project_add,
)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding ``[cos, sin]`` of a 1-D tensor of (possibly fractional) steps."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=t.device) / half
    )
    args = t[..., None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[..., :1])], dim=-1)
    return emb


def _rel_position_table(seq_len: int, dim: int, device: torch.device) -> Tensor:
    """Compact relative positional encodings for offsets -(T-1)..(T-1): ``(2T-1, dim)``."""
    pos = torch.arange(-(seq_len - 1), seq_len, device=device).to(torch.float32).unsqueeze(1)
    freqs = 1 + torch.arange(dim // 2, device=device)
    compression = dim**0.5
    # log-compress large offsets, then map the real line onto (-pi/2, pi/2) with atan.
    compressed = compression * pos.sign() * ((pos.abs() + compression).log() - math.log(compression))
    angle = (compressed / (dim / (2.0 * math.pi))).atan()
    table = torch.zeros(pos.shape[0], dim, device=device)
    table[:, 0::2] = (angle * freqs).cos()
    table[:, 1::2] = (angle * freqs).sin()
    table[:, -1] = 1.0
    return table


class CompactRelPositionalEncoding(nn.Module):
    """Parameter-free relative positional encoding; tables are cached per sequence length."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError("pos_dim must be even")
        self.dim = dim
        self._cache: dict[tuple[int, torch.device, torch.dtype], Tensor] = {}

    def forward(self, x: Tensor) -> Tensor:
        """Return ``(2T-1, pos_dim)`` for ``x`` of shape ``(B, T, C)``."""
        seq_len = x.shape[1]
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return _rel_position_table(seq_len, self.dim, x.device).to(x.dtype)
        key = (seq_len, x.device, x.dtype)
        table = self._cache.get(key)
        if table is None:
            if len(self._cache) > 64:
                self._cache.clear()
            table = _rel_position_table(seq_len, self.dim, x.device).to(x.dtype)
            self._cache[key] = table
        return table


def _rel_to_abs(pos_scores: Tensor) -> Tensor:
    """Map ``(B, H, T, 2T-1)`` relative-offset scores to ``(B, H, T, T)`` absolute positions.

    Output ``[.., i, j]`` = input ``[.., i, T - 1 - i + j]``.
    """
    batch, heads, seq_len, _ = pos_scores.shape
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        rows = torch.arange(seq_len - 1, -1, -1, device=pos_scores.device).unsqueeze(-1)
        index = (rows + torch.arange(seq_len, device=pos_scores.device)).expand(batch, heads, -1, -1)
        return torch.gather(pos_scores, dim=3, index=index)
    pos_scores = pos_scores.contiguous()
    s0, s1, s2, s3 = pos_scores.stride()
    return pos_scores.as_strided(
        (batch, heads, seq_len, seq_len), (s0, s1, s2 - s3, s3), storage_offset=s3 * (seq_len - 1)
    )


class RelPositionMultiheadAttentionWeights(nn.Module):
    """Multi-head attention weights with compact relative position scores."""

    def __init__(
        self, embed_dim: int, pos_dim: int, num_heads: int, query_head_dim: int, pos_head_dim: int
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query_head_dim = query_head_dim
        self.pos_head_dim = pos_head_dim
        self.in_proj = nn.Linear(embed_dim, (2 * query_head_dim + pos_head_dim) * num_heads)
        self.linear_pos = nn.Linear(pos_dim, num_heads * pos_head_dim, bias=False)

    def forward(self, x: Tensor, pos_emb: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        """``x``: (B, T, C); ``pos_emb``: (2T-1, pos_dim). Returns weights (B, H, T, T)."""
        batch, seq_len, _ = x.shape
        heads, qd, pd = self.num_heads, self.query_head_dim, self.pos_head_dim
        proj = self.in_proj(x)
        q = proj[..., : heads * qd].reshape(batch, seq_len, heads, qd).transpose(1, 2)
        k = proj[..., heads * qd : 2 * heads * qd].reshape(batch, seq_len, heads, qd).permute(0, 2, 3, 1)
        p = proj[..., 2 * heads * qd :].reshape(batch, seq_len, heads, pd).transpose(1, 2)

        scores = torch.matmul(q, k)  # (B, H, T, T)
        pos = self.linear_pos(pos_emb).reshape(2 * seq_len - 1, heads, pd).permute(1, 2, 0)  # (H, pd, 2T-1)
        if fast_path():
            # the scores are ours: add, mask and normalise them in place (no (B, H, T, T) temporaries)
            scores.add_(_rel_to_abs(torch.matmul(p, pos)))
            if key_padding_mask is not None:
                scores.masked_fill_(key_padding_mask[:, None, None, :], -1000.0)
            return torch.softmax(scores, dim=-1, out=scores)
        scores = scores + _rel_to_abs(torch.matmul(p, pos))
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], -1000.0)
        return scores.softmax(dim=-1)


class SelfAttention(nn.Module):
    """Applies precomputed attention weights to projected values."""

    def __init__(self, embed_dim: int, num_heads: int, value_head_dim: int) -> None:
        super().__init__()
        self.in_proj = nn.Linear(embed_dim, num_heads * value_head_dim)
        self.out_proj = nn.Linear(num_heads * value_head_dim, embed_dim)

    def forward(
        self, x: Tensor, attn_weights: Tensor, residual: Tensor | None = None, extra: Tensor | None = None
    ) -> Tensor:
        """Attention output, plus ``residual`` and ``extra`` (broadcast) when given."""
        batch, seq_len, _ = x.shape
        heads = attn_weights.shape[1]
        v = self.in_proj(x).reshape(batch, seq_len, heads, -1).transpose(1, 2)
        out = torch.matmul(attn_weights, v).transpose(1, 2).reshape(batch, seq_len, -1)
        return project_add(out, self.out_proj.weight, self.out_proj.bias, residual, extra)


class FeedforwardModule(nn.Module):
    """Linear -> SwooshL -> Linear."""

    def __init__(self, embed_dim: int, feedforward_dim: int) -> None:
        super().__init__()
        self.in_proj = nn.Linear(embed_dim, feedforward_dim)
        self.out_proj = ActivationLinear(feedforward_dim, embed_dim, activation="SwooshL")

    def _shifted_bias(self) -> Tensor:
        return self.in_proj.bias - self.out_proj.input_shift

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """Feed-forward output, plus ``residual`` when given."""
        if fast_path():
            bias = derived(self, "shifted_bias", (self.in_proj.bias,), self._shifted_bias)
        else:
            bias = self._shifted_bias()
        z = nn.functional.linear(x, self.in_proj.weight, bias)
        return self.out_proj.forward_shifted(z, residual)


class NonlinAttention(nn.Module):
    """Gated mixing of frames with the first head's attention weights."""

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.in_proj = nn.Linear(channels, hidden_channels * 3)
        self.out_proj = nn.Linear(hidden_channels, channels)

    def forward(self, x: Tensor, attn_weights: Tensor, residual: Tensor | None = None) -> Tensor:
        """``attn_weights``: (B, T, T) weights of one head; plus ``residual`` when given."""
        s, v, gate = self.in_proj(x).chunk(3, dim=-1)
        if fast_path():
            v = torch.matmul(attn_weights, torch.tanh(s).mul_(v)).mul_(gate)
        else:
            v = v * torch.tanh(s)
            v = torch.matmul(attn_weights, v) * gate
        return project_add(v, self.out_proj.weight, self.out_proj.bias, residual)


class ConvolutionModule(nn.Module):
    """GLU -> depthwise conv over time -> SwooshR -> Linear."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd")
        self.in_proj = nn.Linear(channels, 2 * channels)
        self.depthwise_conv = nn.Conv1d(
            channels, channels, kernel_size, padding=kernel_size // 2, groups=channels
        )
        self.out_proj = ActivationLinear(channels, channels, activation="SwooshR")

    def forward(self, x: Tensor, padding_mask: Tensor | None, residual: Tensor | None = None) -> Tensor:
        """Convolution module output, plus ``residual`` when given."""
        fast = fast_path()
        if fast:
            x = nn.functional.glu(self.in_proj(x), dim=-1)  # x * sigmoid(s) in one pass, (B, T, C)
            if padding_mask is not None:
                x.masked_fill_(padding_mask.unsqueeze(-1), 0.0)
        else:
            x, s = self.in_proj(x).chunk(2, dim=-1)
            x = x * torch.sigmoid(s)  # (B, T, C)
            if padding_mask is not None:
                x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        # A (B, T, C) tensor seen as (B, C, 1, T) is channels-last: the depthwise conv then runs
        # without layout copies and returns (B, T, C)-contiguous memory.
        conv = self.depthwise_conv
        bias = conv.bias
        if bias is not None:
            shift = self.out_proj.input_shift
            raw = bias
            bias = derived(self, "shifted_bias", (raw,), lambda: raw - shift) if fast else raw - shift
        z = nn.functional.conv2d(
            x.transpose(1, 2).unsqueeze(2),
            conv.weight.unsqueeze(2),
            bias,
            padding=(0, conv.kernel_size[0] // 2),
            groups=conv.groups,
        )
        return self.out_proj.forward_shifted(z.squeeze(2).transpose(1, 2), residual)


class Zipformer2EncoderLayer(nn.Module):
    """One Zipformer block (inference only)."""

    def __init__(
        self,
        embed_dim: int,
        pos_dim: int,
        num_heads: int,
        query_head_dim: int,
        pos_head_dim: int,
        value_head_dim: int,
        feedforward_dim: int,
        cnn_module_kernel: int,
    ) -> None:
        super().__init__()
        self.bypass = BypassModule(embed_dim)
        self.bypass_mid = BypassModule(embed_dim)
        self.self_attn_weights = RelPositionMultiheadAttentionWeights(
            embed_dim, pos_dim, num_heads, query_head_dim, pos_head_dim
        )
        self.self_attn1 = SelfAttention(embed_dim, num_heads, value_head_dim)
        self.self_attn2 = SelfAttention(embed_dim, num_heads, value_head_dim)
        self.feed_forward1 = FeedforwardModule(embed_dim, feedforward_dim * 3 // 4)
        self.feed_forward2 = FeedforwardModule(embed_dim, feedforward_dim)
        self.feed_forward3 = FeedforwardModule(embed_dim, feedforward_dim * 5 // 4)
        self.nonlin_attention = NonlinAttention(embed_dim, 3 * embed_dim // 4)
        self.conv_module1 = ConvolutionModule(embed_dim, cnn_module_kernel)
        self.conv_module2 = ConvolutionModule(embed_dim, cnn_module_kernel)
        self.norm = BiasNorm(embed_dim)

    def forward(
        self, src: Tensor, pos_emb: Tensor, time_emb: Tensor | None, padding_mask: Tensor | None
    ) -> Tensor:
        """``src``: (B, T, C); ``time_emb``: (B, 1, C) or None."""
        # Each sub-module adds its output to the residual it is given (``extra``: the time
        # embedding that follows the attention blocks), so the GEMMs can accumulate in place.
        src_orig = src
        attn_weights = self.self_attn_weights(src, pos_emb, padding_mask)
        if time_emb is not None:
            src = src + time_emb
        src = self.feed_forward1(src, residual=src)
        src = self.nonlin_attention(src, attn_weights[:, 0], residual=src)
        src = self.self_attn1(src, attn_weights, residual=src, extra=time_emb)
        src = self.conv_module1(src, padding_mask, residual=src)
        src = self.feed_forward2(src, residual=src)
        src = self.bypass_mid(src_orig, src)
        src = self.self_attn2(src, attn_weights, residual=src, extra=time_emb)
        src = self.conv_module2(src, padding_mask, residual=src)
        src = self.feed_forward3(src, residual=src)
        src = self.norm(src)
        return self.bypass(src_orig, src)


class Zipformer2Encoder(nn.Module):
    """A stack of encoder layers sharing positional and (optional) time embeddings."""

    def __init__(
        self,
        num_layers: int,
        embed_dim: int,
        time_embed_dim: int | None,
        pos_dim: int,
        num_heads: int,
        query_head_dim: int,
        pos_head_dim: int,
        value_head_dim: int,
        feedforward_dim: int,
        cnn_module_kernel: int,
    ) -> None:
        super().__init__()
        self.encoder_pos = CompactRelPositionalEncoding(pos_dim)
        self.time_emb: nn.Sequential | None = (
            nn.Sequential(SwooshR(), nn.Linear(time_embed_dim, embed_dim)) if time_embed_dim else None
        )
        self.layers = nn.ModuleList(
            Zipformer2EncoderLayer(
                embed_dim,
                pos_dim,
                num_heads,
                query_head_dim,
                pos_head_dim,
                value_head_dim,
                feedforward_dim,
                cnn_module_kernel,
            )
            for _ in range(num_layers)
        )

    def forward(self, src: Tensor, time_emb: Tensor | None, padding_mask: Tensor | None) -> Tensor:
        pos_emb = self.encoder_pos(src)
        layer_time_emb = None
        if self.time_emb is not None:
            if time_emb is None:
                raise ValueError("this encoder needs a time embedding")
            layer_time_emb = self.time_emb(time_emb).unsqueeze(1)
        for layer in self.layers:
            src = layer(src, pos_emb, layer_time_emb, padding_mask)
        return src


class SimpleDownsample(nn.Module):
    """Downsample time by a softmax-weighted sum of each group of ``factor`` frames."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(factor))
        self.factor = factor

    def forward(self, src: Tensor) -> Tensor:
        batch, seq_len, channels = src.shape
        ds = self.factor
        out_len = (seq_len + ds - 1) // ds
        pad = out_len * ds - seq_len
        if pad or torch.jit.is_tracing():  # keep the padding op in traced graphs (dynamic T)
            src = torch.cat([src, src[:, -1:].expand(batch, pad, channels)], dim=1)
        weights = self.bias.softmax(dim=0)
        return (src.reshape(batch, out_len, ds, channels) * weights[:, None]).sum(dim=2)


class DownsampledZipformer2Encoder(nn.Module):
    """Runs an encoder at a reduced frame rate, upsamples by repetition and bypass-combines."""

    def __init__(self, encoder: Zipformer2Encoder, dim: int, downsample: int) -> None:
        super().__init__()
        self.factor = downsample
        self.downsample = SimpleDownsample(downsample)
        self.encoder = encoder
        self.out_combiner = BypassModule(dim)

    def forward(self, src: Tensor, time_emb: Tensor | None, padding_mask: Tensor | None) -> Tensor:
        ds = self.factor
        seq_len = src.shape[1]
        mask = padding_mask[:, ::ds] if padding_mask is not None else None
        out = self.encoder(self.downsample(src), time_emb, mask)
        if fast_path():
            return self._upsample_combine(src, out)
        out = out.repeat_interleave(ds, dim=1)[:, :seq_len]
        return self.out_combiner(src, out)

    def _upsample_combine(self, src: Tensor, out: Tensor) -> Tensor:
        """``out_combiner(src, repeat_interleave(out))`` without materialising the repeated frames."""
        batch, seq_len, channels = src.shape
        ds = self.factor
        whole = seq_len // ds
        scale = self.out_combiner.bypass_scale
        result = torch.empty_like(src, memory_format=torch.contiguous_format)
        torch.lerp(
            src[:, : whole * ds].reshape(batch, whole, ds, channels),
            out[:, :whole].unsqueeze(2),
            scale,
            out=result[:, : whole * ds].view(batch, whole, ds, channels),
        )
        if whole * ds < seq_len:
            torch.lerp(src[:, whole * ds :], out[:, whole : whole + 1], scale, out=result[:, whole * ds :])
        return result


def _check_unet_factors(factors: Sequence[int]) -> None:
    n = len(factors)
    ok = factors[0] == 1 and factors[-1] == 1
    ok = ok and all(factors[i] == factors[i - 1] * 2 for i in range(1, n // 2 + 1))
    ok = ok and all(factors[i] * 2 == factors[i - 1] for i in range(n // 2 + 1, n))
    if not ok:
        raise ValueError(f"downsampling factors must be U-Net shaped, got {list(factors)}")


def _per_stack(value: int | Sequence[int], n: int) -> list[int]:
    values = [value] if isinstance(value, int) else list(value)
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        raise ValueError(f"expected {n} values, got {values}")
    return values


class TTSZipformer(nn.Module):
    """U-Net shaped Zipformer: in_proj -> encoder stacks at several frame rates -> out_proj."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        downsampling_factor: int | Sequence[int],
        num_encoder_layers: int | Sequence[int],
        cnn_module_kernel: int | Sequence[int],
        encoder_dim: int,
        query_head_dim: int,
        pos_head_dim: int,
        value_head_dim: int,
        num_heads: int,
        feedforward_dim: int,
        pos_dim: int,
        use_time_embed: bool = True,
        time_embed_dim: int = 192,
        use_guidance_scale_embed: bool = False,
        guidance_scale_embed_dim: int = 192,
    ) -> None:
        super().__init__()
        factors = [downsampling_factor] if isinstance(downsampling_factor, int) else list(downsampling_factor)
        _check_unet_factors(factors)
        n = len(factors)
        layers = _per_stack(num_encoder_layers, n)
        kernels = _per_stack(cnn_module_kernel, n)
        self.time_embed_dim = time_embed_dim if use_time_embed else 0
        self.guidance_scale_embed_dim = guidance_scale_embed_dim
        self._build_projections(in_dim, out_dim, encoder_dim)

        encoders: list[nn.Module] = []
        for i in range(n):
            encoder = Zipformer2Encoder(
                layers[i],
                encoder_dim,
                self.time_embed_dim or None,
                pos_dim,
                num_heads,
                query_head_dim,
                pos_head_dim,
                value_head_dim,
                feedforward_dim,
                kernels[i],
            )
            encoders.append(
                DownsampledZipformer2Encoder(encoder, encoder_dim, factors[i]) if factors[i] != 1 else encoder
            )
        self.encoders = nn.ModuleList(encoders)
        self.time_embed: nn.Sequential | None = None
        if use_time_embed:
            self.time_embed = nn.Sequential(
                nn.Linear(time_embed_dim, time_embed_dim * 2),
                SwooshR(),
                nn.Linear(time_embed_dim * 2, time_embed_dim),
            )
        self.guidance_scale_embed: nn.Linear | None = None
        if use_guidance_scale_embed:
            self.guidance_scale_embed = nn.Linear(guidance_scale_embed_dim, time_embed_dim, bias=False)

    def _build_projections(self, in_dim: int, out_dim: int, encoder_dim: int) -> None:
        self.in_proj = nn.Linear(in_dim, encoder_dim)
        self.out_proj = nn.Linear(encoder_dim, out_dim)

    def _time_embedding(self, t: Tensor | None, guidance_scale: Tensor | None) -> Tensor | None:
        if t is None or self.time_embed is None:
            return None
        first = self.time_embed[0]
        assert isinstance(first, nn.Linear)
        dtype = first.weight.dtype
        emb = timestep_embedding(t, self.time_embed_dim).to(dtype)
        if guidance_scale is not None:
            if self.guidance_scale_embed is None:
                raise ValueError("this decoder has no guidance-scale embedding")
            emb = emb + self.guidance_scale_embed(
                timestep_embedding(guidance_scale, self.guidance_scale_embed_dim).to(dtype)
            )
        return self.time_embed(emb)

    def _run_stacks(self, x: Tensor, time_emb: Tensor | None, padding_mask: Tensor | None) -> Tensor:
        for module in self.encoders:
            x = module(x, time_emb, padding_mask)
        return x

    def forward(
        self,
        x: Tensor,
        t: Tensor | None = None,
        padding_mask: Tensor | None = None,
        guidance_scale: Tensor | None = None,
    ) -> Tensor:
        """``x``: (B, T, in_dim); ``t``, ``guidance_scale``: (B,). Returns (B, T, out_dim)."""
        time_emb = self._time_embedding(t, guidance_scale)
        x = self._run_stacks(self.in_proj(x), time_emb, padding_mask)
        return self.out_proj(x)


class TTSZipformerTwoStream(TTSZipformer):
    """TTSZipformer with two input/output projections (stereo and mono) sharing the stacks."""

    def __init__(self, in_dim: tuple[int, int], out_dim: tuple[int, int], **kwargs: object) -> None:
        self._two_in = in_dim
        self._two_out = out_dim
        super().__init__(in_dim=in_dim[0], out_dim=out_dim[0], **kwargs)  # type: ignore[arg-type]

    def _build_projections(self, in_dim: int, out_dim: int, encoder_dim: int) -> None:
        self.in_dim = self._two_in
        self.in_proj = nn.ModuleList([nn.Linear(d, encoder_dim) for d in self._two_in])  # type: ignore[assignment]
        self.out_proj = nn.ModuleList([nn.Linear(encoder_dim, d) for d in self._two_out])  # type: ignore[assignment]

    def forward(
        self,
        x: Tensor,
        t: Tensor | None = None,
        padding_mask: Tensor | None = None,
        guidance_scale: Tensor | None = None,
    ) -> Tensor:
        """Picks the stream by the input width: ``in_dim[0]`` (stereo) or ``in_dim[1]`` (mono)."""
        if guidance_scale is not None:
            raise ValueError("the two-stream decoder has no guidance-scale embedding")
        width = x.shape[-1]
        if width not in self.in_dim:
            raise ValueError(f"input width {width} not in {self.in_dim}")
        index = 0 if width == self.in_dim[0] else 1
        time_emb = self._time_embedding(t, None)
        x = self._run_stacks(self.in_proj[index](x), time_emb, padding_mask)  # type: ignore[index]
        return self.out_proj[index](x)  # type: ignore[index]
