"""Vocos-style log-mel features (24 kHz, 100 mels) in numpy: the torch-free twin of ``features.py``.

Interface (shared with the ONNX pipeline, keep it stable): ``VocosFbank(num_channels=1)`` with the
same attributes as the torch class (``num_channels``, ``sampling_rate``, ``hop_length``,
``feature_dim``, ``frame_shift``) and

* ``extract(samples (C, T) or (T,), sampling_rate) -> np.ndarray (frames, C * 100) float32``:
  ``frames = (T + 128) // 256`` (lhotse's rule), channel-major columns; a 2-channel input to the
  mono extractor is averaged first;
* ``log_mel(wav (C, T)) -> np.ndarray (C, 100, 1 + T // 256)`` before truncation.

The computation is the one of ``api.zipvoice.features``: a centered STFT (reflect padding of
``n_fft // 2``), a periodic Hann window of 1024 samples, hop 256, the magnitude (power 1), HTK
mel filters from 0 Hz to Nyquist without area normalisation, then ``log(max(mel, 1e-7))``. The
FFT runs in float64 (numpy's pocketfft) in bounded blocks of frames; the result is float32.
Like ``torch.stft``'s reflect padding, inputs of at most ``n_fft // 2`` samples are refused.
No torch, no scipy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SAMPLING_RATE = 24000
N_FFT = 1024
HOP_LENGTH = 256
N_MELS = 100
LOG_FLOOR = 1e-7
_BLOCK_FRAMES = 2048  # frames per FFT block: bounds the float64 working memory (~25 MB)

__all__ = [
    "HOP_LENGTH",
    "LOG_FLOOR",
    "N_FFT",
    "N_MELS",
    "SAMPLING_RATE",
    "MelSpectrogram",
    "NumpyVocosFbank",
    "VocosFbank",
    "hann_window",
    "htk_mel_filterbank",
    "log_mel",
    "num_frames_for",
]


def _hz_to_mel_htk(freq: float) -> float:
    return 2595.0 * math.log10(1.0 + freq / 700.0)


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window (``torch.hann_window(n)``), float32."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n, dtype=np.float64) / n)).astype(np.float32)


def htk_mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> np.ndarray:
    """Triangular HTK mel filters without normalisation, shape ``(n_freqs, n_mels)`` float32."""
    bin_freqs = np.linspace(0.0, sample_rate // 2, n_freqs, dtype=np.float64)
    mel_edges = np.linspace(_hz_to_mel_htk(f_min), _hz_to_mel_htk(f_max), n_mels + 2, dtype=np.float64)
    hz_edges = 700.0 * (10.0 ** (mel_edges / 2595.0) - 1.0)
    widths = hz_edges[1:] - hz_edges[:-1]
    offsets = hz_edges[None, :] - bin_freqs[:, None]
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    return np.maximum(np.minimum(rising, falling), 0.0).astype(np.float32)


def log_mel(mel: np.ndarray) -> np.ndarray:
    """Natural log with the Vocos floor of 1e-7 (float32)."""
    return np.log(np.maximum(mel, np.float32(LOG_FLOOR))).astype(np.float32, copy=False)


def num_frames_for(num_samples: int, hop_length: int = HOP_LENGTH) -> int:
    """lhotse ``compute_num_frames``: round-half-up of samples / hop."""
    return (num_samples + hop_length // 2) // hop_length


class MelSpectrogram:
    """Centered, reflect-padded magnitude mel spectrogram: ``(..., T) -> (..., n_mels, 1 + T // hop)``.

    ``window`` and ``fb`` may be given (e.g. the Vocos checkpoint's buffers); by default they are
    computed as ``features.py`` does.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLING_RATE,
        n_fft: int = N_FFT,
        hop_length: int = HOP_LENGTH,
        n_mels: int = N_MELS,
        power: float = 1.0,
        window: np.ndarray | None = None,
        fb: np.ndarray | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.power = power
        n_freqs = n_fft // 2 + 1
        self.window = (
            hann_window(n_fft) if window is None else np.asarray(window, dtype=np.float32)
        ).reshape(-1)
        self.fb = (
            htk_mel_filterbank(n_freqs, 0.0, sample_rate / 2.0, n_mels, sample_rate)
            if fb is None
            else np.asarray(fb, dtype=np.float32)
        )
        if self.window.shape != (n_fft,) or self.fb.shape != (n_freqs, n_mels):
            raise ValueError(
                f"window/filterbank shapes {self.window.shape}/{self.fb.shape} do not fit n_fft={n_fft}"
            )

    def _one(self, wav: np.ndarray) -> np.ndarray:
        pad = self.n_fft // 2
        if wav.shape[0] <= pad:
            raise ValueError(f"audio of {wav.shape[0]} samples is too short for the STFT (needs > {pad})")
        padded = np.pad(wav.astype(np.float64), (pad, pad), mode="reflect")
        n_frames = 1 + wav.shape[0] // self.hop_length
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft)[:: self.hop_length][:n_frames]
        window = self.window.astype(np.float64)
        out = np.empty((self.n_mels, n_frames), dtype=np.float32)
        for start in range(0, n_frames, _BLOCK_FRAMES):
            block = frames[start : start + _BLOCK_FRAMES] * window
            mag = np.abs(np.fft.rfft(block, n=self.n_fft, axis=-1)).astype(np.float32)
            if self.power != 1.0:
                mag = mag**self.power
            out[:, start : start + block.shape[0]] = (mag @ self.fb).T
        return out

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim == 0:
            raise ValueError("expected (..., T) audio, got a scalar")
        lead = wav.shape[:-1]
        flat = wav.reshape(-1, wav.shape[-1])
        mels = [self._one(row) for row in flat]
        n_frames = 1 + wav.shape[-1] // self.hop_length
        if not mels:
            return np.zeros((*lead, self.n_mels, n_frames), dtype=np.float32)
        return np.stack(mels).reshape(*lead, self.n_mels, n_frames)


class VocosFbank:
    """ZipVoice feature extractor: ``extract(wav (C, T), sr) -> (frames, num_channels * 100)`` float32.

    With ``num_channels=1`` a 2-channel input is averaged to mono; with 2 the channels are kept and
    concatenated channel-major (columns 0-99 = channel 0). Same surface as the torch class.
    """

    def __init__(self, num_channels: int = 1, device: Any = None) -> None:
        if num_channels not in (1, 2):
            raise ValueError(f"num_channels must be 1 or 2, got {num_channels}")
        if device is not None and str(device) != "cpu":
            raise ValueError(f"the numpy features run on the CPU only, got device={device!r}")
        self.num_channels = num_channels
        self.sampling_rate = SAMPLING_RATE
        self.hop_length = HOP_LENGTH
        self.feature_dim = N_MELS * num_channels
        self.mel = MelSpectrogram()

    @property
    def frame_shift(self) -> float:
        """Seconds per frame."""
        return self.hop_length / self.sampling_rate

    def log_mel(self, wav: np.ndarray) -> np.ndarray:
        """Full log-mel ``(C, 100, 1 + T // 256)`` before reshaping and frame truncation."""
        return log_mel(self.mel(np.asarray(wav, dtype=np.float32)))

    def extract(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray:
        """Log-mel features ``(num_frames, num_channels * 100)`` of a ``(C, T)`` or ``(T,)`` wave."""
        if sampling_rate != self.sampling_rate:
            raise ValueError(f"expected {self.sampling_rate} Hz audio, got {sampling_rate} Hz")
        wav = np.asarray(samples, dtype=np.float32)
        if wav.ndim == 1:
            wav = wav[None, :]
        if wav.ndim != 2:
            raise ValueError(f"expected (C, T) audio, got shape {tuple(wav.shape)}")
        channels = wav.shape[0]
        if self.num_channels == 1:
            if channels == 2:
                wav = wav.mean(axis=0, keepdims=True, dtype=np.float32)
            elif channels != 1:
                raise ValueError(f"mono extractor got {channels} channels")
        elif channels != 2:
            raise ValueError(f"stereo extractor needs 2 channels, got {channels}")

        feats = self.log_mel(wav)  # (C, n_mels, frames)
        feats = feats.reshape(-1, feats.shape[-1]).T  # (frames, C * n_mels)
        target = num_frames_for(wav.shape[1], self.hop_length)
        have = feats.shape[0]
        if have > target:
            feats = feats[:target]
        elif have < target:
            feats = np.concatenate([feats, np.repeat(feats[-1:], target - have, axis=0)], axis=0)
        return np.ascontiguousarray(feats, dtype=np.float32)


NumpyVocosFbank = VocosFbank
