"""The one content digest of decoded audio: the cache key for prompts, transcripts and reports."""

from __future__ import annotations

import hashlib

import numpy as np


def audio_digest(samples: np.ndarray, sample_rate: int) -> str:
    """sha256 of ``b"<rate>:<channels>:"`` + the float32 little-endian samples, C order."""
    arr = np.ascontiguousarray(samples, dtype="<f4")
    channels = arr.shape[0] if arr.ndim > 1 else 1
    h = hashlib.sha256(f"{int(sample_rate)}:{channels}:".encode())
    h.update(arr.tobytes())
    return h.hexdigest()
