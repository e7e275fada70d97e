"""Tests for :mod:`api.audio` decoding/encoding, plus small signal helpers they share."""

from __future__ import annotations

import numpy as np

#: Per-channel test tones (Hz): channel 0, channel 1. Distinct so swapped/mixed channels show.
TONES = (440.0, 1000.0)


def sine(seconds: float, rate: int, channels: int = 1, amplitude: float = 0.5) -> np.ndarray:
    """float32 ``(channels, n)``: channel ``c`` is a sine at ``TONES[c]``."""
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    rows = [amplitude * np.sin(2 * np.pi * TONES[c % len(TONES)] * t) for c in range(channels)]
    return np.asarray(rows, dtype=np.float32)


def dominant_freq(x: np.ndarray, rate: int) -> float:
    """Frequency (Hz) of the strongest FFT bin of a 1-D signal (Hann window)."""
    x = np.asarray(x, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum)) * rate / len(x)
