"""Vocos-style log-mel features (24 kHz, 100 mels) in plain torch.

This reproduces the feature pipeline ZipVoice trains on (``VocosFbank``): a magnitude
mel spectrogram (centered STFT with reflect padding, periodic Hann window, HTK mel
scale without area normalisation), ``log(clamp(mel, 1e-7))``, then a frame count
fixed by lhotse's rounding rule. No torchaudio dependency.

The ``MelSpectrogram`` module keeps its buffers under the names ``spectrogram.window``
and ``mel_scale.fb`` so that the Vocos vocoder's state dict
(``feature_extractor.mel_spec.*``) loads into it unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

SAMPLING_RATE = 24000
N_FFT = 1024
HOP_LENGTH = 256
N_MELS = 100
LOG_FLOOR = 1e-7


def _hz_to_mel_htk(freq: float) -> float:
    return 2595.0 * math.log10(1.0 + freq / 700.0)


def _mel_to_hz_htk(mels: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


def htk_mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> Tensor:
    """Triangular HTK mel filters without normalisation, shape ``(n_freqs, n_mels)``."""
    bin_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    mel_edges = torch.linspace(_hz_to_mel_htk(f_min), _hz_to_mel_htk(f_max), n_mels + 2)
    hz_edges = _mel_to_hz_htk(mel_edges)
    widths = hz_edges[1:] - hz_edges[:-1]
    # distance of every band edge from every FFT bin centre
    offsets = hz_edges.unsqueeze(0) - bin_freqs.unsqueeze(1)
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


class _Spectrogram(nn.Module):
    """Magnitude STFT holder; the window is a persistent buffer named ``window``."""

    window: Tensor

    def __init__(self, n_fft: int, hop_length: int, power: float = 1.0) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.power = power
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, wav: Tensor) -> Tensor:
        """``(..., T)`` float waveform -> ``(..., n_fft//2+1, frames)`` magnitude**power."""
        lead = wav.shape[:-1]
        spec = torch.stft(
            wav.reshape(-1, wav.shape[-1]),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        spec = spec.reshape(*lead, spec.shape[-2], spec.shape[-1])
        mag = spec.abs()
        return mag if self.power == 1.0 else mag.pow(self.power)


class _MelScale(nn.Module):
    """Projects linear-frequency bins onto mel bands; the filters live in ``fb``."""

    fb: Tensor

    def __init__(self, n_mels: int, sample_rate: int, n_freqs: int) -> None:
        super().__init__()
        fb = htk_mel_filterbank(n_freqs, 0.0, sample_rate / 2.0, n_mels, sample_rate)
        self.register_buffer("fb", fb)

    def forward(self, spec: Tensor) -> Tensor:
        """``(..., n_freqs, frames)`` -> ``(..., n_mels, frames)``."""
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)


class MelSpectrogram(nn.Module):
    """Centered, reflect-padded magnitude mel spectrogram (torchaudio-compatible buffers)."""

    def __init__(
        self,
        sample_rate: int = SAMPLING_RATE,
        n_fft: int = N_FFT,
        hop_length: int = HOP_LENGTH,
        n_mels: int = N_MELS,
        power: float = 1.0,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.spectrogram = _Spectrogram(n_fft, hop_length, power)
        self.mel_scale = _MelScale(n_mels, sample_rate, n_fft // 2 + 1)

    def forward(self, wav: Tensor) -> Tensor:
        """``(..., T)`` -> ``(..., n_mels, 1 + T // hop)``."""
        return self.mel_scale(self.spectrogram(wav))


def log_mel(mel: Tensor) -> Tensor:
    """Natural log with the Vocos floor of 1e-7."""
    return mel.clamp(min=LOG_FLOOR).log()


def num_frames_for(num_samples: int, hop_length: int = HOP_LENGTH) -> int:
    """lhotse ``compute_num_frames``: round-half-up of samples / hop."""
    return (num_samples + hop_length // 2) // hop_length


class VocosFbank:
    """ZipVoice feature extractor: ``extract(wav (C, T), sr) -> (frames, num_channels * 100)``.

    With ``num_channels=1`` a 2-channel input is averaged to mono; with 2 the channels
    are kept and concatenated channel-major (columns 0-99 = channel 0).
    """

    def __init__(self, num_channels: int = 1, device: str | torch.device = "cpu") -> None:
        if num_channels not in (1, 2):
            raise ValueError(f"num_channels must be 1 or 2, got {num_channels}")
        self.num_channels = num_channels
        self.sampling_rate = SAMPLING_RATE
        self.hop_length = HOP_LENGTH
        self.feature_dim = N_MELS * num_channels
        self.mel = MelSpectrogram().to(device)

    @property
    def frame_shift(self) -> float:
        """Seconds per frame."""
        return self.hop_length / self.sampling_rate

    def log_mel(self, wav: Tensor) -> Tensor:
        """Full log-mel ``(C, 100, 1 + T // 256)`` before reshaping and frame truncation."""
        return log_mel(self.mel(wav))

    @torch.inference_mode()
    def extract(self, samples: Tensor | np.ndarray, sampling_rate: int) -> Tensor:
        """Log-mel features ``(num_frames, num_channels * 100)`` of a ``(C, T)`` or ``(T,)`` wave."""
        if sampling_rate != self.sampling_rate:
            raise ValueError(f"expected {self.sampling_rate} Hz audio, got {sampling_rate} Hz")
        wav = torch.from_numpy(samples) if isinstance(samples, np.ndarray) else samples
        if wav.ndim == 1:
            wav = wav.unsqueeze(0)
        if wav.ndim != 2:
            raise ValueError(f"expected (C, T) audio, got shape {tuple(wav.shape)}")
        wav = wav.to(device=self.mel.spectrogram.window.device, dtype=torch.float32)
        channels = wav.shape[0]
        if self.num_channels == 1:
            if channels == 2:
                wav = wav.mean(dim=0, keepdim=True)
            elif channels != 1:
                raise ValueError(f"mono extractor got {channels} channels")
        elif channels != 2:
            raise ValueError(f"stereo extractor needs 2 channels, got {channels}")

        feats = self.log_mel(wav)  # (C, n_mels, frames)
        feats = feats.reshape(-1, feats.shape[-1]).t()  # (frames, C * n_mels)
        target = num_frames_for(wav.shape[1], self.hop_length)
        have = feats.shape[0]
        if have > target:
            feats = feats[:target]
        elif have < target:
            feats = torch.cat([feats, feats[-1:].expand(target - have, -1)], dim=0)
        return feats.contiguous()
