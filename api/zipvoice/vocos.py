"""Vocos mel vocoder (``charactr/vocos-mel-24khz`` layout), inference only.

Mel features ``(B, 100, frames)`` go through a ConvNeXt backbone and a head that
predicts log-magnitude and phase of a 1024-point STFT; a centered inverse STFT gives
``(frames - 1) * 256`` samples at 24 kHz. Module and buffer names follow the official
checkpoint so ``pytorch_model.bin`` loads strictly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from api.zipvoice.features import MelSpectrogram, log_mel
from api.zipvoice.vocos_np import init_args


class MelSpectrogramFeatures(nn.Module):
    """Waveform -> log-mel, as the vocoder was trained (``padding='center'`` only)."""

    def __init__(
        self,
        sample_rate: int = 24000,
        n_fft: int = 1024,
        hop_length: int = 256,
        n_mels: int = 100,
        padding: str = "center",
    ) -> None:
        super().__init__()
        if padding != "center":
            raise ValueError(f"only 'center' padding is supported, got {padding!r}")
        self.mel_spec = MelSpectrogram(sample_rate, n_fft, hop_length, n_mels, power=1.0)

    def forward(self, audio: Tensor) -> Tensor:
        """``(B, T)`` -> ``(B, n_mels, frames)``."""
        return log_mel(self.mel_spec(audio))


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (k=7) + LayerNorm + GELU MLP, scaled by ``gamma``, with a residual."""

    def __init__(self, dim: int, intermediate_dim: int, layer_scale_init_value: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma: nn.Parameter | None = (
            nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
            if layer_scale_init_value > 0
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T)`` -> ``(B, C, T)``."""
        h = self.dwconv(x).transpose(1, 2)
        h = self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        if self.gamma is not None:
            h = self.gamma * h
        return x + h.transpose(1, 2)


class VocosBackbone(nn.Module):
    """Conv embedding, LayerNorm, ``num_layers`` ConvNeXt blocks, final LayerNorm."""

    def __init__(
        self,
        input_channels: int,
        dim: int,
        intermediate_dim: int,
        num_layers: int,
        layer_scale_init_value: float | None = None,
    ) -> None:
        super().__init__()
        self.input_channels = input_channels
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        scale = layer_scale_init_value or 1.0 / num_layers
        self.convnext = nn.ModuleList(
            [ConvNeXtBlock(dim, intermediate_dim, scale) for _ in range(num_layers)]
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, input_channels, T)`` -> ``(B, T, dim)``."""
        x = self.embed(x)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.convnext:
            x = block(x)
        return self.final_layer_norm(x.transpose(1, 2))


class ISTFT(nn.Module):
    """Centered inverse STFT with a periodic Hann window buffer named ``window``."""

    window: Tensor

    def __init__(self, n_fft: int, hop_length: int, win_length: int, padding: str = "center") -> None:
        super().__init__()
        if padding != "center":
            raise ValueError(f"only 'center' padding is supported, got {padding!r}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.register_buffer("window", torch.hann_window(win_length))

    def forward(self, spec: Tensor) -> Tensor:
        """Complex ``(B, n_fft//2+1, frames)`` -> ``(B, (frames - 1) * hop)``."""
        return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, self.window, center=True)


class ISTFTHead(nn.Module):
    """Linear projection to log-magnitude + phase, then inverse STFT."""

    def __init__(self, dim: int, n_fft: int, hop_length: int, padding: str = "center") -> None:
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length, n_fft, padding)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, dim)`` -> waveform ``(B, samples)``."""
        out = self.out(x).transpose(1, 2)
        log_mag, phase = out.chunk(2, dim=1)
        # cap the magnitude as upstream does, so random/odd inputs cannot explode
        mag = torch.clip(torch.exp(log_mag), max=1e2)
        spec = mag * (torch.cos(phase) + 1j * torch.sin(phase))
        return self.istft(spec)


class Vocos(nn.Module):
    """Feature extractor + backbone + ISTFT head; ``decode(mel) -> wav``."""

    def __init__(
        self,
        feature_extractor: MelSpectrogramFeatures,
        backbone: VocosBackbone,
        head: ISTFTHead,
        sampling_rate: int = 24000,
    ) -> None:
        super().__init__()
        self.feature_extractor = feature_extractor
        self.backbone = backbone
        self.head = head
        self.sampling_rate = sampling_rate

    @torch.inference_mode()
    def decode(self, features: Tensor) -> Tensor:
        """Log-mel ``(B, 100, T)`` -> waveform ``(B, (T - 1) * 256)``."""
        return self.head(self.backbone(features))

    @torch.inference_mode()
    def forward(self, audio: Tensor) -> Tensor:
        """Analysis-synthesis: waveform ``(B, T)`` -> reconstructed waveform."""
        return self.decode(self.feature_extractor(audio))


def build_vocos(config: dict[str, Any]) -> Vocos:
    """Construct an (uninitialised) Vocos from a parsed ``config.yaml``."""
    fe_args = init_args(config, "feature_extractor")
    bb_args = init_args(config, "backbone")
    head_args = init_args(config, "head")
    if bb_args.pop("adanorm_num_embeddings", None) is not None:
        raise ValueError("vocos config: AdaLayerNorm backbones are not supported")
    feature_extractor = MelSpectrogramFeatures(**fe_args)
    return Vocos(
        feature_extractor,
        VocosBackbone(**bb_args),
        ISTFTHead(**head_args),
        sampling_rate=int(fe_args.get("sample_rate", 24000)),
    )


def load_vocos(model_dir: str | Path, device: str | torch.device = "cpu") -> Vocos:
    """Load ``config.yaml`` + ``pytorch_model.bin`` from ``model_dir`` (strict), in eval mode."""
    model_dir = Path(model_dir)
    with (model_dir / "config.yaml").open(encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    if not isinstance(config, dict):
        raise ValueError(f"{model_dir / 'config.yaml'}: not a mapping")
    vocos = build_vocos(config)
    state = torch.load(model_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    vocos.load_state_dict(state, strict=True)
    return vocos.to(device).eval()
